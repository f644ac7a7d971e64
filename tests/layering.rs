//! The layering of `src/`, read from the source: every `crate::` (and `super::`) path in every
//! library file, comments and string literals left out, resolved to the module it names.
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
//!
//! A module `foo` is `src/foo.rs` or `src/foo/` alike, so the rules hold while files become
//! directories. See the `# Architecture invariants` in src/lib.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

// ------------------------------------------------------------------------------ the scanner

/// One `crate::…` or `super::…` path in a file, resolved to an absolute module path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    line: usize,
    /// Segments after `crate`, as written (`["proxy", "decision", "Reason"]`).
    path: Vec<String>,
}

/// The module path of a library file: `src/a/b.rs` and `src/a/b/mod.rs` are `["a", "b"]`;
/// `lib.rs` is the crate root (`[]`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.strip_suffix(".rs").unwrap().to_string();
    if stem != "mod" && !(parts.is_empty() && stem == "lib") {
        parts.push(stem);
    }
    parts
}

/// `text` with comments and string/char literals blanked out (newlines kept, so offsets still
/// give line numbers).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (1, 2);
            while j < rest.len() && depth > 0 {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if let Some(hashes) = raw_string_start(rest) {
            // r"…", r#"…"#, br#"…"#: ends at a quote followed by the same number of #.
            let open = rest.iter().position(|&c| c == b'"').unwrap() + 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = rest[open..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| open + p + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), which is code.
            let end = if rest.get(1) == Some(&b'\\') {
                rest.get(3..)
                    .and_then(|r| r.iter().position(|&c| c == b'\''))
                    .map(|p| p + 4)
            } else {
                let after = 1 + rest.get(1).map_or(1, |&c| utf8_len(c));
                (rest.get(after) == Some(&b'\'')).then_some(after + 1)
            };
            match end {
                Some(end) => {
                    blank(&mut out, &rest[..end]);
                    i += end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            // Multi-byte characters are copied whole.
            let len = utf8_len(rest[0]);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// The number of `#` of a raw string starting here (`r"`, `r#"`, `br##"` …), if one does.
fn raw_string_start(s: &[u8]) -> Option<usize> {
    let s = s.strip_prefix(b"b").unwrap_or(s);
    let s = s.strip_prefix(b"r")?;
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    (s.get(hashes) == Some(&b'"')).then_some(hashes)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every `crate::` and `super::` path in `text` (a file of module `module`), resolved to a
/// path from the crate root. `use` groups (`crate::{a::b, c::{d, e}}`) give one path per leaf;
/// `super` counts inline `mod x { … }` blocks; `$crate` (macros) is not a path of this file.
fn references(module: &[String], text: &str) -> Vec<Reference> {
    let code = code_only(text);
    let b = code.as_bytes();
    let line_at = |pos: usize| code[..pos].matches('\n').count() + 1;
    // Inline modules: (brace depth inside the block, name).
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let at_word = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b'$' || b[i - 1] == b':');
        if c == b'{' {
            depth += 1;
            i += 1;
        } else if c == b'}' {
            if inline.last().is_some_and(|(d, _)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
        } else if at_word && code[i..].starts_with("mod ") {
            // `mod name {` opens an inline module; `mod name;` is a file, seen on its own.
            let rest = &code[i + 4..];
            let name: String = rest
                .trim_start()
                .bytes()
                .take_while(|&c| is_ident(c))
                .map(char::from)
                .collect();
            let after = rest.trim_start()[name.len()..].trim_start();
            if !name.is_empty() && after.starts_with('{') {
                let brace = i + 4 + (rest.len() - after.len());
                depth += 1;
                inline.push((depth, name));
                i = brace + 1;
            } else {
                i += 4;
            }
        } else if at_word && (code[i..].starts_with("crate::") || code[i..].starts_with("super::"))
        {
            let line = line_at(i);
            let mut base: Vec<String> = Vec::new();
            let mut j = i;
            if code[j..].starts_with("crate::") {
                j += "crate::".len();
            } else {
                base = module.to_vec();
                base.extend(inline.iter().map(|(_, n)| n.clone()));
                while code[j..].starts_with("super::") {
                    base.pop();
                    j += "super::".len();
                }
            }
            let mut paths = Vec::new();
            j = use_tree(b, j, base, &mut paths);
            out.extend(paths.into_iter().map(|path| Reference { line, path }));
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads a path or `use` tree at `i` (after `crate::`), pushing each leaf path (prefixed by
/// `prefix`) to `out`; returns where it ended.
fn use_tree(b: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut path = prefix;
    loop {
        i = skip_ws(i);
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                i = skip_ws(i);
                if i >= b.len() {
                    return i;
                }
                if b[i] == b'}' {
                    return i + 1;
                }
                if b[i] == b',' {
                    i += 1;
                    continue;
                }
                let before = i;
                i = use_tree(b, i, path.clone(), out);
                if i == before {
                    i += 1;
                }
            }
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i > start {
            path.push(String::from_utf8_lossy(&b[start..i]).into_owned());
        } else if i < b.len() && b[i] == b'*' {
            i += 1;
        }
        let k = skip_ws(i);
        if b[k..].starts_with(b"::") {
            i = k + 2;
            continue;
        }
        if !path.is_empty() {
            out.push(path);
        }
        return i;
    }
}

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

/// Every broken rule for one file (`rel` under src/), as `src/<file>:<line>: …`.
fn violations(rel: &Path, text: &str) -> Vec<String> {
    let module = module_of(rel);
    let lower = is_lower(&module);
    let family = handler_family(&module);
    let mut out = Vec::new();
    for r in references(&module, text) {
        let Some(target) = r.path.first().map(String::as_str) else {
            continue;
        };
        let shown = format!("crate::{}", r.path.join("::"));
        let at = format!("src/{}:{}", rel.display(), r.line);
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
fn app_mentions(rel: &Path, text: &str) -> Vec<String> {
    let module = module_of(rel);
    let Some(family) = handler_family(&module) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in references(&module, text) {
        if r.path.first().is_some_and(|t| t == "app" || t == "App") {
            out.push(format!(
                "src/{}:{}: handler `{family}` names crate::{}",
                rel.display(),
                r.line,
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

/// Every library file under `dir`, relative to src/ (main.rs and build.rs are not the library).
fn library_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            library_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(SRC).unwrap().to_path_buf();
            if rel != Path::new("main.rs") && rel != Path::new("build.rs") {
                out.push(rel);
            }
        }
    }
}

#[test]
fn lower_layers_never_import_handlers_and_handlers_never_import_each_other() {
    let mut files = Vec::new();
    library_files(Path::new(SRC), &mut files);
    assert!(files.len() > 20, "only {} files under src/", files.len());
    let mut all = Vec::new();
    for rel in &files {
        let text = std::fs::read_to_string(Path::new(SRC).join(rel)).unwrap();
        all.extend(violations(rel, &text));
    }
    assert!(
        all.is_empty(),
        "{} layering violation(s):\n{}",
        all.len(),
        all.join("\n")
    );
}

#[test]
fn no_handler_file_mentions_app() {
    let mut files = Vec::new();
    library_files(Path::new(SRC), &mut files);
    let handlers = files
        .iter()
        .filter(|f| handler_family(&module_of(f)).is_some())
        .count();
    assert!(handlers >= HANDLERS.len(), "only {handlers} handler files");
    let mut all = Vec::new();
    for rel in &files {
        let text = std::fs::read_to_string(Path::new(SRC).join(rel)).unwrap();
        all.extend(app_mentions(rel, &text));
    }
    assert!(
        all.is_empty(),
        "a handler must get its family's context (router/context.rs), never the App:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_app_check_sees_every_way_a_handler_could_name_the_app() {
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
            !app_mentions(handler, text).is_empty(),
            "not caught: {text}"
        );
    }
    for text in [
        "// App in a comment\nfn f() {}\n",
        "const S: &str = \"App\";\n",
        "fn f(a: &AppConfig, b: Happy) {}\n",
    ] {
        assert_eq!(app_mentions(handler, text), Vec::<String>::new(), "{text}");
    }
    // Only handler files are held to it: the router builds the contexts from the App.
    assert!(app_mentions(Path::new("router/context.rs"), "use crate::app::App;\n").is_empty());
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

// ------------------------------------------------------------------------------ the scanner, tested

fn paths(module: &[&str], text: &str) -> Vec<(usize, String)> {
    let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    references(&module, text)
        .into_iter()
        .map(|r| (r.line, r.path.join("::")))
        .collect()
}

#[test]
fn the_scanner_reads_every_form_of_path_and_nothing_else() {
    let text = r##"//! Docs naming [`crate::tokens`] are not imports.
use crate::{
    store::{self, Store},
    proxy::decision::Reason, // crate::app in a comment
};
use crate::app::App;
fn f() {
    let s = "crate::cli in a string";
    let r = r#"crate::router in a raw string"#;
    let c = '"';
    crate::router::route(c);
    /* crate::admin in a block comment */
    let _ = super::super::tokens::mint;
}
mod tests {
    use super::*;
    use super::helper;
}
macro_rules! m { () => { $crate::verify::x() } }
"##;
    assert_eq!(
        paths(&["proxy", "connect"], text),
        vec![
            (2, "store::self".to_string()),
            (2, "store::Store".to_string()),
            (2, "proxy::decision::Reason".to_string()),
            (6, "app::App".to_string()),
            (11, "router::route".to_string()),
            (13, "tokens::mint".to_string()),
            (16, "proxy::connect".to_string()),
            (17, "proxy::connect::helper".to_string()),
        ]
    );
}

#[test]
fn the_rules_flag_what_the_layering_forbids_and_nothing_more() {
    let check = |file: &str, text: &str| violations(Path::new(file), text);
    // Lower layers: handlers, router, cli, app are out; other lower layers are fine.
    let v = check(
        "metrics.rs",
        "use crate::proxy::decision::Reason;\nuse crate::config::Config;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("src/metrics.rs:1: lower layer `metrics` imports handler `proxy`"));
    for target in ["router::Route", "cli::Cli", "app::App", "tokens::x"] {
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
