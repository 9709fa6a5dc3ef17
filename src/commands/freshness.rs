//! `strata source freshness`: how old the newest row of each source table is,
//! against its `warn_after`/`error_after`; writes sources.json (dbt v3).

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value as Json};

use super::{Outcome, Session};
use crate::adapter;
use crate::cli::CommonArgs;
use crate::manifest::Source;

fn seconds(t: Option<&Json>) -> Option<f64> {
    let t = t?;
    let count = t.get("count")?.as_f64()?;
    let unit = match t.get("period")?.as_str()? {
        "minute" => 60.0,
        "hour" => 3600.0,
        "day" => 86400.0,
        _ => return None,
    };
    Some(count * unit)
}

/// Freshness applies when the table (or its source) configures a threshold.
fn criteria(s: &Source) -> Option<Json> {
    let f = s
        .config
        .get("freshness")
        .filter(|f| f.is_object())
        .or(Some(&s.freshness))
        .filter(|f| f.is_object())?;
    if f.get("warn_after").is_none_or(Json::is_null)
        && f.get("error_after").is_none_or(Json::is_null)
    {
        return None;
    }
    Some(json!({
        "warn_after": f.get("warn_after").cloned().unwrap_or(Json::Null),
        "error_after": f.get("error_after").cloned().unwrap_or(Json::Null),
        "filter": f.get("filter").cloned().unwrap_or(Json::Null),
    }))
}

pub fn run(args: &CommonArgs) -> Result<Outcome> {
    let s = Session::open(args)?;
    let m = &s.parsed.manifest;
    let selected = s.select()?;
    let sources: Vec<&Source> = selected
        .iter()
        .filter_map(|id| m.sources.get(id))
        .filter(|src| criteria(src).is_some())
        .collect();
    let adapter = adapter::connect(&s.project.dir, &s.project.target, Some(1))?;
    let rep = s.reporter;
    let started = Instant::now();
    let mut results = Vec::new();
    let mut failed = false;
    let total = sources.len();
    for (i, src) in sources.iter().enumerate() {
        let crit = criteria(src).unwrap_or(Json::Null);
        let label = format!("{}.{}", src.source_name, src.name);
        rep.info(
            "freshness_start",
            &format!("{} of {total} START freshness of {label}", i + 1),
        );
        let t0 = chrono::Utc::now();
        let clock = Instant::now();
        let filter = crit.get("filter").and_then(Json::as_str);
        let d = adapter.dialect();
        let sql = match (&src.loaded_at_query, &src.loaded_at_field) {
            (Some(q), _) => q.clone(),
            (None, Some(field)) => d.max_loaded_at(field, &src.relation_name, filter),
            // A table Strata loads: the last load in its history.
            (None, None) if src.external.is_some() => {
                let id =
                    crate::adapter::RelationId::new(&src.database, &src.schema, &src.identifier);
                format!(
                    "select max(loaded_at) from {} where target_relation = {}",
                    crate::materialize::load::history_relation(d, &id),
                    d.quote_literal(&src.relation_name)
                )
            }
            (None, None) => {
                results.push(json!({"unique_id": src.unique_id, "error": "no loaded_at_field or loaded_at_query", "status": "runtime error"}));
                rep.error(&format!("{} of {total} ERROR freshness of {label}: no loaded_at_field or loaded_at_query", i + 1));
                failed = true;
                continue;
            }
        };
        let out = adapter.query(&d.freshness(&sql));
        let secs = clock.elapsed().as_secs_f64();
        match out {
            Err(e) => {
                failed = true;
                rep.error(&format!(
                    "{} of {total} ERROR freshness of {label}: {}",
                    i + 1,
                    e.message
                ));
                results.push(json!({"unique_id": src.unique_id, "error": e.message, "status": "runtime error"}));
            }
            Ok(t) => {
                let row = t.rows.first().cloned().unwrap_or_default();
                let age: f64 = match row.get(2) {
                    Some(a) => a.as_deref().and_then(|a| a.parse().ok()),
                    None => age_between(
                        row.first().cloned().flatten().as_deref(),
                        row.get(1).cloned().flatten().as_deref(),
                    ),
                }
                .unwrap_or(f64::INFINITY);
                let status = if seconds(crit.get("error_after")).is_some_and(|e| age > e) {
                    "error"
                } else if seconds(crit.get("warn_after")).is_some_and(|w| age > w) {
                    "warn"
                } else {
                    "pass"
                };
                let word = match status {
                    "error" => "ERROR STALE",
                    "warn" => "WARN",
                    _ => "PASS",
                };
                let line = format!(
                    "{} of {total} {word} freshness of {label} [{word} in {secs:.2}s]",
                    i + 1
                );
                match status {
                    "error" => {
                        failed = true;
                        rep.error(&line)
                    }
                    "warn" => rep.warn(&line),
                    _ => rep.info("freshness_ok", &line),
                }
                let ts = |v: Option<String>| v.map(|s| s.replace(' ', "T")).unwrap_or_default();
                results.push(json!({
                    "unique_id": src.unique_id,
                    "max_loaded_at": ts(row.first().cloned().flatten()),
                    "snapshotted_at": ts(row.get(1).cloned().flatten()),
                    "max_loaded_at_time_ago_in_s": if age.is_finite() { age } else { -1.0 },
                    "status": status,
                    "criteria": crit,
                    "adapter_response": {},
                    "timing": [{"name": "execute", "started_at": t0.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "completed_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}],
                    "thread_id": "Thread-1",
                    "execution_time": secs,
                }));
            }
        }
    }
    let doc = json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json",
            "dbt_version": crate::artifacts::manifest::DBT_VERSION,
            "generated_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "invocation_id": s.parsed.jinja.shared.invocation_id,
            "invocation_started_at": s.started_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "env": {},
        },
        "results": results,
        "elapsed_time": started.elapsed().as_secs_f64(),
    });
    std::fs::create_dir_all(&s.target_dir)
        .with_context(|| format!("cannot create {}", s.target_dir.display()))?;
    let path = s.target_dir.join("sources.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    rep.info(
        "freshness_done",
        &format!(
            "Done. {total} source table{} checked; wrote {}",
            if total == 1 { "" } else { "s" },
            path.display()
        ),
    );
    super::drop_in_background(s);
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// Seconds from `from` to `to`, two naive timestamps as the warehouse prints them.
fn age_between(from: Option<&str>, to: Option<&str>) -> Option<f64> {
    let parse = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .or_else(|| {
                chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
                    .ok()
                    .map(|t| t.naive_utc())
            })
    };
    let (from, to) = (parse(from?)?, parse(to?)?);
    Some((to - from).num_milliseconds() as f64 / 1000.0)
}
