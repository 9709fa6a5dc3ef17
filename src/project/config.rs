//! Config layering: project folders → schema YAML → inline `config()`, merged with dbt's rules.

use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

use crate::confmap::{
    as_list, json_truthy, merge_key, yaml_key, yaml_to_json, ConfigMap, DICT_CONFIGS,
};

/// Whether a dbt_project.yml key at a folder level is a config (else a sub-folder).
fn is_config_entry(k: &str, v: &Yaml) -> bool {
    k.starts_with('+') || !v.is_mapping() || DICT_CONFIGS.contains(&k)
}

/// Applies the folder-scoped configs of one resource section along `fqn`
/// (package name first, then folders, then the node name).
pub fn apply_folder_configs(section: &Mapping, fqn: &[String], into: &mut ConfigMap) {
    let mut level = section;
    let mut depth = 0;
    loop {
        for (k, v) in level {
            let key = match k.as_str() {
                Some(s) => s,
                None => continue,
            };
            if is_config_entry(key, v) {
                merge_key(into, key, yaml_to_json(v));
            }
        }
        let Some(next) = fqn.get(depth) else { break };
        match level.get(next.as_str()) {
            Some(Yaml::Mapping(m)) if !next.starts_with('+') => {
                level = m;
                depth += 1;
            }
            _ => break,
        }
    }
}

/// Converts a YAML `config:` block to a map with normalized keys.
pub fn config_from_yaml(m: &Mapping) -> ConfigMap {
    let mut out = ConfigMap::default();
    for (k, v) in m {
        merge_key(&mut out, &yaml_key(k), yaml_to_json(v));
    }
    out
}

/// The typed view of a node's final config that the engine reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub enabled: bool,
    pub materialized: String,
    pub schema: Option<String>,
    pub database: Option<String>,
    pub alias: Option<String>,
    pub tags: Vec<String>,
    pub severity: String,
    /// Every key, for `config.get` and the manifest.
    pub all: ConfigMap,
}

impl NodeConfig {
    pub fn resolve(map: ConfigMap, default_materialized: &str) -> NodeConfig {
        let s = |k: &str| map.get(k).and_then(Json::as_str).map(str::to_string);
        let tags = map
            .get("tags")
            .map(as_list)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        NodeConfig {
            enabled: map.get("enabled").map(json_truthy).unwrap_or(true),
            materialized: s("materialized").unwrap_or_else(|| default_materialized.to_string()),
            schema: s("schema"),
            database: s("database"),
            alias: s("alias"),
            tags,
            severity: s("severity").unwrap_or_else(|| "ERROR".into()),
            all: map,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.all.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Mapping {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn folder_configs_descend_and_override() {
        let section = yaml(
            "+materialized: view\nmy_proj:\n  +tags: [a]\n  marts:\n    +materialized: table\n    +tags: b\n",
        );
        let mut out = ConfigMap::default();
        let fqn: Vec<String> = ["my_proj", "marts", "orders"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        apply_folder_configs(&section, &fqn, &mut out);
        assert_eq!(out["materialized"], "table");
        assert_eq!(out["tags"], serde_json::json!(["a", "b"]));
    }
}
