//! `strata ls`: print the selected resources as names, paths, selectors or JSON.

use anyhow::Result;
use serde_json::json;

use super::{Outcome, Session};
use crate::cli::{LsArgs, LsOutput};
use crate::manifest::ResourceType;

pub fn run(args: &LsArgs) -> Result<Outcome> {
    let s = Session::open(&args.common)?;
    let selected = s.select()?;
    let m = &s.parsed.manifest;
    let mut out = String::new();
    for id in &selected {
        let line = if let Some(n) = m.nodes.get(id) {
            match args.output {
                LsOutput::Name => n.name.clone(),
                LsOutput::Path => n.original_file_path.clone(),
                LsOutput::Selector => n.fqn.join("."),
                LsOutput::Json => {
                    let mut config = serde_json::Map::new();
                    config.insert("enabled".into(), json!(n.config.enabled));
                    config.insert("materialized".into(), json!(n.config.materialized));
                    for (k, v) in &n.config.all {
                        config.insert(k.clone(), v.clone());
                    }
                    config.insert("tags".into(), json!(n.config.tags));
                    let v = json!({
                        "name": n.name,
                        "resource_type": n.resource_type.as_str(),
                        "package_name": n.package,
                        "original_file_path": n.original_file_path,
                        "unique_id": n.unique_id,
                        "alias": n.alias,
                        "config": config,
                        "tags": n.config.tags,
                        "depends_on": {"macros": n.depends_on_macros, "nodes": n.depends_on_nodes},
                    });
                    filter_keys(v, &args.output_keys)
                }
            }
        } else if let Some(src) = m.sources.get(id) {
            match args.output {
                LsOutput::Name => format!("{}.{}", src.source_name, src.name),
                LsOutput::Path => src.original_file_path.clone(),
                LsOutput::Selector => {
                    format!("source:{}.{}.{}", src.package, src.source_name, src.name)
                }
                LsOutput::Json => filter_keys(
                    json!({
                        "name": src.name,
                        "resource_type": ResourceType::Source.as_str(),
                        "package_name": src.package,
                        "original_file_path": src.original_file_path,
                        "unique_id": src.unique_id,
                        "source_name": src.source_name,
                        "config": src.config.all,
                        "tags": src.tags,
                    }),
                    &args.output_keys,
                ),
            }
        } else if let Some(e) = m.exposures.get(id) {
            match args.output {
                LsOutput::Name => e.name.clone(),
                LsOutput::Path => e.original_file_path.clone(),
                LsOutput::Selector => format!("exposure:{}.{}", e.package, e.name),
                LsOutput::Json => filter_keys(
                    json!({
                        "name": e.name,
                        "resource_type": ResourceType::Exposure.as_str(),
                        "package_name": e.package,
                        "original_file_path": e.original_file_path,
                        "unique_id": e.unique_id,
                        "tags": e.tags,
                        "depends_on": {"nodes": e.depends_on_nodes},
                    }),
                    &args.output_keys,
                ),
            }
        } else {
            continue;
        };
        out.push_str(&line);
        out.push('\n');
    }
    crate::out!("{out}");
    if selected.is_empty() {
        s.reporter.warn("nothing matched the selection");
    }
    super::drop_in_background(s);
    Ok(Outcome::Success)
}

fn filter_keys(v: serde_json::Value, keys: &[String]) -> String {
    let v = match (v, keys.is_empty()) {
        (serde_json::Value::Object(m), false) => {
            serde_json::Value::Object(m.into_iter().filter(|(k, _)| keys.contains(k)).collect())
        }
        (v, _) => v,
    };
    serde_json::to_string(&v).unwrap_or_default()
}
