//! Schema (properties) YAML files: the raw serde shapes of models, sources, seeds,
//! snapshots, analyses, macros, exposures and unit tests.

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value as Yaml};

use crate::error::{line_of, yaml_diagnostic, DiagKind, Diagnostic};

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SchemaFile {
    pub version: Option<Yaml>,
    pub models: Vec<NodePatch>,
    pub seeds: Vec<NodePatch>,
    pub snapshots: Vec<NodePatch>,
    pub analyses: Vec<NodePatch>,
    pub sources: Vec<SourceDef>,
    pub macros: Vec<MacroPatch>,
    pub exposures: Vec<ExposureDef>,
    pub unit_tests: Vec<Yaml>,
    pub semantic_models: Vec<Yaml>,
    pub metrics: Vec<Yaml>,
    pub saved_queries: Vec<Yaml>,
}

/// Properties of a model, seed, snapshot or analysis.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct NodePatch {
    pub name: String,
    pub description: Option<String>,
    pub config: Option<Mapping>,
    pub columns: Vec<ColumnDef>,
    #[serde(alias = "tests")]
    pub data_tests: Vec<Yaml>,
    pub docs: Option<Yaml>,
    pub meta: Option<Mapping>,
    pub tags: Option<Yaml>,
    pub constraints: Vec<Yaml>,
    pub access: Option<String>,
    pub group: Option<String>,
    pub latest_version: Option<Yaml>,
    pub versions: Vec<Yaml>,
    /// YAML-defined snapshots: the relation to snapshot (`ref(...)`/`source(...)`).
    pub relation: Option<String>,
    /// A model that is MetricFlow's time spine.
    pub time_spine: Option<Yaml>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ColumnDef {
    pub name: String,
    pub description: Option<String>,
    pub data_type: Option<String>,
    pub meta: Option<Mapping>,
    pub tags: Option<Yaml>,
    pub quote: Option<bool>,
    pub constraints: Vec<Yaml>,
    #[serde(alias = "tests")]
    pub data_tests: Vec<Yaml>,
    pub config: Option<Mapping>,
}

/// A key that is present, even as `null` (absent keys stay `None` by default).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Yaml>, D::Error> {
    let v = Yaml::deserialize(d)?;
    Ok((v.as_str() != Some(ABSENT)).then_some(v))
}

/// How an absent key is written where every field is written (the parse
/// cache), so that reading it back gives `None` rather than `null`.
const ABSENT: &str = "\u{0}absent";

fn absent_marked<S: serde::Serializer>(v: &Option<Yaml>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => v.serialize(s),
        None => ABSENT.serialize(s),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SourceDef {
    pub name: String,
    pub description: Option<String>,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub loader: Option<String>,
    pub loaded_at_field: Option<String>,
    pub loaded_at_query: Option<String>,
    pub freshness: Option<Yaml>,
    pub quoting: Option<Mapping>,
    pub meta: Option<Mapping>,
    pub tags: Option<Yaml>,
    pub config: Option<Mapping>,
    pub overrides: Option<String>,
    pub tables: Vec<SourceTableDef>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SourceTableDef {
    pub name: String,
    pub identifier: Option<String>,
    pub description: Option<String>,
    pub loaded_at_field: Option<String>,
    pub loaded_at_query: Option<String>,
    /// `freshness: null` is kept (as `Some(Null)`): it turns the source's
    /// freshness off for this table, as in dbt.
    #[serde(deserialize_with = "present", serialize_with = "absent_marked")]
    pub freshness: Option<Yaml>,
    pub quoting: Option<Mapping>,
    pub external: Option<Yaml>,
    pub meta: Option<Mapping>,
    pub tags: Option<Yaml>,
    pub config: Option<Mapping>,
    pub columns: Vec<ColumnDef>,
    #[serde(alias = "tests")]
    pub data_tests: Vec<Yaml>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct MacroPatch {
    pub name: String,
    pub description: Option<String>,
    pub arguments: Vec<Yaml>,
    pub meta: Option<Mapping>,
    pub docs: Option<Yaml>,
    pub config: Option<Mapping>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ExposureDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub owner: Option<Mapping>,
    pub description: Option<String>,
    pub label: Option<String>,
    pub url: Option<String>,
    pub maturity: Option<String>,
    pub depends_on: Vec<String>,
    pub meta: Option<Mapping>,
    pub tags: Option<Yaml>,
    pub config: Option<Mapping>,
}

/// Files larger than this are split at top-level list items and parsed in parallel.
const SPLIT_BYTES: usize = 256 * 1024;

/// Parses one properties file. A large file without anchors or merge keys is
/// split into chunks of whole list items (each chunk padded with blank lines so
/// reported line numbers stay exact) and the chunks are parsed in parallel.
pub fn parse_schema_file(file: &str, text: &str) -> Result<SchemaFile, Diagnostic> {
    if text.len() < SPLIT_BYTES || has_anchors(text) {
        return parse_schema_text(file, text);
    }
    let Some(chunks) = split_items(text, rayon::current_num_threads().max(1) * 4) else {
        return parse_schema_text(file, text);
    };
    use rayon::prelude::*;
    let parts: Vec<Result<SchemaFile, Diagnostic>> = chunks
        .par_iter()
        .map(|c| parse_schema_text(file, c))
        .collect();
    let mut out = SchemaFile::default();
    for p in parts {
        let p = p?;
        out.models.extend(p.models);
        out.seeds.extend(p.seeds);
        out.snapshots.extend(p.snapshots);
        out.analyses.extend(p.analyses);
        out.sources.extend(p.sources);
        out.macros.extend(p.macros);
        out.exposures.extend(p.exposures);
        out.unit_tests.extend(p.unit_tests);
        if p.version.is_some() {
            out.version = p.version;
        }
    }
    Ok(out)
}

/// Anchors, aliases or merge keys tie parts of a file together: no splitting.
fn has_anchors(text: &str) -> bool {
    text.contains("<<")
        || text.lines().any(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.split_once(": ")
                .map(|(_, v)| v.trim_start())
                .unwrap_or(t)
                .starts_with(['&', '*'])
        })
}

/// Splits a properties file into documents of whole top-level list items.
/// Each document repeats its section key and keeps every line at its original
/// line number. `None` when the layout is not the plain `key:\n  - item` form.
fn split_items(text: &str, pieces: usize) -> Option<Vec<String>> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // (section key, line index of each item start, end line index of the section)
    let mut sections: Vec<(String, Vec<usize>, usize)> = Vec::new();
    let mut other: Vec<usize> = Vec::new();
    let mut current: Option<usize> = None;
    let mut item_indent: Option<usize> = None;
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_end();
        if t.is_empty() || t.trim_start().starts_with('#') {
            continue;
        }
        let indent = t.len() - t.trim_start().len();
        if indent == 0 {
            if let Some(c) = current.take() {
                sections[c].2 = i;
            }
            if t.starts_with("- ") || t.starts_with('-') && t.len() == 1 {
                return None;
            }
            let key = t
                .strip_suffix(':')
                .filter(|k| !k.contains(':') && !k.contains(' '));
            match key {
                Some(k)
                    if matches!(
                        k,
                        "models"
                            | "seeds"
                            | "snapshots"
                            | "analyses"
                            | "sources"
                            | "macros"
                            | "exposures"
                    ) =>
                {
                    sections.push((k.to_string(), vec![], lines.len()));
                    current = Some(sections.len() - 1);
                    item_indent = None;
                }
                _ => other.push(i),
            }
            continue;
        }
        if let Some(c) = current {
            let first_item = item_indent.is_none() && t.trim_start().starts_with("- ");
            if first_item {
                item_indent = Some(indent);
            }
            if Some(indent) == item_indent && t.trim_start().starts_with("- ") {
                sections[c].1.push(i);
            } else if item_indent.is_none() {
                return None;
            }
        } else if !other.is_empty() {
            other.push(i);
        } else {
            return None;
        }
    }
    let total_items: usize = sections.iter().map(|s| s.1.len()).sum();
    if total_items < pieces * 2 {
        return None;
    }
    let per = total_items.div_ceil(pieces);
    let mut docs = Vec::new();
    let pad = |from_line: usize| "\n".repeat(from_line.saturating_sub(1));
    for (key, starts, end) in &sections {
        for group in starts.chunks(per) {
            let first = group[0];
            let last_end = starts
                .iter()
                .position(|&s| s == *group.last().unwrap_or(&first))
                .and_then(|p| starts.get(p + 1).copied())
                .unwrap_or(*end);
            let mut doc = format!("{key}:");
            doc.push_str(&pad(first));
            doc.push('\n');
            for l in &lines[first..last_end] {
                doc.push_str(l);
            }
            docs.push(doc);
        }
    }
    // Everything outside the split sections (version, other keys) as one document.
    let mut rest = String::new();
    let mut last = 0;
    for &i in &other {
        rest.push_str(&"\n".repeat(i.saturating_sub(last)));
        rest.push_str(lines[i].trim_end_matches('\n'));
        last = i;
    }
    rest.push('\n');
    docs.push(rest);
    Some(docs)
}

fn parse_schema_text(file: &str, text: &str) -> Result<SchemaFile, Diagnostic> {
    crate::error::yaml_depth_check(file, text)?;
    if !text.contains("<<") {
        return serde_yaml::from_str::<Option<SchemaFile>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| shape_or_syntax(file, text, &e));
    }
    let mut v: Yaml = crate::error::yaml_from_str(file, text)?;
    v.apply_merge()
        .map_err(|e| yaml_diagnostic(file, text, &e))?;
    if v.is_null() {
        return Ok(SchemaFile::default());
    }
    serde_yaml::from_value(v).map_err(|e| {
        let msg = e.to_string();
        let key = msg.split(':').next().unwrap_or("").trim();
        Diagnostic::new(DiagKind::Yaml, format!("invalid properties file: {msg}")).at(
            file,
            Some(text),
            line_of(text, key),
            1,
        )
    })
}

fn shape_or_syntax(file: &str, text: &str, e: &serde_yaml::Error) -> Diagnostic {
    let d = yaml_diagnostic(file, text, e);
    if e.to_string().contains("invalid type") || e.to_string().contains("missing field") {
        Diagnostic {
            message: d.message.replace("invalid YAML", "invalid properties file"),
            hint: Some(
                "see dbt's properties reference: models, sources and columns are lists of mappings with a 'name'"
                    .into(),
            ),
            ..d
        }
    } else {
        d
    }
}

/// A declared data test before it becomes a node.
#[derive(Debug, Clone)]
pub struct TestSpec {
    /// Built-in or custom generic test name, e.g. `unique` or `dbt_utils.expression_is_true`.
    pub test_name: String,
    pub namespace: Option<String>,
    /// Arguments other than `model`/`column_name`.
    pub args: Mapping,
    pub config: Mapping,
    /// An explicit `name:` that replaces the synthesized one.
    pub custom_name: Option<String>,
    pub description: Option<String>,
}

const TEST_CONFIG_KEYS: &[&str] = &[
    "severity",
    "error_if",
    "warn_if",
    "where",
    "limit",
    "fail_calc",
    "store_failures",
    "store_failures_as",
    "tags",
    "enabled",
    "meta",
    "alias",
    "schema",
    "database",
];

/// Reads one entry of a `data_tests:` list in any of dbt's forms.
pub fn parse_test_entry(entry: &Yaml) -> Result<TestSpec, String> {
    let (mut name, body) = match entry {
        Yaml::String(s) => (s.clone(), Mapping::new()),
        Yaml::Mapping(m) if m.len() == 1 && !m.contains_key("test_name") => {
            let (k, v) = m.iter().next().ok_or("empty test entry")?;
            let k = k.as_str().ok_or("test name must be a string")?.to_string();
            match v {
                Yaml::Mapping(b) => (k, b.clone()),
                Yaml::Null => (k, Mapping::new()),
                other => return Err(format!("test '{k}' has a non-mapping body: {other:?}")),
            }
        }
        Yaml::Mapping(m) => {
            let k = m
                .get("test_name")
                .and_then(Yaml::as_str)
                .ok_or("a test entry with several keys needs 'test_name'")?
                .to_string();
            (k, m.clone())
        }
        other => return Err(format!("unsupported test entry: {other:?}")),
    };
    let mut args = Mapping::new();
    let mut config = Mapping::new();
    let mut custom_name = None;
    let mut description = None;
    for (k, v) in body {
        let key = k.as_str().unwrap_or_default();
        match key {
            "test_name" => {}
            "name" => custom_name = v.as_str().map(str::to_string),
            "description" => description = v.as_str().map(str::to_string),
            "config" => {
                if let Yaml::Mapping(c) = v {
                    for (ck, cv) in c {
                        config.insert(ck, cv);
                    }
                }
            }
            "arguments" => {
                if let Yaml::Mapping(a) = v {
                    for (ak, av) in a {
                        args.insert(ak, av);
                    }
                }
            }
            k if TEST_CONFIG_KEYS.contains(&k) => {
                config.insert(Yaml::String(k.into()), v);
            }
            _ => {
                args.insert(Yaml::String(key.into()), v);
            }
        }
    }
    let namespace = match name.split_once('.') {
        Some((ns, n)) => {
            let ns = ns.to_string();
            name = n.to_string();
            Some(ns)
        }
        None => None,
    };
    Ok(TestSpec {
        test_name: name,
        namespace,
        args,
        config,
        custom_name,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_forms() {
        let y: Vec<Yaml> = serde_yaml::from_str(
            "- not_null\n- accepted_values:\n    values: [a, b]\n    severity: warn\n- accepted_values:\n    arguments:\n      values: [c]\n    config:\n      where: x > 1\n- dbt_utils.expression_is_true:\n    expression: a > 0\n",
        )
        .unwrap();
        let t: Vec<TestSpec> = y.iter().map(|e| parse_test_entry(e).unwrap()).collect();
        assert_eq!(t[0].test_name, "not_null");
        assert!(t[1].args.contains_key("values"));
        assert!(t[1].config.contains_key("severity"));
        assert!(t[2].args.contains_key("values"));
        assert!(t[2].config.contains_key("where"));
        assert_eq!(t[3].namespace.as_deref(), Some("dbt_utils"));
    }

    #[test]
    fn merge_keys_apply() {
        let f = parse_schema_file(
            "m.yml",
            "x: &d\n  description: shared\nmodels:\n  - name: a\n    <<: *d\n",
        )
        .unwrap();
        assert_eq!(f.models[0].description.as_deref(), Some("shared"));
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn split_chunks_parse_like_the_whole_file_and_keep_lines() {
        let mut text = String::from("version: 2\n\nmodels:\n");
        for i in 0..400 {
            text.push_str(&format!(
                "  - name: m{i}\n    description: \"model {i}\"\n    columns:\n      - name: id\n        data_tests: [unique]\n"
            ));
        }
        text.push_str("sources:\n  - name: raw\n    tables:\n      - name: t\n");
        let chunks = split_items(&text, 8).expect("splittable");
        assert!(chunks.len() > 2);
        let mut names = Vec::new();
        for c in &chunks {
            let f = parse_schema_text("x.yml", c).unwrap();
            names.extend(f.models.into_iter().map(|m| m.name));
        }
        assert_eq!(names.len(), 400);
        assert_eq!(names[399], "m399");
        // A broken item far down the file reports its real line.
        let bad = text.replace(
            "  - name: m300\n    description: \"model 300\"",
            "  - name: m300\n    description: [oops",
        );
        let padded = bad + &"#\n".repeat(SPLIT_BYTES / 2);
        let err = parse_schema_file("x.yml", &padded).unwrap_err();
        let line = err.location.unwrap().line;
        assert_eq!(line, 3 + 300 * 5 + 2, "{}", err.message);
    }
}
