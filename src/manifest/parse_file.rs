//! Parsing one file on its own: a SQL file gives its nodes (rendered once in the
//! parse phase, recording refs, sources, macros and inline `config()`), a CSV its
//! seed, a properties YAML its patches, generic tests, YAML snapshots, sources,
//! exposures and unit tests, a Markdown file its docs blocks. Nothing here looks
//! at another file; the link step puts the results together. The result
//! depends only on the file's content and the Jinja environment, so it can be
//! reused for as long as both are unchanged.

use indexmap::IndexMap;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use sha2::{Digest, Sha256};

use super::generic_tests::{self, TestTarget};
use super::{Doc, Fixture, Node, NodeBase, ResourceType, TestMetadata, UnitGiven, UnitTest};
use crate::confmap::{yaml_key, yaml_to_json, ConfigMap};
use crate::error::{line_of, DiagKind, Diagnostic};
use crate::jinja::{self, preprocess, JinjaEnv, NodeInfo, Phase, RelationName, RenderInputs};
use crate::project::schema::{parse_schema_file, parse_test_entry, ColumnDef, SchemaFile};
use crate::project::{FileId, FileKind, SourceFile};

/// What parsing a file needs besides the file.
pub struct FileCtx<'a> {
    pub jinja: &'a JinjaEnv,
    /// Where parse-phase `this` points (the target's database and schema).
    pub target_database: &'a str,
    pub target_schema: &'a str,
}

/// What one file yields, with the problems found in it.
#[derive(Debug)]
pub struct FileParse {
    pub file: FileId,
    pub items: FileItems,
    pub diagnostics: Vec<Diagnostic>,
    /// The vars and env vars its renders read (for the parse cache).
    pub inputs: RenderInputs,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum FileItems {
    /// Models, analyses, singular tests, snapshot blocks; seeds.
    Nodes(Vec<Node>),
    Properties(Box<Properties>),
    Docs(Vec<Doc>),
    /// Macro files are read into the Jinja environment before any other file.
    Macros,
}

/// A properties file: its raw YAML and what it defines by itself.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Properties {
    pub schema: SchemaFile,
    /// Generic tests, with the config their own YAML entry sets.
    pub tests: Vec<(Node, ConfigMap)>,
    /// YAML-defined snapshots (`relation:`), rendered like snapshot blocks.
    pub snapshots: Vec<Node>,
    pub unit_tests: Vec<UnitTest>,
}

pub(crate) fn sha256(s: &str) -> String {
    let mut h = Sha256::new();
    h.update(s.as_bytes());
    format!("{:x}", h.finalize())
}

fn stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file)
}

pub(crate) fn dirs(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
    parts.pop();
    parts
}

/// Parses one file.
pub fn parse_file(ctx: &FileCtx<'_>, f: &SourceFile) -> FileParse {
    let mut diagnostics = Vec::new();
    let mut inputs = RenderInputs::default();
    let items = match f.kind {
        FileKind::Macro => FileItems::Macros,
        FileKind::Docs => FileItems::Docs(docs(f)),
        FileKind::Properties => match properties(ctx, f, &mut diagnostics, &mut inputs) {
            Some(p) => FileItems::Properties(Box::new(p)),
            None => FileItems::Nodes(vec![]),
        },
        FileKind::Seed => FileItems::Nodes(vec![seed(f)]),
        FileKind::Model | FileKind::Analysis | FileKind::SingularTest | FileKind::Snapshot => {
            let mut nodes = Vec::new();
            for n in sql_nodes(f) {
                match render(ctx, f, n, &mut inputs) {
                    Ok(n) => nodes.push(n),
                    Err(d) => diagnostics.push(d),
                }
            }
            FileItems::Nodes(nodes)
        }
    };
    FileParse {
        file: f.id.clone(),
        items,
        diagnostics,
        inputs,
    }
}

fn base(f: &SourceFile, kind: ResourceType, name: &str, path: String, fqn: Vec<String>) -> Node {
    Node::new(NodeBase {
        unique_id: format!("{}.{}.{name}", kind.as_str(), f.id.package),
        resource_type: kind,
        package: f.id.package.clone(),
        name: name.to_string(),
        path,
        original_file_path: f.id.path.clone(),
        display_path: f.display.clone(),
        fqn,
    })
}

fn base_fqn(f: &SourceFile, name: &str) -> Vec<String> {
    let mut v = vec![f.id.package.clone()];
    v.extend(dirs(&f.path));
    v.push(name.to_string());
    v
}

/// dbt hashes SQL files with whitespace runs folded to one space.
fn sql_checksum(contents: &str) -> String {
    sha256(&contents.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn seed(f: &SourceFile) -> Node {
    let name = stem(&f.path).to_string();
    let mut n = base(
        f,
        ResourceType::Seed,
        &name,
        f.path.clone(),
        base_fqn(f, &name),
    );
    n.checksum = sha256(f.contents.trim());
    n
}

/// The nodes a SQL file defines, before rendering.
fn sql_nodes(f: &SourceFile) -> Vec<Node> {
    let checksum = sql_checksum(&f.contents);
    if f.kind == FileKind::Snapshot {
        return preprocess::named_blocks(&f.contents)
            .into_iter()
            .filter(|b| b.kind == "snapshot")
            .map(|b| {
                let mut fqn = vec![f.id.package.clone()];
                fqn.extend(
                    f.path
                        .trim_end_matches(".sql")
                        .split('/')
                        .map(str::to_string),
                );
                fqn.push(b.name.clone());
                let mut n = base(f, ResourceType::Snapshot, &b.name, f.path.clone(), fqn);
                n.raw_code = b.body;
                n.line_offset = b.line - 1;
                n.checksum = checksum.clone();
                n
            })
            .collect();
    }
    let kind = match f.kind {
        FileKind::Model => ResourceType::Model,
        FileKind::Analysis => ResourceType::Analysis,
        _ => ResourceType::Test,
    };
    let name = stem(&f.path).to_string();
    let path = if kind == ResourceType::Analysis {
        format!("analysis/{}", f.path)
    } else {
        f.path.clone()
    };
    let mut fqn = base_fqn(f, &name);
    if kind == ResourceType::Analysis {
        fqn.insert(1, "analysis".into());
    }
    let mut n = base(f, kind, &name, path, fqn);
    // dbt strips file contents; the offset keeps error lines right.
    let lead = f.contents.len() - f.contents.trim_start().len();
    n.line_offset = f.contents[..lead].matches('\n').count();
    n.raw_code = f.contents.trim().to_string();
    n.checksum = checksum;
    vec![n]
}

/// The parse-phase render of a node: records its refs, sources, macros and
/// inline config, and keeps the output when compiling can reuse it.
fn render(
    ctx: &FileCtx<'_>,
    f: &SourceFile,
    mut node: Node,
    inputs: &mut RenderInputs,
) -> Result<Node, Diagnostic> {
    let rewritten = preprocess::rewrite_mutable_literals(&node.raw_code);
    let info = NodeInfo {
        package: node.package.clone(),
        name: node.name.clone(),
        unique_id: node.unique_id.clone(),
        resource_type: node.resource_type.as_str().to_string(),
        this: Some(RelationName::new(
            ctx.target_database,
            ctx.target_schema,
            &node.name,
            ctx.jinja.shared.quoting,
        )),
        fqn: node.fqn.clone(),
        ..Default::default()
    };
    let rctx = ctx.jinja.ctx(info, Phase::Parse);
    let out = ctx.jinja.render(&node.display_path, &rewritten, &rctx);
    // What the render read counts even when it failed: a var may fix it.
    let cap = rctx.take_capture();
    inputs.extend(cap.inputs);
    let out = out.map_err(|e| {
        with_call_site(
            jinja::diagnostic_from_jinja(
                &e,
                &node.display_path,
                Some(&f.contents),
                node.line_offset,
            ),
            &node.display_path,
            node.resource_type,
            &node.name,
        )
    })?;
    node.phase_sensitive = rctx.is_sensitive();
    if !node.phase_sensitive {
        node.parse_output = Some(out);
    }
    node.refs = cap.refs;
    node.sources = cap.sources;
    node.depends_on_macros = cap.macros.into_iter().collect();
    node.config_call = cap.config.into_iter().collect();
    Ok(node)
}

/// Errors raised inside a macro also say which node called it.
pub fn with_call_site(
    mut d: Diagnostic,
    node_file: &str,
    rt: ResourceType,
    name: &str,
) -> Diagnostic {
    let elsewhere = d.location.as_ref().is_some_and(|l| l.file != node_file);
    if elsewhere {
        let called = format!("while rendering {} '{name}' ({node_file})", rt.as_str());
        d.hint = Some(match d.hint.take() {
            Some(h) if h != "see the line above" => format!("{h}; {called}"),
            _ => called,
        });
    }
    d
}

fn docs(f: &SourceFile) -> Vec<Doc> {
    preprocess::named_blocks(&f.contents)
        .into_iter()
        .filter(|b| b.kind == "docs")
        .map(|b| Doc {
            unique_id: format!("doc.{}.{}", f.id.package, b.name),
            package: f.id.package.clone(),
            name: b.name,
            path: f.path.clone(),
            original_file_path: f.id.path.clone(),
            block_contents: b.body.trim().to_string(),
            line: b.line,
        })
        .collect()
}

fn properties(
    ctx: &FileCtx<'_>,
    f: &SourceFile,
    diags: &mut Vec<Diagnostic>,
    inputs: &mut RenderInputs,
) -> Option<Properties> {
    let mut schema = match parse_schema_file(&f.display, &f.contents) {
        Ok(s) => s,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let mut tests = Vec::new();
    let lists: [(&Vec<crate::project::schema::NodePatch>, &'static str); 3] = [
        (&schema.models, "models"),
        (&schema.seeds, "seeds"),
        (&schema.snapshots, "snapshots"),
    ];
    for (list, key) in lists {
        for p in list {
            let target = TestTarget::Node {
                name: p.name.clone(),
                yaml_key: key,
            };
            yaml_tests(
                ctx,
                f,
                &target,
                &p.data_tests,
                &p.columns,
                &mut tests,
                diags,
            );
        }
    }
    for src in &schema.sources {
        for t in &src.tables {
            let target = TestTarget::Source {
                source: src.name.clone(),
                table: t.name.clone(),
            };
            yaml_tests(
                ctx,
                f,
                &target,
                &t.data_tests,
                &t.columns,
                &mut tests,
                diags,
            );
        }
    }
    // The test entries became test nodes; linking never reads them, and
    // without them the properties are a third smaller to keep and cache.
    drop_test_entries(&mut schema);
    let mut snapshots = Vec::new();
    for p in schema.snapshots.iter().filter(|p| p.relation.is_some()) {
        let rel = p.relation.clone().unwrap_or_default();
        let mut n = base(
            f,
            ResourceType::Snapshot,
            &p.name,
            f.path.clone(),
            base_fqn(f, &p.name),
        );
        n.raw_code = format!("select * from {{{{ {rel} }}}}");
        n.checksum = sql_checksum(&f.contents);
        match render(ctx, f, n, inputs) {
            Ok(n) => snapshots.push(n),
            Err(d) => diags.push(d),
        }
    }
    let mut unit_tests = Vec::new();
    for u in &schema.unit_tests {
        match unit_test(f, u) {
            Ok(t) => unit_tests.push(t),
            Err(d) => diags.push(d),
        }
    }
    Some(Properties {
        schema,
        tests,
        snapshots,
        unit_tests,
    })
}

fn drop_test_entries(schema: &mut SchemaFile) {
    let patches = schema
        .models
        .iter_mut()
        .chain(schema.seeds.iter_mut())
        .chain(schema.snapshots.iter_mut())
        .chain(schema.analyses.iter_mut());
    for p in patches {
        p.data_tests = Vec::new();
        for c in &mut p.columns {
            c.data_tests = Vec::new();
        }
    }
    for t in schema.sources.iter_mut().flat_map(|s| s.tables.iter_mut()) {
        t.data_tests = Vec::new();
        for c in &mut t.columns {
            c.data_tests = Vec::new();
        }
    }
}

/// The tests of one model, seed, snapshot or source table, then those of its columns.
fn yaml_tests(
    ctx: &FileCtx<'_>,
    f: &SourceFile,
    target: &TestTarget,
    own: &[Yaml],
    columns: &[ColumnDef],
    out: &mut Vec<(Node, ConfigMap)>,
    diags: &mut Vec<Diagnostic>,
) {
    let own = own.iter().map(|e| (None, e));
    let per_column = columns
        .iter()
        .flat_map(|c| c.data_tests.iter().map(move |e| (Some(c), e)));
    for (column, entry) in own.chain(per_column) {
        match generic_test(ctx, f, target, column, entry) {
            Ok(t) => out.push(t),
            Err(d) => diags.push(d),
        }
    }
}

fn generic_test(
    ctx: &FileCtx<'_>,
    f: &SourceFile,
    target: &TestTarget,
    column: Option<&ColumnDef>,
    entry: &Yaml,
) -> Result<(Node, ConfigMap), Diagnostic> {
    let yml = &f.display;
    let spec = parse_test_entry(entry).map_err(|msg| {
        let needle = match target {
            TestTarget::Node { name, .. } => format!("name: {name}"),
            TestTarget::Source { table, .. } => format!("name: {table}"),
        };
        Diagnostic::new(DiagKind::Yaml, format!("invalid data test: {msg}")).at(
            yml,
            Some(&f.contents),
            line_of(&f.contents, &needle),
            1,
        )
    })?;
    let col_name = column.map(|c| {
        if c.quote == Some(true) {
            format!("\"{}\"", c.name)
        } else {
            c.name.clone()
        }
    });
    let pkg = f.id.package.as_str();
    let t = generic_tests::build(pkg, target, col_name.as_deref(), &spec);
    let (mut refs, mut sources) = (Vec::new(), Vec::new());
    match target {
        TestTarget::Node { name, .. } => refs.push(crate::jinja::RefCall {
            name: name.clone(),
            package: None,
            version: None,
        }),
        TestTarget::Source { source, table } => sources.push((source.clone(), table.clone())),
    }
    for r in t.refs {
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    for s in t.sources {
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    let mut node = Node::new(NodeBase {
        unique_id: t.unique_id,
        resource_type: ResourceType::Test,
        package: pkg.to_string(),
        name: t.name.clone(),
        path: format!("{}.sql", t.short_name),
        original_file_path: f.id.path.clone(),
        display_path: yml.clone(),
        fqn: base_fqn(f, &t.name),
    });
    node.raw_code = t.raw_code;
    node.description = t.description;
    node.refs = refs;
    node.sources = sources;
    node.phase_sensitive = true;
    node.test = Some(Box::new(TestMetadata {
        name: t.test_name,
        namespace: t.namespace,
        kwargs: t.kwargs,
        column_name: t.column_name,
        attached_node: None,
        file_key_name: t.file_key_name,
        yaml_path: yml.clone(),
    }));
    let test_macro = format!("test_{}", spec.test_name);
    let def = match &spec.namespace {
        Some(ns) => ctx.jinja.macros().get_in(ns, &test_macro),
        None => ctx.jinja.macros().resolve(pkg, &test_macro),
    };
    if let Some(d) = def {
        node.depends_on_macros.push(d.unique_id.clone());
    }
    node.depends_on_macros
        .push("macro.dbt.get_where_subquery".into());
    Ok((node, t.config.into_iter().collect()))
}

/// Rows in `dict`, `csv` or `sql` format.
fn fixture(v: Option<&Yaml>, file: &str, text: &str, name: &str) -> Result<Fixture, Diagnostic> {
    let err = |msg: String| {
        Diagnostic::new(DiagKind::Yaml, format!("unit test '{name}': {msg}")).at(
            file,
            Some(text),
            line_of(text, &format!("name: {name}")),
            1,
        )
    };
    let Some(v) = v else {
        return Ok(Fixture::Rows(vec![]));
    };
    let format = v.get("format").and_then(Yaml::as_str).unwrap_or("dict");
    if let Some(file) = v.get("fixture").and_then(Yaml::as_str) {
        let format = match format {
            "csv" => super::FixtureFormat::Csv,
            "sql" => super::FixtureFormat::Sql,
            other => {
                return Err(err(format!(
                    "a fixture file needs format csv or sql, not '{other}'"
                )))
            }
        };
        return Ok(Fixture::File {
            name: file.to_string(),
            format,
        });
    }
    let rows = v.get("rows");
    match (format, rows) {
        ("dict", Some(Yaml::Sequence(items))) => Ok(Fixture::Rows(
            items
                .iter()
                .map(|r| match r {
                    Yaml::Mapping(m) => Ok(m
                        .iter()
                        .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                        .collect()),
                    _ => Err(err("dict rows must be mappings".into())),
                })
                .collect::<Result<_, _>>()?,
        )),
        ("dict", None) => Ok(Fixture::Rows(vec![])),
        ("csv", Some(Yaml::String(csv_text))) => csv_rows(csv_text)
            .map(Fixture::Rows)
            .map_err(|e| err(format!("csv rows: {e}"))),
        ("sql", Some(Yaml::String(sql))) => Ok(Fixture::Sql(sql.clone())),
        (f, _) => Err(err(format!(
            "rows in format '{f}' must be {}",
            if f == "dict" { "a list" } else { "a string" }
        ))),
    }
}

/// Rows of a csv fixture (inline `rows:` or a fixture file).
pub(crate) fn csv_rows(text: &str) -> Result<Vec<IndexMap<String, Json>>, csv::Error> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.trim().as_bytes());
    let header: Vec<String> = rdr
        .headers()?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut out = Vec::new();
    for r in rdr.records() {
        let r = r?;
        out.push(
            header
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.clone(), csv_value(v)))
                .collect(),
        );
    }
    Ok(out)
}

/// A csv fixture value: numbers and booleans as such, empty as NULL.
fn csv_value(v: &str) -> Json {
    if v.is_empty() {
        return Json::Null;
    }
    if let Ok(i) = v.parse::<i64>() {
        return Json::from(i);
    }
    if v.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-'))
    {
        if let Some(n) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Json::Number(n);
        }
    }
    match v {
        "true" => Json::Bool(true),
        "false" => Json::Bool(false),
        _ => Json::from(v),
    }
}

fn unit_test(f: &SourceFile, u: &Yaml) -> Result<UnitTest, Diagnostic> {
    let display = f.display.as_str();
    let name = u
        .get("name")
        .and_then(Yaml::as_str)
        .unwrap_or_default()
        .to_string();
    let model = u
        .get("model")
        .and_then(Yaml::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() || model.is_empty() {
        return Err(
            Diagnostic::new(DiagKind::Yaml, "a unit test needs `name` and `model`").at(
                display,
                Some(&f.contents),
                line_of(&f.contents, "unit_tests:"),
                1,
            ),
        );
    }
    let mut given = Vec::new();
    for g in u
        .get("given")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let input = g
            .get("input")
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_string();
        let (mut refs, mut sources) = (Vec::new(), Vec::new());
        generic_tests::scan_calls(&Json::from(input.clone()), &mut refs, &mut sources);
        if refs.is_empty() && sources.is_empty() {
            return Err(Diagnostic::new(
                DiagKind::Yaml,
                format!("unit test '{name}': given input '{input}' is not ref(...) or source(...)"),
            )
            .at(display, Some(&f.contents), line_of(&f.contents, &input), 1));
        }
        given.push(UnitGiven {
            rows: fixture(Some(g), display, &f.contents, &name)?,
            input,
            refs,
            sources,
        });
    }
    let overrides = u.get("overrides");
    let map = |k: &str| -> IndexMap<String, Json> {
        overrides
            .and_then(|o| o.get(k))
            .and_then(Yaml::as_mapping)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(UnitTest {
        unique_id: format!("unit_test.{}.{model}.{name}", f.id.package),
        package: f.id.package.clone(),
        expect: fixture(u.get("expect"), display, &f.contents, &name)?,
        vars: map("vars"),
        env_vars: map("env_vars"),
        macros: map("macros"),
        description: u
            .get("description")
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_string(),
        original_file_path: f.id.path.clone(),
        display_path: display.to_string(),
        raw: yaml_to_json(u),
        fqn: {
            let mut fqn = vec![f.id.package.clone()];
            let dirs: Vec<&str> = f.id.path.split('/').collect();
            fqn.extend(
                dirs.iter()
                    .skip(1)
                    .take(dirs.len().saturating_sub(2))
                    .map(|d| d.to_string()),
            );
            fqn.push(model.clone());
            fqn.push(name.clone());
            fqn
        },
        config: Default::default(),
        tags: Vec::new(),
        enabled: true,
        name,
        model,
        given,
    })
}

/// Parses every file of a project in parallel.
pub fn parse_all(ctx: &FileCtx<'_>, files: &[SourceFile]) -> Vec<FileParse> {
    use rayon::prelude::*;
    files.par_iter().map(|f| parse_file(ctx, f)).collect()
}
