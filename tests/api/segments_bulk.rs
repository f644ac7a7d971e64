//! Bulk actions by segment on both backends: the dry run, the expected count (409 when the
//! segment changed), kicks through the outbox, one audit event, and a re-run after a crash
//! half-way that finishes without changing or kicking anyone twice.

use serde_json::json;

use chatsdk_auth::actions::{ActionError, Actions, Bulk, BulkKind};
use chatsdk_auth::http::Field;
use chatsdk_auth::store::AuditFilter;

use crate::helpers::{on_both_backends, Backend, TestApp};
use crate::segments::{actions, put, spawn, world};

on_both_backends!(
    bulk_actions_dry_run_then_act_on_the_expected_count,
    a_bulk_action_re_run_after_a_crash_finishes_the_job_once,
);

async fn bulk(
    a: &Actions<'_>,
    kind: BulkKind,
    conds: &[&str],
    expected: Option<u64>,
    dry: bool,
) -> Bulk {
    Bulk {
        segment: a.segment(conds).await.unwrap(),
        kind,
        before: None,
        expected_count: expected,
        dry_run: dry,
    }
}

async fn bulk_actions_dry_run_then_act_on_the_expected_count(backend: Backend) {
    let t = spawn(backend).await;
    world(&t).await;
    let a = actions(&t, true);
    let now = chatsdk_auth::now_unix();
    let seg = ["tenantId=tenant-789"];
    // The dry run counts and changes nothing.
    let dry = a
        .bulk(
            &bulk(&a, BulkKind::Disable, &seg, None, true).await,
            now,
            &|| {},
        )
        .await
        .unwrap();
    assert_eq!((dry.count, dry.changed, dry.dry_run), (3, 0, true));
    assert!(!t.app.store.get_user("u1").await.unwrap().unwrap().disabled);
    // The action needs the expected count, and refuses another one, changing nothing.
    assert!(matches!(
        a.bulk(
            &bulk(&a, BulkKind::Disable, &seg, None, false).await,
            now,
            &|| {}
        )
        .await,
        Err(ActionError::Invalid {
            field: Field::ExpectedCount,
            ..
        })
    ));
    put(&t, "u8", json!({"tenantId": "tenant-789"})).await;
    match a
        .bulk(
            &bulk(&a, BulkKind::Disable, &seg, Some(3), false).await,
            now,
            &|| {},
        )
        .await
    {
        Err(ActionError::SegmentChanged {
            expected: 3,
            count: 4,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(!t.app.store.get_user("u1").await.unwrap().unwrap().disabled);
    assert_eq!(t.app.store.count_kicks(i64::MAX).await.unwrap().0, 0);
    // With the right count: every user of the segment disabled and kicked (queued), others not.
    let batches = std::sync::atomic::AtomicUsize::new(0);
    let done = a
        .bulk(
            &bulk(&a, BulkKind::Disable, &seg, Some(4), false).await,
            now,
            &|| {
                batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .await
        .unwrap();
    assert_eq!((done.count, done.changed, done.kicks_queued), (4, 4, 4));
    assert_eq!(batches.into_inner(), 1);
    for id in ["u1", "u2", "u4", "u8"] {
        assert!(
            t.app.store.get_user(id).await.unwrap().unwrap().disabled,
            "{id}"
        );
        let (s, b) = t.tokens(json!({"userId": id})).await;
        assert_eq!(
            (s, b["code"].clone()),
            (403, json!("user_disabled")),
            "{id}"
        );
    }
    assert!(!t.app.store.get_user("u3").await.unwrap().unwrap().disabled);
    assert_eq!(t.app.store.count_kicks(i64::MAX).await.unwrap().0, 4);
    // Again: nobody left to change, nobody kicked twice.
    let again = a
        .bulk(
            &bulk(&a, BulkKind::Disable, &seg, Some(4), false).await,
            now,
            &|| {},
        )
        .await
        .unwrap();
    assert_eq!((again.changed, again.kicks_queued), (0, 0));
    assert_eq!(t.app.store.count_kicks(i64::MAX).await.unwrap().0, 4);
    // Enable takes them back (cancelling the kicks not delivered yet).
    let back = a
        .bulk(
            &bulk(&a, BulkKind::Enable, &seg, Some(4), false).await,
            now,
            &|| {},
        )
        .await
        .unwrap();
    assert_eq!((back.changed, back.kicks_queued), (4, 0));
    assert!(!t.app.store.get_user("u1").await.unwrap().unwrap().disabled);
    assert_eq!(t.app.store.count_kicks(i64::MAX).await.unwrap().0, 0);
    // Revoke-tokens at a given instant; the dry run says which instant it would use.
    let mut r = bulk(
        &a,
        BulkKind::RevokeTokens,
        &["permissions=delete"],
        None,
        true,
    )
    .await;
    let dry = a.bulk(&r, now, &|| {}).await.unwrap();
    assert_eq!((dry.count, dry.revoked_before), (3, Some(now)));
    r.dry_run = false;
    r.expected_count = Some(3);
    r.before = dry.revoked_before;
    let rev = a.bulk(&r, now, &|| {}).await.unwrap();
    assert_eq!((rev.changed, rev.kicks_queued), (3, 3));
    assert_eq!(
        t.app
            .store
            .get_user("u3")
            .await
            .unwrap()
            .unwrap()
            .tokens_valid_after,
        now + 1
    );
    assert_eq!(
        a.bulk(&r, now, &|| {}).await.unwrap().changed,
        0,
        "same instant: done"
    );
    // Delete.
    let del = a
        .bulk(
            &bulk(
                &a,
                BulkKind::Delete,
                &["organizationId=org-456"],
                Some(3),
                false,
            )
            .await,
            now,
            &|| {},
        )
        .await
        .unwrap();
    assert_eq!(del.changed, 3);
    for id in ["u1", "u2", "u3"] {
        assert!(t.app.store.get_user(id).await.unwrap().is_none(), "{id}");
    }
    assert!(t.app.store.get_user("u4").await.unwrap().is_some());
    // One audit event per action that ran (dry runs and refusals leave none), with the
    // where, the counts and the actor.
    let events: Vec<_> = t
        .app
        .store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.target_kind.as_deref() == Some("segment"))
        .collect();
    let got: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.event.as_str(),
                e.target.as_deref().unwrap(),
                e.detail.as_deref().unwrap(),
                e.actor.as_str(),
            )
        })
        .collect();
    let tokens = format!("3 of 3 users changed, tokens issued at or before {now}");
    let none = format!("0 of 3 users changed, tokens issued at or before {now}");
    assert_eq!(
        got,
        [
            (
                "segment.disabled",
                "tenantId=\"tenant-789\"",
                "4 of 4 users changed",
                "tester"
            ),
            (
                "segment.disabled",
                "tenantId=\"tenant-789\"",
                "0 of 4 users changed",
                "tester"
            ),
            (
                "segment.enabled",
                "tenantId=\"tenant-789\"",
                "4 of 4 users changed",
                "tester"
            ),
            (
                "segment.tokens_revoked",
                "permissions=\"delete\"",
                tokens.as_str(),
                "tester"
            ),
            (
                "segment.tokens_revoked",
                "permissions=\"delete\"",
                none.as_str(),
                "tester"
            ),
            (
                "segment.deleted",
                "organizationId=\"org-456\"",
                "3 of 3 users changed",
                "tester"
            ),
        ]
    );
}

async fn a_bulk_action_re_run_after_a_crash_finishes_the_job_once(backend: Backend) {
    let t = spawn(backend).await;
    let n = chatsdk_auth::actions::BATCH * 2 + 37;
    for i in 0..n {
        put(&t, &format!("c{i:05}"), json!({"tenantId": "tenant-789"})).await;
    }
    put(&t, "other", json!({"tenantId": "tenant-1"})).await;
    let now = chatsdk_auth::now_unix();
    // The first run dies after its first batch committed (a panic in the task: no audit
    // event, nothing after that batch).
    let app = t.app.clone();
    let crashed = tokio::spawn(async move {
        let a = Actions::new(&app.store, true, "tester");
        let b = Bulk {
            segment: a.segment(&["tenantId=tenant-789"]).await.unwrap(),
            kind: BulkKind::Disable,
            before: None,
            expected_count: Some(n as u64),
            dry_run: false,
        };
        a.bulk(&b, now, &|| panic!("crash after the first batch"))
            .await
    })
    .await;
    assert!(crashed.unwrap_err().is_panic());
    assert_eq!(
        disabled(&t, n).await,
        chatsdk_auth::actions::BATCH,
        "one batch committed"
    );
    // The re-run, with the same parameters, finishes: every user disabled and kicked once.
    let a = actions(&t, true);
    let done = a
        .bulk(
            &bulk(
                &a,
                BulkKind::Disable,
                &["tenantId=tenant-789"],
                Some(n as u64),
                false,
            )
            .await,
            now,
            &|| {},
        )
        .await
        .unwrap();
    assert_eq!(done.changed as usize, n - chatsdk_auth::actions::BATCH);
    assert_eq!(disabled(&t, n).await, n);
    assert!(
        !t.app
            .store
            .get_user("other")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert_eq!(
        t.app.store.count_kicks(i64::MAX).await.unwrap().0 as usize,
        n,
        "one kick per user, none twice"
    );
    let events: Vec<_> = t
        .app
        .store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.target_kind.as_deref() == Some("segment"))
        .map(|e| e.detail.unwrap())
        .collect();
    assert_eq!(
        events,
        [format!(
            "{} of {n} users changed",
            n - chatsdk_auth::actions::BATCH
        )]
    );
}

async fn disabled(t: &TestApp, n: usize) -> usize {
    let mut k = 0;
    for i in 0..n {
        let u = t.app.store.get_user(&format!("c{i:05}")).await.unwrap();
        k += u.unwrap().disabled as usize;
    }
    k
}
