//! The library as a graph of files: every path a file names resolved through the re-exports
//! (`crate::App` is `app::App`, `crate::store::StoreError` is `store::error::StoreError`) to
//! the file that defines it, and the cycles of that graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::scanner::{declared_children, library_files, module_of, reexports, references};
use crate::SRC;

/// One import of one file: where it is written and the file it lands in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// `src/<file>:<line>`.
    pub at: String,
    /// The path as resolved, from the crate root.
    pub path: Vec<String>,
    /// The module (file) the path lands in.
    pub target: Vec<String>,
}

/// Every library file, the modules they are, and what each re-exports.
pub struct Library {
    pub files: Vec<PathBuf>,
    modules: BTreeSet<Vec<String>>,
    /// (module, name) → the path it stands for.
    reexports: BTreeMap<(Vec<String>, String), Vec<String>>,
    texts: Vec<String>,
}

impl Library {
    pub fn read() -> Library {
        let mut files = Vec::new();
        library_files(Path::new(SRC), &mut files);
        let texts: Vec<String> = files
            .iter()
            .map(|rel| std::fs::read_to_string(Path::new(SRC).join(rel)).unwrap())
            .collect();
        Library::from_texts(files, texts)
    }

    pub fn from_texts(files: Vec<PathBuf>, texts: Vec<String>) -> Library {
        let modules = files.iter().map(|f| module_of(f)).collect();
        let mut map = BTreeMap::new();
        for (rel, text) in files.iter().zip(&texts) {
            let module = module_of(rel);
            for (name, path) in reexports(&module, &declared_children(text), text) {
                map.insert((module.clone(), name), path);
            }
        }
        Library {
            files,
            modules,
            reexports: map,
            texts,
        }
    }

    /// `path` with every re-export followed, and the module (file) it lands in.
    pub fn resolve(&self, path: &[String]) -> (Vec<String>, Vec<String>) {
        let mut p: Vec<String> = path.iter().filter(|s| *s != "self").cloned().collect();
        for _ in 0..16 {
            let k = (0..=p.len())
                .rev()
                .find(|&k| self.modules.contains(&p[..k]))
                .unwrap_or(0);
            if let Some(next) = p
                .get(k)
                .and_then(|name| self.reexports.get(&(p[..k].to_vec(), name.clone())))
            {
                let mut q = next.clone();
                q.extend(p[k + 1..].iter().cloned());
                if q != p {
                    p = q;
                    continue;
                }
            }
            return (p.clone(), p[..k].to_vec());
        }
        panic!("re-exports of {path:?} do not end")
    }

    /// Every `crate::`/`super::` path of the file `rel`, resolved.
    pub fn edges_of(&self, rel: &Path, text: &str) -> Vec<Edge> {
        let module = module_of(rel);
        references(&module, text)
            .into_iter()
            .map(|r| {
                let (path, target) = self.resolve(&r.path);
                Edge {
                    at: format!("src/{}:{}", rel.display(), r.line),
                    path,
                    target,
                }
            })
            .collect()
    }

    /// Every file with its resolved imports.
    pub fn edges(&self) -> Vec<(Vec<String>, Vec<Edge>)> {
        self.files
            .iter()
            .zip(&self.texts)
            .map(|(rel, text)| (module_of(rel), self.edges_of(rel, text)))
            .collect()
    }
}

/// True when one module is the other or holds it: a module and its own children may name
/// each other.
pub fn related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The first import cycle between files (not a module and its own children), as the edges
/// that close it, or None.
pub fn first_cycle(edges: &[(Vec<String>, Vec<Edge>)]) -> Option<Vec<Edge>> {
    let mut graph: BTreeMap<&[String], Vec<&Edge>> = BTreeMap::new();
    for (from, out) in edges {
        let list = graph.entry(from.as_slice()).or_default();
        for e in out {
            if !related(from, &e.target) && !list.iter().any(|x| x.target == e.target) {
                list.push(e);
            }
        }
    }
    // Depth first from every file in order; `stack` is the path of edges taken.
    let mut done: BTreeSet<&[String]> = BTreeSet::new();
    for &start in graph.keys() {
        let mut stack: Vec<&Edge> = Vec::new();
        if let Some(c) = visit(&graph, start, &mut stack, &mut vec![start], &mut done) {
            return Some(c);
        }
    }
    None
}

fn visit<'a>(
    graph: &BTreeMap<&'a [String], Vec<&'a Edge>>,
    at: &'a [String],
    stack: &mut Vec<&'a Edge>,
    on_path: &mut Vec<&'a [String]>,
    done: &mut BTreeSet<&'a [String]>,
) -> Option<Vec<Edge>> {
    if done.contains(at) {
        return None;
    }
    for &e in graph.get(at).map(Vec::as_slice).unwrap_or(&[]) {
        let next = e.target.as_slice();
        if let Some(i) = on_path.iter().position(|m| *m == next) {
            let mut cycle: Vec<Edge> = stack[i..].iter().map(|e| (*e).clone()).collect();
            cycle.push(e.clone());
            return Some(cycle);
        }
        stack.push(e);
        on_path.push(next);
        if let Some(c) = visit(graph, next, stack, on_path, done) {
            return Some(c);
        }
        on_path.pop();
        stack.pop();
    }
    done.insert(at);
    None
}

/// A cycle as text: `a -> b (src/a.rs:3) -> a (src/b.rs:9)`.
pub fn show(cycle: &[Edge]) -> String {
    let mut s = String::new();
    for e in cycle {
        s.push_str(&format!(
            "\n  -> {} ({}: crate::{})",
            e.target.join("::"),
            e.at,
            e.path.join("::")
        ));
    }
    s
}

// ------------------------------------------------------------------------------ tested

fn library(files: &[(&str, &str)]) -> Library {
    Library::from_texts(
        files.iter().map(|(f, _)| PathBuf::from(f)).collect(),
        files.iter().map(|(_, t)| t.to_string()).collect(),
    )
}

fn strings(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

#[test]
fn paths_resolve_through_re_exports_to_the_defining_file() {
    let lib = library(&[
        (
            "lib.rs",
            "pub mod app;\npub mod store;\npub use app::App;\n",
        ),
        ("app.rs", "pub struct App;\n"),
        (
            "store/mod.rs",
            "mod error;\npub use error::{StoreError as Failure, Conflict};\n",
        ),
        ("store/error.rs", "pub struct StoreError;\n"),
    ]);
    let r = |p: &[&str]| lib.resolve(&strings(p)).1.join("::");
    assert_eq!(r(&["App"]), "app");
    assert_eq!(r(&["app", "App"]), "app");
    assert_eq!(r(&["store", "Failure"]), "store::error");
    assert_eq!(r(&["store", "Conflict"]), "store::error");
    assert_eq!(r(&["store", "self"]), "store");
    assert_eq!(r(&["now_unix"]), "");
}

#[test]
fn a_cycle_between_files_is_found_and_a_module_with_its_children_is_not_one() {
    let lib = library(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a/mod.rs", "mod x;\nuse x::X;\n"),
        ("a/x.rs", "use super::Y;\nuse crate::c::C;\n"),
        ("b.rs", "use crate::c::C;\n"),
        ("c.rs", "fn f() { crate::a::x::X; }\n"),
    ]);
    let cycle = first_cycle(&lib.edges()).expect("a::x -> c -> a::x");
    let shown = show(&cycle);
    assert!(shown.contains("-> c (src/a/x.rs:2"), "{shown}");
    assert!(shown.contains("-> a::x (src/c.rs:1"), "{shown}");
    let lib = library(&[
        ("lib.rs", "pub mod a;\n"),
        ("a/mod.rs", "mod x;\nuse x::X;\npub struct Y;\n"),
        ("a/x.rs", "use super::Y;\nuse crate::a::Y as Z;\n"),
    ]);
    assert_eq!(first_cycle(&lib.edges()), None);
}
