//! The console's segment search and bulk actions in a real headless Chromium (the driver of
//! console_browser.rs), against the real server and a fake Centrifugo: a segment searched, a
//! dry run, an action refused because the segment grew in between (nothing changed), a bulk
//! revoke after a second dry run (typed count, kicks reaching Centrifugo), and its audit event
//! in the audit view; the overview's users per value of each declared field; the browser's log
//! free of errors but the one refusal the test provokes.

use serde_json::{json, Value};

use crate::console_browser::{admin_get, click, displayed, fill, find, wait_text, Browser};
use crate::fake_centrifugo::FakeCentrifugo;
use crate::helpers::{until, TestApp};

const KEY: &str = "centrifugo-api-key-for-the-console-segments";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_searches_a_segment_and_revokes_it_in_headless_chromium() {
    crate::need::need!(Chromium);
    let f = FakeCentrifugo::start(KEY).await;
    let api = f.api_url();
    let t = TestApp::spawn_with(move |c| {
        c.centrifugo.api_url = api;
        c.secrets.centrifugo_api_key = KEY.into();
        c.segments.fields = vec!["tenantId".into(), "plan".into()];
        c.limits.admin_per_ip_per_minute = 10_000;
    })
    .await;
    let b = Browser::start().await;
    let c = b.client.clone();
    let run = tokio::spawn(async move {
        session(&t, &f, &c).await;
        t
    });
    let outcome = run.await;
    let log = b.log().await;
    b.client.clone().close().await.unwrap();
    let t = match outcome {
        Ok(t) => t,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    // The one entry allowed: the browser's note of the 409 the grown segment drew.
    let expected_409 = |e: &Value| {
        let msg = e["message"].as_str().unwrap_or_default();
        e["source"] == "network" && msg.contains("/admin/bulk/disable") && msg.contains("409")
    };
    assert_eq!(
        log.iter().filter(|e| expected_409(e)).count(),
        1,
        "{log:#?}"
    );
    let problems: Vec<&Value> = log
        .iter()
        .filter(|e| !expected_409(e) && matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
        .collect();
    assert!(problems.is_empty(), "browser log: {problems:#?}");
    drop(t);
}

async fn session(t: &TestApp, f: &FakeCentrifugo, c: &fantoccini::Client) {
    for (id, custom) in [
        ("ana", json!({"tenantId": "tenant-789", "plan": 7})),
        ("ben", json!({"tenantId": "tenant-789", "plan": "7"})),
        ("cho", json!({"tenantId": "tenant-789"})),
        ("dan", json!({"tenantId": "tenant-1"})),
    ] {
        let (s, b) = t.tokens(json!({"userId": id, "custom": custom})).await;
        assert_eq!(s, 200, "{b}");
    }
    let token = t.app.secrets.admin_token.expose().to_string();
    c.goto(&t.url("/admin/#users")).await.unwrap();
    fill(c, "#signin-token", &format!("{token}\u{E007}")).await;
    wait_text(c, "#users-rows", "dan").await;

    // Search: the list shows the segment's users only.
    fill(c, "#segment-where", "tenantId=tenant-789\u{E007}").await;
    wait_text(c, "#users-segment", "Segment: tenantId=tenant-789").await;
    until("the segment's users listed", || async {
        let rows = find(c, "#users-rows").await.text().await.unwrap();
        if !rows.contains("dan") && ["ana", "ben", "cho"].iter().all(|u| rows.contains(u)) {
            Ok(())
        } else {
            Err(rows)
        }
    })
    .await;
    // A number is not a string: plan=7 is ana only.
    fill(
        c,
        "#segment-where",
        "tenantId=tenant-789 AND plan=7\u{E007}",
    )
    .await;
    wait_text(c, "#users-segment", "AND plan=7").await;
    until("plan=7 listing ana only", || async {
        let rows = find(c, "#users-rows").await.text().await.unwrap();
        if rows.contains("ana") && !rows.contains("ben") {
            Ok(())
        } else {
            Err(rows)
        }
    })
    .await;

    // Dry run of a disable; the segment grows before the action: refused, nothing changed.
    fill(c, "#segment-where", "tenantId=tenant-789").await;
    find(c, "#segment-action")
        .await
        .select_by_value("disable")
        .await
        .unwrap();
    click(c, "#segment-dry-run").await;
    wait_text(
        c,
        "#segment-result",
        "Dry run: 3 users match tenantId=\"tenant-789\"",
    )
    .await;
    wait_text(c, "#segment-run", "Disable 3 users").await;
    let (s, _) = t
        .tokens(json!({"userId": "eve", "custom": {"tenantId": "tenant-789"}}))
        .await;
    assert_eq!(s, 200);
    click(c, "#segment-run").await;
    wait_text(
        c,
        "#confirm-title",
        "the 3 users of tenantId=\"tenant-789\"",
    )
    .await;
    assert!(!find(c, "#confirm-ok").await.is_enabled().await.unwrap());
    fill(c, "#confirm-typed", "3").await;
    click(c, "#confirm-ok").await;
    wait_text(
        c,
        "#segment-result",
        "now holds 4 users, not the 3 expected",
    )
    .await;
    assert!(!displayed(c, "#segment-run").await);
    for id in ["ana", "ben", "cho", "eve"] {
        assert_eq!(
            admin_get(t, &format!("/admin/users/{id}")).await["disabled"],
            false
        );
    }

    // A bulk revoke: dry run, typed count, done; every user of the segment kicked.
    find(c, "#segment-action")
        .await
        .select_by_value("revoke-tokens")
        .await
        .unwrap();
    click(c, "#segment-dry-run").await;
    wait_text(c, "#segment-result", "Dry run: 4 users match").await;
    click(c, "#segment-run").await;
    wait_text(c, "#confirm-title", "Revoke the tokens of the 4 users").await;
    fill(c, "#confirm-typed", "4").await;
    click(c, "#confirm-ok").await;
    wait_text(
        c,
        "#segment-result",
        "Revoked the tokens of 4 of 4 users of tenantId=\"tenant-789\". Kicks queued: 4.",
    )
    .await;
    for id in ["ana", "ben", "cho", "eve"] {
        let (k, _) = f.wait_kick(id).await;
        assert_eq!(k.code, 4504, "{id}");
        let u = admin_get(t, &format!("/admin/users/{id}")).await;
        assert!(u["tokens_valid_after"].as_i64().unwrap() > 0, "{u}");
    }
    assert!(f.kicks_of("dan").is_empty());

    // The audit view has the one event, with the segment, the counts and the actor.
    click(c, "#nav a[data-view='audit']").await;
    find(c, "#audit-action")
        .await
        .select_by_value("segment.tokens_revoked")
        .await
        .unwrap();
    click(c, "#audit-filter button[type='submit']").await;
    let rows = wait_text(c, "#audit-rows", "segment.tokens_revoked").await;
    for want in [
        "segment:tenantId=\"tenant-789\"",
        "4 of 4 users changed",
        "admin",
    ] {
        assert!(rows.contains(want), "{want} not in {rows}");
    }
    let events = admin_get(t, "/admin/audit?action=segment.tokens_revoked").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    assert_eq!(
        admin_get(t, "/admin/audit?action=segment.disabled").await["events"],
        json!([])
    );

    // The overview counts the users per value of each declared field, as JSON values.
    click(c, "#nav a[data-view='overview']").await;
    let tenants = "#overview-segments table[data-field='tenantId']";
    wait_text(c, tenants, "tenantId: 5 counted").await;
    let row = |table: &str, n: usize| format!("{table} tbody tr:nth-child({n})");
    let text = |css: String| async move { find(c, &css).await.text().await.unwrap() };
    assert_eq!(words(&text(row(tenants, 1)).await), ["\"tenant-789\"", "4"]);
    assert_eq!(words(&text(row(tenants, 2)).await), ["\"tenant-1\"", "1"]);
    let plans = "#overview-segments table[data-field='plan']";
    wait_text(c, plans, "plan: 2 counted").await;
    assert_eq!(words(&text(row(plans, 1)).await), ["\"7\"", "1"]);
    assert_eq!(words(&text(row(plans, 2)).await), ["7", "1"]);
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}
