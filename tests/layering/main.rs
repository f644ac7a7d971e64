//! What src/lib.rs says about the code, checked against the source: every `crate::` (and
//! `super::`) path in every library file, comments and string literals left out, resolved
//! through the re-exports to the file that defines what it names (`crate::App` is `app::App`).
//! Each claim is one test, and a test fails on the first claim it finds false.
//!
//! - A lower layer (error_chain, api_key, channels, config, limits, secrets, telemetry, metrics,
//!   store, keys, jwt, and the Centrifugo leaves: `centrifugo/protocol.rs`, the server-API
//!   client `centrifugo/api.rs`) never names a handler (tokens,
//!   subscription_tokens, admin, verify, ops, proxy), the router, the CLI or `app`; `jwt` and
//!   `store` never name `http`.
//! - No handler names another handler family (a family's own children are its own), and no
//!   handler file mentions `App` or names `app` at all: a handler gets its family's context
//!   (`router/context.rs`), never the whole application.
//! - lib.rs's `# Layout` map lists every top-level module, and nothing else.
//! - No import cycles between files, beyond a module and its own children.
//! - No global statics but the one lib.rs names.
//! - Every `.rs` file of src/ and tests/ is at most 600 lines.
//! - tests/ waits through one poll loop (`helpers::until`): no other call of a `sleep` but the few
//!   listed with their reasons.
//!
//! A module `foo` is `src/foo.rs` or `src/foo/` alike, so the rules hold while files become
//! directories. See the `# Architecture invariants` in src/lib.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod graph;
mod scanner;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use graph::{first_cycle, show, Edge, Library};
use scanner::{code_only, is_ident, module_of};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Top-level modules that are lower layers as a whole.
const LOWER: &[&str] = &[
    "error_chain",
    "tls",
    "api_key",
    "channels",
    "config",
    "limits",
    "secrets",
    "telemetry",
    "metrics",
    "segments",
    "store",
    "keys",
    "jwt",
];
/// Lower layers inside a top-level module that also holds higher ones (`centrifugo/config.rs`
/// reads the route table, so `centrifugo` as a whole is not a lower layer).
const LOWER_CHILDREN: &[[&str; 2]] = &[["centrifugo", "protocol"], ["centrifugo", "api"]];
/// Handler families: each may use its own children, never another family.
const HANDLERS: &[&str] = &[
    "console",
    "tokens",
    "subscription_tokens",
    "admin",
    "verify",
    "ops",
    "proxy",
];
/// What sits above every handler: a lower layer never names these either.
const ABOVE_HANDLERS: &[&str] = &["router", "cli", "app"];
/// Lower layers that know nothing about HTTP.
const NO_HTTP: &[&str] = &["jwt", "store"];

// ------------------------------------------------------------------------------ the rules

/// `true` when `path` (from the crate root) is inside a lower layer.
fn is_lower(path: &[String]) -> bool {
    let Some(top) = path.first() else {
        return false;
    };
    LOWER.contains(&top.as_str())
        || LOWER_CHILDREN
            .iter()
            .any(|[m, c]| top == m && path.get(1).is_some_and(|x| x == c))
}

/// The handler family `path` belongs to, if any.
fn handler_family(path: &[String]) -> Option<&str> {
    let top = path.first()?;
    HANDLERS.iter().copied().find(|h| h == top)
}

/// Every broken rule for one file (`rel` under src/, its imports resolved), as
/// `src/<file>:<line>: …`.
fn violations(rel: &Path, edges: &[Edge]) -> Vec<String> {
    let module = module_of(rel);
    let lower = is_lower(&module);
    let family = handler_family(&module);
    let mut out = Vec::new();
    for r in edges {
        let Some(target) = r.path.first().map(String::as_str) else {
            continue;
        };
        let shown = format!("crate::{}", r.path.join("::"));
        let at = &r.at;
        if lower {
            if let Some(h) = handler_family(&r.path) {
                out.push(format!(
                    "{at}: lower layer `{}` imports handler `{h}` ({shown})",
                    module.join("::")
                ));
            } else if ABOVE_HANDLERS.contains(&target) {
                out.push(format!(
                    "{at}: lower layer `{}` imports `{target}` ({shown})",
                    module.join("::")
                ));
            } else if target == "http" && NO_HTTP.contains(&module[0].as_str()) {
                out.push(format!(
                    "{at}: `{}` must know nothing about HTTP ({shown})",
                    module.join("::")
                ));
            }
        }
        if let (Some(mine), Some(theirs)) = (family, handler_family(&r.path)) {
            if mine != theirs {
                out.push(format!(
                    "{at}: handler `{mine}` imports handler `{theirs}` ({shown})"
                ));
            }
        }
    }
    out
}

/// Every mention of `App` (the identifier, as a whole word, in code) or path into `app` in a
/// handler file (`rel` under src/, its text `text`), as `src/<file>:<line>: …`; nothing for
/// any other file.
fn app_mentions(lib: &Library, rel: &Path, text: &str) -> Vec<String> {
    let module = module_of(rel);
    let Some(family) = handler_family(&module) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in lib.edges_of(rel, text) {
        if r.path.first().is_some_and(|t| t == "app") {
            out.push(format!(
                "{}: handler `{family}` names crate::{}",
                r.at,
                r.path.join("::")
            ));
        }
    }
    let code = code_only(text);
    let b = code.as_bytes();
    for (pos, _) in code.match_indices("App") {
        let before = pos.checked_sub(1).map(|i| b[i]);
        let after = b.get(pos + 3).copied();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            let line = code[..pos].matches('\n').count() + 1;
            out.push(format!(
                "src/{}:{line}: handler `{family}` mentions `App`",
                rel.display()
            ));
        }
    }
    out
}

#[test]
fn lower_layers_never_import_handlers_and_handlers_never_import_each_other() {
    let lib = Library::read();
    assert!(
        lib.files.len() > 20,
        "only {} files under src/",
        lib.files.len()
    );
    for (rel, (_, edges)) in lib.files.iter().zip(lib.edges()) {
        let v = violations(rel, &edges);
        assert!(v.is_empty(), "layering violation: {}", v[0]);
    }
}

#[test]
fn no_handler_file_mentions_app() {
    let lib = Library::read();
    let handlers = lib
        .files
        .iter()
        .filter(|f| handler_family(&module_of(f)).is_some())
        .count();
    assert!(handlers >= HANDLERS.len(), "only {handlers} handler files");
    for rel in &lib.files {
        let text = std::fs::read_to_string(Path::new(SRC).join(rel)).unwrap();
        let v = app_mentions(&lib, rel, &text);
        assert!(
            v.is_empty(),
            "a handler must get its family's context (router/context.rs), never the App: {}",
            v[0]
        );
    }
}

#[test]
fn the_app_check_sees_every_way_a_handler_could_name_the_app() {
    let lib = Library::read();
    let handler = Path::new("admin/audit.rs");
    for text in [
        "use crate::App;\n",
        "use crate::app::App;\n",
        "use crate::{app, http};\n",
        "fn f(x: &crate::app::TripLog) {}\n",
        "fn f(a: &App) {}\n",
        "fn f(a: Arc<App>) {}\n",
    ] {
        assert!(
            !app_mentions(&lib, handler, text).is_empty(),
            "not caught: {text}"
        );
    }
    for text in [
        "// App in a comment\nfn f() {}\n",
        "const S: &str = \"App\";\n",
        "fn f(a: &AppConfig, b: Happy) {}\n",
    ] {
        assert_eq!(
            app_mentions(&lib, handler, text),
            Vec::<String>::new(),
            "{text}"
        );
    }
    // Only handler files are held to it: the router builds the contexts from the App.
    let router = Path::new("router/context.rs");
    assert!(app_mentions(&lib, router, "use crate::app::App;\n").is_empty());
}

#[test]
fn the_layout_map_in_lib_rs_lists_every_top_level_module() {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    assert!(declared.len() > 10, "mod lines not found: {declared:?}");
    let map: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .skip_while(|l| l.trim() != "# Layout")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('#'))
        .collect();
    let listed: Vec<String> = map
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("- [`"))
        .filter_map(|l| l.split_once("`]").map(|(m, _)| m.to_string()))
        .collect();
    let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
    // A module whose children sit at different layers (`centrifugo::protocol` low,
    // `centrifugo::config` high) is listed child by child: each child counts for its parent,
    // and must be a file or folder of it.
    let covered: BTreeSet<String> = listed_set
        .iter()
        .map(|m| m.split("::").next().unwrap_or(m).to_string())
        .collect();
    for child in listed_set.iter().filter(|m| m.contains("::")) {
        let rel = child.replace("::", "/");
        let src = Path::new(SRC);
        assert!(
            src.join(format!("{rel}.rs")).exists() || src.join(&rel).is_dir(),
            "lib.rs `# Layout` map lists {child}, which is no file of src/"
        );
    }
    let missing: Vec<_> = declared.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&declared).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "lib.rs `# Layout` map: modules missing from it {missing:?}; entries that are no module \
         {unknown:?}"
    );
    assert_eq!(listed.len(), listed_set.len(), "a module listed twice");
}

#[test]
fn the_rules_flag_what_the_layering_forbids_and_nothing_more() {
    let lib = Library::read();
    let check = |file: &str, text: &str| {
        let rel = Path::new(file);
        violations(rel, &lib.edges_of(rel, text))
    };
    // Lower layers: handlers, router, cli, app are out; other lower layers are fine.
    let v = check(
        "metrics.rs",
        "use crate::proxy::decision::Reason;\nuse crate::config::Config;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("src/metrics.rs:1: lower layer `metrics` imports handler `proxy`"));
    // Root re-exports are followed: `crate::App` is `app::App`.
    for target in ["router::Route", "cli::Cli", "app::App", "App", "tokens::x"] {
        let v = check("keys/ring.rs", &format!("fn f() {{ crate::{target}; }}"));
        assert_eq!(v.len(), 1, "{target}: {v:?}");
    }
    assert_eq!(check("store/mod.rs", "use crate::http::ApiError;").len(), 1);
    assert_eq!(check("keys/mod.rs", "use crate::http::ApiError;").len(), 0);
    // The Centrifugo leaf is lower; the generated config beside it may read the router.
    assert_eq!(
        check("centrifugo/protocol.rs", "use crate::ops::x;").len(),
        1
    );
    assert_eq!(
        check("centrifugo/config.rs", "use crate::router::ENDPOINTS;").len(),
        0
    );
    // Handlers: another family is out, their own children and the lower layers are fine.
    let v = check("admin.rs", "use crate::tokens::rate_limited;");
    assert_eq!(
        v,
        ["src/admin.rs:1: handler `admin` imports handler `tokens` (crate::tokens::rate_limited)"]
    );
    assert!(check("proxy/connect.rs", "use crate::proxy::wire::Reply;").is_empty());
    assert!(check("proxy/connect.rs", "use super::wire::Reply;").is_empty());
    assert!(check("tokens.rs", "use crate::{app::App, jwt::Signer, store};").is_empty());
    // Above the handlers, anything goes.
    assert!(check("router/mod.rs", "use crate::{tokens, proxy, admin};").is_empty());
}

#[test]
fn no_import_cycles_between_files() {
    let lib = Library::read();
    if let Some(cycle) = first_cycle(&lib.edges()) {
        panic!(
            "lib.rs says there are no import cycles between files, but {} imports itself:{}",
            cycle[cycle.len() - 1].target.join("::"),
            show(&cycle)
        );
    }
}

/// The most lines a `.rs` file of src/ or tests/ may have.
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_rust_file_of_src_and_tests_is_at_most_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    files.sort();
    assert!(files.len() > 100, "only {} files", files.len());
    for f in files {
        let n = std::fs::read_to_string(&f).unwrap().lines().count();
        assert!(
            n <= MAX_LINES,
            "{} has {n} lines, over the cap of {MAX_LINES}: split it along a seam",
            f.strip_prefix(root).unwrap().display()
        );
    }
}

/// The calls of a `sleep` tests/ may make, each with why it is no poll loop: (file, count).
/// (The needle is spelt in two halves so that grepping tests/ for it counts only calls.)
const TEST_SLEEPS: &[(&str, usize)] = &[
    // The suite's one poll loop, `until` and `until_blocking`.
    ("tests/api/helpers.rs", 2),
    // The fake Centrifugo's `Mode::Hang`: a slow server is what it plays.
    ("tests/api/fake_centrifugo.rs", 1),
    // A request every 50 ms for 3.5 s: the rate the shared limit is measured at.
    ("tests/api/shared_limits.rs", 1),
    // Looks at the URL after a sign-in, for a navigation that commits late.
    ("tests/api/console_browser.rs", 1),
];

#[test]
fn tests_wait_through_the_one_poll_loop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("tests"), &mut files);
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        let n = code_only(&text).matches(concat!("sleep", "(")).count();
        let allowed = TEST_SLEEPS
            .iter()
            .find(|(file, _)| *file == rel)
            .map_or(0, |(_, n)| *n);
        assert!(
            n <= allowed,
            "{rel} calls a sleep {n} times ({allowed} allowed): wait for an event with \
             helpers::until or eventually (tests/api/helpers.rs) instead of a poll loop of its own"
        );
        assert_eq!(n, allowed, "{rel}: TEST_SLEEPS lists a sleep that is gone");
    }
}

/// The statics lib.rs names: (file, what its line declares).
const NAMED_STATICS: &[(&str, &str)] = &[("telemetry/access_log.rs", "static SECOND")];

#[test]
fn no_global_statics_but_the_one_lib_rs_names() {
    let lib = Library::read();
    for rel in &lib.files {
        let text = std::fs::read_to_string(Path::new(SRC).join(rel)).unwrap();
        let code = code_only(&text);
        for (n, line) in code.lines().enumerate() {
            let l = line.trim_start();
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            let l = l.strip_prefix("pub ").unwrap_or(l);
            if !(l.starts_with("static ") || l.contains("thread_local!")) {
                continue;
            }
            let named = NAMED_STATICS.iter().any(|(file, decl)| {
                Path::new(file) == rel && (l.starts_with(decl) || l.contains("thread_local!"))
            });
            assert!(
                named,
                "src/{}:{}: a static lib.rs does not name: {}",
                rel.display(),
                n + 1,
                line.trim()
            );
        }
    }
}

/// The `# Layout` map of lib.rs: each entry (`config`, `centrifugo::protocol`) with its text.
fn layout_map() -> Vec<(Vec<String>, String)> {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    let mut out: Vec<(Vec<String>, String)> = Vec::new();
    for l in lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .skip_while(|l| l.trim() != "# Layout")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('#'))
    {
        match l
            .trim_start()
            .strip_prefix("- [`")
            .and_then(|l| l.split_once("`]"))
        {
            Some((m, rest)) => out.push((m.split("::").map(String::from).collect(), rest.into())),
            None => {
                if let Some((_, text)) = out.last_mut() {
                    text.push_str(l);
                }
            }
        }
    }
    out
}

#[test]
fn the_layout_map_lists_the_lower_layers_first_each_importing_only_what_is_above_it() {
    let map = layout_map();
    let entry_of = |m: &[String]| map.iter().rposition(|(e, _)| m.starts_with(e));
    let lower: Vec<bool> = map.iter().map(|(e, _)| is_lower(e)).collect();
    let first_higher = lower.iter().position(|l| !l).unwrap();
    assert!(
        lower[first_higher..].iter().all(|l| !l),
        "lib.rs says the lower layers come first, but {} is listed after {}",
        map[first_higher + lower[first_higher..].iter().position(|l| *l).unwrap_or(0)]
            .0
            .join("::"),
        map[first_higher].0.join("::")
    );
    let lib = Library::read();
    for (from, edges) in lib.edges() {
        let Some(i) = entry_of(&from).filter(|&i| lower[i]) else {
            continue;
        };
        for e in edges {
            let Some(j) = entry_of(&e.target).filter(|&j| j != i) else {
                continue;
            };
            assert!(
                j < i,
                "lib.rs lists lower layer {} after {}, which imports it ({}: crate::{})",
                map[j].0.join("::"),
                map[i].0.join("::"),
                e.at,
                e.path.join("::")
            );
            assert!(
                !map[i].1.contains("A leaf"),
                "lib.rs calls {} a leaf, but it imports {} ({})",
                map[i].0.join("::"),
                map[j].0.join("::"),
                e.at
            );
        }
    }
}
