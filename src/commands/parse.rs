//! `strata parse`: load and parse the project, write manifest.json.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::{Outcome, Session};
use crate::artifacts::manifest::{self, ManifestMeta};
use crate::cli::CommonArgs;

pub fn run(args: &CommonArgs) -> Result<Outcome> {
    let s = Session::open(args)?;
    std::fs::create_dir_all(&s.target_dir)
        .with_context(|| format!("cannot create {}", s.target_dir.display()))?;
    let path = s.target_dir.join("manifest.json");
    let invocation = s.parsed.jinja.shared.invocation_id.clone();
    let label = s.target_path_label();
    manifest::write(
        &path,
        &s.parsed.manifest,
        &HashMap::new(),
        &ManifestMeta {
            invocation_id: &invocation,
            started_at: s.started_at,
            target_path: &label,
        },
    )?;
    let m = &s.parsed.manifest;
    s.reporter.info(
        "parse",
        &format!(
            "Parsed {} nodes, {} sources, {} macros in {:.2}s; wrote {}",
            m.nodes.len(),
            m.sources.len(),
            m.macros.len(),
            s.started.elapsed().as_secs_f64(),
            path.display()
        ),
    );
    super::drop_in_background(s);
    Ok(Outcome::Success)
}
