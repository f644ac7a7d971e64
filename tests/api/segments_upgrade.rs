//! The upgrade of PostgreSQL's segments to compact keys: a database at the schema before it
//! (entries by field and value text, written by that schema's trigger) comes out of the
//! service's start at the latest schema with every entry converted: each segment query and
//! dry-run count is exact, and writes after the upgrade are found too.

use serde_json::json;

use chatsdk_auth::store::postgres_migrations;

use crate::helpers::{urlencode, use_postgres, TestApp};

const FIELDS: [&str; 5] = ["organizationId", "tenantId", "role", "plan", "permissions"];

/// The schema version before compact segment keys (the segment counts' migration is the last).
const BEFORE_KEYS: usize = 8;

/// Seven named users (an array field, the number 7 beside the string "7", an object that is no
/// value, `{}` and no `custom`) and 200 `bulk-NNN`: plan 7 for every fourth, else "7";
/// permissions `["read"]`, `["read", "delete"]` for every fifth; tenant-789 for the even ones.
const OLD_USERS: &str = r#"
INSERT INTO chatsdk_auth_users (id, custom, created_at, updated_at) VALUES
 ('u1', '{"organizationId":"org-456","role":"admin","plan":7,"permissions":["read","write","delete"],"tenantId":"tenant-789"}', 1, 1),
 ('u2', '{"organizationId":"org-456","role":"member","plan":"7","permissions":["read"],"tenantId":"tenant-789"}', 1, 1),
 ('u3', '{"organizationId":"org-456","role":"member","plan":7.5,"permissions":["read","delete"],"tenantId":"tenant-1"}', 1, 1),
 ('u4', '{"organizationId":"org-999","plan":true,"permissions":"delete","tenantId":"tenant-789"}', 1, 1),
 ('u5', '{"organizationId":{"nested":"org-456"},"role":["admin"],"department":"Engineering"}', 1, 1),
 ('u6', '{}', 1, 1),
 ('u7', NULL, 1, 1);
INSERT INTO chatsdk_auth_users (id, custom, created_at, updated_at)
SELECT 'bulk-' || lpad(i::text, 3, '0'),
       jsonb_build_object(
         'plan', CASE WHEN i % 4 = 0 THEN '7'::jsonb ELSE '"7"'::jsonb END,
         'permissions', CASE WHEN i % 5 = 0 THEN '["read","delete"]'::jsonb ELSE '["read"]'::jsonb END)
       || CASE WHEN i % 2 = 0 THEN '{"tenantId":"tenant-789"}'::jsonb ELSE '{}'::jsonb END,
       1, 1
FROM generate_series(1, 200) AS i;
"#;

/// Entries of the old users: u1 7, u2 5, u3 6, u4 4, u5 1 (its role's one element); the bulk
/// users 200 plans, 240 permissions, 100 tenants.
const OLD_ENTRIES: i64 = 23 + 200 + 240 + 100;

fn bulk(pred: impl Fn(u32) -> bool) -> Vec<String> {
    (1..=200)
        .filter(|&i| pred(i))
        .map(|i| format!("bulk-{i:03}"))
        .collect()
}

/// `named` after `bulk`, the ids' order (collation "C": `bulk-` before `u`).
fn users(bulk: Vec<String>, named: &[&str]) -> Vec<String> {
    let mut v = bulk;
    v.extend(named.iter().map(|s| s.to_string()));
    v
}

/// Every user of the segment over `GET /admin/users?where=...`, page by page.
async fn listed(t: &TestApp, conditions: &[&str]) -> Vec<String> {
    let mut query: String = conditions
        .iter()
        .map(|c| format!("where={}&", urlencode(c)))
        .collect();
    query.push_str("limit=50");
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/admin/users?{query}&after={a}"),
            None => format!("/admin/users?{query}"),
        };
        let (s, b) = t.admin_get(&path).await;
        assert_eq!(s, 200, "{path}: {b}");
        out.extend(
            b["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_string()),
        );
        match b["next_after"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    out
}

/// The dry run's count of a bulk disable over the admin API.
async fn dry_run_count(t: &TestApp, conditions: &[&str]) -> u64 {
    let (status, v) = t
        .admin_post(
            "/admin/bulk/disable",
            json!({"where": conditions, "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changed"], 0, "{v}");
    v["count"].as_u64().unwrap()
}

/// The segment's users listed, and counted alike by the dry run.
async fn segment(t: &TestApp, conditions: &[&str]) -> Vec<String> {
    let ids = listed(t, conditions).await;
    assert_eq!(
        dry_run_count(t, conditions).await,
        ids.len() as u64,
        "dry run of {conditions:?}"
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_from_the_schema_before_compact_keys_are_all_found_after_the_upgrade() {
    crate::need::need!(Postgres);
    let url = crate::pg::database().await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let migrations = postgres_migrations();
    assert!(
        migrations[BEFORE_KEYS - 1].contains("CREATE TABLE chatsdk_auth_segment_counts")
            && migrations[BEFORE_KEYS].contains("CREATE TABLE chatsdk_auth_segment_keys"),
        "migration {BEFORE_KEYS} is the one to compact keys"
    );
    // The old schema as an older binary left it: its migrations, its version, the declared
    // fields (the very ones the service declares, so its start rebuilds nothing), and users
    // written through the old trigger.
    for sql in &migrations[..BEFORE_KEYS] {
        db.batch_execute(sql).await.unwrap();
    }
    db.batch_execute(&format!(
        "CREATE TABLE chatsdk_auth_schema (version INTEGER NOT NULL);
         INSERT INTO chatsdk_auth_schema (version) VALUES ({BEFORE_KEYS});"
    ))
    .await
    .unwrap();
    db.execute(
        "INSERT INTO chatsdk_auth_segment_fields (name, position)
         SELECT name, position - 1 FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position)",
        &[&FIELDS.to_vec()],
    )
    .await
    .unwrap();
    db.batch_execute(OLD_USERS).await.unwrap();
    let old: i64 = db
        .query_one("SELECT count(*) FROM chatsdk_auth_user_segments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(old, OLD_ENTRIES, "the old trigger wrote every entry");

    let t = TestApp::spawn_with({
        let url = url.clone();
        move |c| {
            use_postgres(c, url);
            c.segments.fields = FIELDS.map(String::from).to_vec();
            c.limits.admin_per_ip_per_minute = 0;
        }
    })
    .await;
    let version: i32 = db
        .query_one("SELECT version FROM chatsdk_auth_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version as usize, migrations.len(), "the latest schema");
    let converted: i64 = db
        .query_one(
            "SELECT count(*) FROM chatsdk_auth_user_segments s
             JOIN chatsdk_auth_segment_keys k ON k.key = s.key",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(converted, OLD_ENTRIES, "every entry converted, none lost");

    assert_eq!(
        segment(&t, &["organizationId=org-456"]).await,
        ["u1", "u2", "u3"]
    );
    assert_eq!(segment(&t, &["organizationId=org-999"]).await, ["u4"]);
    assert_eq!(segment(&t, &["role=admin"]).await, ["u1", "u5"]);
    assert_eq!(segment(&t, &["role=member"]).await, ["u2", "u3"]);
    // The number 7 and the string "7" stay two values.
    let plan_7 = users(bulk(|i| i % 4 == 0), &["u1"]);
    let plan_s7 = users(bulk(|i| i % 4 != 0), &["u2"]);
    assert_eq!(segment(&t, &["plan=7"]).await, plan_7);
    assert_eq!(segment(&t, &["plan=\"7\""]).await, plan_s7);
    assert_eq!(segment(&t, &["plan=7.5"]).await, ["u3"]);
    assert_eq!(segment(&t, &["plan=true"]).await, ["u4"]);
    // Array elements, each an entry.
    assert_eq!(
        segment(&t, &["permissions=read"]).await,
        users(bulk(|_| true), &["u1", "u2", "u3"])
    );
    assert_eq!(
        segment(&t, &["permissions=delete"]).await,
        users(bulk(|i| i % 5 == 0), &["u1", "u3", "u4"])
    );
    assert_eq!(segment(&t, &["permissions=write"]).await, ["u1"]);
    let tenant = users(bulk(|i| i % 2 == 0), &["u1", "u2", "u4"]);
    assert_eq!(segment(&t, &["tenantId=tenant-789"]).await, tenant);
    assert_eq!(segment(&t, &["tenantId=tenant-1"]).await, ["u3"]);
    assert_eq!(
        segment(&t, &["tenantId=tenant-789", "permissions=delete"]).await,
        users(bulk(|i| i % 10 == 0), &["u1", "u4"])
    );
    assert_eq!(
        segment(&t, &["plan=7", "permissions=read", "tenantId=tenant-789"]).await,
        users(bulk(|i| i % 4 == 0), &["u1"])
    );

    // Writes after the upgrade: a new user, and an old one whose plan changes from "7" to 7
    // (its converted entries replaced by the new trigger).
    for (id, custom) in [
        (
            "n1",
            json!({"plan": 7, "permissions": ["delete"], "tenantId": "tenant-789"}),
        ),
        ("u2", json!({"plan": 7, "permissions": ["read"]})),
    ] {
        let (s, b) = t.tokens(json!({"userId": id, "custom": custom})).await;
        assert_eq!(s, 200, "{b}");
    }
    assert_eq!(
        segment(&t, &["plan=7"]).await,
        users(bulk(|i| i % 4 == 0), &["n1", "u1", "u2"])
    );
    assert_eq!(
        segment(&t, &["plan=\"7\""]).await,
        bulk(|i| i % 4 != 0),
        "u2 left \"7\""
    );
    assert_eq!(
        segment(&t, &["tenantId=tenant-789", "permissions=delete"]).await,
        users(bulk(|i| i % 10 == 0), &["n1", "u1", "u4"])
    );
    assert_eq!(segment(&t, &["organizationId=org-456"]).await, ["u1", "u3"]);
}
