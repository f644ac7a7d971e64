//! The scanner: a library file's module path, its text with comments and literals blanked,
//! and every `crate::`/`super::` path and `pub use` re-export in it, as paths from the crate
//! root.

use std::path::{Path, PathBuf};

use crate::SRC;

/// One `crate::…` or `super::…` path in a file, resolved to an absolute module path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub line: usize,
    /// Segments after `crate`, as written (`["proxy", "decision", "Reason"]`).
    pub path: Vec<String>,
}

/// The module path of a library file: `src/a/b.rs` and `src/a/b/mod.rs` are `["a", "b"]`;
/// `lib.rs` is the crate root (`[]`).
pub fn module_of(rel: &Path) -> Vec<String> {
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
pub fn code_only(text: &str) -> String {
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

pub fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every `crate::` and `super::` path in `text` (a file of module `module`), resolved to a
/// path from the crate root. `use` groups (`crate::{a::b, c::{d, e}}`) give one path per leaf;
/// `super` counts inline `mod x { … }` blocks; `$crate` (macros) is not a path of this file.
pub fn references(module: &[String], text: &str) -> Vec<Reference> {
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
        // `name as alias`: the path is `name`'s; the alias is read by `reexports`.
        if b[k..].starts_with(b"as") && b.get(k + 2).is_some_and(|c| c.is_ascii_whitespace()) {
            i = skip_ws(k + 2);
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
        return i;
    }
}

/// Every library file under `dir`, relative to src/ (main.rs and build.rs are not the library).
pub fn library_files(dir: &Path, out: &mut Vec<PathBuf>) {
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

/// Every `pub use` (any visibility but private) in `text`, a file of `module`, as (the name it
/// is known by in `module`, the path it stands for from the crate root). A path that starts at
/// `crate`, `super`, `self` or one of `children` (the modules declared in the file) is resolved;
/// one into another crate is left out, and so is a glob.
pub fn reexports(module: &[String], children: &[String], text: &str) -> Vec<(String, Vec<String>)> {
    let code = code_only(text);
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (pos, _) in code.match_indices("pub") {
        if pos > 0 && is_ident(b[pos - 1]) {
            continue;
        }
        let mut i = pos + 3;
        if b.get(i) == Some(&b'(') {
            i += code[i..].find(')').map_or(0, |p| p + 1);
        }
        let rest = code[i..].trim_start();
        let Some(tree) = rest.strip_prefix("use ") else {
            continue;
        };
        let start = code.len() - tree.len();
        let end = start + tree.find(';').unwrap_or(tree.len());
        let stmt = &code[start..end];
        let mut leaves = Vec::new();
        use_tree(stmt.as_bytes(), 0, Vec::new(), &mut leaves);
        let aliases = aliases(stmt);
        for leaf in leaves {
            let Some(abs) = absolute(module, children, &leaf) else {
                continue;
            };
            let last = leaf.last().cloned().unwrap_or_default();
            let name = aliases
                .iter()
                .find(|(from, _)| *from == last)
                .map_or(last, |(_, to)| to.clone());
            out.push((name, abs));
        }
    }
    out
}

/// `(name, alias)` for each `name as alias` in a use statement.
fn aliases(stmt: &str) -> Vec<(String, String)> {
    let words: Vec<&str> = stmt
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(3)
        .filter(|w| w[1] == "as")
        .map(|w| (w[0].to_string(), w[2].to_string()))
        .collect()
}

/// A `use` path of a file of `module` as a path from the crate root, when it is one of ours.
fn absolute(module: &[String], children: &[String], leaf: &[String]) -> Option<Vec<String>> {
    let mut base = module.to_vec();
    let mut rest = leaf;
    match rest.first()?.as_str() {
        "crate" => {
            base.clear();
            rest = &rest[1..];
        }
        "self" => rest = &rest[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        first if children.iter().any(|c| c == first) => {}
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The modules a file declares (`mod name;`, any visibility): its children.
pub fn declared_children(text: &str) -> Vec<String> {
    code_only(text)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub(super) "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

// ------------------------------------------------------------------------------ tested

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
fn re_exports_are_read_with_their_aliases_and_only_ours() {
    let module = vec!["proxy".to_string()];
    let children = vec!["wire".to_string()];
    let text = "pub use crate::metrics::ProxyOutcome as Outcome;\n\
        pub(crate) use wire::{parse, SessionRequest};\n\
        pub use serde_json::Value;\nuse crate::store::Store;\n// pub use crate::app::App;\n";
    let got: Vec<(String, String)> = reexports(&module, &children, text)
        .into_iter()
        .map(|(n, p)| (n, p.join("::")))
        .collect();
    let want = [
        ("Outcome", "metrics::ProxyOutcome"),
        ("parse", "proxy::wire::parse"),
        ("SessionRequest", "proxy::wire::SessionRequest"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
}
