//! What a test needs beyond the Rust toolchain, SQLite and loopback, checked in one place.
//!
//! A test that needs a system component starts with `need!(Component, ...)`. When every one is
//! there the test runs. When one is missing:
//! - under the full test command (`tests/run.sh` sets `CHATSDK_TEST_FULL_SUITE=1`) the test
//!   fails, naming what is missing: the full suite never skips;
//! - run alone (`cargo test`), the test writes one line saying what is missing, straight to the
//!   terminal (past libtest's capture), and returns: the fast tier runs everything else.
//!
//! The helpers that start a component (`pg.rs`, `process::tool`) assert it too, so a test that
//! forgot its `need!` fails instead of skipping silently.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A system component some suites need; tests/run.sh installs each (Debian packages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// PostgreSQL's server binaries (`initdb`, `postgres`), and the `postgres` user when root.
    Postgres,
    /// `prometheus` and `promtool`.
    Prometheus,
    Nginx,
    Caddy,
    /// `chromium` and `chromedriver`.
    Chromium,
    /// `node`, for the token guide's Express example.
    Node,
    /// `/usr/bin/python3` with httpx, for the FastAPI example.
    PythonHttpx,
    /// `ruby` with HTTParty, for the Rails example.
    RubyHttparty,
    /// `php` with Guzzle, for the Laravel example.
    PhpGuzzle,
    /// PyJWT in `target/venv` (tests/venv.sh makes it).
    PyJwt,
    /// Network namespaces: `ip` (iproute2) and root.
    Netns,
}

use Component as C;

const ALL: [Component; 11] = [
    C::Postgres,
    C::Prometheus,
    C::Nginx,
    C::Caddy,
    C::Chromium,
    C::Node,
    C::PythonHttpx,
    C::RubyHttparty,
    C::PhpGuzzle,
    C::PyJwt,
    C::Netns,
];

impl Component {
    /// What is missing, in the words of the line a skipped test writes.
    pub fn what(self) -> &'static str {
        match self {
            C::Postgres => "PostgreSQL server binaries (Debian package postgresql)",
            C::Prometheus => "prometheus and promtool (Debian package prometheus)",
            C::Nginx => "nginx (Debian package nginx)",
            C::Caddy => "caddy (Debian package caddy)",
            C::Chromium => "chromium and chromedriver (Debian packages chromium, chromium-driver)",
            C::Node => "node (Debian package nodejs)",
            C::PythonHttpx => "/usr/bin/python3 with httpx (Debian package python3-httpx)",
            C::RubyHttparty => "ruby with HTTParty (Debian packages ruby, ruby-httparty)",
            C::PhpGuzzle => "php with Guzzle (Debian packages php-cli, php-guzzlehttp-guzzle)",
            C::PyJwt => "PyJWT in target/venv (bash tests/venv.sh)",
            C::Netns => "network namespaces (iproute2's ip, run as root)",
        }
    }

    fn probe(self) -> bool {
        let runs = |program: &str, args: &[&str]| {
            find_tool(program).is_some_and(|p| {
                std::process::Command::new(p)
                    .args(args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
        };
        match self {
            C::Postgres => pg_bin().is_some(),
            C::Prometheus => find_tool("prometheus").is_some() && find_tool("promtool").is_some(),
            C::Nginx => find_tool("nginx").is_some(),
            C::Caddy => find_tool("caddy").is_some(),
            C::Chromium => find_tool("chromium").is_some() && find_tool("chromedriver").is_some(),
            C::Node => find_tool("node").is_some(),
            C::PythonHttpx => std::process::Command::new("/usr/bin/python3")
                .args(["-c", "import httpx"])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            C::RubyHttparty => runs("ruby", &["-e", "require 'httparty'"]),
            C::PhpGuzzle => runs("php", &["-r", "require 'GuzzleHttp/autoload.php';"]),
            C::PyJwt => venv_python().is_file(),
            C::Netns => find_tool("ip").is_some() && is_root(),
        }
    }

    /// Whether it is on this machine (probed once per test process).
    pub fn present(self) -> bool {
        static PROBED: [OnceLock<bool>; ALL.len()] = [const { OnceLock::new() }; ALL.len()];
        let i = ALL.iter().position(|c| *c == self).unwrap();
        *PROBED[i].get_or_init(|| self.probe())
    }
}

/// The variable tests/run.sh sets for the full test command. It is outside the service's
/// configuration prefix (`config::ENV_PREFIX`): a `CHATSDK_AUTH_*` variable is a config key,
/// and an unknown one stops every service a test starts and fails the config tests.
pub const FULL_SUITE_VAR: &str = "CHATSDK_TEST_FULL_SUITE";

/// Whether this run is the full test command, where nothing may be skipped.
pub fn full_suite() -> bool {
    std::env::var_os(FULL_SUITE_VAR).is_some_and(|v| v == "1")
}

#[test]
fn the_full_suite_switch_is_no_config_key() {
    assert!(!FULL_SUITE_VAR.starts_with(chatsdk_auth::config::ENV_PREFIX));
    let run = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/run.sh"))
        .expect("tests/run.sh is in the repository");
    assert!(
        run.contains(&format!("export {FULL_SUITE_VAR}=1")),
        "tests/run.sh sets {FULL_SUITE_VAR}=1"
    );
}

/// True when the calling test has everything in `needs`. Otherwise, under the full suite it
/// fails naming what is missing; run alone it writes one line and returns false (skip).
pub fn has(needs: &[Component]) -> bool {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|c| !c.present())
        .map(|c| c.what())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    assert!(
        !full_suite(),
        "{test} needs {}, which this machine lacks; CHATSDK_TEST_FULL_SUITE=1 (tests/run.sh) \
         runs every suite, and tests/run.sh installs them",
        missing.join(", ")
    );
    use std::io::Write;
    // Straight to stderr: libtest captures print! and eprint!, not this.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: needs {}; `bash tests/run.sh` installs it and runs every suite",
        missing.join(", ")
    );
    false
}

/// At the top of a test: returns (skips) unless every named [`Component`] is present; see
/// [`has`].
macro_rules! need {
    ($($c:ident),+ $(,)?) => {
        if !crate::need::has(&[$(crate::need::Component::$c),+]) {
            return;
        }
    };
}
pub(crate) use need;

/// Fails a test that uses `c` without having said so with `need!` (it would otherwise fail
/// later with a less clear message, or, worse, be taken for a skip).
pub fn assert_present(c: Component) {
    assert!(
        c.present(),
        "{} is missing, and the test did not declare it with need!({c:?}): add it, so that \
         `cargo test` alone skips the test with one line and tests/run.sh requires it",
        c.what()
    );
}

/// `name` on PATH, else in /usr/bin or /usr/sbin.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// PostgreSQL's server binaries: `CHATSDK_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` holding `initdb`; with the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
pub fn pg_bin() -> Option<PathBuf> {
    let bin = match std::env::var("CHATSDK_TEST_PG_BIN") {
        Ok(dir) => Some(PathBuf::from(dir)).filter(|d| d.join("initdb").is_file()),
        Err(_) => {
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
                .find(|p| p.join("initdb").is_file())
        }
    }?;
    let user_ok = !is_root()
        || std::process::Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|o| o.status.success());
    user_ok.then_some(bin)
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// The Python of tests/venv.sh's venv.
pub fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python")
}
