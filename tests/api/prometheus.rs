//! Observability proven against a real Prometheus.
//!
//! Starts the built binary and a real Prometheus (the Debian package; `bash tests/run.sh`
//! installs it) that scrapes the sidecar every second and loads `dashboards/alerts.yml`, drives
//! traffic that produces every outcome the service counts, and then checks:
//! - `promtool check metrics` is clean on the exposition;
//! - every counter moved by exactly what the traffic produced, in the scraped text and in
//!   Prometheus;
//! - every panel query of `dashboards/chatsdk-auth.json` is valid PromQL and returns data;
//! - every alerting rule of `alerts.yml` is loaded, healthy and evaluates.
//!
//! Traffic runs in two identical waves with a scrape in between. Several series (the HTTP
//! latency histogram per route, store operations, per-key counters) only exist once something
//! happened, so a single wave would give `rate()` one sample per series and the latency panels
//! nothing but NaN. With two waves, the second one is an increase inside the rate window for
//! every series, and every counter ends at exactly twice the per-wave amount.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::helpers::{connect_body, connect_with, session_body, sign_hs256};
use crate::process::{cli_ok, free_port, tool, KillOnDrop, Server};

const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
/// The scrape job name: the one `alerts.yml` matches on and the dashboard's `$job` lists.
const JOB: &str = "chatsdk-auth";
const WAVES: u32 = 2;
const POLL: Duration = Duration::from_millis(100);

type Labels = BTreeMap<String, String>;

// ------------------------------------------------------------------------------ processes

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Starts `chatsdk-auth serve` in `dir` with JSON logs at the default level and a 50 ms busy
/// timeout (so a held write lock answers 503 quickly).
fn start_sidecar(dir: &Path) -> Server {
    Server::start(
        dir,
        &[
            ("CHATSDK_AUTH_LOG__LEVEL", "info"),
            ("CHATSDK_AUTH_STORAGE__BUSY_TIMEOUT_MS", "50"),
        ],
    )
}

/// Starts Prometheus in `dir` scraping `target` every second, with a copy of alerts.yml, and
/// waits until it is ready. Retries on a fresh port if the chosen one was taken meanwhile.
async fn start_prometheus(dir: &Path, target: &str, http: &reqwest::Client) -> (KillOnDrop, Prom) {
    let prometheus = tool("prometheus");
    std::fs::copy(
        Path::new(DASHBOARDS).join("alerts.yml"),
        dir.join("alerts.yml"),
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - alerts.yml\n\
         scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: [\"{target}\"]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log_path = dir.join("prometheus.log");
    let mut last_log = String::new();
    for attempt in 0..3 {
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").join(attempt.to_string()).display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut guard = KillOnDrop(child);
        let prom = Prom {
            base: format!("http://{listen}"),
            http: http.clone(),
        };
        let until = deadline(60);
        let exited = loop {
            if let Some(status) = guard.0.try_wait().unwrap() {
                break Some(status);
            }
            if let Ok(r) = http.get(format!("{}/-/ready", prom.base)).send().await {
                if r.status() == 200 {
                    break None;
                }
            }
            assert!(Instant::now() < until, "Prometheus not ready within 60 s");
            tokio::time::sleep(POLL).await;
        };
        match exited {
            None => return (guard, prom),
            Some(status) => {
                last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                eprintln!("prometheus exited ({status}) on {listen}; retrying");
            }
        }
    }
    panic!("Prometheus did not start; its log:\n{last_log}");
}

// ------------------------------------------------------------------------------ Prometheus API

struct Prom {
    base: String,
    http: reqwest::Client,
}

impl Prom {
    /// `/api/v1/query`; `Err` carries Prometheus' error for an invalid query.
    async fn query(&self, expr: &str, time: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr), ("time", time)])
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let v: Value = r.json().await.map_err(|e| format!("bad JSON: {e}"))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"].clone())
    }

    /// An instant-vector query as (labels without `__name__`/job/instance, value).
    async fn vector(&self, expr: &str, time: &str) -> Result<Vec<(Labels, f64)>, String> {
        let data = self.query(expr, time).await?;
        if data["resultType"] != "vector" {
            return Err(format!("expected a vector, got {}", data["resultType"]));
        }
        Ok(data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (labels, parse_value(s["value"][1].as_str().unwrap()))
            })
            .collect())
    }

    /// Timestamps (ms) of successful scrapes of the sidecar taken after `after_ms`.
    async fn scrapes_after(&self, after_ms: i64) -> Vec<i64> {
        let data = self
            .query(&format!("up{{job=\"{JOB}\"}}[5m]"), &secs(now_ms()))
            .await
            .unwrap();
        let series = data["result"].as_array().unwrap();
        assert!(series.len() <= 1, "one scrape target expected: {data}");
        series
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap().iter())
            .filter(|p| p[1] == "1")
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .filter(|&t| t > after_ms)
            .collect()
    }

    /// Waits until Prometheus holds `n` scrapes that started after `after_ms` (so they saw
    /// everything that happened before it); returns their timestamps.
    async fn wait_scrapes_after(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let until = deadline(30);
        loop {
            let ts = self.scrapes_after(after_ms).await;
            if ts.len() >= n {
                return ts;
            }
            assert!(
                Instant::now() < until,
                "Prometheus did not scrape the sidecar {n} times within 30 s (got {})",
                ts.len()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Milliseconds as the seconds string the API takes.
fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Prometheus' and the exposition's number spellings (`NaN`, `+Inf`, ...).
fn parse_value(s: &str) -> f64 {
    s.parse::<f64>()
        .unwrap_or_else(|_| panic!("not a number: {s}"))
}

// ------------------------------------------------------------------------------ exposition text

/// Parses the text exposition into (metric name, labels, value).
fn parse_exposition(text: &str) -> Vec<(String, Labels, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample line has a value");
        let name = line[..name_end].to_string();
        let mut labels = Labels::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let (mut key, mut val) = (String::new(), String::new());
            let mut in_value = false;
            let end = loop {
                let (i, c) = chars.next().expect("unterminated label set");
                match (in_value, c) {
                    (false, '}') => break i,
                    (false, ',') | (false, ' ') => {}
                    (false, '=') => {
                        assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                        in_value = true;
                    }
                    (false, c) => key.push(c),
                    (true, '\\') => match chars.next().map(|x| x.1) {
                        Some('n') => val.push('\n'),
                        Some(c) => val.push(c),
                        None => panic!("bad escape in {line}"),
                    },
                    (true, '"') => {
                        labels.insert(std::mem::take(&mut key), std::mem::take(&mut val));
                        in_value = false;
                    }
                    (true, c) => val.push(c),
                }
            };
            rest = &body[end + 1..];
        }
        let value = rest.split_whitespace().next().expect("sample value");
        out.push((name, labels, parse_value(value)));
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ------------------------------------------------------------------------------ expectations

/// The counter families whose every series is checked exactly, with the label pair whose
/// series are left out (scrapes by Prometheus move `route="metrics"` on their own).
const EXACT_FAMILIES: &[(&str, Option<(&str, &str)>)] = &[
    ("chatsdk_auth_tokens_issued_total", None),
    ("chatsdk_auth_token_requests_rejected_total", None),
    ("chatsdk_auth_proxy_decisions_total", None),
    ("chatsdk_auth_proxy_unauthenticated_total", None),
    ("chatsdk_auth_users_upserted_total", None),
    ("chatsdk_auth_api_key_requests_total", None),
    (
        "chatsdk_auth_http_request_duration_seconds_count",
        Some(("route", "metrics")),
    ),
];

/// What the traffic must have produced: family -> series -> value.
#[derive(Default)]
struct Expected(BTreeMap<String, BTreeMap<Labels, f64>>);

impl Expected {
    /// The zero series the service creates at start (metrics.rs `initialise_series`): they
    /// must exist before anything happened, so rates and alerts see 0 rather than nothing.
    fn initial() -> Expected {
        let mut e = Expected::default();
        for kind in ["rest", "ws", "subscription"] {
            e.add("chatsdk_auth_tokens_issued_total", &[("kind", kind)], 0);
        }
        for reason in [
            "invalid_api_key",
            "invalid_request",
            "payload_too_large",
            "unsupported_media_type",
            "user_disabled",
            "store_unavailable",
            // A client stalling its body (408) and the service missing the request deadline
            // (503) each have their own reason: neither may fire the store alert.
            "request_timeout",
            "timeout",
            // The limits' defaults are far above this traffic (tests/api/limits.rs trips them).
            "rate_limited",
            // Not producible from outside: it needs a bug or a corrupt database.
            "internal_error",
        ] {
            e.add(
                "chatsdk_auth_token_requests_rejected_total",
                &[("reason", reason)],
                0,
            );
        }
        for cb in ["connect", "refresh", "subscribe", "sub_refresh"] {
            e.add(
                "chatsdk_auth_proxy_unauthenticated_total",
                &[("callback", cb)],
                0,
            );
            e.decision(cb, "accepted", "none", 0);
            // In WAL mode a held write lock does not block the proxies' reads, so
            // store_unavailable stays 0; internal_error needs a bug.
            for reason in [
                "bad_request",
                "store_unavailable",
                "internal_error",
                "timeout",
            ] {
                e.decision(cb, "error", reason, 0);
            }
            for reason in [
                "token_expired",
                "token_invalid",
                "token_revoked",
                "user_unknown",
                "user_disabled",
                "no_credentials",
                "channel_forbidden",
            ] {
                e.decision(cb, "rejected", reason, 0);
            }
        }
        for result in ["created", "updated"] {
            e.add(
                "chatsdk_auth_users_upserted_total",
                &[("result", result)],
                0,
            );
        }
        e
    }

    fn add(&mut self, family: &str, pairs: &[(&str, &str)], n: u32) {
        *self
            .0
            .entry(family.to_string())
            .or_default()
            .entry(labels(pairs))
            .or_default() += f64::from(n);
    }

    fn decision(&mut self, callback: &str, outcome: &str, reason: &str, n: u32) {
        self.add(
            "chatsdk_auth_proxy_decisions_total",
            &[
                ("callback", callback),
                ("outcome", outcome),
                ("reason", reason),
            ],
            n,
        );
    }

    fn http(&mut self, route: &str, status: u16) {
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => panic!("unexpected status {status}"),
        };
        self.add(
            "chatsdk_auth_http_request_duration_seconds_count",
            &[("route", route), ("status_class", class)],
            1,
        );
    }

    fn family(&self, name: &str) -> BTreeMap<Labels, f64> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// Series of `family` in parsed exposition samples, minus the excluded label pair.
fn family_in_text(
    samples: &[(String, Labels, f64)],
    family: &str,
    exclude: Option<(&str, &str)>,
) -> BTreeMap<Labels, f64> {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == family && exclude.is_none_or(|(k, v)| l.get(k).is_none_or(|x| x != v))
        })
        .map(|(_, l, v)| (l.clone(), *v))
        .collect()
}

// ------------------------------------------------------------------------------ sidecar traffic

struct Sidecar {
    base: String,
    http: reqwest::Client,
    dir: PathBuf,
    proxy_secret: String,
    ws_key: String,
}

/// A connect body with `token` in `data`, or with no credentials at all.
fn connect(token: Option<&str>) -> String {
    match token {
        Some(t) => connect_with(t),
        None => connect_body(json!({})),
    }
}

/// A refresh or subscribe body for `user`, with the `meta` the connect proxy hands out.
fn session(user: &str, channel: Option<&str>) -> String {
    session_body(user, channel, Some(json!({"iat": now_ms() / 1000})))
}

impl Sidecar {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST /tokens; returns the status and the error `code` (never the body: it holds tokens).
    async fn tokens(
        &self,
        key: Option<&str>,
        content_type: &str,
        body: String,
        e: &mut Expected,
    ) -> (u16, Option<String>, Value) {
        let mut rb = self
            .http
            .post(self.url("/tokens"))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(k) = key {
            rb = rb.header("X-API-Key", k);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        e.http("tokens", status);
        let code = v["code"].as_str().map(str::to_string);
        (status, code, v)
    }

    /// A rejected POST /tokens: asserts status and code, counts the reason.
    #[allow(clippy::too_many_arguments)]
    async fn tokens_rejected(
        &self,
        key: Option<&str>,
        content_type: &str,
        body: String,
        want: (u16, &str),
        reason: &str,
        e: &mut Expected,
    ) {
        let (status, code, _) = self.tokens(key, content_type, body, e).await;
        assert_eq!(
            (status, code.as_deref()),
            (want.0, Some(want.1)),
            "{reason}"
        );
        e.add(
            "chatsdk_auth_token_requests_rejected_total",
            &[("reason", reason)],
            1,
        );
    }

    /// A successful POST /tokens; returns the wsToken.
    async fn issue(
        &self,
        key: &str,
        key_name: &str,
        user: &str,
        created: bool,
        e: &mut Expected,
    ) -> String {
        let body = json!({"userId": user, "name": "Ada", "custom": {"tenant": "acme"}}).to_string();
        let (status, code, v) = self.tokens(Some(key), "application/json", body, e).await;
        assert_eq!(status, 200, "POST /tokens for {user}: {code:?}");
        e.add("chatsdk_auth_tokens_issued_total", &[("kind", "rest")], 1);
        e.add("chatsdk_auth_tokens_issued_total", &[("kind", "ws")], 1);
        e.add(
            "chatsdk_auth_users_upserted_total",
            &[("result", if created { "created" } else { "updated" })],
            1,
        );
        e.add(
            "chatsdk_auth_api_key_requests_total",
            &[("key_name", key_name)],
            1,
        );
        v["wsToken"].as_str().unwrap().to_string()
    }

    /// A proxy callback; `secret` None sends no header.
    async fn proxy(
        &self,
        callback: &str,
        secret: Option<&str>,
        body: String,
        e: &mut Expected,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .post(self.url(&format!("/centrifugo/{callback}")))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(s) = secret {
            rb = rb.header("X-Chatsdk-Proxy-Secret", s);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        e.http(&format!("centrifugo_{callback}"), status);
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An authenticated proxy decision: asserts HTTP 200 and counts (outcome, reason).
    async fn decide(
        &self,
        callback: &str,
        body: String,
        outcome: &str,
        reason: &str,
        e: &mut Expected,
    ) -> Value {
        let (status, v) = self
            .proxy(callback, Some(&self.proxy_secret), body, e)
            .await;
        assert_eq!(status, 200, "{callback} {outcome}/{reason}: {v}");
        e.decision(callback, outcome, reason, 1);
        v
    }

    async fn get(&self, path: &str, route: &str, want: u16, e: &mut Expected) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "GET {path}");
        e.http(route, want);
    }

    /// One wave of traffic producing every outcome. Users and the API key are fresh per wave,
    /// so each wave produces the same counts. Returns when the last response has arrived.
    async fn wave(&self, w: u32, e: &mut Expected) {
        let key_name = format!("wave-{w}");
        let created = cli_ok(&self.dir, &["api-key", "create", "--name", &key_name]);
        let key = created.lines().last().unwrap().trim().to_string();
        let (alice, bob, carol) = (
            format!("alice-{w}"),
            format!("bob-{w}"),
            format!("carol-{w}"),
        );
        let (ghost, dave) = (format!("ghost-{w}"), format!("dave-{w}"));

        // --- POST /tokens: issued.
        let alice_ws = self.issue(&key, &key_name, &alice, true, e).await;
        self.issue(&key, &key_name, &alice, false, e).await;
        let bob_ws = self.issue(&key, &key_name, &bob, true, e).await;
        let carol_ws = self.issue(&key, &key_name, &carol, true, e).await;

        // --- POST /tokens: every rejection reason the service can produce.
        let ok_body = || json!({"userId": dave}).to_string();
        let json_ct = "application/json";
        let wrong_key = format!("chatsdk_{}", "x".repeat(43));
        for k in [Some(wrong_key.as_str()), None] {
            let want = (401, "invalid_api_key");
            self.tokens_rejected(k, json_ct, ok_body(), want, "invalid_api_key", e)
                .await;
        }
        let authed = |e: &mut Expected| {
            e.add(
                "chatsdk_auth_api_key_requests_total",
                &[("key_name", key_name.as_str())],
                1,
            )
        };
        for (body, code) in [
            (r#"{"userId": "#.to_string(), "invalid_json"),
            ("{}".to_string(), "invalid_user_id"),
        ] {
            self.tokens_rejected(Some(&key), json_ct, body, (400, code), "invalid_request", e)
                .await;
            authed(e);
        }
        let big = json!({"userId": dave, "name": "x".repeat(70 * 1024)}).to_string();
        let want = (413, "payload_too_large");
        self.tokens_rejected(Some(&key), json_ct, big, want, "payload_too_large", e)
            .await;
        authed(e);
        let want = (415, "unsupported_media_type");
        self.tokens_rejected(
            Some(&key),
            "text/plain",
            ok_body(),
            want,
            "unsupported_media_type",
            e,
        )
        .await;
        authed(e);
        cli_ok(&self.dir, &["user", "disable", &bob]);
        let body = json!({"userId": bob}).to_string();
        let want = (403, "user_disabled");
        self.tokens_rejected(Some(&key), json_ct, body, want, "user_disabled", e)
            .await;
        authed(e);
        {
            // Another writer holds the database past the sidecar's 50 ms busy timeout.
            let db = rusqlite::Connection::open(self.dir.join("data/chatsdk-auth.db")).unwrap();
            db.execute_batch("BEGIN EXCLUSIVE").unwrap();
            let want = (503, "store_unavailable");
            self.tokens_rejected(Some(&key), json_ct, ok_body(), want, "store_unavailable", e)
                .await;
            authed(e);
            db.execute_batch("ROLLBACK").unwrap();
        }
        cli_ok(&self.dir, &["user", "revoke-tokens", &carol]);

        // --- Centrifugo proxy decisions.
        let now = now_ms() / 1000;
        let expired = sign_hs256(
            &json!({"sub": alice, "iat": now - 120, "exp": now - 60}),
            &self.ws_key,
        );
        let unknown = sign_hs256(
            &json!({"sub": ghost, "iat": now, "exp": now + 600}),
            &self.ws_key,
        );
        let v = self
            .decide("connect", connect(Some(&alice_ws)), "accepted", "none", e)
            .await;
        assert_eq!(v["result"]["user"], alice.as_str(), "{v}");
        for (token, reason, path, code) in [
            (Some(expired.as_str()), "token_expired", "/error/code", 1109),
            (Some("not.a.jwt"), "token_invalid", "/disconnect/code", 4501),
            (
                Some(unknown.as_str()),
                "user_unknown",
                "/disconnect/code",
                4502,
            ),
            (
                Some(bob_ws.as_str()),
                "user_disabled",
                "/disconnect/code",
                4503,
            ),
            (
                Some(carol_ws.as_str()),
                "token_revoked",
                "/disconnect/code",
                4504,
            ),
            (None, "no_credentials", "/disconnect/code", 4505),
        ] {
            let v = self
                .decide("connect", connect(token), "rejected", reason, e)
                .await;
            assert_eq!(v.pointer(path), Some(&json!(code)), "connect {reason}: {v}");
        }
        let (status, _) = self
            .proxy("connect", Some(&self.proxy_secret), "not json".into(), e)
            .await;
        assert_eq!(status, 400, "malformed connect body");
        e.decision("connect", "error", "bad_request", 1);

        let v = self
            .decide("refresh", session(&alice, None), "accepted", "none", e)
            .await;
        assert!(v["result"]["expire_at"].is_i64(), "{v}");
        for (user, reason) in [(&ghost, "user_unknown"), (&bob, "user_disabled")] {
            let v = self
                .decide("refresh", session(user, None), "rejected", reason, e)
                .await;
            assert_eq!(v["result"]["expired"], true, "refresh {reason}: {v}");
        }

        let room = format!("chat:room-{w}");
        let v = self
            .decide(
                "subscribe",
                session(&alice, Some(&room)),
                "accepted",
                "none",
                e,
            )
            .await;
        assert!(v.get("result").is_some(), "{v}");
        let body = session(&alice, Some("secret:room"));
        let v = self
            .decide("subscribe", body, "rejected", "channel_forbidden", e)
            .await;
        assert_eq!(v["error"]["code"], 403, "{v}");
        let body = session(&bob, Some(&room));
        let v = self
            .decide("subscribe", body, "rejected", "user_disabled", e)
            .await;
        assert_eq!(v["disconnect"]["code"], 4503, "{v}");

        let body = session(&alice, Some(&room));
        let v = self
            .decide("sub_refresh", body, "accepted", "none", e)
            .await;
        assert!(v["result"]["expire_at"].is_i64(), "{v}");
        let body = session(&alice, Some("secret:room"));
        let v = self
            .decide("sub_refresh", body, "rejected", "channel_forbidden", e)
            .await;
        assert_eq!(v["result"]["expired"], true, "{v}");

        // --- Proxy calls that are not Centrifugo: no secret header (and a wrong one).
        for (callback, secret) in [
            ("connect", None),
            ("connect", Some("wrong-secret")),
            ("refresh", None),
            ("subscribe", None),
            ("sub_refresh", None),
        ] {
            let (status, v) = self.proxy(callback, secret, "{}".into(), e).await;
            assert_eq!(
                (status, v["code"].as_str()),
                (401, Some("invalid_proxy_secret"))
            );
            e.add(
                "chatsdk_auth_proxy_unauthenticated_total",
                &[("callback", callback)],
                1,
            );
        }

        // --- The remaining routes, so every route label has latency data.
        self.get("/healthz", "healthz", 200, e).await;
        self.get("/readyz", "readyz", 200, e).await;
        self.get("/openapi.json", "openapi", 200, e).await;
        self.get("/.well-known/jwks.json", "jwks", 200, e).await;
        self.get("/verify", "verify", 401, e).await;
        let r = self
            .http
            .post(self.url("/introspect"))
            .header("X-API-Key", &key)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("token=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "POST /introspect");
        e.http("introspect", 200);
        e.add(
            "chatsdk_auth_api_key_requests_total",
            &[("key_name", &key_name)],
            1,
        );
        self.get("/nope", "unmatched", 404, e).await;
        self.get("/tokens", "unmatched", 405, e).await;
    }
}

// ------------------------------------------------------------------------------ dashboard

/// Every (panel title, refId, expr) in the dashboard, rows included.
fn dashboard_targets() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(Path::new(DASHBOARDS).join("chatsdk-auth.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    fn walk(panels: &Value, out: &mut Vec<(String, String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((
                        p["title"].as_str().unwrap_or("?").to_string(),
                        t["refId"].as_str().unwrap_or("?").to_string(),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// Grafana's variables as this test's Prometheus sees them.
fn substitute(expr: &str, rate_interval: &str) -> String {
    let e = expr
        .replace("$__rate_interval", rate_interval)
        .replace("${__rate_interval}", rate_interval)
        .replace("$instance", ".*")
        .replace("${instance}", ".*")
        .replace("$job", JOB)
        .replace("${job}", JOB);
    assert!(!e.contains('$'), "unknown dashboard variable left in: {e}");
    e
}

/// For any panel whose result carries one of these labels, the values seen must be exactly
/// this set: the traffic exercises every route, callback, operation, kind, result and key
/// inside the rate window, so a missing one means a broken query or a missing metric.
fn expected_label_values() -> BTreeMap<&'static str, BTreeSet<String>> {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let keys: Vec<String> = (1..=WAVES).map(|w| format!("wave-{w}")).collect();
    BTreeMap::from([
        (
            "route",
            set(&[
                "tokens",
                "centrifugo_connect",
                "centrifugo_refresh",
                "centrifugo_subscribe",
                "centrifugo_sub_refresh",
                "healthz",
                "readyz",
                "metrics",
                "openapi",
                "verify",
                "introspect",
                "jwks",
                "unmatched",
            ]),
        ),
        (
            "callback",
            set(&["connect", "refresh", "subscribe", "sub_refresh"]),
        ),
        (
            "operation",
            set(&[
                "authenticate_api_key",
                "upsert_user",
                "get_user",
                "ping",
                "touch_api_key",
            ]),
        ),
        ("kind", set(&["rest", "ws", "subscription"])),
        ("result", set(&["created", "updated"])),
        ("key_name", keys.into_iter().collect()),
    ])
}

// ------------------------------------------------------------------------------ the test

#[tokio::test]
async fn dashboard_alerts_and_counters_hold_against_a_real_prometheus() {
    let started = Instant::now();
    let promtool = tool("promtool");
    tool("prometheus");
    let tmp = tempfile::tempdir().unwrap();
    let (side_dir, prom_dir) = (tmp.path().join("sidecar"), tmp.path().join("prometheus"));
    std::fs::create_dir_all(&side_dir).unwrap();
    std::fs::create_dir_all(&prom_dir).unwrap();
    // No connection reuse: the sidecar answers some refusals (401, 413, 415) without reading
    // the body and then closes the connection, which a pooled client could race with.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let sidecar = start_sidecar(&side_dir);
    let addr = sidecar.addr.clone();
    let (_prometheus, prom) = start_prometheus(&prom_dir, &addr, &http).await;
    let read = |f: &str| {
        std::fs::read_to_string(side_dir.join("data").join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    let s = Sidecar {
        base: format!("http://{addr}"),
        http: http.clone(),
        dir: side_dir.clone(),
        proxy_secret: read("proxy-secret.key"),
        ws_key: read("centrifugo-hmac.key"),
    };

    // A baseline scrape of the untouched service, then the waves, each followed by scrapes
    // that started after its last response.
    prom.wait_scrapes_after(0, 1).await;
    let mut e = Expected::initial();
    let mut after_wave = Vec::new();
    for w in 1..=WAVES {
        s.wave(w, &mut e).await;
        let end = now_ms();
        let n = if w == WAVES { 2 } else { 1 };
        after_wave.push((end, prom.wait_scrapes_after(end, n).await));
    }
    let (_, last_scrapes) = after_wave.last().unwrap();
    // Every query is evaluated at the second post-traffic scrape: deterministic results.
    let at_ms = last_scrapes[1];
    let at = secs(at_ms);
    // $__rate_interval: from the first scrape after the previous wave to `at` (plus 1 ms, so
    // that scrape is inside the window however the range bound is read). Every rate then
    // measures exactly the last wave, with the same extrapolation for every series, so the
    // ratio panels have exact values. It spans at least two scrapes, as rate() needs.
    let before_last_wave = after_wave[after_wave.len() - 2].1[0];
    let rate_interval = format!("{}ms", at_ms - before_last_wave + 1);

    // --- /metrics once: promtool and exact counters in the scraped text.
    let r = http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lint = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && lint.trim().is_empty(),
        "promtool check metrics ({}):\n{lint}",
        out.status
    );
    let samples = parse_exposition(&text);
    for (family, exclude) in EXACT_FAMILIES {
        assert_eq!(
            family_in_text(&samples, family, *exclude),
            e.family(family),
            "{family} in /metrics"
        );
    }

    // --- The same counters through Prometheus.
    for (family, exclude) in EXACT_FAMILIES {
        let selector = match exclude {
            Some((k, v)) => format!("{family}{{job=\"{JOB}\", {k}!=\"{v}\"}}"),
            None => format!("{family}{{job=\"{JOB}\"}}"),
        };
        let got: BTreeMap<Labels, f64> = prom
            .vector(&selector, &at)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(got, e.family(family), "{family} in Prometheus");
    }
    let up = prom
        .vector(&format!("up{{job=\"{JOB}\"}}"), &at)
        .await
        .unwrap();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0, "the sidecar target is up");

    // --- Every dashboard query: valid, non-empty, finite, complete.
    // No panel is expected empty: the traffic makes a 5xx (store_unavailable -> 503), calls
    // every route (unmatched included), every callback and every store operation (a new API
    // key per wave is touched once) in the rate window, so each quantile has data.
    let label_sets = expected_label_values();
    let targets = dashboard_targets();
    assert!(
        targets.len() >= 20,
        "only {} dashboard targets",
        targets.len()
    );
    let mut failures = Vec::new();
    for (title, ref_id, raw) in &targets {
        let expr = substitute(raw, &rate_interval);
        let what = format!("panel {title:?} {ref_id}");
        let series = match prom.vector(&expr, &at).await {
            Ok(s) => s,
            Err(err) => {
                failures.push(format!("{what}: invalid: {err}\n  {expr}"));
                continue;
            }
        };
        if series.is_empty() {
            failures.push(format!("{what}: no series\n  {expr}"));
            continue;
        }
        if let Some((l, v)) = series.iter().find(|(_, v)| !v.is_finite()) {
            failures.push(format!("{what}: {v} for {l:?}\n  {expr}"));
        }
        for (label, want) in &label_sets {
            let seen: BTreeSet<String> = series
                .iter()
                .filter_map(|(l, _)| l.get(*label).cloned())
                .collect();
            if !seen.is_empty() && &seen != want {
                failures.push(format!(
                    "{what}: {label} values {seen:?}, expected {want:?}"
                ));
            }
        }
        // The window holds exactly the last wave, so the ratios are exact: 8 of 12 POST /tokens
        // rejected; 1 of 39 client-facing requests (`GET /openapi.json`, `/verify`,
        // `/introspect` and the JWKS included) a 5xx.
        let ratio = match title.as_str() {
            t if t.starts_with("POST /tokens rejection ratio") => Some(8.0 / 12.0),
            t if t.starts_with("HTTP 5xx ratio") => Some(1.0 / 39.0),
            _ => None,
        };
        if let Some(want) = ratio {
            if series.len() != 1 || (series[0].1 - want).abs() > 1e-9 {
                failures.push(format!("{what}: {series:?}, expected {want}"));
            }
        }
    }
    // The $job / $instance variables list what this Prometheus scrapes.
    let jobs = http
        .get(format!("{}/api/v1/label/job/values", prom.base))
        .query(&[("match[]", "chatsdk_auth_build_info")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(jobs["data"], json!([JOB]), "$job variable: {jobs}");
    let instances = http
        .get(format!("{}/api/v1/label/instance/values", prom.base))
        .query(&[(
            "match[]",
            format!("chatsdk_auth_build_info{{job=~\"{JOB}\"}}"),
        )])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        instances["data"],
        json!([addr]),
        "$instance variable: {instances}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}",
        failures.len(),
        targets.len(),
        failures.join("\n")
    );

    // --- Every alerting rule of alerts.yml: loaded, healthy, and its expression evaluates.
    let file = std::fs::read_to_string(Path::new(DASHBOARDS).join("alerts.yml")).unwrap();
    let in_file: Vec<String> = file
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect();
    assert!(!in_file.is_empty());
    let until = deadline(30);
    let rules = loop {
        let v: Value = http
            .get(format!("{}/api/v1/rules", prom.base))
            .query(&[("type", "alert")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
            panic!("rule {} is unhealthy: {}", bad["name"], bad["lastError"]);
        }
        if rules.iter().all(|r| r["health"] == "ok") {
            break rules;
        }
        assert!(
            Instant::now() < until,
            "rules not evaluated within 30 s: {v}"
        );
        tokio::time::sleep(POLL).await;
    };
    let loaded: Vec<String> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        loaded.iter().collect::<BTreeSet<_>>(),
        in_file.iter().collect::<BTreeSet<_>>(),
        "alerting rules loaded vs. in alerts.yml"
    );
    assert_eq!(loaded.len(), in_file.len(), "duplicate alert names");
    let mut firing_now = BTreeMap::new();
    for r in &rules {
        assert_eq!(r["type"], "alerting");
        let name = r["name"].as_str().unwrap();
        let expr = r["query"].as_str().unwrap();
        let series = prom
            .vector(expr, &at)
            .await
            .unwrap_or_else(|err| panic!("alert {name}: invalid query: {err}\n  {expr}"));
        firing_now.insert(name.to_string(), series);
    }
    // Where the traffic decides the answer, check it: the target is there and up; every
    // callback saw unauthenticated calls; 8 of 12 POST /tokens requests were rejected.
    let count = |n: &str| firing_now.get(n).map(Vec::len);
    assert_eq!(count("ChatsdkAuthDown"), Some(0));
    assert_eq!(count("ChatsdkAuthTargetMissing"), Some(0));
    assert_eq!(count("ChatsdkAuthUnauthenticatedProxyCalls"), Some(4));
    let ratio = &firing_now["ChatsdkAuthTokenRejectionRatioHigh"];
    assert!(
        ratio.len() == 1 && (ratio[0].1 - 8.0 / 12.0).abs() < 1e-9,
        "rejection ratio {ratio:?}"
    );

    eprintln!(
        "prometheus: {} dashboard queries and {} alert rules checked at t={at} with \
         $__rate_interval={rate_interval}, in {:.1} s",
        targets.len(),
        rules.len(),
        started.elapsed().as_secs_f64()
    );
}
