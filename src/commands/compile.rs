//! `strata compile`: render the selected nodes' SQL and write it with manifest.json.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{Loaded, Outcome, Session};
use crate::artifacts::compile_memo::{self, CompileMemo};
use crate::artifacts::manifest::{self, ManifestMeta};
use crate::cli::CompileArgs;
use crate::compile::{write_compiled, Compiler};

pub fn run(args: &CompileArgs) -> Result<Outcome> {
    let loaded = Session::load(&args.common)?;
    // The whole compile is remembered only where the parse cache is used.
    let remember = !args.common.no_partial_parse && !args.no_write;
    let memo_key = remember
        .then(|| compile_memo::key(&loaded.project, &format!("{args:?}")))
        .flatten();
    if let Some(key) = &memo_key {
        if reuse(&loaded, key) {
            return Ok(Outcome::Success);
        }
    }
    let s = loaded.parse()?;
    let t = std::time::Instant::now();
    let selected = s.select()?;
    crate::manifest::parser::timing("select", t);
    // Templates that introspect (run_query, get_columns_in_relation …) see the
    // warehouse, as in dbt; the connection is made only if one asks.
    let (dir, target, threads) = (
        s.project.dir.clone(),
        s.project.target.clone(),
        args.common.threads,
    );
    let warehouse = crate::engine::warehouse::LazyWarehouse::shared(Box::new(move || {
        crate::adapter::connect(&dir, &target, threads)
    }));
    let compiler = Compiler::new(
        &s.parsed,
        Some(warehouse),
        crate::artifacts::manifest::graph_json,
    )
    .with_selected(&selected);
    crate::manifest::parser::timing("resolver", t);
    let compiled = compiler.compile(&s.graph, &selected)?;
    crate::manifest::parser::timing("compile", t);
    std::fs::create_dir_all(&s.target_dir)
        .with_context(|| format!("cannot create {}", s.target_dir.display()))?;
    let invocation = s.parsed.jinja.shared.invocation_id.clone();
    let label = s.target_path_label();
    // Compiled files and manifest.json are independent; write them concurrently.
    let (files, manifest) = rayon::join(
        || {
            if args.no_write {
                Ok(())
            } else {
                write_compiled(&s.target_dir, &compiled)
            }
        },
        || {
            manifest::write(
                &s.target_dir.join("manifest.json"),
                &s.parsed.manifest,
                &compiled,
                &ManifestMeta {
                    invocation_id: &invocation,
                    started_at: s.started_at,
                    target_path: &label,
                },
            )
        },
    );
    files?;
    let metadata = manifest?;
    crate::manifest::parser::timing("write artifacts", t);
    let m = &s.parsed.manifest;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in compiled.keys() {
        if let Some(n) = m.nodes.get(id) {
            *counts.entry(n.resource_type.as_str()).or_default() += 1;
        }
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|(k, v)| match (*k, *v) {
            (k, 1) => format!("1 {k}"),
            ("analysis", n) => format!("{n} analyses"),
            (k, n) => format!("{n} {k}s"),
        })
        .collect();
    let nodes = format!("{} nodes ({})", compiled.len(), summary.join(", "));
    report(&s.reporter, &nodes, s.started, &s.target_dir, false);
    // With an explicit single-node selection, show the SQL like `dbt compile -s x`.
    let explicit: Vec<&String> = selected
        .iter()
        .filter(|id| m.nodes.get(*id).is_some_and(|n| n.test.is_none()))
        .collect();
    let preview = (!args.common.select.is_empty() && explicit.len() == 1)
        .then(|| compiled.get(explicit[0]))
        .flatten()
        .map(|c| crate::secrets::scrub(&c.sql).into_owned());
    if let Some(sql) = &preview {
        crate::outln!("{sql}");
    }
    let effects = s.parsed.jinja.shared.compile_effects();
    let parse_reuse = s.parse_reuse.clone().unwrap_or_default();
    let repeatable = !effects.unrepeatable
        && parse_reuse.stats.uncacheable == 0
        && m.warnings.len() == s.project.warnings.len();
    match memo_key {
        Some(key) if repeatable => {
            let mut env_vars = parse_reuse.env_vars;
            env_vars.extend(effects.env_vars);
            compile_memo::record(
                &s.target_dir,
                compile_memo::Outputs {
                    key,
                    env_vars,
                    manifest: &s.target_dir.join("manifest.json"),
                    metadata,
                    compiled: compiled
                        .values()
                        .map(|c| c.compiled_path.as_str())
                        .collect(),
                    nodes,
                    preview,
                },
            );
        }
        _ => compile_memo::forget(&s.target_dir),
    }
    super::drop_in_background(compiled);
    super::drop_in_background(s);
    Ok(Outcome::Success)
}

fn report(
    reporter: &crate::report::Reporter,
    nodes: &str,
    started: std::time::Instant,
    target_dir: &std::path::Path,
    reused: bool,
) {
    reporter.info(
        "compile",
        &format!(
            "Compiled {nodes} in {:.2}s into {}{}",
            started.elapsed().as_secs_f64(),
            target_dir.join("compiled").display(),
            if reused {
                " (nothing changed since the last compile)"
            } else {
                ""
            }
        ),
    );
}

/// An unchanged project's last compile, reused: `true` when it was.
fn reuse(loaded: &Loaded, key: &crate::manifest::cache::Hash) -> bool {
    let Some(mut memo) = CompileMemo::valid(&loaded.target_dir, key) else {
        return false;
    };
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let fresh = [
        ("generated_at", stamp(chrono::Utc::now())),
        ("invocation_id", uuid::Uuid::new_v4().to_string()),
        ("invocation_started_at", stamp(loaded.started_at)),
        ("run_started_at", stamp(loaded.started_at)),
    ];
    if !memo.reuse(&loaded.target_dir, &fresh) {
        return false;
    }
    crate::manifest::parser::timing("compile reused", loaded.started);
    report(
        &loaded.reporter,
        &memo.nodes,
        loaded.started,
        &loaded.target_dir,
        true,
    );
    if let Some(sql) = &memo.preview {
        crate::outln!("{sql}");
    }
    true
}
