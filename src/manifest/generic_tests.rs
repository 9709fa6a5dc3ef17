//! Generic test nodes from YAML declarations, named and hashed exactly as dbt does.

use std::sync::LazyLock;

use indexmap::IndexMap;
use md5::{Digest, Md5};
use regex::Regex;
use serde_json::Value as Json;

use super::pyrepr::{py_repr, py_str, repr_str};
use crate::confmap::{yaml_key, yaml_to_json};
use crate::jinja::RefCall;
use crate::project::schema::TestSpec;

/// What a test is attached to.
#[derive(Debug, Clone)]
pub enum TestTarget {
    /// A model, seed or snapshot; `yaml_key` is `models`/`seeds`/`snapshots`.
    Node {
        name: String,
        yaml_key: &'static str,
    },
    Source {
        source: String,
        table: String,
    },
}

/// Everything about a generic test that does not need the rest of the project.
#[derive(Debug, Clone)]
pub struct BuiltTest {
    pub unique_id: String,
    /// The full name (unique id, fqn).
    pub name: String,
    /// The compiled file name and alias (hashed when the full name is long).
    pub short_name: String,
    pub test_name: String,
    pub namespace: Option<String>,
    pub kwargs: IndexMap<String, Json>,
    pub column_name: Option<String>,
    pub raw_code: String,
    pub macro_name: String,
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    pub file_key_name: String,
    pub config: IndexMap<String, Json>,
    pub description: String,
}

fn md5_hex(s: &str) -> String {
    let mut h = Md5::new();
    h.update(s.as_bytes());
    format!("{:x}", h.finalize())
}

static NON_WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("[^0-9a-zA-Z_]+").expect("static regex"));
static REF_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\bref\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]+)['"]\s*)?(?:,[^)]*)?\)"#)
        .expect("static regex")
});
static SOURCE_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\bsource\(\s*['"]([^'"]+)['"]\s*,\s*['"]([^'"]+)['"]\s*\)"#)
        .expect("static regex")
});

/// dbt's `synthesize_generic_test_names`: (short name, full name).
pub fn synthesize_names(
    test_type: &str,
    target_name: &str,
    args: &IndexMap<String, Json>,
) -> (String, String) {
    let mut keys: Vec<&String> = args.keys().collect();
    keys.sort();
    let mut flat: Vec<String> = Vec::new();
    for k in keys {
        if k == "model" {
            continue;
        }
        match &args[k] {
            Json::Object(m) => flat.extend(m.values().map(py_str)),
            Json::Array(a) => flat.extend(a.iter().map(py_str)),
            other => flat.push(py_str(other)),
        }
    }
    let clean: Vec<String> = flat
        .into_iter()
        .map(|a| {
            if a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                a
            } else {
                NON_WORD.replace_all(&a, "_").into_owned()
            }
        })
        .collect();
    let unique = clean.join("__");
    let identifier = format!("{test_type}_{target_name}");
    let full = format!("{identifier}_{unique}");
    if full.len() >= 64 {
        let trunc: String = identifier.chars().take(30).collect();
        (format!("{trunc}_{}", md5_hex(&full)), full)
    } else {
        (full.clone(), full)
    }
}

/// Appends Python's `repr` of dbt's "hashable" form of a value: dict keys sorted,
/// lists kept, every scalar turned into its `str()`.
fn hashable_repr(v: &Json, out: &mut String) {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&repr_str(k));
                out.push_str(": ");
                hashable_repr(&m[k], out);
            }
            out.push('}');
        }
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                hashable_repr(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&repr_str(&py_str(other))),
    }
}

/// The 10-character suffix of a generic test's unique id: the md5 of the name and
/// the repr of `{"kwargs": ..., "name": ..., "namespace": ...}` (keys sorted).
pub fn test_hash(
    name: &str,
    test_name: &str,
    namespace: Option<&str>,
    kwargs: &IndexMap<String, Json>,
) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(name);
    s.push_str("{'kwargs': {");
    let mut keys: Vec<&String> = kwargs.keys().collect();
    keys.sort();
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&repr_str(k));
        s.push_str(": ");
        hashable_repr(&kwargs[k], &mut s);
    }
    s.push_str("}, 'name': ");
    s.push_str(&repr_str(test_name));
    s.push_str(", 'namespace': ");
    s.push_str(&repr_str(namespace.unwrap_or("None")));
    s.push('}');
    let hex = md5_hex(&s);
    hex[hex.len() - 10..].to_string()
}

/// `ref(...)`/`source(...)` calls written inside test arguments.
pub fn scan_calls(v: &Json, refs: &mut Vec<RefCall>, sources: &mut Vec<(String, String)>) {
    match v {
        Json::String(s) => {
            if s.contains("ref(") {
                for c in REF_CALL.captures_iter(s) {
                    let r = match c.get(2) {
                        Some(n) => RefCall {
                            name: n.as_str().into(),
                            package: Some(c[1].to_string()),
                            version: None,
                        },
                        None => RefCall {
                            name: c[1].to_string(),
                            package: None,
                            version: None,
                        },
                    };
                    if !refs.contains(&r) {
                        refs.push(r);
                    }
                }
            }
            if s.contains("source(") {
                for c in SOURCE_CALL.captures_iter(s) {
                    let p = (c[1].to_string(), c[2].to_string());
                    if !sources.contains(&p) {
                        sources.push(p);
                    }
                }
            }
        }
        Json::Array(a) => a.iter().for_each(|x| scan_calls(x, refs, sources)),
        Json::Object(m) => m.values().for_each(|x| scan_calls(x, refs, sources)),
        _ => {}
    }
}

pub fn build(
    package: &str,
    target: &TestTarget,
    column: Option<&str>,
    spec: &TestSpec,
) -> BuiltTest {
    let mut args: IndexMap<String, Json> = IndexMap::new();
    for (k, v) in &spec.args {
        args.insert(yaml_key(k), yaml_to_json(v));
    }
    if let Some(c) = column {
        args.insert("column_name".into(), Json::from(c));
    }
    let (target_name, model_str, file_key_name) = match target {
        TestTarget::Node { name, yaml_key } => (
            name.clone(),
            format!("{{{{ get_where_subquery(ref('{name}')) }}}}"),
            format!("{yaml_key}.{name}"),
        ),
        TestTarget::Source { source, table } => (
            format!("{source}_{table}"),
            format!("{{{{ get_where_subquery(source('{source}', '{table}')) }}}}"),
            format!("sources.{source}"),
        ),
    };
    args.insert("model".into(), Json::from(model_str));
    let mut prefix = match target {
        TestTarget::Source { .. } => format!("source_{}", spec.test_name),
        TestTarget::Node { .. } => spec.test_name.clone(),
    };
    if let Some(ns) = &spec.namespace {
        prefix = format!("{ns}_{prefix}");
    }
    let (short, full) = match &spec.custom_name {
        Some(n) => (n.clone(), n.clone()),
        None => synthesize_names(&prefix, &target_name, &args),
    };
    let mut config: IndexMap<String, Json> = spec
        .config
        .iter()
        .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
        .collect();
    if short != full && !config.contains_key("alias") {
        config.insert("alias".into(), Json::from(short.clone()));
    }
    let hash = test_hash(&full, &spec.test_name, spec.namespace.as_deref(), &args);
    let macro_name = match &spec.namespace {
        Some(ns) => format!("{ns}.test_{}", spec.test_name),
        None => format!("test_{}", spec.test_name),
    };
    let config_suffix = if config.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = config
            .iter()
            .map(|(k, v)| match v {
                Json::String(s) => format!("{k}=\"{}\"", s.replace('"', "\\\"")),
                other => format!("{k}={}", py_repr(other)),
            })
            .collect();
        format!("{{{{ config({}) }}}}", parts.join(","))
    };
    let mut refs = Vec::new();
    let mut sources = Vec::new();
    for (k, v) in &args {
        if k != "column_name" {
            scan_calls(v, &mut refs, &mut sources);
        }
    }
    BuiltTest {
        unique_id: format!("test.{package}.{full}.{hash}"),
        name: full,
        short_name: short,
        test_name: spec.test_name.clone(),
        namespace: spec.namespace.clone(),
        kwargs: args,
        column_name: column.map(str::to_string),
        raw_code: format!("{{{{ {macro_name}(**_dbt_generic_test_kwargs) }}}}{config_suffix}"),
        macro_name,
        refs,
        sources,
        file_key_name,
        config,
        description: spec.description.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> TestSpec {
        crate::project::schema::parse_test_entry(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn names_match_dbt_jaffle_shop() {
        let t = build(
            "jaffle_shop",
            &TestTarget::Node { name: "orders".into(), yaml_key: "models" },
            Some("status"),
            &spec("accepted_values:\n  values: ['placed', 'shipped', 'completed', 'return_pending', 'returned']"),
        );
        assert_eq!(
            t.short_name,
            "accepted_values_orders_1ce6ab157c285f7cd2ac656013faf758"
        );
        let r = build(
            "jaffle_shop",
            &TestTarget::Node {
                name: "orders".into(),
                yaml_key: "models",
            },
            Some("customer_id"),
            &spec("relationships:\n  to: ref('customers')\n  field: customer_id"),
        );
        assert_eq!(
            r.name,
            "relationships_orders_customer_id__customer_id__ref_customers_"
        );
        assert_eq!(r.refs[0].name, "customers");
        let s = build(
            "jaffle_shop",
            &TestTarget::Source {
                source: "raw".into(),
                table: "orders".into(),
            },
            Some("id"),
            &spec("unique"),
        );
        assert_eq!(s.name, "source_unique_raw_orders_id");
    }
}
