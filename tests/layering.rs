//! The crate's layering, checked from its source: top-level modules import
//! each other without cycles, the lower layers do not reach up, and execution
//! code carries typed errors rather than strings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without its `#[cfg(test)]` module (tests may reach anywhere).
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Top-level module → the top-level modules its non-test code names.
fn module_edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |p: &Path| -> String {
        let rel = p.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    let path_re = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let group_re = regex::Regex::new(r"use crate::\{([^}]*)\}").unwrap();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let from = module_of(p);
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        let code = without_tests(&text);
        let mut named: Vec<String> = path_re
            .captures_iter(code)
            .map(|c| c[1].to_string())
            .collect();
        for g in group_re.captures_iter(code) {
            for part in g[1].split(',') {
                let head = part.trim().split("::").next().unwrap_or_default().trim();
                named.push(head.to_string());
            }
        }
        for to in named {
            if to != from && modules.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

#[test]
fn modules_import_each_other_without_cycles() {
    let edges = module_edges();
    // The scan sees real edges (a scan that finds nothing proves nothing).
    assert!(edges["engine"].contains("materialize") && edges["materialize"].contains("adapter"));
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut cycles = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if reach(to).contains(from) {
                cycles.push(format!("{from} -> {to} -> ... -> {from}"));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn lower_layers_do_not_reach_up() {
    let edges = module_edges();
    let forbidden: &[(&str, &[&str])] = &[
        // Jinja defines the traits it needs; others implement them.
        (
            "jinja",
            &[
                "adapter", "commands", "compile", "engine", "graph", "manifest", "project",
                "report",
            ],
        ),
        // Adapters know SQL and transports, nothing of projects' nodes.
        (
            "adapter",
            &[
                "commands",
                "compile",
                "engine",
                "jinja",
                "manifest",
                "materialize",
            ],
        ),
        // Plans are pure data over the dialect.
        (
            "materialize",
            &[
                "commands", "compile", "engine", "jinja", "manifest", "report",
            ],
        ),
        // The engine reports through events; commands own the terminal.
        ("engine", &["cli", "commands", "report"]),
        ("manifest", &["adapter", "commands", "engine", "graph"]),
        ("graph", &["adapter", "commands", "engine"]),
    ];
    let mut wrong = Vec::new();
    for (from, tos) in forbidden {
        for to in *tos {
            if edges.get(*from).is_some_and(|e| e.contains(*to)) {
                wrong.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn execution_code_has_typed_errors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("engine"), &mut files);
    rust_files(&src.join("materialize"), &mut files);
    files.push(src.join("commands/run.rs"));
    let stringly = regex::Regex::new(r"Result<[^;{]*,\s*String>").unwrap();
    let mut found = Vec::new();
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, line) in text.lines().enumerate() {
            if stringly.is_match(line) {
                found.push(format!("{}:{}: {line}", p.display(), i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "Result<_, String> in execution code:\n{}",
        found.join("\n")
    );
}
