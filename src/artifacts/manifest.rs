//! manifest.json (dbt schema v12), serialized node by node in parallel.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use std::sync::LazyLock;

use rayon::prelude::*;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{json, Map, Value as Json};

use crate::compile::CompiledNode;
use crate::error::Error;
use crate::manifest::{ColumnInfo, Exposure, Manifest, Node, ResourceType, Source};

pub const SCHEMA_URL: &str = "https://schemas.getdbt.com/dbt/manifest/v12.json";
pub const DBT_VERSION: &str = "1.12.0";

fn obj(v: Json) -> Map<String, Json> {
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

/// Config defaults dbt writes for every node of a kind, in dbt's key order.
fn config_defaults(rt: ResourceType) -> &'static [(&'static str, Json)] {
    static TEST: LazyLock<Vec<(&'static str, Json)>> = LazyLock::new(|| {
        defaults(json!({
            "enabled": true, "alias": null, "schema": "dbt_test__audit", "database": null,
            "tags": [], "meta": {}, "group": null, "static_analysis": null, "materialized": "test",
            "severity": "ERROR", "store_failures": null, "store_failures_as": null,
            "sql_header": null, "where": null, "limit": null, "fail_calc": "count(*)",
            "warn_if": "!= 0", "error_if": "!= 0",
        }))
    });
    static NODE: LazyLock<Vec<(&'static str, Json)>> = LazyLock::new(|| defaults(node_base()));
    static MODEL: LazyLock<Vec<(&'static str, Json)>> = LazyLock::new(|| {
        let mut b = node_base();
        b["access"] = json!("protected");
        b["latest_version_pointer"] = json!({"enabled": null, "alias": null});
        b["freshness"] = Json::Null;
        b["on_error"] = Json::Null;
        defaults(b)
    });
    static SEED: LazyLock<Vec<(&'static str, Json)>> = LazyLock::new(|| {
        let mut b = node_base();
        b["delimiter"] = json!(",");
        b["quote_columns"] = Json::Null;
        defaults(b)
    });
    static SNAPSHOT: LazyLock<Vec<(&'static str, Json)>> = LazyLock::new(|| {
        let mut b = node_base();
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
        defaults(b)
    });
    match rt {
        ResourceType::Test => &TEST,
        ResourceType::Model => &MODEL,
        ResourceType::Seed => &SEED,
        ResourceType::Snapshot => &SNAPSHOT,
        _ => &NODE,
    }
}

fn node_base() -> Json {
    json!({
        "enabled": true, "alias": null, "schema": null, "database": null, "tags": [],
        "meta": {}, "group": null, "static_analysis": null, "materialized": "view",
        "incremental_strategy": null, "batch_size": null, "lookback": 1, "begin": null,
        "persist_docs": {}, "post-hook": [], "pre-hook": [], "quoting": {},
        "column_types": {}, "full_refresh": null, "unique_key": null,
        "on_schema_change": "ignore", "on_configuration_change": "apply", "grants": {},
        "packages": [], "docs": {"show": true, "node_color": null},
        "contract": {"enforced": false, "alias_types": true},
        "event_time": null, "concurrent_batches": null,
    })
}

/// Whether a config key is one of the keys written from the defaults tables.
fn is_default_key(k: &str) -> bool {
    static KEYS: LazyLock<rustc_hash::FxHashSet<&'static str>> =
        LazyLock::new(|| DEFAULT_KEYS.iter().copied().collect());
    KEYS.contains(k)
}

fn defaults(v: Json) -> Vec<(&'static str, Json)> {
    DEFAULT_KEYS
        .iter()
        .filter_map(|k| v.get(*k).map(|d| (*k, d.clone())))
        .collect()
}

const DEFAULT_KEYS: &[&str] = &[
    "enabled",
    "alias",
    "schema",
    "database",
    "tags",
    "meta",
    "group",
    "static_analysis",
    "materialized",
    "incremental_strategy",
    "batch_size",
    "lookback",
    "begin",
    "persist_docs",
    "post-hook",
    "pre-hook",
    "quoting",
    "column_types",
    "full_refresh",
    "unique_key",
    "on_schema_change",
    "on_configuration_change",
    "grants",
    "packages",
    "docs",
    "contract",
    "event_time",
    "concurrent_batches",
    "access",
    "latest_version_pointer",
    "freshness",
    "on_error",
    "delimiter",
    "quote_columns",
    "strategy",
    "target_schema",
    "target_database",
    "updated_at",
    "check_cols",
    "snapshot_meta_column_names",
    "dbt_valid_to_current",
    "severity",
    "store_failures",
    "store_failures_as",
    "sql_header",
    "where",
    "limit",
    "fail_calc",
    "warn_if",
    "error_if",
];

/// A node's config: dbt's defaults overlaid with the resolved values.
struct ConfigOut<'a>(&'a Node);

impl Serialize for ConfigOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        let all = &n.config.all;
        let defs = config_defaults(n.resource_type);
        let mut map = s.serialize_map(None)?;
        for (k, d) in defs {
            match *k {
                "enabled" => map.serialize_entry(k, &n.config.enabled)?,
                "tags" => map.serialize_entry(k, &n.config.tags)?,
                "materialized" => map.serialize_entry(k, &n.config.materialized)?,
                _ => map.serialize_entry(k, all.get(*k).unwrap_or(d))?,
            }
        }
        for (k, v) in all.iter() {
            if !is_default_key(k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

struct ColumnsOut<'a>(&'a indexmap::IndexMap<String, ColumnInfo>);

impl Serialize for ColumnsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, c) in self.0 {
            map.serialize_entry(k, &ColumnOut(c))?;
        }
        map.end()
    }
}

struct ColumnOut<'a>(&'a ColumnInfo);

impl Serialize for ColumnOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let empty: [u8; 0] = [];
        let mut map = s.serialize_map(Some(10))?;
        map.serialize_entry("name", &c.name)?;
        map.serialize_entry("description", &c.description)?;
        map.serialize_entry("meta", &c.meta)?;
        map.serialize_entry("data_type", &c.data_type)?;
        map.serialize_entry("constraints", &c.constraints)?;
        map.serialize_entry("quote", &c.quote)?;
        map.serialize_entry("config", &ColumnConfigOut(c))?;
        map.serialize_entry("tags", &c.tags)?;
        map.serialize_entry("granularity", &Json::Null)?;
        map.serialize_entry("doc_blocks", &empty)?;
        map.end()
    }
}

struct ColumnConfigOut<'a>(&'a ColumnInfo);

impl Serialize for ColumnConfigOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("meta", &self.0.meta)?;
        map.serialize_entry("tags", &self.0.tags)?;
        map.end()
    }
}

struct RefsOut<'a>(&'a [crate::jinja::RefCall]);

impl Serialize for RefsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&RefOut(r))?;
        }
        seq.end()
    }
}

struct RefOut<'a>(&'a crate::jinja::RefCall);

impl Serialize for RefOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("name", &self.0.name)?;
        map.serialize_entry("package", &self.0.package)?;
        map.serialize_entry("version", &self.0.version)?;
        map.end()
    }
}

/// One node as manifest JSON; `compiled` adds the compile-time fields.
pub struct NodeOut<'a> {
    pub n: &'a Node,
    pub quoting: &'a crate::jinja::QuotePolicy,
    pub compiled: Option<&'a CompiledNode>,
    pub target_path: &'a str,
}

impl Serialize for NodeOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.n;
        let c = self.compiled;
        let empty: [String; 0] = [];
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("database", &n.database)?;
        map.serialize_entry("schema", &n.schema)?;
        map.serialize_entry("name", &n.name)?;
        map.serialize_entry("resource_type", n.resource_type.as_str())?;
        map.serialize_entry("package_name", &n.package)?;
        map.serialize_entry("path", &n.path)?;
        map.serialize_entry("original_file_path", &n.original_file_path)?;
        map.serialize_entry("unique_id", &n.unique_id)?;
        map.serialize_entry("fqn", &n.fqn)?;
        map.serialize_entry("alias", &n.alias)?;
        if n.checksum.is_empty() {
            map.serialize_entry("checksum", &json!({"name": "none", "checksum": ""}))?;
        } else {
            map.serialize_entry(
                "checksum",
                &json!({"name": "sha256", "checksum": n.checksum}),
            )?;
        }
        map.serialize_entry("config", &ConfigOut(n))?;
        let tags: Vec<&str> = if n.resource_type == ResourceType::Operation {
            vec![if n.name.contains("-on-run-end-") {
                "on-run-end"
            } else {
                "on-run-start"
            }]
        } else {
            n.config.tags.iter().map(String::as_str).collect()
        };
        map.serialize_entry("tags", &tags)?;
        map.serialize_entry("description", &n.description)?;
        map.serialize_entry("columns", &ColumnsOut(&n.columns))?;
        map.serialize_entry("meta", &n.meta)?;
        map.serialize_entry("group", n.config.get("group").unwrap_or(&Json::Null))?;
        map.serialize_entry("docs", &json!({"show": n.docs_show, "node_color": null}))?;
        map.serialize_entry("patch_path", &n.patch_path)?;
        map.serialize_entry("build_path", &Json::Null)?;
        map.serialize_entry("unrendered_config", &n.config_call)?;
        map.serialize_entry("created_at", &0.0)?;
        map.serialize_entry("config_call_dict", &n.config_call)?;
        map.serialize_entry("unrendered_config_call_dict", &json!({}))?;
        map.serialize_entry("relation_name", &n.relation_name(self.quoting))?;
        map.serialize_entry("raw_code", &n.raw_code)?;
        map.serialize_entry("doc_blocks", &n.doc_blocks)?;
        if n.resource_type == ResourceType::Seed {
            map.serialize_entry("root_path", &Json::Null)?;
            map.serialize_entry("depends_on", &json!({"macros": n.depends_on_macros}))?;
            return map.end();
        }
        map.serialize_entry(
            "depends_on",
            &json!({"macros": n.depends_on_macros, "nodes": n.depends_on_nodes}),
        )?;
        map.serialize_entry("language", "sql")?;
        map.serialize_entry("refs", &RefsOut(&n.refs))?;
        let sources: Vec<[&str; 2]> = n
            .sources
            .iter()
            .map(|(a, b)| [a.as_str(), b.as_str()])
            .collect();
        map.serialize_entry("sources", &sources)?;
        map.serialize_entry("metrics", &empty)?;
        map.serialize_entry("functions", &empty)?;
        map.serialize_entry(
            "compiled_path",
            &c.map(|c| format!("{}/{}", self.target_path, c.compiled_path)),
        )?;
        map.serialize_entry("compiled", &c.is_some())?;
        map.serialize_entry("compiled_code", &c.map(|c| crate::secrets::scrub(&c.sql)))?;
        map.serialize_entry("extra_ctes_injected", &c.is_some())?;
        let ctes: Vec<Json> = c
            .map(|c| {
                c.extra_ctes
                    .iter()
                    .map(|(id, sql)| json!({"id": id, "sql": sql}))
                    .collect()
            })
            .unwrap_or_default();
        map.serialize_entry("extra_ctes", &ctes)?;
        let enforced = n
            .config
            .get("contract")
            .and_then(|c| c.get("enforced"))
            .and_then(Json::as_bool)
            .unwrap_or(false);
        map.serialize_entry(
            "contract",
            &json!({"enforced": enforced, "alias_types": true, "checksum": null}),
        )?;
        match n.resource_type {
            ResourceType::Model => {
                map.serialize_entry(
                    "access",
                    n.config
                        .get("access")
                        .and_then(Json::as_str)
                        .unwrap_or("protected"),
                )?;
                map.serialize_entry("constraints", &empty)?;
                map.serialize_entry("version", &n.version.as_ref().map(|v| v.v.clone()))?;
                map.serialize_entry(
                    "latest_version",
                    &n.version.as_ref().map(|v| v.latest.clone()),
                )?;
                map.serialize_entry("deprecation_date", &Json::Null)?;
                map.serialize_entry("primary_key", &empty)?;
                map.serialize_entry("time_spine", n.time_spine.as_deref().unwrap_or(&Json::Null))?;
            }
            ResourceType::Operation => {
                let idx = n
                    .name
                    .rsplit('-')
                    .next()
                    .and_then(|i| i.parse::<u64>().ok())
                    .unwrap_or(0);
                map.serialize_entry("index", &idx)?;
            }
            ResourceType::Test => {
                if let Some(t) = &n.test {
                    map.serialize_entry("column_name", &t.column_name)?;
                    map.serialize_entry("file_key_name", &t.file_key_name)?;
                    map.serialize_entry("attached_node", &t.attached_node)?;
                    map.serialize_entry(
                        "test_metadata",
                        &json!({"name": t.name, "kwargs": t.kwargs, "namespace": t.namespace}),
                    )?;
                }
            }
            _ => {}
        }
        map.end()
    }
}

/// One node as a JSON value (used where a tree is needed).
pub fn node_json(
    n: &Node,
    m: &Manifest,
    compiled: Option<&CompiledNode>,
    target_path: &str,
) -> Json {
    serde_json::to_value(NodeOut {
        n,
        quoting: &m.quoting,
        compiled,
        target_path,
    })
    .unwrap_or(Json::Null)
}

/// dbt's `graph` context variable: every node, source and exposure as its
/// manifest dict, keyed by unique id (built in parallel; only when a template
/// mentions `graph`).
pub fn graph_json(m: &Manifest) -> Json {
    use rayon::prelude::*;
    let nodes: Vec<(&String, Json)> = m
        .nodes
        .par_iter()
        .map(|(id, n)| (id, node_json(n, m, None, "target")))
        .collect();
    let mut node_map = Map::with_capacity(nodes.len());
    for (id, j) in nodes {
        node_map.insert(id.clone(), j);
    }
    let sources: Map<String, Json> = m
        .sources
        .iter()
        .map(|(id, s)| (id.clone(), source_json(s)))
        .collect();
    let exposures: Map<String, Json> = m
        .exposures
        .iter()
        .map(|(id, e)| (id.clone(), exposure_json(e)))
        .collect();
    let map = |x: &indexmap::IndexMap<String, Json>| -> Map<String, Json> {
        x.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    json!({
        "nodes": node_map, "sources": sources, "exposures": exposures,
        "metrics": map(&m.semantic.metrics), "groups": {},
        "semantic_models": map(&m.semantic.semantic_models),
        "saved_queries": map(&m.semantic.saved_queries), "unit_tests": {},
    })
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
        "external": s.external_raw, "description": s.description, "columns": serde_json::to_value(ColumnsOut(&s.columns)).unwrap_or_default(),
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
/// Returns the metadata object as written (it starts the file).
pub fn write(
    path: &Path,
    m: &Manifest,
    compiled: &HashMap<String, CompiledNode>,
    meta: &ManifestMeta<'_>,
) -> Result<String, Error> {
    let werr = |source: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let t0 = std::time::Instant::now();
    let mut ids: Vec<&String> = m.nodes.keys().collect();
    ids.sort_unstable();
    let node_entry = |id: &String| {
        let out = NodeOut {
            n: &m.nodes[id],
            quoting: &m.quoting,
            compiled: compiled.get(id),
            target_path: meta.target_path,
        };
        let mut buf = serde_json::to_string(id).unwrap_or_default();
        buf.push(':');
        buf.push_str(&serde_json::to_string(&out).unwrap_or_default());
        buf
    };
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
    })
    .to_string();
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
    let (parent_map, child_map) = dependency_maps(m);

    crate::manifest::parser::timing("manifest maps", t0);
    let file = std::fs::File::create(path).map_err(werr)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut put = |s: &str| w.write_all(s.as_bytes());
    let ser = |v: &Json| serde_json::to_string(v).unwrap_or_default();
    (|| -> std::io::Result<()> {
        put("{\"metadata\":")?;
        put(&metadata)?;
        put(",\"nodes\":{")?;
        // Serialized in parallel chunks and written as they are ready, so the
        // whole nodes object never sits in memory at once.
        // Writing one chunk overlaps serializing the next.
        let serialize = |chunk: &[&String]| -> Vec<String> {
            chunk.par_iter().map(|id| node_entry(id)).collect()
        };
        let mut chunks = ids.chunks(4096);
        let mut ready = chunks.next().map(serialize).unwrap_or_default();
        let mut first = true;
        loop {
            let next_chunk = chunks.next();
            let (written, next) = rayon::join(
                || -> std::io::Result<()> {
                    for part in &ready {
                        if !first {
                            put(",")?;
                        }
                        first = false;
                        put(part)?;
                    }
                    Ok(())
                },
                || next_chunk.map(serialize),
            );
            written?;
            match next {
                Some(n) => ready = n,
                None => break,
            }
        }
        put("}")?;
        for (k, v) in [
            ("sources", Json::Object(sources)),
            ("macros", Json::Object(macros)),
            ("docs", Json::Object(docs)),
            ("exposures", Json::Object(exposures)),
            (
                "metrics",
                Json::Object(
                    m.semantic
                        .metrics
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            ),
            ("groups", json!({})),
            ("selectors", m.selectors.clone()),
            ("disabled", Json::Object(disabled)),
        ] {
            put(&format!(",\"{k}\":"))?;
            put(&crate::secrets::scrub(&ser(&v)))?;
        }
        // Large and only unique ids: serialized directly, in dbt's key order.
        for (k, map) in [("parent_map", &parent_map), ("child_map", &child_map)] {
            put(&format!(",\"{k}\":"))?;
            put(&serde_json::to_string(map).unwrap_or_default())?;
        }
        for (k, v) in [
            ("group_map", json!({})),
            (
                "saved_queries",
                Json::Object(
                    m.semantic
                        .saved_queries
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            ),
            (
                "semantic_models",
                Json::Object(
                    m.semantic
                        .semantic_models
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            ),
            (
                "unit_tests",
                Json::Object(
                    m.unit_tests
                        .iter()
                        .map(|(k, u)| {
                            (
                                k.clone(),
                                json!({
                                    "model": u.model, "given": u.raw.get("given").cloned().unwrap_or(json!([])),
                                    "expect": u.raw.get("expect").cloned().unwrap_or(json!({})),
                                    "name": u.name, "resource_type": "unit_test", "package_name": u.package,
                                    "path": u.original_file_path, "original_file_path": u.original_file_path,
                                    "unique_id": u.unique_id, "fqn": [u.package.clone(), u.model.clone(), u.name.clone()],
                                    "description": u.description,
                                }),
                            )
                        })
                        .collect(),
                ),
            ),
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
    Ok(metadata)
}

/// A map of unique id → sorted unique ids, serialized without building values.
struct IdLists<'a>(Vec<(&'a str, Vec<&'a str>)>);

impl Serialize for IdLists<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `parent_map` and `child_map`, straight from each node's `depends_on`.
fn dependency_maps(m: &Manifest) -> (IdLists<'_>, IdLists<'_>) {
    let mut children: rustc_hash::FxHashMap<&str, Vec<&str>> = Default::default();
    let mut parents: rustc_hash::FxHashMap<&str, Vec<&str>> = Default::default();
    let deps = m
        .nodes
        .values()
        .map(|n| (n.unique_id.as_str(), &n.depends_on_nodes))
        .chain(
            m.exposures
                .values()
                .map(|e| (e.unique_id.as_str(), &e.depends_on_nodes)),
        );
    for (id, ds) in deps {
        let mut ps: Vec<&str> = ds.iter().map(String::as_str).collect();
        ps.sort_unstable();
        ps.dedup();
        for p in &ps {
            children.entry(p).or_default().push(id);
        }
        parents.insert(id, ps);
    }
    let mut pm = Vec::with_capacity(m.nodes.len() + m.sources.len());
    let mut cm = Vec::with_capacity(m.nodes.len() + m.sources.len());
    for id in m.all_ids() {
        pm.push((id.as_str(), parents.remove(id.as_str()).unwrap_or_default()));
        let mut c = children.remove(id.as_str()).unwrap_or_default();
        c.sort_unstable();
        c.dedup();
        cm.push((id.as_str(), c));
    }
    (IdLists(pm), IdLists(cm))
}

fn md5_digest(s: &str) -> md5::digest::Output<md5::Md5> {
    use md5::Digest;
    let mut h = md5::Md5::new();
    h.update(s.as_bytes());
    h.finalize()
}
