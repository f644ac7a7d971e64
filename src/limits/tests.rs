//! The limiters' unit tests: bursts, blocking, address keys, the bounds when full.

use super::*;

fn config(per_user: u32, max_keys: usize) -> LimitsConfig {
    LimitsConfig {
        mint_per_user_per_minute: per_user,
        mint_per_api_key_per_second: 0,
        failed_auth_per_ip_per_minute: 3,
        admin_per_ip_per_minute: 0,
        max_tracked_keys: max_keys,
        trusted_proxy_header: None,
    }
}

#[test]
fn a_user_gets_the_burst_then_waits() {
    let l = Limits::new(&config(5, 1000));
    for _ in 0..5 {
        l.mint_for_user("u").unwrap();
    }
    let refused = l.mint_for_user("u").unwrap_err();
    assert_eq!(refused.limit, Limit::MintPerUser);
    // 5 a minute: one more every 12 s.
    assert!(
        (1..=12).contains(&refused.retry_after_secs()),
        "{refused:?}"
    );
    l.mint_for_user("other").unwrap();
    assert!(l.mint_with_key("k").is_ok(), "off when 0");
}

#[test]
fn failed_auth_blocks_the_address_only_after_the_limit() {
    let l = Limits::new(&config(5, 1000));
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let other: IpAddr = "192.0.2.8".parse().unwrap();
    for _ in 0..3 {
        assert!(l.marked(Mark::Blocked, ip).is_none());
        l.auth_failed(ip).unwrap();
    }
    assert!(l.auth_failed(ip).is_err());
    assert!(
        l.marked(Mark::Blocked, ip).is_some(),
        "refused before the key is checked"
    );
    assert!(l.marked(Mark::Blocked, other).is_none());
}

#[test]
fn ipv6_is_keyed_by_its_64_and_mapped_v4_as_v4() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(client_key(a), client_key(b));
    assert_ne!(client_key(a), client_key(c));
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(client_key(v4), client_key(mapped));
}

/// A million distinct user ids: the limiter never tracks more than its bound, and the
/// process grows by a bounded amount (printed; the README quotes it).
#[test]
fn a_million_distinct_users_stay_within_the_bound() {
    const MAX: usize = 100_000;
    let l = Limits::new(&config(60, MAX));
    let rss_before = rss_kib();
    let mut id = String::with_capacity(32);
    for i in 0..1_000_000u32 {
        id.clear();
        use std::fmt::Write;
        let _ = write!(id, "user-{i}");
        l.mint_for_user(&id).unwrap();
    }
    let keyed = l.mint_per_user.as_ref().unwrap();
    assert!(keyed.len() <= MAX + SHARDS, "{} keys tracked", keyed.len());
    // Every shard filled before the first key went untracked, so at least MAX ids were
    // tracked; how many more depends on how often the table was pruned (once a second, so on
    // how fast this loop ran), which a test cannot bound without a clock of its own.
    assert!(keyed.untracked_count() <= 1_000_000 - MAX as u64);
    let table = keyed.store().table_bytes();
    // The process-wide RSS also counts whatever tests run alongside: informative only.
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!(
        "1,000,000 distinct user ids: {} tracked, {} passed unlimited while full, table {} KiB, RSS +{grown} KiB",
        keyed.len(),
        keyed.untracked_count(),
        table / 1024
    );
    assert!(table < 4 * 1024 * 1024, "table holds {table} bytes");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Past a full failed-auth table, the addresses it cannot track share their shard's bucket:
/// 300 addresses at 100 tracked keys, each failing once a round, and none of the untracked
/// gets more than the limit's burst per shard; every such check is counted.
#[test]
fn a_full_failed_auth_table_shares_a_budget_instead_of_admitting() {
    let l = Limits::new(&config(0, 100));
    let ips: Vec<IpAddr> = (0..300u32)
        .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 + i)))
        .collect();
    let mut admitted = 0;
    for _round in 0..34 {
        for ip in &ips {
            if l.marked(Mark::Blocked, *ip).is_some() {
                continue;
            }
            if l.auth_failed(*ip).is_ok() {
                admitted += 1;
            }
        }
    }
    let keyed = l.failed_auth_per_ip.as_ref().unwrap();
    assert!(keyed.len() <= 100 + SHARDS, "{}", keyed.len());
    // Tracked: 3 each; untracked: 3 per shard, shared.
    assert!(
        admitted <= keyed.len() * 3 + SHARDS * 3,
        "{admitted} failures admitted"
    );
    assert!(keyed.untracked_count() > 0);
}

/// Marks are bounded: a full shard marks every key it does not hold (never admits), and a
/// longer mark is never shortened.
#[test]
fn marks_past_the_bound_mark_the_shard_and_never_shorten() {
    let m = Marks::new(SHARDS);
    let later = Instant::now() + Duration::from_secs(60);
    for k in 0..(SHARDS as u64 * 4) {
        m.mark(k, later);
    }
    assert_eq!(m.len(), SHARDS);
    // A key never marked, in a shard that overflowed, is marked too.
    assert!(m.remaining(SHARDS as u64 * 10).is_some());
    m.mark(0, Instant::now() + Duration::from_secs(1));
    assert!(m.remaining(0).unwrap() > Duration::from_secs(30));
    let fresh = Marks::new(1000);
    assert!(fresh.remaining(7).is_none());
    fresh.mark(7, Instant::now());
    assert!(fresh.remaining(7).is_none(), "a mark that passed");
}

/// A look-up while nothing is marked answers without hashing or locking (`none_held`): that
/// holds exactly while no key and no overflow is held, counted through marks, overflows and
/// prunes.
#[test]
fn none_held_follows_marks_overflows_and_prunes() {
    let m = Marks::new(SHARDS);
    assert!(m.none_held());
    let later = Instant::now() + Duration::from_secs(60);
    m.mark(1, later);
    assert!(!m.none_held());
    for k in 0..(SHARDS as u64 * 4) {
        m.mark(k, later);
    }
    assert!(!m.none_held());
    // A prune at an instant past every mark forgets them all, overflows included.
    m.prune_if_due(later + Duration::from_secs(3600));
    assert!(m.none_held());
    assert_eq!(m.len(), 0);
    assert!(m.remaining(1).is_none());
    m.mark(2, later);
    assert!(!m.none_held());
    assert!(m.remaining(2).is_some());
}
