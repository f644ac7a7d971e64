//! Active revocation through Centrifugo's server API, against [`FakeCentrifugo`]: the client's
//! retries and failures, and (below) kicks from every action and entry point.

use std::time::Duration;

use chatsdk_auth::centrifugo_api::{CentrifugoApi, CentrifugoApiError, DisconnectUser};
use chatsdk_auth::secrets::Secret;

use crate::fake_centrifugo::{FakeCentrifugo, Kick, Mode};

const KEY: &str = "centrifugo-api-key-for-the-tests-0123456789";

fn client(f: &FakeCentrifugo, timeout_ms: u64) -> (CentrifugoApi, chatsdk_auth::metrics::Metrics) {
    let m = chatsdk_auth::metrics::Metrics::new(&chatsdk_auth::router::ROUTE_LABELS).unwrap();
    let c = CentrifugoApi::new(
        &f.api_url(),
        Duration::from_millis(timeout_ms),
        &Secret::new(KEY.into()),
        Some(m.centrifugo_api.clone()),
    )
    .unwrap();
    (c, m)
}

fn count(m: &chatsdk_auth::metrics::Metrics, method: &str, outcome: &str) -> u64 {
    m.centrifugo_api
        .calls
        .with_label_values(&[method, outcome])
        .get()
}

const CAROL: DisconnectUser<'static> = DisconnectUser {
    user: "carol",
    code: 4503,
    reason: "user disabled",
};

#[tokio::test]
async fn client_speaks_the_server_api_and_retries_only_what_may_pass() {
    let mut f = FakeCentrifugo::start(KEY).await;
    let (c, m) = client(&f, 300);

    c.disconnect(&CAROL).await.unwrap();
    let call = &f.calls()[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/api/disconnect");
    assert_eq!(call.api_key.as_deref(), Some(KEY));
    assert_eq!(
        call.body,
        serde_json::json!({"user": "carol", "disconnect": {"code": 4503, "reason": "user disabled"}})
    );
    let nodes = c.info().await.unwrap();
    assert_eq!(nodes[0].version, "6.9.1");
    let two = [
        CAROL,
        DisconnectUser {
            user: "dave",
            code: 4504,
            reason: "token revoked",
        },
    ];
    let replies = c.disconnect_batch(&two).await.unwrap();
    assert!(replies.iter().all(Result::is_ok));
    assert_eq!(f.calls()[2].body["parallel"], true);
    assert_eq!(
        f.kicks_of("dave"),
        vec![Kick {
            user: "dave".into(),
            code: 4504,
            reason: "token revoked".into()
        }]
    );
    assert_eq!(count(&m, "disconnect", "ok"), 1);
    assert_eq!(count(&m, "info", "ok"), 1);

    // A wrong key: 401, not retried (it will not pass by itself), counted.
    f.set_mode(Mode::Status(401));
    let before = f.calls().len();
    assert!(matches!(
        c.disconnect(&CAROL).await,
        Err(CentrifugoApiError::Unauthorized)
    ));
    assert_eq!(f.calls().len(), before + 1);
    assert_eq!(count(&m, "disconnect", "unauthorized"), 1);

    // 5xx: three attempts with backoff, then the error.
    f.set_mode(Mode::Status(503));
    let before = f.calls().len();
    assert!(matches!(
        c.disconnect(&CAROL).await,
        Err(CentrifugoApiError::Status(503))
    ));
    assert_eq!(f.calls().len(), before + 3);
    assert_eq!(count(&m, "disconnect", "http_error"), 3);

    // Slower than the timeout: each attempt is cut at 300 ms.
    f.set_mode(Mode::Hang(Duration::from_secs(2)));
    let start = std::time::Instant::now();
    let e = c.disconnect(&CAROL).await.unwrap_err();
    assert!(matches!(e, CentrifugoApiError::Timeout(_)), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_millis(1800),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(count(&m, "disconnect", "timeout"), 3);

    // Down: refused connections are "unreachable"; back up, the same client works again.
    f.set_mode(Mode::Normal);
    f.down();
    let e = c.disconnect(&CAROL).await.unwrap_err();
    assert!(matches!(e, CentrifugoApiError::Unreachable(_)), "{e:?}");
    assert!(count(&m, "disconnect", "unreachable") >= 1);
    f.up().await;
    c.disconnect(&CAROL).await.unwrap();
    // No error message names the key.
    for e in [
        CentrifugoApiError::Unauthorized.to_string(),
        format!("{:?}", CentrifugoApiError::Unauthorized),
    ] {
        assert!(!e.contains(KEY));
    }
}
