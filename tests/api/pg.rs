//! A private PostgreSQL server for tests: a copy of an `initdb` template in a temp dir,
//! `postgres` on a free loopback port, stopped (or killed) on drop. Runs as the `postgres` user
//! when the tests run as root, because PostgreSQL refuses to run as root.
//!
//! `initdb` runs once per PostgreSQL version: its result is kept in Cargo's per-target temp dir
//! (`target/tmp`) and copied for every server, which costs a fraction of a fresh `initdb`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::free_port;

pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
}

fn find_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("CHATSDK_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|p| p.join("initdb").exists())
        .expect("PostgreSQL server binaries not found: run `bash tests/run.sh`, which installs them (Debian package postgresql)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no `postgres` user: install the Debian package postgresql (tests/run.sh does)"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Runs a PostgreSQL binary directly (so signals reach it), as `postgres` when we are root.
fn pg_command(bin: &Path, tool: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(bin.join(tool));
    if is_root() {
        c.uid(id_of("-u")).gid(id_of("-g"));
    }
    c
}

/// Hands `path` (recursively) to the `postgres` user when we are root.
fn give_to_postgres(path: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success(), "chown {}", path.display());
    }
}

/// `cp -a from to`: ownership and modes kept (PostgreSQL insists on a 0700 data dir).
fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success(), "cp -a {} {}", from.display(), to.display());
}

/// The `initdb` result for `bin`, made once and reused by every server (and every later run).
fn template(bin: &Path) -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let tag = bin.to_string_lossy().replace('/', "_");
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let done = root.join(format!("pg-template{tag}"));
        if done.join("PG_VERSION").exists() {
            return done;
        }
        // initdb in a fresh temp dir the postgres user can reach, then one rename into place,
        // so a half-written template is never used.
        let tmp = tempfile::tempdir().unwrap();
        give_to_postgres(tmp.path());
        let out = pg_command(bin, "initdb")
            .args(["-D"])
            .arg(tmp.path().join("data"))
            .args([
                "-U",
                "chatsdk",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::create_dir_all(root).unwrap();
        let staging = root.join(format!("pg-template{tag}.{}", std::process::id()));
        copy_tree(&tmp.path().join("data"), &staging);
        if std::fs::rename(&staging, &done).is_err() {
            // Another test process put its template in place first; it is as good as ours.
            let _ = std::fs::remove_dir_all(&staging);
            assert!(done.join("PG_VERSION").exists(), "no template at {done:?}");
        }
        done
    })
}

impl PgServer {
    /// A fresh cluster (a copy of the template) serving on a free port. The port is chosen
    /// before PostgreSQL binds it, so a port taken in between is detected and another tried.
    pub async fn start() -> PgServer {
        let bin = find_bin();
        let dir = tempfile::tempdir().unwrap();
        copy_tree(template(&bin), &dir.path().join("data"));
        give_to_postgres(dir.path());
        let mut pg = PgServer {
            port: 0,
            dir,
            bin,
            child: None,
        };
        for _ in 0..5 {
            pg.port = free_port();
            if pg.try_run().await {
                return pg;
            }
            eprintln!(
                "PostgreSQL could not serve on port {}; trying another: {}",
                pg.port,
                pg.log()
            );
        }
        panic!("PostgreSQL did not start; its log:\n{}", pg.log());
    }

    /// The connection string tests give the service.
    pub fn url(&self) -> String {
        format!("postgres://chatsdk@127.0.0.1:{}/postgres", self.port)
    }

    /// Restarts the server on the same data dir and port (the service keeps its URL); waits
    /// until it answers.
    pub async fn run(&mut self) {
        assert!(
            self.try_run().await,
            "PostgreSQL did not restart on port {}: {}",
            self.port,
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Starts `postgres` and waits until it answers as this cluster; false when it exits
    /// first (its port was taken).
    async fn try_run(&mut self) -> bool {
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        let mut child = pg_command(&self.bin, "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            // Another cluster could be answering on this port: only ours counts.
            if let Ok((db, conn)) =
                tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                let serving: String = db
                    .query_one("SHOW data_directory", &[])
                    .await
                    .unwrap()
                    .get(0);
                if Path::new(&serving) == data {
                    self.child = Some(child);
                    return true;
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("PostgreSQL did not start within 30 s: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fast shutdown (SIGINT: sessions are terminated), waiting for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "PostgreSQL did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}
