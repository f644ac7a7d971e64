//! Bulk actions by segment over the admin API (`POST /admin/bulk/{action}`), on both backends:
//! the dry run's count, the action taking it (409 `segment_changed` when the segment changed in
//! between, nothing changed), numbers vs strings, an empty segment, kicks delivered to the
//! Centrifugo contract server, one audit event per run with the actor and the client's address;
//! every refusal names its field, and every answer is one `src/openapi.json` documents.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::fake_centrifugo::FakeCentrifugo;
use crate::helpers::{on_both_backends, Backend, TestApp};
use crate::openapi_doc::{assert_documented, doc};

on_both_backends!(
    the_admin_api_dry_runs_then_acts_on_the_expected_count,
    bulk_requests_are_refused_field_by_field,
);

const KEY: &str = "centrifugo-api-key-for-the-bulk-tests-0123";
const FIELDS: [&str; 4] = ["tenantId", "role", "plan", "permissions"];
const OP: &str = "/admin/bulk/{action}";

async fn spawn(backend: Backend, f: Option<&FakeCentrifugo>) -> TestApp {
    let api = f.map(|f| f.api_url());
    TestApp::spawn_on_with(backend, move |c| {
        c.segments.fields = FIELDS.map(String::from).to_vec();
        c.limits.admin_per_ip_per_minute = 0;
        if let Some(api) = api {
            c.centrifugo.api_url = api;
            c.secrets.centrifugo_api_key = KEY.into();
        }
    })
    .await
}

/// `POST /admin/bulk/{action}` with the admin token and a JSON body; the answer's status and
/// code are checked against the OpenAPI document.
async fn bulk(t: &TestApp, action: &str, body: Value) -> (u16, Value) {
    bulk_raw(t, action, &body.to_string()).await
}

async fn bulk_raw(t: &TestApp, action: &str, body: &str) -> (u16, Value) {
    let r = t
        .client
        .post(t.url(&format!("/admin/bulk/{action}")))
        .header(
            "Authorization",
            format!("Bearer {}", t.app.secrets.admin_token.expose()),
        )
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    if status >= 400 {
        assert_documented(&doc(), "POST", OP, status, v["code"].as_str().unwrap());
    }
    (status, v)
}

async fn put(t: &TestApp, id: &str, custom: Value) {
    let (s, b) = t.tokens(json!({"userId": id, "custom": custom})).await;
    assert_eq!(s, 200, "{b}");
}

async fn disabled(t: &TestApp, id: &str) -> bool {
    t.app.store.get_user(id).await.unwrap().unwrap().disabled
}

async fn the_admin_api_dry_runs_then_acts_on_the_expected_count(backend: Backend) {
    let f = FakeCentrifugo::start(KEY).await;
    let t = spawn(backend, Some(&f)).await;
    for id in ["a1", "a2"] {
        put(&t, id, json!({"tenantId": "tenant-789", "role": "member"})).await;
    }
    put(
        &t,
        "a3",
        json!({"tenantId": "tenant-789", "plan": 7, "permissions": ["read", "delete"]}),
    )
    .await;
    put(&t, "b1", json!({"tenantId": "tenant-1", "plan": "7"})).await;
    let seg = json!(["tenantId=tenant-789"]);

    // The dry run counts and changes nothing; `expected_count` is then required.
    let (s, dry) = bulk(&t, "disable", json!({"where": seg, "dry_run": true})).await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(
        dry,
        json!({"action": "disable", "where": "tenantId=\"tenant-789\"", "dry_run": true,
            "count": 3, "changed": 0, "kicks_queued": 0})
    );
    assert!(!disabled(&t, "a1").await);
    let (s, b) = bulk(&t, "disable", json!({"where": seg})).await;
    assert_eq!(
        (s, b["code"].clone()),
        (400, json!("invalid_expected_count"))
    );

    // The segment grows between the dry run and the action: 409, nobody changed or kicked.
    put(&t, "a4", json!({"tenantId": "tenant-789"})).await;
    let (s, b) = bulk(&t, "disable", json!({"where": seg, "expected_count": 3})).await;
    assert_eq!(
        (s, b["code"].clone()),
        (409, json!("segment_changed")),
        "{b}"
    );
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("4 users, not the 3 expected"),
        "{b}"
    );
    for id in ["a1", "a2", "a3", "a4"] {
        assert!(!disabled(&t, id).await, "{id}");
    }
    assert_eq!(t.app.store.count_kicks(i64::MAX).await.unwrap().0, 0);

    // With the count it saw: every user of the segment disabled and kicked, nobody else.
    let (s, done) = bulk(&t, "disable", json!({"where": seg, "expected_count": 4})).await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(
        (done["count"].clone(), done["changed"].clone()),
        (json!(4), json!(4))
    );
    assert_eq!(done["kicks_queued"], 4);
    for id in ["a1", "a2", "a3", "a4"] {
        let (k, _) = f.wait_kick(id).await;
        assert_eq!((k.code, k.reason.as_str()), (4503, "user disabled"), "{id}");
        let (s, b) = t.tokens(json!({"userId": id})).await;
        assert_eq!((s, b["code"].clone()), (403, json!("user_disabled")));
    }
    assert!(!disabled(&t, "b1").await);
    assert!(f.kicks_of("b1").is_empty());
    // The same request again changes and kicks nobody (a re-run after a crash finishes).
    let (_, again) = bulk(&t, "disable", json!({"where": seg, "expected_count": 4})).await;
    assert_eq!(
        (again["changed"].clone(), again["kicks_queued"].clone()),
        (json!(0), json!(0))
    );
    let (_, back) = bulk(&t, "enable", json!({"where": seg, "expected_count": 4})).await;
    assert_eq!(
        (back["changed"].clone(), back["kicks_queued"].clone()),
        (json!(4), json!(0))
    );
    assert!(!disabled(&t, "a4").await);

    // Numbers are not strings: plan=7 is a3 (the number), plan="7" is b1 (the string). The
    // dry run of a revocation says the instant it would use; the action takes it as `before`.
    let (_, dry) = bulk(
        &t,
        "revoke-tokens",
        json!({"where": ["plan=7"], "dry_run": true}),
    )
    .await;
    assert_eq!(dry["count"], 1, "{dry}");
    let before = dry["revoked_before"].as_i64().unwrap();
    let (s, rev) = bulk(
        &t,
        "revoke-tokens",
        json!({"where": ["plan=7"], "expected_count": 1, "before": before}),
    )
    .await;
    assert_eq!(s, 200, "{rev}");
    assert_eq!(
        (rev["changed"].clone(), rev["revoked_before"].clone()),
        (json!(1), json!(before))
    );
    crate::helpers::eventually("a3 kicked with 4504", || {
        let revoked = f
            .kicks_of("a3")
            .iter()
            .any(|k| (k.code, k.reason.as_str()) == (4504, "token revoked"));
        async move { revoked }
    })
    .await;
    assert!(!f.kicks_of("b1").iter().any(|k| k.code == 4504));
    let (_, dry) = bulk(
        &t,
        "delete",
        json!({"where": ["plan=\"7\""], "dry_run": true}),
    )
    .await;
    assert_eq!(dry["count"], 1, "{dry}");
    // An array field matches when it contains the value.
    let (_, dry) = bulk(
        &t,
        "disable",
        json!({"where": ["permissions=delete", "tenantId=tenant-789"], "dry_run": true}),
    )
    .await;
    assert_eq!(dry["count"], 1, "{dry}");

    // Delete, then an empty segment: its dry run is 0, and its action with 0 changes nobody.
    let (_, del) = bulk(
        &t,
        "delete",
        json!({"where": ["plan=\"7\""], "expected_count": 1}),
    )
    .await;
    assert_eq!(del["changed"], 1, "{del}");
    assert_eq!(t.admin_get("/admin/users/b1").await.0, 404);
    let (_, dry) = bulk(
        &t,
        "delete",
        json!({"where": ["tenantId=tenant-1"], "dry_run": true}),
    )
    .await;
    assert_eq!(dry["count"], 0, "{dry}");
    let (s, none) = bulk(
        &t,
        "delete",
        json!({"where": ["tenantId=tenant-1"], "expected_count": 0}),
    )
    .await;
    assert_eq!(
        (s, none["changed"].clone(), none["kicks_queued"].clone()),
        (200, json!(0), json!(0))
    );

    // One audit event per run (dry runs and refusals leave none), with the `where`, the
    // counts, the actor and the client's address; newest first.
    let (_, page) = t.admin_get("/admin/audit?actor=admin").await;
    let got: Vec<(String, String, String)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_kind"] == "segment")
        .map(|e| {
            assert_eq!(e["source"], "127.0.0.1", "{e}");
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("event"), s("target"), s("detail"))
        })
        .collect();
    let e = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    let tokens = format!("1 of 1 users changed, tokens issued at or before {before}");
    assert_eq!(
        got,
        [
            e(
                "segment.deleted",
                "tenantId=\"tenant-1\"",
                "0 of 0 users changed"
            ),
            e("segment.deleted", "plan=\"7\"", "1 of 1 users changed"),
            e("segment.tokens_revoked", "plan=7", &tokens),
            e(
                "segment.enabled",
                "tenantId=\"tenant-789\"",
                "4 of 4 users changed"
            ),
            e(
                "segment.disabled",
                "tenantId=\"tenant-789\"",
                "0 of 4 users changed"
            ),
            e(
                "segment.disabled",
                "tenantId=\"tenant-789\"",
                "4 of 4 users changed"
            ),
        ]
    );
}

async fn bulk_requests_are_refused_field_by_field(backend: Backend) {
    let t = spawn(backend, None).await;
    put(&t, "u1", json!({"tenantId": "t"})).await;
    let w = json!(["tenantId=t"]);
    let future = chatsdk_auth::now_unix() + 3600;
    let cases: Vec<(&str, String, &str)> = vec![
        ("nope", json!({"where": w}).to_string(), "invalid_path"),
        ("disable", "[]".into(), "invalid_json"),
        ("disable", "{".into(), "invalid_json"),
        ("disable", "".into(), "invalid_where"),
        (
            "disable",
            json!({"where": w, "dry_run": true, "force": true}).to_string(),
            "invalid_json",
        ),
        (
            "disable",
            json!({"where": w, "dry_run": "yes"}).to_string(),
            "invalid_json",
        ),
        ("disable", "{}".into(), "invalid_where"),
        (
            "disable",
            json!({"where": "tenantId=t", "dry_run": true}).to_string(),
            "invalid_where",
        ),
        (
            "disable",
            json!({"where": [7], "dry_run": true}).to_string(),
            "invalid_where",
        ),
        (
            "disable",
            json!({"where": [], "dry_run": true}).to_string(),
            "invalid_where",
        ),
        (
            "disable",
            json!({"where": ["tenantId"], "dry_run": true}).to_string(),
            "invalid_where",
        ),
        (
            "disable",
            json!({"where": ["department=Engineering"], "dry_run": true}).to_string(),
            "invalid_where",
        ),
        (
            "disable",
            json!({"where": w, "expected_count": "1"}).to_string(),
            "invalid_expected_count",
        ),
        (
            "disable",
            json!({"where": w, "expected_count": -1}).to_string(),
            "invalid_expected_count",
        ),
        (
            "disable",
            json!({"where": w, "expected_count": 1.5}).to_string(),
            "invalid_expected_count",
        ),
        (
            "revoke-tokens",
            json!({"where": w, "expected_count": 1, "before": future}).to_string(),
            "invalid_before",
        ),
        (
            "revoke-tokens",
            json!({"where": w, "dry_run": true, "before": "now"}).to_string(),
            "invalid_before",
        ),
    ];
    let mut seen = BTreeSet::new();
    for (action, body, code) in cases {
        let (s, b) = bulk_raw(&t, action, &body).await;
        assert_eq!((s, b["code"].as_str().unwrap()), (400, code), "{body}: {b}");
        seen.insert(code);
    }
    assert_eq!(seen.len(), 5);
    // The undeclared field's sentence names the declared ones.
    let (_, b) = bulk(
        &t,
        "disable",
        json!({"where": ["department=x"], "dry_run": true}),
    )
    .await;
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("tenantId, role, plan, permissions"),
        "{b}"
    );
    // Nothing was changed, and no refusal left an audit event.
    assert!(!disabled(&t, "u1").await);
    let (_, page) = t.admin_get("/admin/audit").await;
    assert!(
        !page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["target_kind"] == "segment"),
        "{page}"
    );
    // Without the admin token, or without a JSON content type.
    let r = t
        .client
        .post(t.url("/admin/bulk/disable"))
        .json(&json!({"where": w, "dry_run": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = t
        .client
        .post(t.url("/admin/bulk/disable"))
        .header(
            "Authorization",
            format!("Bearer {}", t.app.secrets.admin_token.expose()),
        )
        .header("Content-Type", "text/plain")
        .body(json!({"where": w, "dry_run": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_documented(&doc(), "POST", OP, 415, v["code"].as_str().unwrap());
}
