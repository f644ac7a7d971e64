//! The traffic the fixture drives through the sidecar, and what it must have produced: every
//! counter series with its exact value ([`Expected`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::prom::labels;
use super::{now_ms, Labels};
use crate::helpers::{connect_body, connect_with, session_body, sign_hs256};
use crate::process::cli_ok;

/// The values of the sidecar's metrics label (`segments.metrics_label = "tenant"`).
const SEGMENTS: [&str; 2] = ["acme", "other"];
const ISSUED_BY_SEGMENT: &str = "chatsdk_auth_tokens_issued_by_segment_total";

/// What the traffic must have produced: family -> series -> value.
#[derive(Default)]
pub(super) struct Expected(BTreeMap<String, BTreeMap<Labels, f64>>);

impl Expected {
    /// The zero series the service creates at start (metrics.rs `initialise_series`): they
    /// must exist before anything happened, so rates and alerts see 0 rather than nothing.
    pub(super) fn initial() -> Expected {
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
            for segment in SEGMENTS {
                e.refused_by_segment(reason, segment, 0);
            }
        }
        for kind in ["rest", "ws"] {
            for segment in SEGMENTS {
                e.add(
                    ISSUED_BY_SEGMENT,
                    &[("kind", kind), ("segment", segment)],
                    0,
                );
            }
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
                "wrong_application",
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

    /// A POST /tokens refusal of a request the service read, by the `tenant` of its `custom`.
    fn refused_by_segment(&mut self, reason: &str, segment: &str, n: u32) {
        self.add(
            "chatsdk_auth_token_requests_rejected_by_segment_total",
            &[("reason", reason), ("segment", segment)],
            n,
        );
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

    pub(super) fn family(&self, name: &str) -> BTreeMap<Labels, f64> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

// ------------------------------------------------------------------------------ sidecar traffic

pub(super) struct Sidecar {
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    pub(super) dir: PathBuf,
    pub(super) proxy_secret: String,
    pub(super) ws_key: String,
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
    pub(super) fn url(&self, path: &str) -> String {
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
        for kind in ["rest", "ws"] {
            e.add(ISSUED_BY_SEGMENT, &[("kind", kind), ("segment", "acme")], 1);
        }
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
    pub(super) async fn wave(&self, w: u32, e: &mut Expected) {
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
        // Read, so counted by segment too: no custom in the request, so other.
        e.refused_by_segment("user_disabled", "other", 1);
        authed(e);
        {
            // Another writer holds the database past the sidecar's 50 ms busy timeout.
            let db = rusqlite::Connection::open(self.dir.join("data/chatsdk-auth.db")).unwrap();
            db.execute_batch("BEGIN EXCLUSIVE").unwrap();
            let want = (503, "store_unavailable");
            self.tokens_rejected(Some(&key), json_ct, ok_body(), want, "store_unavailable", e)
                .await;
            e.refused_by_segment("store_unavailable", "other", 1);
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
