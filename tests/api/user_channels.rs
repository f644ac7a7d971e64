//! Server-side channels (`centrifugo.user_channels`): what the wsToken's `channels` claim and
//! the connect proxy's reply list. A user id is filled into each template, and a filled channel
//! must stay in the template's namespace (the rule `crate::channels` applies to subscriptions):
//! a user whose id is `personal:bob` or `$x` never gets `personal:bob` or a private channel.

use serde_json::{json, Value};

use crate::helpers::{connect_with, verify_hs256, TestApp};

/// The `channels` claim of a freshly minted wsToken and the connect proxy's `channels`.
async fn server_side_channels(t: &TestApp, user: &str) -> (Value, Value) {
    let b = t.mint(user).await;
    let ws = b["wsToken"].as_str().unwrap();
    let (_, claims) = verify_hs256(ws, &t.ws_key());
    let (s, r) = t.proxy("/centrifugo/connect", &connect_with(ws), &[]).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["result"]["user"], user, "{r}");
    (
        claims.get("channels").cloned().unwrap_or(json!([])),
        r["result"].get("channels").cloned().unwrap_or(json!([])),
    )
}

#[tokio::test]
async fn a_user_id_never_moves_a_server_side_channel_into_another_namespace() {
    let t = TestApp::spawn_with(|c| {
        c.centrifugo.user_channels = vec![
            "#{userId}".into(),
            "user-#{userId}".into(),
            "personal:#{userId}".into(),
        ]
    })
    .await;

    // An ordinary id fills every template.
    let (claim, reply) = server_side_channels(&t, "bob").await;
    let want = json!(["bob", "user-bob", "personal:bob"]);
    assert_eq!(claim, want);
    assert_eq!(reply, want);

    // An id with a namespace boundary keeps only the channels whose namespace is the
    // template's own: `personal:bob` is bob's channel, not this user's, and `user-personal` is
    // a namespace no template declares.
    let (claim, reply) = server_side_channels(&t, "personal:bob").await;
    let want = json!(["personal:personal:bob"]);
    assert_eq!(claim, want, "wsToken channels");
    assert_eq!(reply, want, "connect reply channels");

    // An id starting with the private prefix does not make a namespace-less template private.
    let (claim, reply) = server_side_channels(&t, "$secret").await;
    let want = json!(["user-$secret", "personal:$secret"]);
    assert_eq!(claim, want, "wsToken channels");
    assert_eq!(reply, want, "connect reply channels");
}
