//! Each listener has its own accept task and connection budget: with the public listener at
//! its cap and a real connection flood queued behind it (loopback only, bounded in time and in
//! count), the operator's listeners (`admin.listen`, `metrics.listen`) still answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Connections the flood opens at most, and the longest it runs.
const FLOOD_CONNECTIONS: u64 = 20_000;
const FLOOD_FOR: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_the_public_listener_leaves_admin_and_metrics_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = chatsdk_auth::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.max_connections = 8;
    raw.admin.listen = "127.0.0.1:0".into();
    raw.metrics.listen = "127.0.0.1:0".into();
    raw.storage.data_dir = tmp.path().display().to_string();
    raw.log.level = "error".into();
    let config = raw.validate().unwrap();
    let app = chatsdk_auth::App::start(config, chatsdk_auth::telemetry::AccessLog::disabled())
        .await
        .unwrap();
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let adm = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let met = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let main_addr = main.local_addr().unwrap();
    let adm_addr = adm.local_addr().unwrap();
    let met_addr = met.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(chatsdk_auth::serve_on(
        chatsdk_auth::Listeners {
            main,
            metrics: Some(met),
            admin: Some(adm),
        },
        app.clone(),
        async {
            let _ = rx.await;
        },
    ));

    // The public listener at its cap: eight silent connections hold every slot.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(main_addr).await.unwrap());
    }
    crate::helpers::eventually("the public slots fill", || async {
        app.metrics.connections_open.get() >= 8
    })
    .await;

    // The flood: new connections as fast as two tasks can open them, each closed by the
    // server at once (over the cap) or dropped by us after a short read.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..2)
        .map(|_| tokio::spawn(flood(main_addr, stop.clone(), opened.clone())))
        .collect();
    crate::helpers::eventually("the flood reaches the server", || async {
        app.metrics.connections_refused.get() >= 100
    })
    .await;

    // The operator's listeners answer throughout, each request on a connection of its own.
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let bearer = format!("Bearer {}", app.secrets.admin_token.expose());
    let refused_before = app.metrics.connections_refused.get();
    for round in 0..20 {
        let overview = c
            .get(format!("http://{adm_addr}/admin/overview"))
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: /admin/overview: {e}"));
        assert_eq!(overview.status(), 200, "round {round}");
        let metrics = c
            .get(format!("http://{met_addr}/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: /metrics: {e}"));
        assert_eq!(metrics.status(), 200, "round {round}");
        assert!(metrics
            .text()
            .await
            .unwrap()
            .contains("chatsdk_auth_connections_refused_total"));
    }
    // Still flooding while the operator was served.
    let refused_during = app.metrics.connections_refused.get() - refused_before;
    assert!(refused_during > 0, "the flood had ended");
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await.unwrap();
    }
    let refused = app.metrics.connections_refused.get();
    assert!(refused >= 100, "{refused} refused");
    eprintln!(
        "flood: {} connections opened, {refused} refused by the full public listener ({refused_during} while the operator was served)",
        opened.load(Ordering::Relaxed)
    );
    drop(idle);
    let _ = tx.send(());
    assert!(server.await.unwrap());
}

/// Opens connections to `addr` until `stop`, [`FLOOD_CONNECTIONS`] in all or [`FLOOD_FOR`].
async fn flood(addr: SocketAddr, stop: Arc<AtomicBool>, opened: Arc<AtomicU64>) {
    let until = tokio::time::Instant::now() + FLOOD_FOR;
    while !stop.load(Ordering::Relaxed)
        && tokio::time::Instant::now() < until
        && opened.fetch_add(1, Ordering::Relaxed) < FLOOD_CONNECTIONS
    {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            continue;
        };
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await;
    }
}
