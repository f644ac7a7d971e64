//! Closed sets that describe a proxy call: which callback, why it was refused, why it failed.
//!
//! A leaf: the metrics registry pre-creates one series per value, and the proxy handlers pick
//! them; neither side needs the other. Labels here are the `callback`, `outcome` and `reason`
//! values of `chatsdk_auth_proxy_decisions_total`.

/// Which callback (the `callback` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    Connect,
    Refresh,
    Subscribe,
    SubRefresh,
}

impl Callback {
    pub const ALL: [Callback; 4] = [
        Callback::Connect,
        Callback::Refresh,
        Callback::Subscribe,
        Callback::SubRefresh,
    ];

    /// Position in [`Callback::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Callback::Connect => "connect",
            Callback::Refresh => "refresh",
            Callback::Subscribe => "subscribe",
            Callback::SubRefresh => "sub_refresh",
        }
    }
}

/// Why a proxy call was not accepted (the `reason` label, and the wire code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    UserUnknown,
    UserDisabled,
    NoCredentials,
    ChannelForbidden,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::TokenExpired,
        Reason::TokenInvalid,
        Reason::TokenRevoked,
        Reason::UserUnknown,
        Reason::UserDisabled,
        Reason::NoCredentials,
        Reason::ChannelForbidden,
    ];

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Reason::TokenExpired => "token_expired",
            Reason::TokenInvalid => "token_invalid",
            Reason::TokenRevoked => "token_revoked",
            Reason::UserUnknown => "user_unknown",
            Reason::UserDisabled => "user_disabled",
            Reason::NoCredentials => "no_credentials",
            Reason::ChannelForbidden => "channel_forbidden",
        }
    }
}

/// What a proxy call decided (metrics only).
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Accepted,
    Rejected(Reason),
    Error(Failure),
}

/// Why a proxy call ended in an error rather than a decision (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    BadRequest,
    StoreUnavailable,
    Internal,
    /// The call passed `server.request_timeout_seconds` (the router abandons it).
    Timeout,
}

impl Failure {
    pub const ALL: [Failure; 4] = [
        Failure::BadRequest,
        Failure::StoreUnavailable,
        Failure::Internal,
        Failure::Timeout,
    ];

    /// Position in [`Failure::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Failure::BadRequest => "bad_request",
            Failure::StoreUnavailable => "store_unavailable",
            Failure::Internal => "internal_error",
            Failure::Timeout => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_all_arrays() {
        for (i, cb) in Callback::ALL.iter().enumerate() {
            assert_eq!(cb.index(), i);
        }
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, f) in Failure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
    }
}
