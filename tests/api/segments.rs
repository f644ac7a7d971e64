//! Segments over `custom` on both backends: declared fields indexed and backfilled, queries with
//! JSON-value comparison (the string "7" is not the number 7), array membership, AND, paging,
//! an undeclared field refused; the CLI and the admin API over them. The bulk actions are in
//! tests/api/segments_bulk.rs, on the world built here.

use serde_json::json;

use chatsdk_auth::actions::{ActionError, Actions};
use chatsdk_auth::http::query::PageLimit;
use chatsdk_auth::http::Field;
use chatsdk_auth::store::{AuditFilter, Store};

use crate::helpers::{on_both_backends, Backend, TestApp};

on_both_backends!(
    segment_queries_compare_json_values_and_page_by_id,
    declared_fields_are_backfilled_and_follow_every_write,
    the_admin_api_lists_a_segment,
);

pub const FIELDS: [&str; 5] = ["organizationId", "tenantId", "role", "plan", "permissions"];

pub async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_on_with(backend, |c| {
        c.segments.fields = FIELDS.map(String::from).to_vec();
    })
    .await
}

pub fn actions(t: &TestApp, kicks: bool) -> Actions<'_> {
    Actions::new(&t.app.store, kicks, "tester")
}

pub async fn put(t: &TestApp, id: &str, custom: serde_json::Value) {
    let (s, b) = t.tokens(json!({"userId": id, "custom": custom})).await;
    assert_eq!(s, 200, "{b}");
}

async fn ids(t: &TestApp, conditions: &[&str]) -> Vec<String> {
    let a = actions(t, false);
    let w = a.segment(conditions).await.unwrap();
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        // Pages of 2, so paging is exercised.
        let page = a
            .list_segment(&w, PageLimit::new(2).unwrap(), after.as_deref())
            .await
            .unwrap();
        out.extend(page.users.into_iter().map(|u| u.id));
        match page.next_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let count = t.app.store.count_segment(&w).await.unwrap();
    assert_eq!(
        count as usize,
        out.len(),
        "count and list agree for {conditions:?}"
    );
    out
}

pub async fn world(t: &TestApp) {
    put(
        t,
        "u1",
        json!({"organizationId": "org-456", "role": "admin", "plan": 7,
        "permissions": ["read", "write", "delete"], "tenantId": "tenant-789"}),
    )
    .await;
    put(
        t,
        "u2",
        json!({"organizationId": "org-456", "role": "member", "plan": "7",
        "permissions": ["read"], "tenantId": "tenant-789"}),
    )
    .await;
    put(
        t,
        "u3",
        json!({"organizationId": "org-456", "role": "member", "plan": 7.5,
        "permissions": ["read", "delete"], "tenantId": "tenant-1"}),
    )
    .await;
    put(
        t,
        "u4",
        json!({"organizationId": "org-999", "plan": true,
        "permissions": "delete", "tenantId": "tenant-789"}),
    )
    .await;
    put(
        t,
        "u5",
        json!({"organizationId": {"nested": "org-456"}, "role": ["admin"],
        "department": "Engineering"}),
    )
    .await;
    put(t, "u6", json!({})).await;
    let (s, _) = t.tokens(json!({"userId": "u7"})).await;
    assert_eq!(s, 200);
}

async fn segment_queries_compare_json_values_and_page_by_id(backend: Backend) {
    let t = spawn(backend).await;
    world(&t).await;
    assert_eq!(
        ids(&t, &["organizationId=org-456"]).await,
        ["u1", "u2", "u3"]
    );
    assert_eq!(
        ids(&t, &["organizationId=\"org-456\""]).await,
        ["u1", "u2", "u3"]
    );
    // JSON values: the number 7, the string "7", 7.5 and true are four different values.
    assert_eq!(ids(&t, &["plan=7"]).await, ["u1"]);
    assert_eq!(ids(&t, &["plan=\"7\""]).await, ["u2"]);
    assert_eq!(ids(&t, &["plan=7.5"]).await, ["u3"]);
    assert_eq!(ids(&t, &["plan=true"]).await, ["u4"]);
    assert_eq!(ids(&t, &["plan=\"true\""]).await, Vec::<String>::new());
    // Membership in an array (and a scalar field equal to the value); an array of one
    // element matches its element.
    assert_eq!(ids(&t, &["permissions=delete"]).await, ["u1", "u3", "u4"]);
    assert_eq!(ids(&t, &["role=admin"]).await, ["u1", "u5"]);
    // AND, over one field twice and over several.
    assert_eq!(
        ids(&t, &["permissions=read", "permissions=delete"]).await,
        ["u1", "u3"]
    );
    assert_eq!(
        ids(
            &t,
            &[
                "tenantId=tenant-789",
                "permissions=delete",
                "organizationId=org-456"
            ]
        )
        .await,
        ["u1"]
    );
    // An object value is not indexed; an empty segment is empty.
    assert_eq!(
        ids(&t, &["organizationId=org-000"]).await,
        Vec::<String>::new()
    );
    // An undeclared field is refused, naming the declared ones.
    let a = actions(&t, false);
    match a.segment(&["department=Engineering"]).await {
        Err(ActionError::Invalid {
            field: Field::Where,
            message,
        }) => {
            assert!(message.contains("department"), "{message}");
            assert!(
                message.contains("organizationId, tenantId, role, plan, permissions"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Paging starts after the given id.
    let w = a.segment(&["organizationId=org-456"]).await.unwrap();
    let page = a
        .list_segment(&w, PageLimit::new(10).unwrap(), Some("u1"))
        .await
        .unwrap();
    let got: Vec<_> = page.users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(got, ["u2", "u3"]);
    assert_eq!(page.next_after, None);
}

async fn declared_fields_are_backfilled_and_follow_every_write(backend: Backend) {
    // Users written before any field was declared.
    let t = TestApp::spawn_on(backend).await;
    world(&t).await;
    let a = actions(&t, false);
    assert!(
        a.segment(&["plan=7"]).await.is_err(),
        "nothing declared yet"
    );
    // Declared (as a restart with segments.fields does): the users already there are indexed.
    let store = &t.app.store;
    store
        .declare_segments(&["plan".to_string(), "permissions".to_string()])
        .await
        .unwrap();
    assert_eq!(count(&a, &["plan=7"]).await, 1);
    assert_eq!(count(&a, &["permissions=delete"]).await, 3);
    assert!(
        a.segment(&["role=admin"]).await.is_err(),
        "role is not declared here"
    );
    // Another process on the same store (the CLI) queries the fields the server declared.
    let other = Store::open(&t.app.config.store).await.unwrap();
    assert_eq!(
        other.segment_fields().await.unwrap(),
        ["plan", "permissions"]
    );
    // Writes after the declaration follow: a changed custom moves the user, a profile
    // update without custom keeps it, a delete removes it.
    put(&t, "u2", json!({"plan": 7, "permissions": []})).await;
    assert_eq!(count(&a, &["plan=7"]).await, 2);
    assert_eq!(count(&a, &["permissions=read"]).await, 2);
    let (s, _) = t.tokens(json!({"userId": "u2", "name": "Bo"})).await;
    assert_eq!(s, 200);
    assert_eq!(count(&a, &["plan=7"]).await, 2);
    a.delete_user("u1", chatsdk_auth::now_unix()).await.unwrap();
    assert_eq!(count(&a, &["plan=7"]).await, 1);
    assert_eq!(count(&a, &["permissions=delete"]).await, 2);
    // Other fields replace them.
    store.declare_segments(&["role".into()]).await.unwrap();
    // u3 (u2's custom no longer has a role; u1 is deleted) and u5's array.
    assert_eq!(count(&a, &["role=member"]).await, 1);
    assert_eq!(count(&a, &["role=admin"]).await, 1);
    assert!(a.segment(&["plan=7"]).await.is_err());
    store.declare_segments(&[]).await.unwrap();
    assert!(a.segment(&["role=admin"]).await.is_err());
}

async fn count(a: &Actions<'_>, conds: &[&str]) -> u64 {
    let w = a.segment(conds).await.unwrap();
    a.store().count_segment(&w).await.unwrap()
}

/// Runs the CLI on `t`'s SQLite store.
fn cli(t: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::process::BIN)
        .args(args)
        .current_dir(&t.dir)
        .env("CHATSDK_AUTH_STORAGE__DATA_DIR", &t.dir)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_a_segment_and_runs_a_bulk_action_after_its_dry_run() {
    let t = spawn(Backend::Sqlite).await;
    world(&t).await;
    // The CLI has no [segments] of its own: it queries the fields the server declared.
    let out = cli(
        &t,
        &[
            "user",
            "list",
            "--where",
            "permissions=delete",
            "--limit",
            "2",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<_> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].clone())
        .collect();
    assert_eq!(got, [json!("u1"), json!("u3")]);
    assert_eq!(page["next_after"], "u3");
    let out = cli(&t, &["user", "list", "--where", "department=Engineering"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a declared segment field") && err.contains("organizationId"),
        "{err}"
    );
    // Dry run, a stale count (refused, nothing changed), the action.
    let seg = [
        "user",
        "bulk",
        "disable",
        "--where",
        "tenantId=tenant-789",
        "--where",
        "permissions=delete",
    ];
    let dry = cli(&t, &[&seg[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{dry:?}");
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        (v["count"].clone(), v["changed"].clone()),
        (json!(2), json!(0))
    );
    assert!(String::from_utf8_lossy(&dry.stderr).contains("--expected-count 2"));
    let stale = cli(&t, &[&seg[..], &["--expected-count", "3"]].concat());
    assert!(!stale.status.success());
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("now holds 2 users, not the 3 expected")
    );
    assert!(!t.app.store.get_user("u1").await.unwrap().unwrap().disabled);
    let done = cli(&t, &[&seg[..], &["--expected-count", "2"]].concat());
    assert!(done.status.success(), "{done:?}");
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(v["changed"], 2);
    for (id, off) in [("u1", true), ("u4", true), ("u2", false), ("u3", false)] {
        assert_eq!(
            t.app.store.get_user(id).await.unwrap().unwrap().disabled,
            off,
            "{id}"
        );
    }
    let events = t
        .app
        .store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap();
    let e = events
        .iter()
        .find(|e| e.event == "segment.disabled")
        .unwrap();
    assert_eq!(e.actor, "cli");
    assert_eq!(
        e.target.as_deref(),
        Some("tenantId=\"tenant-789\" AND permissions=\"delete\"")
    );
}

async fn the_admin_api_lists_a_segment(backend: Backend) {
    let t = spawn(backend).await;
    world(&t).await;
    let ids = |b: &serde_json::Value| -> Vec<String> {
        b["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Repeated `where` ANDs; the value is a JSON value ("7" the string, percent-encoded).
    let (s, b) = t
        .admin_get("/admin/users?where=permissions%3Ddelete&where=tenantId%3Dtenant-789")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b), ["u1", "u4"]);
    let (_, b) = t.admin_get("/admin/users?where=plan%3D%227%22").await;
    assert_eq!(ids(&b), ["u2"]);
    let (_, b) = t.admin_get("/admin/users?where=plan%3D7").await;
    assert_eq!(ids(&b), ["u1"]);
    // Paging as without a segment.
    let (_, b) = t
        .admin_get("/admin/users?where=organizationId%3Dorg-456&limit=2")
        .await;
    assert_eq!(
        (ids(&b), b["next_after"].clone()),
        (vec!["u1".into(), "u2".into()], json!("u2"))
    );
    let (_, b) = t
        .admin_get("/admin/users?where=organizationId%3Dorg-456&limit=2&after=u2")
        .await;
    assert_eq!(
        (ids(&b), b["next_after"].clone()),
        (vec!["u3".to_string()], json!(null))
    );
    // An undeclared field or a malformed condition: 400 invalid_where naming the declared ones.
    let (s, b) = t
        .admin_get("/admin/users?where=department%3DEngineering")
        .await;
    assert_eq!((s, b["code"].clone()), (400, json!("invalid_where")), "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("organizationId, tenantId, role, plan, permissions"),
        "{b}"
    );
    let (s, b) = t.admin_get("/admin/users?where=plan").await;
    assert_eq!((s, b["code"].clone()), (400, json!("invalid_where")), "{b}");
}
