//! `segments.metrics_label`: the issuance and refusal series of `POST /tokens` by the value of
//! one declared field, bounded to the configured values and `other` (every series created at
//! start, none for a value not listed); the stored `custom` read when the request leaves it
//! out; a label that is not a declared field, or without its value list, refused at startup
//! with the sentence that says what to change; no such series by default.

use serde_json::json;

use chatsdk_auth::config::RawConfig;

use crate::helpers::{find_metric, metric_value, TestApp};

const ISSUED: &str = "chatsdk_auth_tokens_issued_by_segment_total";
const REFUSED: &str = "chatsdk_auth_token_requests_rejected_by_segment_total";

fn issued(kind: &str, segment: &str) -> String {
    format!("{ISSUED}{{kind=\"{kind}\",segment=\"{segment}\"}}")
}

fn refused(reason: &str, segment: &str) -> String {
    format!("{REFUSED}{{reason=\"{reason}\",segment=\"{segment}\"}}")
}

/// The series of `family` in the exposition, as `name{labels}` lines.
fn series<'t>(text: &'t str, family: &str) -> Vec<&'t str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_refusals_are_counted_by_a_bounded_segment() {
    let t = TestApp::spawn_with(|c| {
        c.segments.fields = vec!["tenantId".into(), "plan".into()];
        c.segments.metrics_label = "plan".into();
        c.segments.metrics_label_values = vec!["free".into(), "pro".into()];
    })
    .await;
    // Every series exists from the start, at 0: two kinds by three segments, and each reason
    // POST /tokens can have by three segments; nothing else.
    let text = t.metrics_text().await;
    for segment in ["free", "pro", "other"] {
        for kind in ["rest", "ws"] {
            assert_eq!(metric_value(&text, &issued(kind, segment)), 0.0);
        }
        assert_eq!(metric_value(&text, &refused("user_disabled", segment)), 0.0);
    }
    assert_eq!(
        series(&text, ISSUED).len(),
        6,
        "{:?}",
        series(&text, ISSUED)
    );
    assert_eq!(series(&text, REFUSED).len(), 10 * 3);
    assert!(find_metric(&text, &refused("user_unknown", "other")).is_none());

    let mint = |id: &str, custom: Option<serde_json::Value>| {
        let mut body = json!({"userId": id});
        if let Some(c) = custom {
            body["custom"] = c;
        }
        t.tokens(body)
    };
    for (id, custom) in [
        ("a", json!({"plan": "free"})),
        ("b", json!({"plan": "free", "tenantId": "t1"})),
        ("c", json!({"plan": "pro"})),
        // Not listed, not a string, not there: other.
        ("d", json!({"plan": "gold"})),
        ("e", json!({"plan": 7})),
        ("f", json!({"tenantId": "t1"})),
    ] {
        assert_eq!(mint(id, Some(custom)).await.0, 200, "{id}");
    }
    // No custom: the stored one's plan; a user without any: other.
    assert_eq!(mint("c", None).await.0, 200);
    assert_eq!(mint("g", None).await.0, 200);
    let text = t.metrics_text().await;
    for kind in ["rest", "ws"] {
        assert_eq!(metric_value(&text, &issued(kind, "free")), 2.0, "{kind}");
        assert_eq!(metric_value(&text, &issued(kind, "pro")), 2.0, "{kind}");
        assert_eq!(metric_value(&text, &issued(kind, "other")), 4.0, "{kind}");
    }
    assert_eq!(
        series(&text, ISSUED).len(),
        6,
        "no series for gold or 7: {:?}",
        series(&text, ISSUED)
    );
    assert_eq!(
        metric_value(&text, "chatsdk_auth_tokens_issued_total{kind=\"rest\"}"),
        8.0
    );

    // A refusal of a request the service read: by the plan of the custom it carries.
    let a = chatsdk_auth::actions::Actions::new(&t.app.store, false, "tester");
    a.disable("c", crate::helpers::now()).await.unwrap();
    assert_eq!(mint("c", Some(json!({"plan": "pro"}))).await.0, 403);
    assert_eq!(mint("c", None).await.0, 403);
    // Refused before the body was read: the route's counter only.
    let (s, _) = t
        .tokens_with_key("chatsdk_wrong", json!({"userId": "a"}))
        .await;
    assert_eq!(s, 401);
    let text = t.metrics_text().await;
    assert_eq!(metric_value(&text, &refused("user_disabled", "pro")), 1.0);
    assert_eq!(metric_value(&text, &refused("user_disabled", "other")), 1.0);
    assert_eq!(
        metric_value(&text, &refused("invalid_api_key", "other")),
        0.0
    );
    assert_eq!(
        metric_value(
            &text,
            "chatsdk_auth_token_requests_rejected_total{reason=\"invalid_api_key\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_segment_series_by_default() {
    let t = TestApp::spawn().await;
    assert_eq!(
        t.tokens(json!({"userId": "a", "custom": {"plan": "free"}}))
            .await
            .0,
        200
    );
    let text = t.metrics_text().await;
    assert!(series(&text, ISSUED).is_empty());
    assert!(series(&text, REFUSED).is_empty());
    assert!(!text.contains("segment="), "no segment label anywhere");
}

#[test]
fn a_label_that_is_not_declared_or_has_no_values_is_refused_at_startup() {
    let refused = |f: &dyn Fn(&mut RawConfig)| {
        let mut raw = RawConfig::default();
        f(&mut raw);
        match raw.validate() {
            Ok(_) => panic!("accepted"),
            Err(e) => chatsdk_auth::error_chain::Chain(&e).to_string(),
        }
    };
    let msg = refused(&|c| {
        c.segments.fields = vec!["tenantId".into()];
        c.segments.metrics_label = "plan".into();
        c.segments.metrics_label_values = vec!["free".into()];
    });
    assert!(
        msg.contains(
            "segments.metrics_label: \"plan\" is not a declared segment field; use one of tenantId (segments.fields)"
        ),
        "{msg}"
    );
    let msg = refused(&|c| {
        c.segments.fields = vec!["plan".into()];
        c.segments.metrics_label = "plan".into();
    });
    assert!(
        msg.contains("segments.metrics_label = \"plan\" needs segments.metrics_label_values"),
        "{msg}"
    );
}
