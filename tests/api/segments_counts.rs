//! The overview's users per value of each declared segment field (`GET /admin/overview`'s
//! `segments`), on both backends: values compared as JSON (the string "7" is not the number 7),
//! array elements counted each, the top 10 and the rest, counts that follow every write (an
//! upsert changing `custom`, a delete, a bulk delete) and a rebuild when the declared fields
//! change; the answer is the one `src/openapi.json` documents. On PostgreSQL, writes made
//! outside the service are counted too, and a burst larger than one read folds is folded in
//! bounded batches (`pending_changes` while some wait).

use serde_json::{json, Value};

use crate::helpers::{on_both_backends, use_postgres, Backend, TestApp};
use crate::segments::{put, spawn, world, FIELDS};

on_both_backends!(
    the_overview_counts_users_per_value_of_each_field,
    counts_follow_every_write_and_a_rebuild,
);

async fn overview(t: &TestApp) -> Value {
    let (status, v) = t.admin_get("/admin/overview").await;
    assert_eq!(status, 200);
    let s = &v["segments"];
    assert_eq!(s["k"], 10, "{s}");
    assert_eq!(s["pending_changes"], false, "{s}");
    s.clone()
}

/// The field's entry: `(top as [value, users] pairs, other, total)`.
fn field(s: &Value, name: &str) -> (Vec<(Value, u64)>, u64, u64) {
    let f = s["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == name)
        .unwrap_or_else(|| panic!("no {name} in {s}"));
    let top = f["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["value"].clone(), v["users"].as_u64().unwrap()))
        .collect();
    (
        top,
        f["other"].as_u64().unwrap(),
        f["total"].as_u64().unwrap(),
    )
}

async fn the_overview_counts_users_per_value_of_each_field(backend: Backend) {
    let t = spawn(backend).await;
    let s = overview(&t).await;
    let names: Vec<&str> = s["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(names, FIELDS, "every declared field, in order, even empty");
    assert_eq!(field(&s, "plan"), (vec![], 0, 0));

    world(&t).await;
    let s = overview(&t).await;
    // u5's organizationId is an object: not a value, not counted.
    assert_eq!(
        field(&s, "organizationId"),
        (vec![(json!("org-456"), 3), (json!("org-999"), 1)], 0, 4)
    );
    // Four values, one user each: the string "7" and the number 7 are two. Ties by value.
    assert_eq!(
        field(&s, "plan"),
        (
            vec![
                (json!("7"), 1),
                (json!(7), 1),
                (json!(7.5), 1),
                (json!(true), 1)
            ],
            0,
            4
        )
    );
    // Every element of an array counts: the total exceeds the four users who have the field.
    assert_eq!(
        field(&s, "permissions"),
        (
            vec![
                (json!("delete"), 3),
                (json!("read"), 3),
                (json!("write"), 1)
            ],
            0,
            7
        )
    );
    assert_eq!(
        field(&s, "role"),
        (vec![(json!("admin"), 2), (json!("member"), 2)], 0, 4)
    );

    // Twelve more organizations: the ten most common are named, the rest summed.
    for i in 0..12 {
        for j in 0..=i {
            put(
                &t,
                &format!("org{i:02}-{j:02}"),
                json!({"organizationId": format!("o{i:02}")}),
            )
            .await;
        }
    }
    let (top, other, total) = field(&overview(&t).await, "organizationId");
    let expected: Vec<(Value, u64)> = (2..12)
        .rev()
        .map(|i| (json!(format!("o{i:02}")), i + 1))
        .collect();
    assert_eq!(top, expected);
    // o00 (1), o01 (2), org-456 (3), org-999 (1).
    assert_eq!((other, total), (7, 4 + 78));

    if backend == Backend::Sqlite {
        // The top values are the first rows of the counts' index, not a count over the users.
        let db = rusqlite::Connection::open(t.dir.join("chatsdk-auth.db")).unwrap();
        let plan: String = db
            .query_row(
                "EXPLAIN QUERY PLAN SELECT value, users FROM segment_counts
                 WHERE field = ?1 AND value <> '' AND users > 0 ORDER BY users DESC, value LIMIT ?2",
                rusqlite::params!["plan", 10],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("segment_counts_top"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}

async fn counts_follow_every_write_and_a_rebuild(backend: Backend) {
    let t = spawn(backend).await;
    world(&t).await;
    // An upsert that changes custom moves the user from one value to another.
    put(
        &t,
        "u2",
        json!({"organizationId": "org-999", "plan": "pro"}),
    )
    .await;
    let s = overview(&t).await;
    assert_eq!(
        field(&s, "organizationId"),
        (vec![(json!("org-456"), 2), (json!("org-999"), 2)], 0, 4)
    );
    assert_eq!(
        field(&s, "plan"),
        (
            vec![
                (json!("pro"), 1),
                (json!(7), 1),
                (json!(7.5), 1),
                (json!(true), 1)
            ],
            0,
            4
        )
    );
    // u2 no longer has permissions, tenantId or role.
    assert_eq!(
        field(&s, "permissions"),
        (
            vec![
                (json!("delete"), 3),
                (json!("read"), 2),
                (json!("write"), 1)
            ],
            0,
            6
        )
    );

    // A delete, then a bulk delete of a segment.
    let a = crate::segments::actions(&t, false);
    a.delete_user("u1", crate::helpers::now()).await.unwrap();
    let w = a.segment(&["organizationId=org-999"]).await.unwrap();
    let b = chatsdk_auth::actions::Bulk {
        kind: chatsdk_auth::actions::BulkKind::Delete,
        segment: w,
        expected_count: Some(2),
        before: None,
        dry_run: false,
    };
    let done = a.bulk(&b, crate::helpers::now(), &|| {}).await.unwrap();
    assert_eq!(done.changed, 2, "u2 and u4");
    let s = overview(&t).await;
    assert_eq!(
        field(&s, "organizationId"),
        (vec![(json!("org-456"), 1)], 0, 1)
    );
    assert_eq!(
        field(&s, "permissions"),
        (vec![(json!("delete"), 1), (json!("read"), 1)], 0, 2)
    );
    assert_eq!(field(&s, "plan"), (vec![(json!(7.5), 1)], 0, 1));
    assert_eq!(
        field(&s, "role"),
        (vec![(json!("admin"), 1), (json!("member"), 1)], 0, 2)
    );

    // Other declared fields: the counts are rebuilt from the users.
    t.app
        .store
        .declare_segments(&["department".to_string(), "role".to_string()])
        .await
        .unwrap();
    let s = overview(&t).await;
    let names: Vec<&str> = s["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["department", "role"]);
    assert_eq!(
        field(&s, "department"),
        (vec![(json!("Engineering"), 1)], 0, 1)
    );
    assert_eq!(
        field(&s, "role"),
        (vec![(json!("admin"), 1), (json!("member"), 1)], 0, 2)
    );
}

/// 25,000 users written straight into PostgreSQL (the triggers log each one): two folds of
/// 10,000 leave some waiting, and the overview's read folds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_is_folded_in_bounded_batches_on_postgres() {
    crate::need::need!(Postgres);
    let url = crate::pg::database().await;
    let t = TestApp::spawn_with({
        let url = url.clone();
        move |c| {
            use_postgres(c, url);
            c.segments.fields = FIELDS.map(String::from).to_vec();
        }
    })
    .await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.execute(
        "INSERT INTO chatsdk_auth_users (id, custom, created_at, updated_at)
         SELECT 'bulk-' || i, json_build_object('plan', CASE WHEN i % 5 = 0 THEN 'pro' ELSE 'free' END)::text, 0, 0
         FROM generate_series(1, 25000) AS i",
        &[],
    )
    .await
    .unwrap();
    assert!(
        t.app.store.fold_segment_counts(2).await.unwrap(),
        "20,000 of 25,000 folded: some wait"
    );
    let counts = t.app.store.segment_counts(10).await.unwrap();
    assert!(!counts.pending_changes, "the read folded the last 5,000");
    let s = overview(&t).await;
    assert_eq!(
        field(&s, "plan"),
        (
            vec![(json!("free"), 20_000), (json!("pro"), 5_000)],
            0,
            25_000
        )
    );
    let waiting: i64 = db
        .query_one("SELECT count(*) FROM chatsdk_auth_segment_deltas", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0);
}
