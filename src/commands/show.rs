//! `strata show`: previews rows of a compiled model or of inline SQL.

use anyhow::{bail, Result};

use super::{Outcome, Session};
use crate::adapter;
use crate::cli::ShowArgs;
use crate::compile::Compiler;
use crate::manifest::ResourceType;

/// Renders rows as a Markdown-style table, as dbt prints them.
pub fn format_table(t: &adapter::Table) -> String {
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.clone().unwrap_or_else(|| "null".into()))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..t.columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .chain([t.columns[i].chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    let mut out = vec![line(t.columns.clone())];
    out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for r in cells {
        out.push(line(r));
    }
    out.join("\n")
}

pub fn run(args: &ShowArgs) -> Result<Outcome> {
    let s = Session::open(&args.common)?;
    let compiler = Compiler::new(&s.parsed);
    let (label, sql) = match &args.inline {
        Some(sql) => ("inline".to_string(), compiler.render_snippet(None, sql)?),
        None => {
            let selected = s.select()?;
            let nodes: Vec<&String> = selected
                .iter()
                .filter(|id| {
                    s.parsed.manifest.nodes.get(*id).is_some_and(|n| {
                        matches!(
                            n.resource_type,
                            ResourceType::Model | ResourceType::Analysis | ResourceType::Snapshot
                        )
                    })
                })
                .collect();
            if args.common.select.is_empty() || nodes.len() != 1 {
                bail!("`strata show` previews one model: pass --select NAME (matched {}) or --inline SQL", nodes.len());
            }
            let ids = nodes.iter().map(|x| x.to_string()).collect();
            let compiled = compiler.compile(&s.graph, &ids)?;
            let id = nodes[0];
            let name = s.parsed.manifest.nodes[id].name.clone();
            (
                name,
                compiled.get(id).map(|c| c.sql.clone()).unwrap_or_default(),
            )
        }
    };
    let adapter = adapter::connect(&s.project.dir, &s.project.target, Some(1))?;
    let query = format!(
        "select * from (\n{}\n) as dbt_show_sbq\nlimit {}",
        sql.trim().trim_end_matches(';'),
        args.limit
    );
    let t = adapter.query(&query).map_err(|e| anyhow::anyhow!("{e}"))?;
    s.reporter
        .info("show", &format!("Previewing node '{label}':"));
    println!("{}", format_table(&t));
    s.finish();
    Ok(Outcome::Success)
}
