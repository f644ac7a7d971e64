//! Private PostgreSQL for tests, two ways:
//! - [`database`]: a fresh database (its own name, its own tables) on one cluster shared by
//!   the test process, for tests that only need a PostgreSQL of their own to write to;
//! - [`PgServer`]: a cluster for one test, which it can stop and restart (outage tests).
//!
//! Every cluster is a copy of an `initdb` template, made once per PostgreSQL version and kept
//! in Cargo's per-target temp dir (`target/tmp`), served on a free loopback port. Runs as the
//! `postgres` user when the tests run as root, because PostgreSQL refuses to run as root.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::helpers::{try_until, until_blocking};
use crate::netns::Netns;
use crate::process::{free_port, Signal};

fn find_bin() -> PathBuf {
    crate::need::assert_present(crate::need::Component::Postgres);
    crate::need::pg_bin().unwrap()
}

fn is_root() -> bool {
    crate::need::is_root()
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "no `postgres` user");
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

/// A copy of the template in `dir`, and how to serve it.
struct Cluster {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// Serve TLS (`ssl = on`) with `server.crt` and `server.key` in `dir`.
    tls: bool,
    /// The address it listens on and tests connect to.
    listen: String,
    /// Served inside this network namespace (by name) rather than this one.
    netns: Option<String>,
}

impl Cluster {
    fn new(dir: &Path) -> Cluster {
        let bin = find_bin();
        copy_tree(template(&bin), &dir.join("data"));
        give_to_postgres(dir);
        Cluster {
            port: 0,
            dir: dir.to_path_buf(),
            bin,
            tls: false,
            listen: "127.0.0.1".into(),
            netns: None,
        }
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://chatsdk@{}:{}/{database}",
            self.listen, self.port
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// `postgres` and its arguments for this cluster.
    fn postgres(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![self.bin.join("postgres").into(), "-D".into()];
        args.push(self.dir.join("data").into());
        for a in ["-p", &self.port.to_string(), "-k"] {
            args.push(a.into());
        }
        args.push(self.dir.clone().into());
        for a in [
            "-c",
            &format!("listen_addresses={}", self.listen),
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ] {
            args.push(a.into());
        }
        if self.tls {
            for (k, f) in [
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
            ] {
                args.push("-c".into());
                args.push(format!("{k}={}", self.dir.join(f).display()).into());
            }
            args.extend(["-c".into(), "ssl=on".into()]);
        }
        args
    }

    /// Runs `argv` (as `postgres` when we are root) with stderr into the cluster's log.
    fn spawn(&self, argv: &[OsString], stdin: Stdio) -> Child {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join("postgres.log")).unwrap();
        let mut c = match &self.netns {
            // Entering the namespace needs root: `ip netns exec` switches user inside it.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "setpriv", "--reuid=postgres"]);
                c.args(["--regid=postgres", "--init-groups", "--"]);
                c.args(argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                if is_root() {
                    c.uid(id_of("-u")).gid(id_of("-g"));
                }
                c
            }
        };
        c.stdin(stdin).stdout(Stdio::null()).stderr(log);
        c.spawn().unwrap()
    }

    /// Waits until this cluster answers on its port; false when `child` exits first (the port
    /// was taken). Another cluster answering on the port does not count.
    async fn wait_serving(&self, child: &mut Child) -> bool {
        let data = self.dir.join("data");
        let child = std::cell::RefCell::new(child);
        let serving = try_until(|| async {
            if child.borrow_mut().try_wait().unwrap().is_some() {
                return Ok(false);
            }
            let (db, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let row = db.query_one("SHOW data_directory", &[]).await;
            let serving: String = row.map_err(|e| e.to_string())?.get(0);
            if Path::new(&serving) == data {
                Ok(true)
            } else {
                Err(format!("another cluster ({serving}) answers on the port"))
            }
        })
        .await;
        match serving {
            Ok(serving) => serving,
            Err(e) => {
                let child = child.into_inner();
                let _ = child.kill();
                let _ = child.wait();
                panic!("PostgreSQL did not start ({e}): {}", self.log());
            }
        }
    }

    /// Picks a free port and starts `argv(self)`, again on a fresh port when it cannot bind.
    async fn start(&mut self, argv: impl Fn(&Cluster) -> (Vec<OsString>, Stdio)) -> Child {
        for _ in 0..5 {
            self.port = free_port();
            let (args, stdin) = argv(self);
            let mut child = self.spawn(&args, stdin);
            if self.wait_serving(&mut child).await {
                return child;
            }
            eprintln!(
                "PostgreSQL could not serve on port {}; trying another: {}",
                self.port,
                self.log()
            );
        }
        panic!("PostgreSQL did not start; its log:\n{}", self.log());
    }
}

/// The shared cluster: run under a `sh` watchdog that shuts PostgreSQL down and removes its
/// directory once the test process is gone (its stdin, our pipe, reaches EOF), however the
/// process ends. A static is never dropped, so nothing else would.
struct Shared {
    cluster: Cluster,
    _sh: Child,
    _watchdog: ChildStdin,
}

const WATCHDOG: &str = r#"dir=$1; shift
exec 3<&0 0</dev/null
"$@" 3<&- &
pg=$!
{ read -r _ <&3; kill -QUIT "$pg" 2>/dev/null
  while kill -0 "$pg" 2>/dev/null; do sleep 0.1; done; rm -rf "$dir"; } &
wait "$pg"
"#;

static SHARED: tokio::sync::OnceCell<Shared> = tokio::sync::OnceCell::const_new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A connection string to a new, empty database on the test process's shared cluster.
pub async fn database() -> String {
    let shared = SHARED
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap().keep();
            let mut cluster = Cluster::new(&dir);
            let mut sh = cluster
                .start(|c| {
                    let mut argv: Vec<OsString> =
                        vec!["sh".into(), "-c".into(), WATCHDOG.into(), "sh".into()];
                    argv.push(c.dir.clone().into());
                    argv.extend(c.postgres());
                    (argv, Stdio::piped())
                })
                .await;
            let watchdog = sh.stdin.take().unwrap();
            Shared {
                cluster,
                _sh: sh,
                _watchdog: watchdog,
            }
        })
        .await;
    let name = format!("test_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
    let (db, conn) =
        tokio_postgres::connect(&shared.cluster.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    db.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    shared.cluster.url(&name)
}

/// `server.crt` and `server.key` (0600: PostgreSQL refuses a key file others can read) in `dir`.
fn write_cert(dir: &Path, cert_pem: &str, key_pem: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(dir.join("server.crt"), cert_pem).unwrap();
    let key = dir.join("server.key");
    std::fs::write(&key, key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A PostgreSQL cluster for one test, which it may stop and restart; killed on drop.
pub struct PgServer {
    cluster: Cluster,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PgServer {
    pub async fn start() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(dir.path());
        let child = cluster.start(|c| (c.postgres(), Stdio::null())).await;
        PgServer {
            cluster,
            _dir: dir,
            child: Some(child),
        }
    }

    /// A cluster that also serves TLS (`ssl = on`, plaintext still accepted as by default)
    /// with this certificate and key (PEM).
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> PgServer {
        PgServer::start_tls_at(cert_pem, key_pem, None).await
    }

    /// [`PgServer::start_tls`] inside the network namespace `ns`, listening on its address.
    pub async fn start_tls_in(cert_pem: &str, key_pem: &str, ns: &Netns) -> PgServer {
        PgServer::start_tls_at(cert_pem, key_pem, Some(ns)).await
    }

    async fn start_tls_at(cert_pem: &str, key_pem: &str, ns: Option<&Netns>) -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(dir.path());
        write_cert(dir.path(), cert_pem, key_pem);
        give_to_postgres(dir.path());
        cluster.tls = true;
        if let Some(ns) = ns {
            // initdb's pg_hba.conf trusts the loopback only; this end of the pair too.
            let hba = dir.path().join("data/pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).unwrap();
            text.push_str(&format!("host all all {}/32 trust\n", ns.host_addr));
            std::fs::write(&hba, text).unwrap();
            cluster.listen = ns.inner_addr.to_string();
            cluster.netns = Some(ns.name.clone());
        }
        let child = cluster.start(|c| (c.postgres(), Stdio::null())).await;
        PgServer {
            cluster,
            _dir: dir,
            child: Some(child),
        }
    }

    /// Replaces the certificate and key the server presents from its next start on.
    pub fn replace_cert(&self, cert_pem: &str, key_pem: &str) {
        write_cert(&self.cluster.dir, cert_pem, key_pem);
        give_to_postgres(&self.cluster.dir);
    }

    pub fn port(&self) -> u16 {
        self.cluster.port
    }

    /// The connection string tests give the service.
    pub fn url(&self) -> String {
        self.cluster.url("postgres")
    }

    /// Restarts the server on the same data dir and port (the service keeps its URL); waits
    /// until it answers.
    pub async fn run(&mut self) {
        let mut child = self.cluster.spawn(&self.cluster.postgres(), Stdio::null());
        assert!(
            self.cluster.wait_serving(&mut child).await,
            "PostgreSQL did not restart on port {}: {}",
            self.cluster.port,
            self.cluster.log()
        );
        self.child = Some(child);
    }

    /// Fast shutdown (SIGINT: sessions are terminated), waiting for the process to exit.
    pub fn stop(&mut self) {
        self.stop_with(Signal::INT);
    }

    /// Stops the server in immediate mode (SIGQUIT): every backend quits at once, so a
    /// statement waiting on a lock can never be granted it and finish while the server goes
    /// down, as it can in a fast shutdown (the lock holder exits first).
    pub fn crash(&mut self) {
        self.stop_with(Signal::QUIT);
    }

    fn stop_with(&mut self, signal: Signal) {
        if let Some(mut child) = self.child.take() {
            let _ = rustix::process::kill_process(rustix::process::Pid::from_child(&child), signal);
            until_blocking("PostgreSQL stopping", || {
                child.try_wait().unwrap().ok_or("running")
            });
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                Signal::QUIT,
            );
            let _ = child.wait();
        }
    }
}
