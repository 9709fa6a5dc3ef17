//! `strata show`: previews rows of a compiled model or of inline SQL.

use anyhow::{bail, Result};

use super::{Outcome, Session};
use crate::adapter;
use crate::cli::ShowArgs;
use crate::compile::Compiler;
use crate::manifest::ResourceType;

pub fn run(args: &ShowArgs) -> Result<Outcome> {
    let s = Session::open(&args.common)?;
    let adapter = adapter::connect(&s.project.dir, &s.project.target, Some(1))?;
    let compiler = Compiler::new(
        &s.parsed,
        Some(crate::engine::warehouse::AdapterWarehouse::shared(&adapter)),
        crate::artifacts::manifest::graph_json,
    );
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
    let query = adapter
        .dialect()
        .limit_rows(sql.trim().trim_end_matches(';'), args.limit);
    let t = adapter.query(&query).map_err(|e| anyhow::anyhow!("{e}"))?;
    s.reporter
        .info("show", &format!("Previewing node '{label}':"));
    crate::outln!("{}", crate::table::format_table(&t));
    super::drop_in_background(s);
    Ok(Outcome::Success)
}
