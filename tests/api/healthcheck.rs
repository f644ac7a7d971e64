//! `chatsdk-auth healthcheck` against the real server: exit 0 while `/readyz` answers 200 (the
//! URL derived from `server.listen`, as in a container), exit 1 naming the URL for any other
//! answer and once the server has stopped.

use std::process::Command;

use crate::process::{stdout, Server, BIN};

fn healthcheck(dir: &std::path::Path, listen: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("healthcheck")
        .args(args)
        .current_dir(dir)
        .env("CHATSDK_AUTH_SERVER__LISTEN", listen)
        .output()
        .unwrap()
}

#[tokio::test]
async fn healthcheck_follows_readyz_and_the_server_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &[]);
    let c = reqwest::Client::new();
    server.wait_ready(&c).await;

    // No --url: the address comes from the same configuration the server read.
    let ok = healthcheck(tmp.path(), &server.addr, &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout(&ok).contains(r#""status":"ready""#),
        "{}",
        stdout(&ok)
    );

    // Any answer but 200 fails, with the status in the message.
    let wrong = server.url("/no-such-route");
    let not_ready = healthcheck(tmp.path(), &server.addr, &["--url", &wrong]);
    assert_eq!(not_ready.status.code(), Some(1));
    let err = String::from_utf8_lossy(&not_ready.stderr);
    assert!(err.contains(&wrong) && err.contains("404"), "{err}");

    let addr = server.addr.clone();
    let (status, _) = server.terminate();
    assert!(status.success());
    let gone = healthcheck(tmp.path(), &addr, &["--timeout-ms", "500"]);
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains(&format!("http://{addr}/readyz")), "{err}");
}
