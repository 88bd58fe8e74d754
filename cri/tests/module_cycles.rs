//! The daemon's top-level modules depend on each other in one direction
//! only. A cycle (sandbox ↔ container, a domain module reaching into the
//! gRPC handlers, …) is a sign a helper sits in the wrong place; this test
//! keeps the tree free of them. It reads `crate::<module>` paths in the
//! non-test code of every top-level module under src/ and fails on any
//! cycle, naming the files of each edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file of a top-level module (a file or a directory).
fn files_of(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).expect("read module dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The code of a file without its `#[cfg(test)]` module (tests may reach
/// anywhere) and without comments.
fn non_test_code(src: &str) -> String {
    let cut = src
        .match_indices("#[cfg(test)]")
        .map(|(i, _)| i)
        .find(|&i| {
            src[i..]
                .lines()
                .nth(1)
                .is_some_and(|next| next.split_whitespace().any(|w| w == "mod"))
        });
    let code = cut.map_or(src, |i| &src[..i]);
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Files that are whole `#[cfg(test)]` modules (`#[cfg(test)] mod x;`):
/// test code, which may reach anywhere.
fn test_only_files(src: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files_of(src) {
        let text = std::fs::read_to_string(&f).expect("read source");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // A module file's children sit beside it (lib.rs, mod.rs) or in
        // the directory named after it.
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let parent = f.parent().unwrap_or(src);
        let dir = if stem == "lib" || stem == "mod" || stem == "main" {
            parent.to_path_buf()
        } else {
            parent.join(stem)
        };
        for w in lines.windows(2) {
            if w[0] != "#[cfg(test)]" {
                continue;
            }
            let decl = w[1].strip_prefix("pub ").unwrap_or(w[1]);
            if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

/// The top-level modules `code` names through `crate::`.
fn referenced(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c}`
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn no_module_depends_on_itself_through_another() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let test_only = test_only_files(&src);
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(&src).expect("read src").flatten() {
        let p = e.path();
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 module name")
            .to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        if test_only.contains(&p) {
            continue;
        }
        if p.is_dir() || p.extension().is_some_and(|x| x == "rs") {
            modules.insert(name, p);
        }
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    // edges[a][b]: the files of `a` that name `b`.
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>> = BTreeMap::new();
    for (m, path) in &modules {
        for f in files_of(path) {
            if test_only.contains(&f) {
                continue;
            }
            let code = non_test_code(&std::fs::read_to_string(&f).expect("read source"));
            for to in referenced(&code, &names) {
                if &to != m {
                    let rel = f.strip_prefix(&src).unwrap_or(&f).to_path_buf();
                    edges
                        .entry(m.clone())
                        .or_default()
                        .entry(to)
                        .or_default()
                        .insert(rel);
                }
            }
        }
    }
    // A cycle exists iff some module reaches itself: search from each.
    let mut cycles = Vec::new();
    for start in &names {
        let mut path = vec![start.clone()];
        if let Some(cycle) = find_back(start, start, &edges, &mut path, &mut BTreeSet::new()) {
            let mut key = cycle.clone();
            key.sort();
            if !cycles.iter().any(|(k, _): &(Vec<String>, _)| *k == key) {
                cycles.push((key, cycle));
            }
        }
    }
    let report: Vec<String> = cycles
        .iter()
        .map(|(_, cycle)| {
            let hops: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("  {} -> {} in {:?}", w[0], w[1], edges[&w[0]][&w[1]]))
                .collect();
            format!("{}\n{}", cycle.join(" -> "), hops.join("\n"))
        })
        .collect();
    assert!(
        report.is_empty(),
        "module cycles in cri/src:\n{}",
        report.join("\n")
    );
}

/// Depth-first search for a path from `at` back to `start`; the cycle as
/// a list of modules beginning and ending with `start`.
fn find_back(
    start: &str,
    at: &str,
    edges: &BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in edges.get(at).map(|m| m.keys()).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start.to_string());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = find_back(start, next, edges, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}
