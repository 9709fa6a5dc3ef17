//! Semantic models, metrics and saved queries from properties files, parsed
//! into the manifest in dbt's shapes (MetricFlow reads them; Strata does not
//! execute them). Shorthands are expanded as dbt writes them
//! (`measure: total` becomes `{name: total, ...}`), and each semantic model's
//! `model: ref('x')` is resolved to the model's relation.

use indexmap::IndexMap;
use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;

use super::Manifest;
use crate::confmap::yaml_to_json;
use crate::error::{DiagKind, Diagnostic};

/// The semantic layer's YAML of one properties file.
#[derive(Debug, Clone)]
pub struct SemanticInput {
    pub package: String,
    /// Relative to the package root (`models/semantic.yml`).
    pub path: String,
    pub display: String,
    pub semantic_models: Vec<Yaml>,
    pub metrics: Vec<Yaml>,
    pub saved_queries: Vec<Yaml>,
}

/// The manifest's `semantic_models`, `metrics` and `saved_queries`.
#[derive(Debug, Clone, Default)]
pub struct SemanticLayer {
    pub semantic_models: IndexMap<String, Json>,
    pub metrics: IndexMap<String, Json>,
    pub saved_queries: IndexMap<String, Json>,
}

fn text(v: &Json, k: &str) -> Json {
    match v.get(k) {
        Some(Json::String(s)) => Json::from(s.as_str()),
        Some(Json::Null) | None => Json::Null,
        Some(other) => Json::from(other.to_string()),
    }
}

/// Keeps only `keys` of an object, in that order, with `defaults` for missing ones.
fn pick(v: &Json, keys: &[(&str, Json)]) -> Json {
    let mut out = Map::new();
    for (k, d) in keys {
        let val = match (v.get(*k), d) {
            (Some(x), _) if !x.is_null() => {
                // Free-form SQL may be written as a number or boolean in YAML.
                if matches!(*k, "expr" | "description" | "label") && !x.is_string() {
                    Json::from(x.to_string())
                } else {
                    x.clone()
                }
            }
            _ => d.clone(),
        };
        out.insert(k.to_string(), val);
    }
    Json::Object(out)
}

/// The keys dbt writes for entities, measures and dimensions, with defaults.
const ENTITY_KEYS: [(&str, Json); 7] = [
    ("name", Json::Null),
    ("type", Json::Null),
    ("description", Json::Null),
    ("label", Json::Null),
    ("role", Json::Null),
    ("expr", Json::Null),
    ("config", Json::Null),
];
const MEASURE_KEYS: [(&str, Json); 10] = [
    ("name", Json::Null),
    ("agg", Json::Null),
    ("description", Json::Null),
    ("label", Json::Null),
    ("create_metric", Json::Bool(false)),
    ("expr", Json::Null),
    ("agg_params", Json::Null),
    ("non_additive_dimension", Json::Null),
    ("agg_time_dimension", Json::Null),
    ("config", Json::Null),
];
const DIMENSION_KEYS: [(&str, Json); 9] = [
    ("name", Json::Null),
    ("type", Json::Null),
    ("description", Json::Null),
    ("label", Json::Null),
    ("is_partition", Json::Bool(false)),
    ("type_params", Json::Null),
    ("expr", Json::Null),
    ("metadata", Json::Null),
    ("config", Json::Null),
];

/// Each item of the list under `key`, reduced to `keys`.
fn pick_each(v: &Json, key: &str, keys: &[(&str, Json)]) -> Vec<Json> {
    v.get(key)
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|e| pick(e, keys))
        .collect()
}

fn where_filter(v: Option<&Json>) -> Json {
    let filters: Vec<Json> = match v {
        Some(Json::String(s)) => vec![Json::from(s.as_str())],
        Some(Json::Array(a)) => a.clone(),
        Some(Json::Object(o)) if o.contains_key("where_filters") => {
            return Json::Object(o.clone());
        }
        _ => return Json::Null,
    };
    json!({"where_filters": filters.iter().map(|f| json!({"where_sql_template": f.as_str().map(str::to_string).unwrap_or_else(|| f.to_string())})).collect::<Vec<_>>()})
}

fn metric_input(v: &Json, measure: bool) -> Json {
    let obj = match v {
        Json::String(s) => json!({"name": s}),
        other => other.clone(),
    };
    let mut out = json!({
        "name": text(&obj, "name"),
        "filter": where_filter(obj.get("filter")),
        "alias": text(&obj, "alias"),
    });
    if measure {
        out["join_to_timespine"] = obj
            .get("join_to_timespine")
            .cloned()
            .unwrap_or(Json::Bool(false));
        out["fill_nulls_with"] = obj.get("fill_nulls_with").cloned().unwrap_or(Json::Null);
    } else {
        out["offset_window"] = Json::Null;
        out["offset_to_grain"] = obj.get("offset_to_grain").cloned().unwrap_or(Json::Null);
    }
    out
}

fn config_of(v: &Json) -> Json {
    let c = v.get("config").cloned().unwrap_or(json!({}));
    json!({
        "enabled": c.get("enabled").cloned().unwrap_or(Json::Bool(true)),
        "group": c.get("group").cloned().unwrap_or(Json::Null),
        "meta": c.get("meta").cloned().unwrap_or(json!({})),
    })
}

/// Builds the semantic layer; problems (a semantic model whose `model:` is
/// not a known ref) are reported with the file.
pub fn build(inputs: &[SemanticInput], m: &Manifest) -> (SemanticLayer, Vec<Diagnostic>) {
    let mut out = SemanticLayer::default();
    let mut diags = Vec::new();
    for f in inputs {
        for y in &f.semantic_models {
            let v = yaml_to_json(y);
            let name = v
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let model = v
                .get("model")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let mut refs = Vec::new();
            let mut sources = Vec::new();
            super::generic_tests::scan_calls(&Json::from(model.clone()), &mut refs, &mut sources);
            let (node_relation, depends) = match refs.first() {
                Some(r) => match m.refs.resolve(&f.package, r) {
                    Ok(uid) => {
                        let n = &m.nodes[uid];
                        (
                            json!({"alias": n.alias, "schema_name": n.schema, "database": n.database,
                                   "relation_name": n.relation_name(&m.quoting)}),
                            vec![uid.to_string()],
                        )
                    }
                    Err(_) => {
                        diags.push(
                            Diagnostic::new(
                                DiagKind::UnknownRef,
                                format!(
                                    "semantic model '{name}' is built on {model}, which is not a model"
                                ),
                            )
                            .file(&f.display),
                        );
                        continue;
                    }
                },
                None => (Json::Null, Vec::new()),
            };
            let uid = format!("semantic_model.{}.{name}", f.package);
            let entities = pick_each(&v, "entities", &ENTITY_KEYS);
            let measures = pick_each(&v, "measures", &MEASURE_KEYS);
            let dimensions = pick_each(&v, "dimensions", &DIMENSION_KEYS);
            let defaults = v
                .get("defaults")
                .map(|d| json!({"agg_time_dimension": d.get("agg_time_dimension").cloned().unwrap_or(Json::Null)}))
                .unwrap_or(Json::Null);
            out.semantic_models.insert(
                uid.clone(),
                json!({
                    "name": name, "resource_type": "semantic_model", "package_name": f.package,
                    "path": f.path, "original_file_path": f.path, "unique_id": uid,
                    "fqn": [f.package, name], "model": model, "node_relation": node_relation,
                    "description": text(&v, "description"), "label": text(&v, "label"),
                    "defaults": defaults, "entities": entities, "measures": measures,
                    "dimensions": dimensions, "metadata": null,
                    "depends_on": {"macros": [], "nodes": depends},
                    "refs": refs.iter().map(|r| json!({"name": r.name, "package": r.package, "version": r.version})).collect::<Vec<_>>(),
                    "created_at": 0.0, "config": config_of(&v), "unrendered_config": {},
                    "primary_entity": text(&v, "primary_entity"), "group": null,
                }),
            );
        }
    }
    // Measures by name, for the semantic models a metric depends on.
    let mut measure_owner: std::collections::HashMap<String, String> = Default::default();
    for (uid, sm) in &out.semantic_models {
        for me in sm["measures"].as_array().into_iter().flatten() {
            if let Some(n) = me["name"].as_str() {
                measure_owner.insert(n.to_string(), uid.clone());
            }
        }
    }
    for f in inputs {
        for y in &f.metrics {
            let v = yaml_to_json(y);
            let name = v
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let uid = format!("metric.{}.{name}", f.package);
            let tp = v.get("type_params").cloned().unwrap_or(json!({}));
            let mut type_params = Map::new();
            let mut input_measures: Vec<Json> = Vec::new();
            let mut metric_deps: Vec<Json> = Vec::new();
            if let Some(me) = tp.get("measure") {
                let mi = metric_input(me, true);
                input_measures.push(mi.clone());
                type_params.insert("measure".into(), mi);
            } else {
                type_params.insert("measure".into(), Json::Null);
            }
            for k in ["numerator", "denominator"] {
                let val = tp
                    .get(k)
                    .map(|x| metric_input(x, false))
                    .unwrap_or(Json::Null);
                if let Some(n) = val.get("name").and_then(Json::as_str) {
                    metric_deps.push(json!([n]));
                }
                type_params.insert(k.into(), val);
            }
            let metrics: Json = match tp.get("metrics").and_then(Json::as_array) {
                Some(a) => Json::Array(
                    a.iter()
                        .map(|x| {
                            let mi = metric_input(x, false);
                            if let Some(n) = mi.get("name").and_then(Json::as_str) {
                                metric_deps.push(json!([n]));
                            }
                            mi
                        })
                        .collect(),
                ),
                None => Json::Null,
            };
            type_params.insert("metrics".into(), metrics);
            type_params.insert("input_measures".into(), Json::Array(input_measures.clone()));
            type_params.insert("expr".into(), text(&tp, "expr"));
            type_params.insert(
                "window".into(),
                tp.get("window")
                    .and_then(Json::as_str)
                    .and_then(|w| {
                        let (c, g) = w.trim().split_once(' ')?;
                        Some(json!({"count": c.parse::<i64>().ok()?, "granularity": g.trim_end_matches('s')}))
                    })
                    .unwrap_or(Json::Null),
            );
            type_params.insert(
                "grain_to_date".into(),
                tp.get("grain_to_date").cloned().unwrap_or(Json::Null),
            );
            for k in [
                "conversion_type_params",
                "cumulative_type_params",
                "metric_aggregation_params",
                "fill_nulls_with",
            ] {
                type_params.insert(k.into(), Json::Null);
            }
            type_params.insert(
                "join_to_timespine".into(),
                tp.get("join_to_timespine")
                    .cloned()
                    .unwrap_or(Json::Bool(false)),
            );
            type_params.insert("is_private".into(), Json::Null);
            let nodes: Vec<String> = input_measures
                .iter()
                .filter_map(|mi| mi["name"].as_str())
                .filter_map(|n| measure_owner.get(n).cloned())
                .collect();
            out.metrics.insert(
                uid.clone(),
                json!({
                    "name": name, "resource_type": "metric", "package_name": f.package,
                    "path": f.path, "original_file_path": f.path, "unique_id": uid,
                    "fqn": [f.package, name],
                    "description": v.get("description").and_then(Json::as_str).unwrap_or_default(),
                    "label": v.get("label").and_then(Json::as_str).unwrap_or(&name),
                    "type": v.get("type").and_then(Json::as_str).unwrap_or("simple"),
                    "type_params": Json::Object(type_params), "filter": where_filter(v.get("filter")),
                    "metadata": null, "time_granularity": text(&v, "time_granularity"),
                    "config": config_of(&v), "unrendered_config": {}, "sources": [],
                    "depends_on": {"macros": [], "nodes": nodes}, "refs": [], "metrics": metric_deps,
                    "created_at": 0.0, "group": null,
                    "meta": v.get("meta").cloned().unwrap_or(json!({})),
                    "tags": v.get("tags").cloned().filter(Json::is_array).unwrap_or(json!([])),
                }),
            );
        }
        for y in &f.saved_queries {
            let v = yaml_to_json(y);
            let name = v
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let uid = format!("saved_query.{}.{name}", f.package);
            let qp = v.get("query_params").cloned().unwrap_or(json!({}));
            let strings = |k: &str| -> Json {
                Json::Array(
                    qp.get(k)
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                        .map(|x| {
                            Json::from(
                                x.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x.to_string()),
                            )
                        })
                        .collect(),
                )
            };
            let metric_ids: Vec<String> = qp
                .get("metrics")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .map(|n| format!("metric.{}.{n}", f.package))
                .collect();
            let exports: Vec<Json> = v
                .get("exports")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .map(|e| {
                    let c = e.get("config").cloned().unwrap_or(json!({}));
                    json!({
                        "name": text(e, "name"),
                        "config": {
                            "export_as": c.get("export_as").and_then(Json::as_str).unwrap_or("table"),
                            "schema_name": text(&c, "schema"),
                            "alias": text(&c, "alias"),
                            "database": text(&c, "database"),
                        },
                        "unrendered_config": {},
                    })
                })
                .collect();
            out.saved_queries.insert(
                uid.clone(),
                json!({
                    "name": name, "resource_type": "saved_query", "package_name": f.package,
                    "path": f.path, "original_file_path": f.path, "unique_id": uid,
                    "fqn": [f.package, name],
                    "query_params": {
                        "metrics": strings("metrics"), "group_by": strings("group_by"),
                        "where": where_filter(qp.get("where")), "order_by": strings("order_by"),
                        "limit": qp.get("limit").cloned().unwrap_or(Json::Null),
                    },
                    "exports": exports, "description": text(&v, "description"),
                    "label": text(&v, "label"), "metadata": null, "config": config_of(&v),
                    "unrendered_config": {}, "group": null,
                    "depends_on": {"macros": [], "nodes": metric_ids},
                    "created_at": 0.0, "refs": [], "tags": [],
                }),
            );
        }
    }
    (out, diags)
}
