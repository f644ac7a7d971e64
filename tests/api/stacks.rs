//! The token guide's four backend examples, side by side, each run unchanged by its real
//! interpreter against the built binary: Node (Express, `fetch`), Python (FastAPI, httpx), Ruby
//! (Rails, HTTParty) and PHP (Laravel's `Http`, which is Guzzle with a JSON body).
//!
//! Each example is in tests/stacks/<stack>/ exactly as the guide prints it, next to a `run.*`
//! wrapper that stands in for the framework only (the logged-in user, the response); see the
//! comment at the top of each wrapper. The interpreters and HTTP clients are Debian packages
//! that tests/run.sh installs: nodejs, python3-httpx, ruby-httparty, php-cli and
//! php-guzzlehttp-guzzle.
//!
//! The users are what real tables hold: Rails' and Laravel's integer primary keys, a blank
//! avatar, a `NULL` department.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::verify_hs256;
use crate::process::{tool, Server};

/// A `chatsdk-auth serve` on a fresh data dir, with its API key and signing keys.
struct Sidecar {
    server: Server,
    data: PathBuf,
    key: String,
    _tmp: tempfile::TempDir,
}

impl Sidecar {
    async fn start() -> Sidecar {
        let tmp = tempfile::tempdir().unwrap();
        let server = Server::start(tmp.path(), &[]);
        server.wait_ready(&reqwest::Client::new()).await;
        let data = tmp.path().join("data");
        let key = read(&data, "api-key.txt");
        Sidecar {
            server,
            data,
            key,
            _tmp: tmp,
        }
    }

    /// Runs one stack's wrapper for `user` (JSON: id, name, avatar_url, email, department) and
    /// returns what the backend would send its frontend.
    fn run(&self, program: &Path, script: &str, user: &Value) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/stacks")
            .join(script);
        let out = Command::new(program)
            .arg(&script)
            .env("CHATSDK_API_URL", self.server.url(""))
            .env("CHATSDK_API_KEY", &self.key)
            .env("CHAT_USER", user.to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} {} failed: {}\n{stdout}",
            program.display(),
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// The answer is the guide's response for `id`, and its tokens verify with the keys the
    /// sidecar wrote (an HMAC computed here, not the service's JWT code).
    fn assert_tokens_for(&self, answer: &Value, id: &str, image: Value) {
        assert!(answer.get("error").is_none(), "{answer}");
        assert_eq!(answer["user"]["id"], id, "{answer}");
        assert_eq!(answer["user"]["image"], image, "{answer}");
        assert_eq!(answer["expiresIn"], 86400);
        let ws = answer["wsToken"].as_str().unwrap();
        assert_eq!(
            verify_hs256(ws, &read(&self.data, "centrifugo-hmac.key")).1["sub"],
            id
        );
        let rest = answer["token"].as_str().unwrap();
        assert_eq!(
            verify_hs256(rest, &read(&self.data, "rest-signing.key")).1["sub"],
            id
        );
    }

    /// A second call with the id as a string finds the same user: one row, updated.
    async fn assert_same_user_as_string(&self, id: &str) {
        let r = reqwest::Client::new()
            .post(self.server.url("/tokens"))
            .header("X-API-Key", &self.key)
            .json(&json!({"userId": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["user"]["id"], id);
        assert_eq!(
            b["user"]["name"], "Ada Lovelace",
            "the stored user, not a new one"
        );
        let db = rusqlite::Connection::open(self.data.join("chatsdk-auth.db")).unwrap();
        let rows: i64 = db
            .query_row("SELECT count(*) FROM users WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(rows, 1, "no duplicate row for {id}");
    }
}

fn read(data: &Path, file: &str) -> String {
    std::fs::read_to_string(data.join(file))
        .unwrap()
        .trim()
        .to_string()
}

fn user(id: Value, avatar: &str) -> Value {
    json!({
        "id": id,
        "name": "Ada Lovelace",
        "avatar_url": avatar,
        "email": "ada@example.com",
        "department": null,
    })
}

/// Node (Express): `JSON.stringify` of the guide's body, sent with `fetch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_express_example() {
    crate::need::need!(Node);
    let s = Sidecar::start().await;
    let image = "https://cdn.example/ada.png";
    let answer = s.run(
        &tool("node"),
        "express/run.js",
        &user(json!("user-123"), image),
    );
    assert_eq!(answer["status"], 200, "{answer}");
    s.assert_tokens_for(&answer["body"], "user-123", json!(image));
    // An integer id (a serial primary key) from the same code.
    let answer = s.run(&tool("node"), "express/run.js", &user(json!(12), ""));
    s.assert_tokens_for(&answer["body"], "12", Value::Null);
    s.assert_same_user_as_string("12").await;
}

/// Python (FastAPI): httpx's `json=` of the guide's body. Debian's python3 (where
/// python3-httpx is), not whichever `python3` comes first on PATH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_fastapi_example() {
    crate::need::need!(PythonHttpx);
    let s = Sidecar::start().await;
    let python = Path::new("/usr/bin/python3");
    let answer = s.run(python, "fastapi/run.py", &user(json!(42), ""));
    s.assert_tokens_for(&answer, "42", Value::Null);
    s.assert_same_user_as_string("42").await;
}

/// Ruby (Rails): `current_user.id` is an Integer, `avatar_url` blank, `department` nil.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ruby_rails_example() {
    crate::need::need!(RubyHttparty);
    let s = Sidecar::start().await;
    let answer = s.run(&tool("ruby"), "rails/run.rb", &user(json!(7), ""));
    s.assert_tokens_for(&answer, "7", Value::Null);
    s.assert_same_user_as_string("7").await;
}

/// PHP (Laravel): `$user->id` is an int, `avatar_url` blank, `department` null; Guzzle's `json`
/// option encodes the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_laravel_example() {
    crate::need::need!(PhpGuzzle);
    let s = Sidecar::start().await;
    let answer = s.run(&tool("php"), "laravel/run.php", &user(json!(8), ""));
    s.assert_tokens_for(&answer, "8", Value::Null);
    s.assert_same_user_as_string("8").await;
}
