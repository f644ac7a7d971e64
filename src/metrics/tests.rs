//! The registry's series: every label value exists at startup, and each typed accessor moves
//! the series its labels name.

use strum::IntoEnumIterator;

use super::*;

fn registry() -> Metrics {
    Metrics::new(&["tokens", "unmatched"], Default::default()).unwrap()
}

/// The value of the exposition line `series` (`name{labels}`), when it exists.
fn value(m: &Metrics, series: &str) -> Option<f64> {
    let text = String::from_utf8(m.encode()).unwrap();
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .map(|(_, v)| v.parse().unwrap())
}

#[test]
fn every_label_value_starts_at_zero() {
    let m = registry();
    let mut want: Vec<String> = Vec::new();
    let mut add = |name: &str, labels: &[(&str, &str)]| {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        want.push(format!("chatsdk_auth_{name}{{{}}}", l.join(",")));
    };
    for k in TokenKind::iter() {
        add("tokens_issued_total", &[("kind", k.label())]);
    }
    for r in UpsertResult::iter() {
        add("users_upserted_total", &[("result", r.label())]);
    }
    for r in RejectReason::iter() {
        if !r.subscription_only() {
            add("token_requests_rejected_total", &[("reason", r.label())]);
        }
        add(
            "subscription_token_requests_rejected_total",
            &[("reason", r.label())],
        );
    }
    for v in Verification::all() {
        add(
            "token_verifications_total",
            &[("endpoint", v.label()), ("result", v.result())],
        );
    }
    for cb in Callback::iter() {
        let cb = cb.label();
        add("proxy_unauthenticated_total", &[("callback", cb)]);
        add("proxy_duration_seconds_count", &[("callback", cb)]);
        let decision = |o: DecisionOutcome, r: &'static str| {
            [("callback", cb), ("outcome", o.label()), ("reason", r)]
        };
        add(
            "proxy_decisions_total",
            &decision(DecisionOutcome::Accepted, NO_REASON),
        );
        for r in Reason::iter() {
            add(
                "proxy_decisions_total",
                &decision(DecisionOutcome::Rejected, r.label()),
            );
        }
        for f in ProxyFailure::iter() {
            add(
                "proxy_decisions_total",
                &decision(DecisionOutcome::Error, f.label()),
            );
        }
    }
    for op in StoreOperation::iter() {
        add(
            "store_operation_duration_seconds_count",
            &[("operation", op.label())],
        );
    }
    for l in BatchLookup::iter() {
        add("store_batch_size_count", &[("lookup", l.label())]);
    }
    for method in ApiMethod::iter() {
        for outcome in ApiCallOutcome::iter() {
            add(
                "centrifugo_api_calls_total",
                &[("method", method.label()), ("outcome", outcome.label())],
            );
        }
        add(
            "centrifugo_api_call_duration_seconds_count",
            &[("method", method.label())],
        );
    }
    let missing: Vec<&String> = want.iter().filter(|s| value(&m, s) != Some(0.0)).collect();
    assert!(missing.is_empty(), "not created at 0: {missing:#?}");
}

#[test]
fn typed_accessors_count_under_their_own_labels() {
    let m = registry();
    for cb in Callback::iter() {
        for r in Reason::iter() {
            m.proxy(cb).rejected(r).inc();
            let s = format!(
                r#"chatsdk_auth_proxy_decisions_total{{callback="{}",outcome="rejected",reason="{}"}}"#,
                cb.label(),
                r.label()
            );
            assert_eq!(value(&m, &s), Some(1.0), "{s}");
        }
        for f in ProxyFailure::iter() {
            m.proxy(cb).failed(f).inc();
            let s = format!(
                r#"chatsdk_auth_proxy_decisions_total{{callback="{}",outcome="error",reason="{}"}}"#,
                cb.label(),
                f.label()
            );
            assert_eq!(value(&m, &s), Some(1.0), "{s}");
        }
    }
    for v in Verification::all() {
        m.verification(v);
        let s = format!(
            r#"chatsdk_auth_token_verifications_total{{endpoint="{}",result="{}"}}"#,
            v.label(),
            v.result()
        );
        assert_eq!(value(&m, &s), Some(1.0), "{s}");
    }
    m.observe_request(1, 503, 0.01);
    assert_eq!(
        value(
            &m,
            r#"chatsdk_auth_http_request_duration_seconds_count{route="unmatched",status_class="5xx"}"#
        ),
        Some(1.0)
    );
}
