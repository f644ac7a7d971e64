//! The session verdict, decided once for every caller: whether a stored user may go on with
//! a token issued at a given instant. The proxies, `/verify`, `/introspect` and
//! `POST /tokens/subscription` each say the refusal in their own words (a Centrifugo reason,
//! a 401/403, `active: false`, a 404/403); the decision itself is this function.

use super::SessionUser;

/// Why a user may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No user with this id (never created, or deleted).
    UnknownUser,
    /// Disabled by an operator.
    Disabled,
    /// The token was issued before the user's (or the app-wide) revocation instant.
    Revoked,
}

/// `user` as read by id, and the issue time of the token that speaks for it (`None` when
/// there is none to check, as when Centrifugo sent no connection meta): the user when it may
/// go on, else why not.
pub fn verdict(user: Option<SessionUser>, issued_at: Option<i64>) -> Result<SessionUser, Refused> {
    match user {
        None => Err(Refused::UnknownUser),
        Some(u) if u.disabled => Err(Refused::Disabled),
        Some(u) if issued_at.is_some_and(|iat| iat < u.tokens_valid_after) => Err(Refused::Revoked),
        Some(u) => Ok(u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(disabled: bool, valid_after: i64) -> Option<SessionUser> {
        Some(SessionUser {
            name: None,
            image: None,
            custom: None,
            disabled,
            tokens_valid_after: valid_after,
        })
    }

    #[test]
    fn unknown_then_disabled_then_revoked() {
        assert_eq!(verdict(None, Some(5)), Err(Refused::UnknownUser));
        assert_eq!(verdict(user(true, 10), Some(5)), Err(Refused::Disabled));
        assert_eq!(verdict(user(false, 10), Some(9)), Err(Refused::Revoked));
        // Issued at the revocation instant is valid (valid-after is the first valid second).
        assert!(verdict(user(false, 10), Some(10)).is_ok());
        // Nothing to check against: only disable and existence count.
        assert!(verdict(user(false, 10), None).is_ok());
    }
}
