//! The built binary and other real programs as child processes: `chatsdk-auth serve` with its
//! JSON log captured, the CLI, tools looked up on PATH, and a free loopback port for a program
//! that only takes a port number.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;

use crate::helpers::{until, until_blocking, GIVE_UP};

pub use rustix::process::Signal;

/// Sends `sig` to a child the test started, by a system call: the tests need no `kill`
/// program (procps is not installed on a bare machine; tests/bare.sh runs the fast tier there).
pub fn send_signal(child: &Child, sig: Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), sig).unwrap();
}

pub const BIN: &str = env!("CARGO_BIN_EXE_chatsdk-auth");

/// A running `chatsdk-auth serve`, killed on drop so a failing assertion never leaks it.
pub struct Server {
    pub child: Child,
    /// The address from its `listening` log line.
    pub addr: String,
    logs: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `chatsdk-auth serve` in `dir` on 127.0.0.1:0 with JSON logs at debug level
    /// (`envs` come after those defaults, so they can override them), and waits for the
    /// `listening` line. The log is drained on a thread so the pipe never fills.
    pub fn start(dir: &Path, envs: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .current_dir(dir)
            .env("CHATSDK_AUTH_SERVER__LISTEN", "127.0.0.1:0")
            .env("CHATSDK_AUTH_LOG__FORMAT", "json")
            .env("CHATSDK_AUTH_LOG__LEVEL", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start chatsdk-auth serve");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "listening" {
                        let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
            logs,
            reader: Some(reader),
        };
        match rx.recv_timeout(GIVE_UP) {
            Ok(addr) => server.addr = addr,
            Err(e) => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                panic!(
                    "server did not log its address ({e}): {:?}",
                    server.finish_logs()
                );
            }
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, c: &reqwest::Client) {
        until("serve ready", || async {
            match c.get(self.url("/readyz")).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(format!("/readyz {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// SIGTERM, then wait (bounded) for the exit status; returns it with every log line.
    pub fn terminate(self) -> (ExitStatus, Vec<String>) {
        self.signal(Signal::TERM)
    }

    /// Sends a signal (`Signal::TERM`, `Signal::INT`), waits (bounded) for the exit status, then for the
    /// log reader to reach the end of the pipe; returns the status and every log line.
    pub fn signal(mut self, sig: Signal) -> (ExitStatus, Vec<String>) {
        send_signal(&self.child, sig);
        let status = until_blocking(&format!("exit after {sig:?}"), || {
            self.child.try_wait().unwrap().ok_or("running")
        });
        (status, self.finish_logs())
    }

    /// Joins the log reader (the process has exited, so its stderr is at EOF) and returns
    /// every line it read.
    fn finish_logs(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader thread");
        }
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills its process when dropped, so a failing assertion never leaks a program.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server on a free loopback port: `spawn(port)` starts it, and it is up once the port
/// accepts a connection. A process that exits first (most likely the port was taken meanwhile)
/// is tried again on another port, five times at most; `log()` is shown with a failure.
pub async fn serve_on_free_port(
    what: &str,
    mut spawn: impl FnMut(u16) -> Child,
    log: impl Fn() -> String,
) -> (KillOnDrop, u16) {
    for _ in 0..5 {
        let port = free_port();
        let child = std::cell::RefCell::new(KillOnDrop(spawn(port)));
        // Listening, or exited (the port was taken: again on another).
        let listening = until(&format!("{what} listening or exited"), || async {
            if child.borrow_mut().0.try_wait().unwrap().is_some() {
                return Ok(false);
            }
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => Ok(true),
                Err(e) => Err(format!("{e}; log: {}", log())),
            }
        })
        .await;
        if listening {
            return (child.into_inner(), port);
        }
    }
    panic!("{what} did not start: {}", log());
}

/// Runs the CLI in `dir` and returns its output, whatever the exit status.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs the CLI in `dir` and returns its stdout; panics (showing only stderr, since stdout may
/// hold a key) when it fails.
pub fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let out = cli(dir, args);
    assert!(
        out.status.success(),
        "chatsdk-auth {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `name` on PATH, else in /usr/bin or /usr/sbin; a clear failure when it is missing (the test
/// declares what it needs with `need!`, which skips it when run alone).
pub fn tool(name: &str) -> PathBuf {
    crate::need::find_tool(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed (looked on PATH, /usr/bin and /usr/sbin), and the test \
             did not declare it with need!: add it; `bash tests/run.sh` installs what the \
             tests need"
        )
    })
}

/// A loopback port that was free a moment ago, for programs that take a port number rather
/// than a bound socket (Prometheus, PostgreSQL). Another process can take it before the program
/// binds it, so every caller detects a failed bind and retries on a fresh port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
