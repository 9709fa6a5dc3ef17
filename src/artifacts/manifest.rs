//! manifest.json (dbt schema v12), serialized node by node in parallel.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use serde_json::{json, Map, Value as Json};

use crate::compile::CompiledNode;
use crate::error::Error;
use crate::graph::Graph;
use crate::manifest::{Column, Exposure, Manifest, Node, ResourceType, Source};

pub const SCHEMA_URL: &str = "https://schemas.getdbt.com/dbt/manifest/v12.json";
pub const DBT_VERSION: &str = "1.12.0";

fn obj(v: Json) -> Map<String, Json> {
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

fn node_config(n: &Node) -> Json {
    let mut base = match n.resource_type {
        ResourceType::Test => json!({
            "enabled": true, "alias": null, "schema": "dbt_test__audit", "database": null,
            "tags": [], "meta": {}, "group": null, "static_analysis": null, "materialized": "test", "severity": "ERROR",
            "store_failures": null, "store_failures_as": null, "sql_header": null, "where": null, "limit": null,
            "fail_calc": "count(*)", "warn_if": "!= 0", "error_if": "!= 0",
        }),
        _ => {
            let mut b = json!({
                "enabled": true, "alias": null, "schema": null, "database": null, "tags": [],
                "meta": {}, "group": null, "static_analysis": null, "materialized": n.config.materialized,
                "incremental_strategy": null, "batch_size": null, "lookback": 1, "begin": null,
                "persist_docs": {}, "post-hook": [], "pre-hook": [], "quoting": {},
                "column_types": {}, "full_refresh": null, "unique_key": null,
                "on_schema_change": "ignore", "on_configuration_change": "apply", "grants": {},
                "packages": [], "docs": {"show": true, "node_color": null},
                "contract": {"enforced": false, "alias_types": true},
                "event_time": null, "concurrent_batches": null,
            });
            match n.resource_type {
                ResourceType::Model => {
                    b["access"] = json!("protected");
                    b["latest_version_pointer"] = json!({"enabled": null, "alias": null});
                    b["freshness"] = Json::Null;
                    b["on_error"] = Json::Null;
                }
                ResourceType::Seed => {
                    b["delimiter"] = json!(",");
                    b["quote_columns"] = Json::Null;
                }
                ResourceType::Snapshot => {
                    for k in [
                        "strategy",
                        "target_schema",
                        "target_database",
                        "updated_at",
                        "check_cols",
                    ] {
                        b[k] = Json::Null;
                    }
                    b["snapshot_meta_column_names"] = json!({});
                    b["dbt_valid_to_current"] = Json::Null;
                }
                _ => {}
            }
            b
        }
    };
    if let Some(m) = base.as_object_mut() {
        for (k, v) in &n.config.all {
            m.insert(k.clone(), v.clone());
        }
        m.insert("tags".into(), json!(n.config.tags));
        m.insert("enabled".into(), json!(n.config.enabled));
    }
    base
}

fn columns_json(cols: &indexmap::IndexMap<String, Column>) -> Json {
    Json::Object(
        cols.iter()
            .map(|(k, c)| {
                (
                    k.clone(),
                    json!({
                        "name": c.name, "description": c.description, "meta": c.meta,
                        "data_type": c.data_type, "constraints": c.constraints, "quote": c.quote,
                        "config": {"meta": c.meta, "tags": c.tags}, "tags": c.tags,
                        "granularity": null, "doc_blocks": [],
                    }),
                )
            })
            .collect(),
    )
}

/// One node as manifest JSON; `compiled` adds the compile-time fields.
pub fn node_json(
    n: &Node,
    m: &Manifest,
    compiled: Option<&CompiledNode>,
    target_path: &str,
) -> Json {
    let refs: Vec<Json> = n
        .refs
        .iter()
        .map(|r| json!({"name": r.name, "package": r.package, "version": r.version}))
        .collect();
    let sources: Vec<Json> = n.sources.iter().map(|(s, t)| json!([s, t])).collect();
    let mut v = json!({
        "database": n.database,
        "schema": n.schema,
        "name": n.name,
        "resource_type": n.resource_type.as_str(),
        "package_name": n.package,
        "path": n.path,
        "original_file_path": n.original_file_path,
        "unique_id": n.unique_id,
        "fqn": n.fqn,
        "alias": n.alias,
        "checksum": if n.checksum.is_empty() { json!({"name": "none", "checksum": ""}) } else { json!({"name": "sha256", "checksum": n.checksum}) },
        "config": node_config(n),
        "tags": n.config.tags,
        "description": n.description,
        "columns": columns_json(&n.columns),
        "meta": n.meta,
        "group": null,
        "docs": {"show": n.docs_show, "node_color": null},
        "patch_path": n.patch_path,
        "build_path": null,
        "unrendered_config": n.config_call,
        "created_at": 0.0,
        "relation_name": n.relation_name(&m.quoting),
        "raw_code": n.raw_code,
        "doc_blocks": n.doc_blocks,
        "depends_on": {"macros": n.depends_on_macros, "nodes": n.depends_on_nodes},
    });
    let o = v.as_object_mut().expect("object literal");
    o.insert("config_call_dict".into(), json!(n.config_call));
    o.insert("unrendered_config_call_dict".into(), json!({}));
    if n.resource_type != ResourceType::Seed {
        o.insert("language".into(), json!("sql"));
        o.insert("refs".into(), json!(refs));
        o.insert("sources".into(), json!(sources));
        o.insert("metrics".into(), json!([]));
        o.insert("functions".into(), json!([]));
        o.insert(
            "compiled_path".into(),
            json!(compiled.map(|c| format!("{target_path}/{}", c.compiled_path))),
        );
        o.insert("compiled".into(), json!(compiled.is_some()));
        o.insert(
            "compiled_code".into(),
            json!(compiled.map(|c| crate::secrets::scrub(&c.sql).into_owned())),
        );
        o.insert("extra_ctes_injected".into(), json!(compiled.is_some()));
        o.insert(
            "extra_ctes".into(),
            json!(compiled
                .map(|c| c
                    .extra_ctes
                    .iter()
                    .map(|(id, sql)| json!({"id": id, "sql": sql}))
                    .collect::<Vec<_>>())
                .unwrap_or_default()),
        );
        let enforced = n
            .config
            .get("contract")
            .and_then(|c| c.get("enforced"))
            .and_then(Json::as_bool)
            .unwrap_or(false);
        o.insert(
            "contract".into(),
            json!({"enforced": enforced, "alias_types": true, "checksum": null}),
        );
    } else {
        o.insert("root_path".into(), json!(null));
        o.insert("depends_on".into(), json!({"macros": n.depends_on_macros}));
    }
    match n.resource_type {
        ResourceType::Model => {
            o.insert("access".into(), json!("protected"));
            o.insert("constraints".into(), json!([]));
            o.insert("version".into(), Json::Null);
            o.insert("latest_version".into(), Json::Null);
            o.insert("deprecation_date".into(), Json::Null);
            o.insert("primary_key".into(), json!([]));
            o.insert("time_spine".into(), Json::Null);
        }
        ResourceType::Operation => {
            let (kind, idx) = n.name.rsplit_once('-').unwrap_or((&n.name, "0"));
            let kind = if kind.ends_with("on-run-end") {
                "on-run-end"
            } else {
                "on-run-start"
            };
            o.insert("tags".into(), json!([kind]));
            o.insert("index".into(), json!(idx.parse::<u64>().unwrap_or(0)));
        }
        ResourceType::Test => {
            if let Some(t) = &n.test {
                o.insert("column_name".into(), json!(t.column_name));
                o.insert("file_key_name".into(), json!(t.file_key_name));
                o.insert("attached_node".into(), json!(t.attached_node));
                o.insert(
                    "test_metadata".into(),
                    json!({"name": t.name, "kwargs": t.kwargs, "namespace": t.namespace}),
                );
            }
        }
        _ => {}
    }
    v
}

fn source_json(s: &Source) -> Json {
    let mut cfg = obj(
        json!({"enabled": true, "event_time": null, "freshness": null, "loaded_at_field": null, "loaded_at_query": null, "meta": {}, "tags": []}),
    );
    for (k, v) in &s.config.all {
        cfg.insert(k.clone(), v.clone());
    }
    cfg.insert("tags".into(), json!(s.tags));
    json!({
        "database": s.database, "schema": s.schema, "name": s.name, "resource_type": "source",
        "package_name": s.package, "path": s.path, "original_file_path": s.original_file_path,
        "unique_id": s.unique_id, "fqn": s.fqn, "source_name": s.source_name,
        "source_description": s.source_description, "loader": s.loader, "identifier": s.identifier,
        "quoting": {"database": s.quoting.database, "schema": s.quoting.schema, "identifier": s.quoting.identifier, "column": null},
        "loaded_at_field": s.loaded_at_field, "loaded_at_query": s.loaded_at_query,
        "freshness": if s.freshness.is_object() { s.freshness.clone() } else { json!({"warn_after": {"count": null, "period": null}, "error_after": {"count": null, "period": null}, "filter": null}) },
        "external": null, "description": s.description, "columns": columns_json(&s.columns),
        "meta": s.meta, "source_meta": s.source_meta, "tags": s.tags, "config": cfg,
        "patch_path": null, "unrendered_config": {}, "relation_name": s.relation_name,
        "created_at": 0.0, "unrendered_database": null, "unrendered_schema": null, "doc_blocks": [],
    })
}

fn exposure_json(e: &Exposure) -> Json {
    json!({
        "name": e.name, "resource_type": "exposure", "package_name": e.package, "path": e.path,
        "original_file_path": e.original_file_path, "unique_id": e.unique_id, "fqn": e.fqn,
        "type": e.kind, "owner": e.owner, "description": e.description, "label": e.label,
        "maturity": e.maturity, "meta": e.meta, "tags": e.tags,
        "config": {"enabled": e.config.enabled, "tags": e.tags, "meta": e.meta},
        "unrendered_config": {}, "url": e.url,
        "depends_on": {"macros": [], "nodes": e.depends_on_nodes},
        "refs": e.refs.iter().map(|r| json!({"name": r.name, "package": r.package, "version": r.version})).collect::<Vec<_>>(),
        "sources": e.sources.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "metrics": [], "created_at": 0.0,
    })
}

/// Context for writing a manifest.
pub struct ManifestMeta<'a> {
    pub invocation_id: &'a str,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub target_path: &'a str,
}

/// Writes `manifest.json`; node objects are serialized in parallel.
pub fn write(
    path: &Path,
    m: &Manifest,
    graph: &Graph,
    compiled: &HashMap<String, CompiledNode>,
    meta: &ManifestMeta<'_>,
) -> Result<(), Error> {
    let werr = |source: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let t0 = std::time::Instant::now();
    let mut parts: Vec<(String, String)> = m
        .nodes
        .par_iter()
        .map(|(id, n)| {
            let j = node_json(n, m, compiled.get(id), meta.target_path);
            (id.clone(), serde_json::to_string(&j).unwrap_or_default())
        })
        .collect();
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    crate::manifest::parser::timing("manifest nodes", t0);
    let metadata = json!({
        "dbt_schema_version": SCHEMA_URL,
        "dbt_version": DBT_VERSION,
        "generated_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "invocation_id": meta.invocation_id,
        "invocation_started_at": meta.started_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "env": {},
        "project_name": m.project_name,
        "project_id": format!("{:x}", md5_digest(&m.project_name)),
        "user_id": null,
        "send_anonymous_usage_stats": false,
        "adapter_type": m.adapter_type,
        "quoting": {"database": m.quoting.database, "schema": m.quoting.schema, "identifier": m.quoting.identifier, "column": null},
        "run_started_at": meta.started_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    });
    let sources: Map<String, Json> = m
        .sources
        .iter()
        .map(|(k, s)| (k.clone(), source_json(s)))
        .collect();
    let macros: Map<String, Json> = m
        .macros
        .iter()
        .map(|(k, mc)| {
            (
                k.clone(),
                json!({
                    "name": mc.name, "resource_type": "macro", "package_name": mc.package,
                    "path": mc.path, "original_file_path": mc.original_file_path,
                    "unique_id": mc.unique_id, "macro_sql": mc.macro_sql,
                    "depends_on": {"macros": []}, "description": mc.description, "meta": mc.meta,
                    "docs": {"show": true, "node_color": null}, "patch_path": mc.patch_path,
                    "arguments": mc.arguments, "created_at": 0.0, "supported_languages": null,
                }),
            )
        })
        .collect();
    let docs: Map<String, Json> = m
        .docs
        .iter()
        .map(|(k, d)| {
            (
                k.clone(),
                json!({"name": d.name, "resource_type": "doc", "package_name": d.package, "path": d.path,
                       "original_file_path": d.original_file_path, "unique_id": d.unique_id,
                       "block_contents": d.block_contents}),
            )
        })
        .collect();
    let exposures: Map<String, Json> = m
        .exposures
        .iter()
        .map(|(k, e)| (k.clone(), exposure_json(e)))
        .collect();
    let disabled: Map<String, Json> = m
        .disabled
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Json::Array(
                    v.iter()
                        .map(|n| node_json(n, m, None, meta.target_path))
                        .collect(),
                ),
            )
        })
        .collect();
    let mut parent_map = Map::new();
    let mut child_map = Map::new();
    for id in m.all_ids() {
        parent_map.insert(id.clone(), json!(graph.parents(id)));
        child_map.insert(id.clone(), json!(graph.children(id)));
    }

    crate::manifest::parser::timing("manifest maps", t0);
    let file = std::fs::File::create(path).map_err(werr)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut put = |s: &str| w.write_all(s.as_bytes());
    let ser = |v: &Json| serde_json::to_string(v).unwrap_or_default();
    (|| -> std::io::Result<()> {
        put("{\"metadata\":")?;
        put(&ser(&metadata))?;
        put(",\"nodes\":{")?;
        for (i, (id, s)) in parts.iter().enumerate() {
            if i > 0 {
                put(",")?;
            }
            put(&ser(&Json::String(id.clone())))?;
            put(":")?;
            put(s)?;
        }
        put("}")?;
        for (k, v) in [
            ("sources", Json::Object(sources)),
            ("macros", Json::Object(macros)),
            ("docs", Json::Object(docs)),
            ("exposures", Json::Object(exposures)),
            ("metrics", json!({})),
            ("groups", json!({})),
            ("selectors", m.selectors.clone()),
            ("disabled", Json::Object(disabled)),
            ("parent_map", Json::Object(parent_map)),
            ("child_map", Json::Object(child_map)),
            ("group_map", json!({})),
            ("saved_queries", json!({})),
            ("semantic_models", json!({})),
            ("unit_tests", json!({})),
            ("functions", json!({})),
        ] {
            put(&format!(",\"{k}\":"))?;
            put(&crate::secrets::scrub(&ser(&v)))?;
        }
        put("}")?;
        Ok(())
    })()
    .map_err(werr)?;
    w.flush().map_err(werr)?;
    crate::manifest::parser::timing("manifest written", t0);
    Ok(())
}

fn md5_digest(s: &str) -> md5::digest::Output<md5::Md5> {
    use md5::Digest;
    let mut h = md5::Md5::new();
    h.update(s.as_bytes());
    h.finalize()
}
