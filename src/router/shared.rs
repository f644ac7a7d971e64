//! The guard's glue to the limit buckets the replicas share (`store/shared_limits.rs`):
//! which budget, under which row key, and what a verdict does to this replica's own marks.
//!
//! A row is keyed by an HMAC-SHA-256 of the limit and the client's address key
//! ([`limits::client_key`]) under the key-encryption secret, which every replica on one
//! PostgreSQL already shares (the key ring is sealed with it): the table never holds an
//! address, and a replica with another secret could not share a budget with this one anyway.

use std::net::IpAddr;
use std::time::Duration;

use aws_lc_rs::hmac;

use crate::app::App;
use crate::limits::{self, Limit, Limited, Mark};
use crate::store::SharedVerdict;

/// What [`ask`] does with the bucket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Shared {
    /// Count one event.
    Count,
    /// Only ask whether one more would conform.
    Peek,
}

/// How long a failed API-key check keeps its address watched: a full refill.
const WATCH_FOR: Duration = Duration::from_secs(60);

/// The bucket of `limit` for `client` that every replica shares (PostgreSQL; nothing on
/// SQLite): counts a failed credential check, or peeks before the key check of an address
/// that failed lately. Over the shared budget, the address is refused here too until the
/// bucket refills, without asking again. A failed key check keeps the address watched for a
/// minute. A store that cannot answer leaves the per-process limit in charge (the store
/// times, counts and logs that, at most once a minute): the credential check still decides,
/// and the local limiter still counts.
pub(super) async fn ask(
    app: &App,
    limit: Limit,
    client: IpAddr,
    what: Shared,
) -> Result<(), Limited> {
    let per_minute = match limit {
        Limit::FailedAuthPerIp => app.config.limits.failed_auth_per_ip_per_minute,
        Limit::AdminPerIp => app.config.limits.admin_per_ip_per_minute,
        Limit::MintPerUser | Limit::MintPerApiKey => return Ok(()),
    };
    if per_minute == 0 || !app.store.shares_limits() {
        return Ok(());
    }
    let Some(secret) = &app.secrets.key_encryption_key else {
        return Ok(());
    };
    if limit == Limit::FailedAuthPerIp && what == Shared::Count {
        app.limits.mark(Mark::Watched, client, WATCH_FOR);
    }
    let key = row_key(secret.expose().as_bytes(), limit, client);
    let answer = match what {
        Shared::Count => app.store.count_shared(&key, per_minute).await,
        Shared::Peek => app.store.peek_shared(&key, per_minute).await,
    };
    match answer {
        Ok(SharedVerdict::Limited(retry_after)) => {
            if limit == Limit::FailedAuthPerIp {
                app.limits.mark(Mark::Blocked, client, retry_after);
            }
            Err(Limited { limit, retry_after })
        }
        Ok(SharedVerdict::Allowed) | Err(_) => Ok(()),
    }
}

/// The row of `limit` for `client`: the limit's name and 32 hex digits of an HMAC-SHA-256
/// of it and the address key under `secret`.
fn row_key(secret: &[u8], limit: Limit, client: IpAddr) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(b"chatsdk-auth shared limit\0");
    ctx.update(limit.label().as_bytes());
    ctx.update(b"\0");
    ctx.update(&limits::client_key(client).to_be_bytes());
    let tag = ctx.sign();
    let mut out = String::with_capacity(limit.label().len() + 33);
    out.push_str(limit.label());
    out.push(':');
    for b in &tag.as_ref()[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_keyed_by_a_keyed_hash_never_the_address() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = row_key(b"secret-one", Limit::FailedAuthPerIp, ip);
        assert!(a.starts_with("failed_auth_per_ip:"), "{a}");
        assert_eq!(a.len(), "failed_auth_per_ip:".len() + 32);
        assert!(!a.contains("c0000207") && !a.contains("192"), "{a}");
        assert_eq!(a, row_key(b"secret-one", Limit::FailedAuthPerIp, ip));
        assert_ne!(a, row_key(b"secret-two", Limit::FailedAuthPerIp, ip));
        assert_ne!(
            a[19..],
            row_key(b"secret-one", Limit::AdminPerIp, ip)["admin_per_ip:".len()..]
        );
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_ne!(a, row_key(b"secret-one", Limit::FailedAuthPerIp, other));
    }
}
