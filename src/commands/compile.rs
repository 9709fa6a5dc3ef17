//! `strata compile`: render the selected nodes' SQL and write it with manifest.json.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{Outcome, Session};
use crate::artifacts::manifest::{self, ManifestMeta};
use crate::cli::CompileArgs;
use crate::compile::{write_compiled, Compiler};

pub fn run(args: &CompileArgs) -> Result<Outcome> {
    let s = Session::open(&args.common)?;
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
    manifest?;
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
    s.reporter.info(
        "compile",
        &format!(
            "Compiled {} nodes ({}) in {:.2}s into {}",
            compiled.len(),
            summary.join(", "),
            s.started.elapsed().as_secs_f64(),
            s.target_dir.join("compiled").display()
        ),
    );
    // With an explicit single-node selection, show the SQL like `dbt compile -s x`.
    let explicit: Vec<&String> = selected
        .iter()
        .filter(|id| m.nodes.get(*id).is_some_and(|n| n.test.is_none()))
        .collect();
    if !args.common.select.is_empty() && explicit.len() == 1 {
        if let Some(c) = compiled.get(explicit[0]) {
            crate::outln!("{}", crate::secrets::scrub(&c.sql));
        }
    }
    super::drop_in_background(compiled);
    super::drop_in_background(s);
    Ok(Outcome::Success)
}
