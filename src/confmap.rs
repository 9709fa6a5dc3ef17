//! Config values as dbt merges them: YAML converted to JSON, the ordered config
//! map, and dbt's merge rules (tags and hooks append, dict configs update).

use indexmap::IndexMap;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// A merged set of config keys, in the order they were first set. Fx hashing:
/// configs are small maps read tens of thousands of times per invocation.
pub type ConfigMap = IndexMap<String, Json, rustc_hash::FxBuildHasher>;

/// Dict-valued keys that are configs even when written without `+` in dbt_project.yml.
pub const DICT_CONFIGS: &[&str] = &[
    "meta",
    "persist_docs",
    "grants",
    "column_types",
    "docs",
    "contract",
    "quoting",
    "freshness",
    "snapshot_meta_column_names",
];

/// Normalizes a config key as dbt stores it (`+x` → `x`, `pre_hook` → `pre-hook`).
pub fn normalize_key(k: &str) -> &str {
    let k = k.strip_prefix('+').unwrap_or(k);
    match k {
        "pre_hook" => "pre-hook",
        "post_hook" => "post-hook",
        other => other,
    }
}

pub fn yaml_to_json(v: &Yaml) -> Json {
    match v {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Json::Number)
                    .unwrap_or(Json::Null)
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(s) => Json::Array(s.iter().map(yaml_to_json).collect()),
        Yaml::Mapping(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                .collect(),
        ),
        Yaml::Tagged(t) => yaml_to_json(&t.value),
    }
}

pub fn yaml_key(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

pub fn as_list(v: &Json) -> Vec<Json> {
    match v {
        Json::Array(a) => a.clone(),
        Json::Null => vec![],
        other => vec![other.clone()],
    }
}

/// Sets one key following dbt's merge behaviour: tags and hooks append,
/// dict configs update key by key, everything else is replaced.
pub fn merge_key(into: &mut ConfigMap, key: &str, value: Json) {
    let key = normalize_key(key);
    match key {
        "tags" => {
            let mut cur: Vec<Json> = into.get(key).map(as_list).unwrap_or_default();
            for t in as_list(&value) {
                if !cur.contains(&t) {
                    cur.push(t);
                }
            }
            into.insert(key.to_string(), Json::Array(cur));
        }
        "pre-hook" | "post-hook" => {
            let mut cur: Vec<Json> = into.get(key).map(as_list).unwrap_or_default();
            cur.extend(as_list(&value));
            into.insert(key.to_string(), Json::Array(cur));
        }
        k if DICT_CONFIGS.contains(&k) => match (into.get_mut(k), value) {
            (Some(Json::Object(cur)), Json::Object(new)) => {
                for (nk, nv) in new {
                    cur.insert(nk, nv);
                }
            }
            (_, v) => {
                into.insert(k.to_string(), v);
            }
        },
        k => {
            into.insert(k.to_string(), value);
        }
    }
}

pub fn merge_all(into: &mut ConfigMap, from: &ConfigMap) {
    for (k, v) in from {
        merge_key(into, k, v.clone());
    }
}

/// One hook as dbt stores it in configs and the manifest.
pub fn normalize_hooks(v: Option<&Json>) -> Vec<Json> {
    let Some(v) = v else { return vec![] };
    as_list(v)
        .into_iter()
        .map(|h| match h {
            Json::Object(mut o) => {
                o.entry("transaction").or_insert(Json::Bool(true));
                o.entry("index").or_insert(Json::Null);
                Json::Object(o)
            }
            other => {
                let sql = match other {
                    Json::String(s) => s,
                    x => x.to_string(),
                };
                serde_json::json!({"sql": sql, "transaction": true, "index": null})
            }
        })
        .collect()
}

pub fn json_truthy(v: &Json) -> bool {
    match v {
        Json::Bool(b) => *b,
        Json::Null => false,
        Json::String(s) => !matches!(s.to_ascii_lowercase().as_str(), "false" | "" | "0" | "no"),
        Json::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_updates_and_hooks_append() {
        let mut c = ConfigMap::default();
        merge_key(&mut c, "meta", serde_json::json!({"a": 1}));
        merge_key(&mut c, "+meta", serde_json::json!({"b": 2}));
        merge_key(&mut c, "pre_hook", serde_json::json!("x"));
        merge_key(&mut c, "pre-hook", serde_json::json!(["y"]));
        assert_eq!(c["meta"], serde_json::json!({"a": 1, "b": 2}));
        assert_eq!(c["pre-hook"], serde_json::json!(["x", "y"]));
    }
}
