//! Project → Manifest: renders every SQL file once in the parse phase, applies
//! schema YAML, layers configs, builds tests and sources, resolves names and refs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use indexmap::IndexMap;
use rayon::prelude::*;
use regex::Regex;
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};
use sha2::{Digest, Sha256};

use super::generic_tests::{self, TestTarget};
use super::*;
use crate::confmap::{merge_all, merge_key, normalize_hooks, yaml_key, yaml_to_json, ConfigMap};
use crate::error::{line_of, suggest, DiagKind, Diagnostic, Diagnostics, Error};
use crate::jinja::{
    self, preprocess, EnvSettings, JinjaEnv, MacroSource, NodeInfo, Phase, QuotePolicy,
    RelationName,
};
use crate::project::config::{apply_folder_configs, config_from_yaml, NodeConfig};
use crate::project::schema::{
    parse_schema_file, parse_test_entry, ColumnDef, NodePatch, SchemaFile,
};
use crate::project::{FileKind, Project, SourceFile};

static DOC_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\{\{\s*doc\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]+)['"]\s*)?\)\s*\}\}"#)
        .expect("static regex")
});

/// The parse result: the manifest and the Jinja environment used to compile it.
pub struct Parsed {
    pub manifest: Manifest,
    pub jinja: JinjaEnv,
    /// Where display paths are relative to.
    pub project_dir: std::path::PathBuf,
}

fn sha256(s: &str) -> String {
    let mut h = Sha256::new();
    h.update(s.as_bytes());
    format!("{:x}", h.finalize())
}

fn stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file)
}

fn dirs(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
    parts.pop();
    parts
}

/// A node before configs and names are resolved.
struct Draft {
    file: usize,
    kind: ResourceType,
    name: String,
    fqn: Vec<String>,
    path: String,
    raw_code: String,
    line_offset: usize,
    patch: Option<(usize, NodePatch)>,
}

/// Prints phase timings to stderr when `STRATA_TIMINGS` is set.
pub fn timing(label: &str, since: std::time::Instant) {
    if std::env::var_os("STRATA_TIMINGS").is_some() {
        eprintln!(
            "[timing] {label}: {:.1} ms",
            since.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Parses the project; templates' `log`/`print`/`exceptions.warn` go to `log`.
pub fn parse(project: &Project, log: Arc<dyn jinja::LogSink>) -> Result<Parsed, Error> {
    let t0 = std::time::Instant::now();
    let root = project.name().to_string();
    let display: Vec<String> = project
        .files
        .iter()
        .map(|f| display_path(project, f))
        .collect();
    let mut diags = Diagnostics::default();

    // Jinja environment with every macro of every package.
    let macro_sources: Vec<MacroSource<'_>> = project
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == FileKind::Macro)
        .map(|(i, f)| MacroSource {
            package: project.packages[f.package].name(),
            display_path: &display[i],
            original_path: &f.original_path,
            contents: &f.contents,
        })
        .collect();
    let quoting = quote_policy(project);
    let settings = EnvSettings {
        project_name: root.clone(),
        adapter_type: project.target.connection.type_name().to_string(),
        target: project.target.to_json(),
        target_schema: project.target.schema.clone(),
        target_database: project.target.database.clone(),
        vars: project
            .packages
            .iter()
            .map(|p| (p.name().to_string(), Arc::new(p.vars.clone())))
            .collect(),
        quoting,
        packages: project
            .packages
            .iter()
            .map(|p| p.name().to_string())
            .collect(),
        search_orders: project
            .root()
            .settings
            .dispatch
            .iter()
            .map(|d| (d.macro_namespace.clone(), d.search_order.clone()))
            .collect(),
        flags: serde_json::json!({"FULL_REFRESH": false, "WHICH": "parse"}),
        log,
    };
    let jinja = JinjaEnv::build(settings, &macro_sources)?;

    timing("jinja env", t0);
    let mut m = Manifest {
        project_name: root.clone(),
        adapter_type: project.target.connection.type_name().to_string(),
        quoting,
        warnings: project.warnings.clone(),
        ..Default::default()
    };

    // Docs blocks.
    for (i, f) in project.files.iter().enumerate() {
        if f.kind != FileKind::Docs {
            continue;
        }
        let pkg = project.packages[f.package].name();
        for b in preprocess::named_blocks(&f.contents)
            .into_iter()
            .filter(|b| b.kind == "docs")
        {
            let uid = format!("doc.{pkg}.{}", b.name);
            if m.docs.contains_key(&uid) {
                diags.push(
                    Diagnostic::new(
                        DiagKind::Duplicate,
                        format!("docs block '{}' is defined twice", b.name),
                    )
                    .at(&display[i], Some(&f.contents), b.line, 1),
                );
                continue;
            }
            m.docs.insert(
                uid.clone(),
                Doc {
                    unique_id: uid,
                    package: pkg.to_string(),
                    name: b.name,
                    path: f.path.clone(),
                    original_file_path: f.original_path.clone(),
                    block_contents: b.body.trim().to_string(),
                },
            );
        }
    }

    // Properties files, in parallel.
    let schema_results: Vec<(usize, Result<SchemaFile, Diagnostic>)> = project
        .files
        .par_iter()
        .enumerate()
        .filter(|(_, f)| f.kind == FileKind::Properties)
        .map(|(i, f)| (i, parse_schema_file(&display[i], &f.contents)))
        .collect();
    let mut schemas: Vec<(usize, SchemaFile)> = Vec::new();
    for (i, r) in schema_results {
        match r {
            Ok(s) => schemas.push((i, s)),
            Err(d) => diags.push(d),
        }
    }
    timing("schema yaml", t0);
    let mut patches: HashMap<(String, ResourceType, String), (usize, NodePatch)> = HashMap::new();
    for (i, s) in &schemas {
        let f = &project.files[*i];
        let pkg = project.packages[f.package].name().to_string();
        let lists: [(&Vec<NodePatch>, ResourceType); 4] = [
            (&s.models, ResourceType::Model),
            (&s.seeds, ResourceType::Seed),
            (&s.snapshots, ResourceType::Snapshot),
            (&s.analyses, ResourceType::Analysis),
        ];
        for (list, rt) in lists {
            for p in list {
                if rt == ResourceType::Snapshot && p.relation.is_some() {
                    continue;
                }
                let key = (pkg.clone(), rt, p.name.clone());
                if let Some((prev, _)) = patches.get(&key) {
                    diags.push(
                        Diagnostic::new(
                            DiagKind::Duplicate,
                            format!(
                                "{} '{}' has properties in two files (also {})",
                                rt.as_str(),
                                p.name,
                                display[*prev]
                            ),
                        )
                        .at(
                            &display[*i],
                            Some(&f.contents),
                            line_of(&f.contents, &format!("name: {}", p.name)),
                            1,
                        ),
                    );
                    continue;
                }
                patches.insert(key, (*i, p.clone()));
            }
        }
    }

    // SQL and CSV files become drafts.
    let mut drafts: Vec<Draft> = Vec::new();
    for (i, f) in project.files.iter().enumerate() {
        let pkg = project.packages[f.package].name().to_string();
        let mut push = |kind: ResourceType,
                        name: String,
                        fqn: Vec<String>,
                        path: String,
                        raw: String,
                        off: usize| {
            let patch = patches.remove(&(pkg.clone(), kind, name.clone()));
            drafts.push(Draft {
                file: i,
                kind,
                name,
                fqn,
                path,
                raw_code: raw,
                line_offset: off,
                patch,
            });
        };
        let base_fqn = |name: &str| {
            let mut v = vec![pkg.clone()];
            v.extend(dirs(&f.path));
            v.push(name.to_string());
            v
        };
        match f.kind {
            FileKind::Model | FileKind::Analysis | FileKind::SingularTest => {
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
                let mut fqn = base_fqn(&name);
                if kind == ResourceType::Analysis {
                    fqn.insert(1, "analysis".into());
                }
                // dbt strips file contents; the offset keeps error lines right.
                let lead = f.contents.len() - f.contents.trim_start().len();
                let offset = f.contents[..lead].matches('\n').count();
                push(
                    kind,
                    name.clone(),
                    fqn,
                    path,
                    f.contents.trim().to_string(),
                    offset,
                );
            }
            FileKind::Seed => {
                let name = stem(&f.path).to_string();
                push(
                    ResourceType::Seed,
                    name.clone(),
                    base_fqn(&name),
                    f.path.clone(),
                    String::new(),
                    0,
                );
            }
            FileKind::Snapshot => {
                for b in preprocess::named_blocks(&f.contents)
                    .into_iter()
                    .filter(|b| b.kind == "snapshot")
                {
                    let mut fqn = vec![pkg.clone()];
                    fqn.extend(
                        f.path
                            .trim_end_matches(".sql")
                            .split('/')
                            .map(str::to_string),
                    );
                    fqn.push(b.name.clone());
                    push(
                        ResourceType::Snapshot,
                        b.name.clone(),
                        fqn,
                        f.path.clone(),
                        b.body,
                        b.line - 1,
                    );
                }
            }
            _ => {}
        }
    }
    // YAML-defined snapshots (`relation:`).
    for (i, s) in &schemas {
        let f = &project.files[*i];
        let pkg = project.packages[f.package].name().to_string();
        for p in s.snapshots.iter().filter(|p| p.relation.is_some()) {
            let rel = p.relation.clone().unwrap_or_default();
            let mut fqn = vec![pkg.clone()];
            fqn.extend(dirs(&f.path));
            fqn.push(p.name.clone());
            drafts.push(Draft {
                file: *i,
                kind: ResourceType::Snapshot,
                name: p.name.clone(),
                fqn,
                path: f.path.clone(),
                raw_code: format!("select * from {{{{ {rel} }}}}"),
                line_offset: 0,
                patch: Some((*i, p.clone())),
            });
        }
    }
    for ((pkg, rt, name), (i, _)) in &patches {
        if *pkg == root {
            m.warnings.push(format!(
                "{}: properties for {} '{}' match no file",
                display[*i],
                rt.as_str(),
                name
            ));
        }
    }

    // Parse-phase render of every SQL draft, in parallel.
    let rendered: Vec<Result<Node, Diagnostic>> = drafts
        .into_par_iter()
        .map(|d| build_node(project, &jinja, &display, d))
        .collect();
    timing("parse render", t0);
    let mut nodes: Vec<Node> = Vec::with_capacity(rendered.len());
    for r in rendered {
        match r {
            Ok(n) => nodes.push(n),
            Err(d) => diags.push(d),
        }
    }

    // Generic tests declared in YAML, and sources and exposures.
    let mut tasks: Vec<TestTask<'_>> = Vec::new();
    for (i, s) in &schemas {
        let f = &project.files[*i];
        let pkg = project.packages[f.package].name().to_string();
        let yml = &display[*i];
        let lists: [(&Vec<NodePatch>, &'static str); 3] = [
            (&s.models, "models"),
            (&s.seeds, "seeds"),
            (&s.snapshots, "snapshots"),
        ];
        for (list, key) in lists {
            for p in list {
                let target = TestTarget::Node {
                    name: p.name.clone(),
                    yaml_key: key,
                };
                queue_tests(
                    &mut tasks,
                    (*i, yml, &pkg),
                    target,
                    &p.data_tests,
                    &p.columns,
                );
            }
        }
        for src in &s.sources {
            for t in &src.tables {
                let target = TestTarget::Source {
                    source: src.name.clone(),
                    table: t.name.clone(),
                };
                queue_tests(
                    &mut tasks,
                    (*i, yml, &pkg),
                    target,
                    &t.data_tests,
                    &t.columns,
                );
                let source = build_source(project, f, &pkg, src, t, quoting);
                match source {
                    Ok(s) => {
                        if s.config.enabled {
                            m.sources.insert(s.unique_id.clone(), s);
                        }
                    }
                    Err(d) => diags.push(d.at(
                        yml,
                        Some(&f.contents),
                        line_of(&f.contents, &format!("name: {}", t.name)),
                        1,
                    )),
                }
            }
        }
        for e in &s.exposures {
            m.exposures.insert(
                format!("exposure.{pkg}.{}", e.name),
                build_exposure(project, f, &pkg, e),
            );
        }
    }

    let built: Vec<Result<Node, Diagnostic>> = tasks
        .par_iter()
        .map(|t| build_test(project, &jinja, t))
        .collect();
    for b in built {
        match b {
            Ok(n) => nodes.push(n),
            Err(d) => diags.push(d),
        }
    }
    timing("tests+sources", t0);
    // Project hooks become operation nodes, as in dbt's manifest.
    for pkg in &project.packages {
        let yml = std::fs::read_to_string(pkg.root.join("dbt_project.yml")).unwrap_or_default();
        let yml_checksum = sha256(&yml.split_whitespace().collect::<Vec<_>>().join(" "));
        for (kind, hooks) in [
            ("on-run-start", &pkg.settings.on_run_start),
            ("on-run-end", &pkg.settings.on_run_end),
        ] {
            for (i, sql) in hooks.iter().enumerate() {
                let name = format!("{}-{kind}-{i}", pkg.name());
                let mut cfg = ConfigMap::default();
                finalize_config(&mut cfg);
                nodes.push(Node {
                    unique_id: format!("operation.{}.{name}", pkg.name()),
                    resource_type: ResourceType::Operation,
                    package: pkg.name().to_string(),
                    path: format!("hooks/{name}.sql"),
                    original_file_path: "./dbt_project.yml".into(),
                    display_path: "dbt_project.yml".into(),
                    line_offset: 0,
                    fqn: vec![pkg.name().to_string(), "hooks".into(), name.clone()],
                    checksum: yml_checksum.clone(),
                    raw_code: sql.clone(),
                    config: NodeConfig::resolve(cfg, "view"),
                    config_call: IndexMap::new(),
                    database: String::new(),
                    schema: String::new(),
                    alias: String::new(),
                    description: String::new(),
                    columns: IndexMap::new(),
                    meta: Json::Object(Default::default()),
                    patch_path: None,
                    refs: vec![],
                    sources: vec![],
                    depends_on_nodes: vec![],
                    depends_on_macros: vec![],
                    test: None,
                    parse_output: None,
                    phase_sensitive: true,
                    docs_show: true,
                    doc_blocks: vec![],
                    name,
                });
            }
        }
    }

    // Names: database, schema, alias.
    let named: Vec<Result<Node, Diagnostic>> = nodes
        .into_par_iter()
        .map(|n| resolve_names(project, &jinja, n))
        .collect();
    let mut nodes = Vec::with_capacity(named.len());
    for r in named {
        match r {
            Ok(n) => nodes.push(n),
            Err(d) => diags.push(d),
        }
    }

    timing("names", t0);
    // Enabled nodes and duplicates.
    let mut seen: HashMap<String, String> = HashMap::with_capacity(nodes.len());
    m.nodes.reserve(nodes.len());
    for n in nodes {
        if !n.config.enabled {
            m.disabled.entry(n.unique_id.clone()).or_default().push(n);
            continue;
        }
        if let Some(prev) = seen.get(&n.unique_id) {
            diags.push(
                Diagnostic::new(
                    DiagKind::Duplicate,
                    format!(
                        "two {}s are named '{}' (also {prev})",
                        n.resource_type.as_str(),
                        n.name
                    ),
                )
                .file(&n.display_path)
                .hint(
                    "node names must be unique within a package; rename one file or set an alias",
                ),
            );
            continue;
        }
        seen.insert(n.unique_id.clone(), n.display_path.clone());
        m.nodes.insert(n.unique_id.clone(), n);
    }

    // Unit tests.
    for (i, sch) in &schemas {
        let f = &project.files[*i];
        let pkg = project.packages[f.package].name().to_string();
        for u in &sch.unit_tests {
            match build_unit_test(&pkg, f, &display[*i], u) {
                Ok(t) => {
                    m.unit_tests.insert(t.unique_id.clone(), t);
                }
                Err(d) => diags.push(d),
            }
        }
    }

    // Macros for the manifest, with their YAML descriptions.
    let mut macro_patches: HashMap<
        (String, String),
        (String, &crate::project::schema::MacroPatch),
    > = HashMap::new();
    for (i, s) in &schemas {
        let f = &project.files[*i];
        for mp in &s.macros {
            macro_patches.insert(
                (
                    project.packages[f.package].name().to_string(),
                    mp.name.clone(),
                ),
                (
                    format!(
                        "{}://{}",
                        project.packages[f.package].name(),
                        f.original_path
                    ),
                    mp,
                ),
            );
        }
    }
    for d in &jinja.macros().defs {
        let patch = macro_patches.get(&(d.package.clone(), d.name.clone()));
        m.macros.insert(
            d.unique_id.clone(),
            MacroEntry {
                unique_id: d.unique_id.clone(),
                package: d.package.clone(),
                name: d.name.clone(),
                path: d.original_path.clone(),
                original_file_path: d.original_path.clone(),
                macro_sql: d.sql.clone(),
                description: patch
                    .and_then(|p| p.1.description.clone())
                    .unwrap_or_default(),
                arguments: patch
                    .map(|p| p.1.arguments.iter().map(yaml_to_json).collect())
                    .unwrap_or_default(),
                meta: patch
                    .and_then(|p| p.1.meta.as_ref())
                    .map(|x| yaml_to_json(&Yaml::Mapping(x.clone())))
                    .unwrap_or(Json::Object(Default::default())),
                patch_path: patch.map(|p| p.0.clone()),
            },
        );
    }

    // The parsed YAML is large and no longer needed: free it off the critical path.
    drop(macro_patches);
    drop(tasks);
    std::thread::spawn(move || drop((schemas, patches)));
    timing("index", t0);
    resolve_docs(&mut m, &mut diags);
    resolve_dependencies(project, &mut m, &mut diags);
    m.selectors = match &project.selectors_yml {
        Some((file, text)) => {
            crate::selector_syntax::selectors_json(file, text).unwrap_or_else(|d| {
                diags.push(d);
                Json::Object(Default::default())
            })
        }
        None => Json::Object(Default::default()),
    };

    timing("resolve", t0);
    diags.into_result()?;
    Ok(Parsed {
        manifest: m,
        jinja,
        project_dir: project.dir.clone(),
    })
}

fn display_path(project: &Project, f: &SourceFile) -> String {
    let pkg = &project.packages[f.package];
    if pkg.is_root {
        return f.original_path.clone();
    }
    let rel = pkg
        .root
        .strip_prefix(&project.dir)
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_else(|_| pkg.root.display().to_string());
    format!("{rel}/{}", f.original_path)
}

fn quote_policy(project: &Project) -> QuotePolicy {
    let q = project.root().settings.quoting;
    QuotePolicy {
        database: q.database.unwrap_or(true),
        schema: q.schema.unwrap_or(true),
        identifier: q.identifier.unwrap_or(true),
    }
}

fn section(settings: &crate::project::ProjectSettings, rt: ResourceType) -> &Mapping {
    match rt {
        ResourceType::Model => &settings.models,
        ResourceType::Seed => &settings.seeds,
        ResourceType::Snapshot => &settings.snapshots,
        ResourceType::Test => &settings.data_tests,
        ResourceType::Analysis => &settings.analyses,
        ResourceType::Source => &settings.sources,
        ResourceType::Exposure => &settings.exposures,
        _ => &settings.unit_tests,
    }
}

/// Project-level configs for a node: its own package's dbt_project.yml, then the root's.
fn project_configs(
    project: &Project,
    package_idx: usize,
    rt: ResourceType,
    fqn: &[String],
) -> ConfigMap {
    let mut cfg = ConfigMap::default();
    let pkg = &project.packages[package_idx];
    if !pkg.is_root {
        apply_folder_configs(section(&pkg.settings, rt), fqn, &mut cfg);
    }
    apply_folder_configs(section(&project.root().settings, rt), fqn, &mut cfg);
    cfg
}

fn default_materialized(rt: ResourceType) -> &'static str {
    match rt {
        ResourceType::Seed => "seed",
        ResourceType::Snapshot => "snapshot",
        ResourceType::Test => "test",
        _ => "view",
    }
}

fn columns_from(defs: &[ColumnDef]) -> IndexMap<String, Column> {
    defs.iter()
        .map(|c| {
            let tags = match &c.tags {
                Some(Yaml::Sequence(s)) => s
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect(),
                Some(Yaml::String(s)) => vec![s.clone()],
                _ => vec![],
            };
            (
                c.name.clone(),
                Column {
                    name: c.name.clone(),
                    description: c.description.clone().unwrap_or_default(),
                    data_type: c.data_type.clone(),
                    meta: c
                        .meta
                        .as_ref()
                        .map(|x| yaml_to_json(&Yaml::Mapping(x.clone())))
                        .unwrap_or(Json::Object(Default::default())),
                    tags,
                    quote: c.quote,
                    constraints: c.constraints.iter().map(yaml_to_json).collect(),
                },
            )
        })
        .collect()
}

fn build_node(
    project: &Project,
    jinja: &JinjaEnv,
    display: &[String],
    d: Draft,
) -> Result<Node, Diagnostic> {
    let f = &project.files[d.file];
    let pkg = project.packages[f.package].name().to_string();
    let unique_id = format!("{}.{}.{}", d.kind.as_str(), pkg, d.name);
    let file_display = display[d.file].clone();
    let mut node = Node {
        unique_id: unique_id.clone(),
        resource_type: d.kind,
        package: pkg.clone(),
        name: d.name.clone(),
        path: d.path,
        original_file_path: f.original_path.clone(),
        display_path: file_display.clone(),
        line_offset: d.line_offset,
        fqn: d.fqn,
        checksum: if d.kind == ResourceType::Seed {
            sha256(f.contents.trim())
        } else {
            // dbt hashes SQL files with whitespace runs folded to one space.
            sha256(&f.contents.split_whitespace().collect::<Vec<_>>().join(" "))
        },
        raw_code: d.raw_code,
        config: NodeConfig::resolve(ConfigMap::default(), "view"),
        config_call: IndexMap::new(),
        database: String::new(),
        schema: String::new(),
        alias: String::new(),
        description: String::new(),
        columns: IndexMap::new(),
        meta: Json::Object(Default::default()),
        patch_path: None,
        refs: vec![],
        sources: vec![],
        depends_on_nodes: vec![],
        depends_on_macros: vec![],
        test: None,
        parse_output: None,
        phase_sensitive: false,
        docs_show: true,
        doc_blocks: vec![],
    };
    // Configs: project folders → YAML → inline config().
    let mut cfg = project_configs(project, f.package, d.kind, &node.fqn);
    if let Some((pi, p)) = &d.patch {
        let pf = &project.files[*pi];
        node.patch_path = Some(format!("{pkg}://{}", pf.original_path));
        node.description = p.description.clone().unwrap_or_default();
        node.columns = columns_from(&p.columns);
        if let Some(c) = &p.config {
            merge_all(&mut cfg, &config_from_yaml(c));
        }
        if let Some(meta) = &p.meta {
            merge_key(&mut cfg, "meta", yaml_to_json(&Yaml::Mapping(meta.clone())));
        }
        if let Some(t) = &p.tags {
            merge_key(&mut cfg, "tags", yaml_to_json(t));
        }
        if let Some(Yaml::Mapping(docs)) = &p.docs {
            if let Some(Yaml::Bool(show)) = docs.get("show") {
                node.docs_show = *show;
            }
        }
    }
    if d.kind != ResourceType::Seed {
        let rewritten = preprocess::rewrite_mutable_literals(&node.raw_code);
        let info = NodeInfo {
            package: pkg.clone(),
            name: node.name.clone(),
            unique_id,
            resource_type: d.kind.as_str().to_string(),
            this: Some(RelationName::new(
                &project.target.database,
                &project.target.schema,
                &node.name,
                jinja.shared.quoting,
            )),
            ..Default::default()
        };
        let ctx = jinja.ctx(info, Phase::Parse);
        let out = jinja.render(&file_display, &rewritten, &ctx).map_err(|e| {
            with_call_site(
                jinja::diagnostic_from_jinja(
                    &e,
                    &file_display,
                    Some(&f.contents),
                    node.line_offset,
                ),
                &file_display,
                d.kind,
                &node.name,
            )
        })?;
        let cap = ctx.take_capture();
        node.phase_sensitive = ctx.is_sensitive();
        if !node.phase_sensitive {
            node.parse_output = Some(out);
        }
        node.refs = cap.refs;
        node.sources = cap.sources;
        node.depends_on_macros = cap.macros.into_iter().collect();
        for (k, v) in &cap.config {
            node.config_call.insert(k.clone(), v.clone());
        }
        merge_all(&mut cfg, &cap.config);
    }
    if d.kind == ResourceType::Test {
        cfg.entry("schema".to_string())
            .or_insert(Json::from("dbt_test__audit"));
    } else {
        finalize_config(&mut cfg);
    }
    node.meta = cfg
        .get("meta")
        .cloned()
        .unwrap_or(Json::Object(Default::default()));
    node.config = NodeConfig::resolve(cfg, default_materialized(d.kind));
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

fn finalize_config(cfg: &mut ConfigMap) {
    for k in ["pre-hook", "post-hook"] {
        let hooks = normalize_hooks(cfg.get(k));
        cfg.insert(k.to_string(), Json::Array(hooks));
    }
}

/// One data test entry of a properties file, built into a node in parallel.
struct TestTask<'a> {
    file: usize,
    yml: &'a str,
    pkg: String,
    target: TestTarget,
    column: Option<&'a ColumnDef>,
    entry: &'a Yaml,
}

/// Queues the tests of one model, seed, snapshot or source table, then those of its
/// columns; the tuple is the schema file's index, display path and package.
fn queue_tests<'a>(
    tasks: &mut Vec<TestTask<'a>>,
    (file, yml, pkg): (usize, &'a str, &str),
    target: TestTarget,
    tests: &'a [Yaml],
    columns: &'a [ColumnDef],
) {
    let own = tests.iter().map(|e| (None, e));
    let per_column = columns
        .iter()
        .flat_map(|c| c.data_tests.iter().map(move |e| (Some(c), e)));
    for (column, entry) in own.chain(per_column) {
        tasks.push(TestTask {
            file,
            yml,
            pkg: pkg.to_string(),
            target: target.clone(),
            column,
            entry,
        });
    }
}

fn build_test(
    project: &Project,
    jinja: &JinjaEnv,
    task: &TestTask<'_>,
) -> Result<Node, Diagnostic> {
    let f = &project.files[task.file];
    let (yml, pkg, target, column) = (task.yml, task.pkg.as_str(), &task.target, task.column);
    {
        let e = task.entry;
        let spec = match parse_test_entry(e) {
            Ok(s) => s,
            Err(msg) => {
                let needle = match target {
                    TestTarget::Node { name, .. } => format!("name: {name}"),
                    TestTarget::Source { table, .. } => format!("name: {table}"),
                };
                return Err(
                    Diagnostic::new(DiagKind::Yaml, format!("invalid data test: {msg}")).at(
                        yml,
                        Some(&f.contents),
                        line_of(&f.contents, &needle),
                        1,
                    ),
                );
            }
        };
        let col_name = column.map(|c| {
            if c.quote == Some(true) {
                format!("\"{}\"", c.name)
            } else {
                c.name.clone()
            }
        });
        let t = generic_tests::build(pkg, target, col_name.as_deref(), &spec);
        let mut fqn = vec![pkg.to_string()];
        fqn.extend(dirs(&f.path));
        fqn.push(t.name.clone());
        let mut cfg = project_configs(project, f.package, ResourceType::Test, &fqn);
        for (k, v) in &t.config {
            merge_key(&mut cfg, k, v.clone());
        }
        cfg.entry("schema".to_string())
            .or_insert(Json::from("dbt_test__audit"));
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
        let path = format!("{}.sql", t.short_name);
        let mut node = Node {
            unique_id: t.unique_id,
            resource_type: ResourceType::Test,
            package: pkg.to_string(),
            name: t.name.clone(),
            path,
            original_file_path: f.original_path.clone(),
            display_path: yml.to_string(),
            line_offset: 0,
            fqn,
            checksum: String::new(),
            raw_code: t.raw_code,
            config: NodeConfig::resolve(ConfigMap::default(), "test"),
            config_call: IndexMap::new(),
            database: String::new(),
            schema: String::new(),
            alias: String::new(),
            description: t.description,
            columns: IndexMap::new(),
            meta: Json::Object(Default::default()),
            patch_path: None,
            refs,
            sources,
            depends_on_nodes: vec![],
            depends_on_macros: vec![],
            test: Some(TestMetadata {
                name: t.test_name,
                namespace: t.namespace,
                kwargs: t.kwargs,
                column_name: t.column_name,
                attached_node: None,
                file_key_name: t.file_key_name,
                yaml_path: yml.to_string(),
            }),
            parse_output: None,
            phase_sensitive: true,
            docs_show: true,
            doc_blocks: vec![],
        };
        let test_macro = format!("test_{}", spec.test_name);
        let def = match &spec.namespace {
            Some(ns) => jinja.macros().get_in(ns, &test_macro),
            None => jinja.macros().resolve(pkg, &test_macro),
        };
        if let Some(d) = def {
            node.depends_on_macros.push(d.unique_id.clone());
        }
        node.depends_on_macros
            .push("macro.dbt.get_where_subquery".into());
        node.meta = cfg
            .get("meta")
            .cloned()
            .unwrap_or(Json::Object(Default::default()));
        node.config = NodeConfig::resolve(cfg, "test");
        Ok(node)
    }
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
        ("csv", Some(Yaml::String(csv_text))) => {
            let mut rdr = csv::ReaderBuilder::new().from_reader(csv_text.trim().as_bytes());
            let header: Vec<String> = rdr
                .headers()
                .map_err(|e| err(format!("csv rows: {e}")))?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            let mut out = Vec::new();
            for r in rdr.records() {
                let r = r.map_err(|e| err(format!("csv rows: {e}")))?;
                out.push(
                    header
                        .iter()
                        .zip(r.iter())
                        .map(|(h, v)| (h.clone(), csv_value(v)))
                        .collect(),
                );
            }
            Ok(Fixture::Rows(out))
        }
        ("sql", Some(Yaml::String(sql))) => Ok(Fixture::Sql(sql.clone())),
        (f, _) => Err(err(format!(
            "rows in format '{f}' must be {}",
            if f == "dict" { "a list" } else { "a string" }
        ))),
    }
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

fn build_unit_test(
    pkg: &str,
    f: &SourceFile,
    display: &str,
    u: &Yaml,
) -> Result<UnitTest, Diagnostic> {
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
        unique_id: format!("unit_test.{pkg}.{model}.{name}"),
        package: pkg.to_string(),
        expect: fixture(u.get("expect"), display, &f.contents, &name)?,
        vars: map("vars"),
        env_vars: map("env_vars"),
        macros: map("macros"),
        description: u
            .get("description")
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_string(),
        original_file_path: f.original_path.clone(),
        display_path: display.to_string(),
        raw: yaml_to_json(u),
        name,
        model,
        given,
    })
}

fn render_str(project: &Project, s: &str) -> Result<String, Diagnostic> {
    if !s.contains("{{") {
        return Ok(s.to_string());
    }
    let target = project.target.to_json();
    jinja::render_config_string(s, &project.root().vars, Some(&target))
        .map_err(|e| Diagnostic::new(DiagKind::JinjaRuntime, e))
}

fn build_source(
    project: &Project,
    f: &SourceFile,
    pkg: &str,
    src: &crate::project::schema::SourceDef,
    t: &crate::project::schema::SourceTableDef,
    quoting: QuotePolicy,
) -> Result<Source, Diagnostic> {
    let mut fqn = vec![pkg.to_string()];
    fqn.extend(dirs(&f.path));
    fqn.push(src.name.clone());
    fqn.push(t.name.clone());
    let mut cfg = project_configs(project, f.package, ResourceType::Source, &fqn);
    if let Some(c) = &src.config {
        merge_all(&mut cfg, &config_from_yaml(c));
    }
    if let Some(c) = &t.config {
        merge_all(&mut cfg, &config_from_yaml(c));
    }
    let database = match &src.database {
        Some(d) => render_str(project, d)?,
        None => project.target.database.clone(),
    };
    let schema = match &src.schema {
        Some(s) => render_str(project, s)?,
        None => src.name.clone(),
    };
    let identifier = match &t.identifier {
        Some(i) => render_str(project, i)?,
        None => t.name.clone(),
    };
    let mut q = quoting;
    for qm in [&src.quoting, &t.quoting].into_iter().flatten() {
        let get = |k: &str| qm.get(k).and_then(Yaml::as_bool);
        q.database = get("database").unwrap_or(q.database);
        q.schema = get("schema").unwrap_or(q.schema);
        q.identifier = get("identifier").unwrap_or(q.identifier);
    }
    let freshness = t
        .freshness
        .as_ref()
        .or(src.freshness.as_ref())
        .map(yaml_to_json)
        .unwrap_or(Json::Null);
    let tags = |y: &Option<Yaml>| match y {
        Some(Yaml::Sequence(s)) => s
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        Some(Yaml::String(s)) => vec![s.clone()],
        _ => Vec::<String>::new(),
    };
    let mut all_tags = tags(&src.tags);
    for tg in tags(&t.tags) {
        if !all_tags.contains(&tg) {
            all_tags.push(tg);
        }
    }
    merge_key(&mut cfg, "tags", Json::from(all_tags.clone()));
    let config = NodeConfig::resolve(cfg, "view");
    let relation_name = RelationName::new(&database, &schema, &identifier, q).render();
    let mapping_json = |m: &Option<Mapping>| {
        m.as_ref()
            .map(|x| yaml_to_json(&Yaml::Mapping(x.clone())))
            .unwrap_or(Json::Object(Default::default()))
    };
    Ok(Source {
        unique_id: format!("source.{pkg}.{}.{}", src.name, t.name),
        package: pkg.to_string(),
        source_name: src.name.clone(),
        name: t.name.clone(),
        identifier,
        database,
        schema,
        loader: src.loader.clone().unwrap_or_default(),
        description: t.description.clone().unwrap_or_default(),
        source_description: src.description.clone().unwrap_or_default(),
        columns: columns_from(&t.columns),
        loaded_at_field: t.loaded_at_field.clone().or(src.loaded_at_field.clone()),
        loaded_at_query: t.loaded_at_query.clone().or(src.loaded_at_query.clone()),
        freshness,
        quoting: q,
        meta: mapping_json(&t.meta),
        source_meta: mapping_json(&src.meta),
        tags: config.tags.clone(),
        config,
        path: f.original_path.clone(),
        original_file_path: f.original_path.clone(),
        fqn,
        relation_name,
    })
}

fn build_exposure(
    project: &Project,
    f: &SourceFile,
    pkg: &str,
    e: &crate::project::schema::ExposureDef,
) -> Exposure {
    let mut refs = Vec::new();
    let mut sources = Vec::new();
    for d in &e.depends_on {
        generic_tests::scan_calls(&Json::from(d.clone()), &mut refs, &mut sources);
    }
    let mut fqn = vec![pkg.to_string()];
    fqn.extend(dirs(&f.path));
    fqn.push(e.name.clone());
    let mut cfg = project_configs(project, f.package, ResourceType::Exposure, &fqn);
    if let Some(c) = &e.config {
        merge_all(&mut cfg, &config_from_yaml(c));
    }
    if let Some(t) = &e.tags {
        merge_key(&mut cfg, "tags", yaml_to_json(t));
    }
    let config = NodeConfig::resolve(cfg, "view");
    Exposure {
        unique_id: format!("exposure.{pkg}.{}", e.name),
        package: pkg.to_string(),
        name: e.name.clone(),
        kind: e.kind.clone().unwrap_or_else(|| "dashboard".into()),
        owner: e
            .owner
            .as_ref()
            .map(|o| yaml_to_json(&Yaml::Mapping(o.clone())))
            .unwrap_or(serde_json::json!({})),
        description: e.description.clone().unwrap_or_default(),
        label: e.label.clone(),
        url: e.url.clone(),
        maturity: e.maturity.clone(),
        meta: e
            .meta
            .as_ref()
            .map(|x| yaml_to_json(&Yaml::Mapping(x.clone())))
            .unwrap_or(Json::Object(Default::default())),
        tags: config.tags.clone(),
        config,
        path: f.original_path.clone(),
        original_file_path: f.original_path.clone(),
        fqn,
        refs,
        sources,
        depends_on_nodes: vec![],
    }
}

/// Database, schema and alias through the generate_*_name macros; the built-in
/// defaults are computed directly unless the project overrides them.
fn resolve_names(project: &Project, jinja: &JinjaEnv, mut n: Node) -> Result<Node, Diagnostic> {
    let reg = jinja.macros();
    let custom_schema = n.config.schema.clone();
    let custom_db = n.config.database.clone();
    let custom_alias = n.config.alias.clone();
    let legacy_target_schema = n
        .config
        .get("target_schema")
        .and_then(Json::as_str)
        .map(str::to_string);
    let legacy_target_db = n
        .config
        .get("target_database")
        .and_then(Json::as_str)
        .map(str::to_string);
    let call = |macro_name: &str, custom: Option<&String>| -> Result<String, Diagnostic> {
        let node_json = serde_json::json!({
            "name": n.name, "unique_id": n.unique_id, "resource_type": n.resource_type.as_str(),
            "package_name": n.package, "fqn": n.fqn, "path": n.path,
            "original_file_path": n.original_file_path, "config": n.config.all, "tags": n.config.tags,
            "version": Json::Null,
        });
        let info = NodeInfo {
            package: project.name().to_string(),
            name: n.name.clone(),
            unique_id: n.unique_id.clone(),
            resource_type: n.resource_type.as_str().to_string(),
            extra: vec![
                (
                    "__custom".into(),
                    custom
                        .map(|c| minijinja::Value::from(c.clone()))
                        .unwrap_or(minijinja::Value::from(())),
                ),
                ("__node".into(), crate::jinja::to_value(&node_json)),
            ],
            ..Default::default()
        };
        let ctx = jinja.ctx(info, Phase::Compile);
        let src = format!("{{{{ {macro_name}(__custom, __node) }}}}");
        jinja
            .render(&n.display_path, &src, &ctx)
            .map(|s| s.trim().to_string())
            .map_err(|e| jinja::diagnostic_from_jinja(&e, &n.display_path, None, 0))
    };
    n.schema = match (&legacy_target_schema, n.resource_type) {
        (Some(s), ResourceType::Snapshot) => s.clone(),
        _ if reg.is_overridden("generate_schema_name") => {
            call("generate_schema_name", custom_schema.as_ref())?
        }
        _ => match &custom_schema {
            Some(c) => format!("{}_{}", project.target.schema, c.trim()),
            None => project.target.schema.clone(),
        },
    };
    n.database = match (&legacy_target_db, n.resource_type) {
        (Some(d), ResourceType::Snapshot) => d.clone(),
        _ if reg.is_overridden("generate_database_name") => {
            call("generate_database_name", custom_db.as_ref())?
        }
        _ => custom_db
            .clone()
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|| project.target.database.clone()),
    };
    n.alias = if reg.is_overridden("generate_alias_name") {
        call("generate_alias_name", custom_alias.as_ref())?
    } else {
        custom_alias
            .map(|a| a.trim().to_string())
            .unwrap_or_else(|| n.name.clone())
    };
    Ok(n)
}

fn resolve_docs(m: &mut Manifest, diags: &mut Diagnostics) {
    if m.docs.is_empty() {
        return;
    }
    let by_name: HashMap<(String, String), String> = m
        .docs
        .values()
        .map(|d| {
            (
                (d.package.clone(), d.name.clone()),
                d.block_contents.clone(),
            )
        })
        .collect();
    let root = m.project_name.clone();
    let mut fix = |text: &mut String, pkg: &str, file: &str| -> Vec<String> {
        let mut used = Vec::new();
        if !text.contains("doc(") {
            return used;
        }
        let mut missing = Vec::new();
        let out = DOC_CALL.replace_all(text, |c: &regex::Captures| {
            let (p, name) = match c.get(2) {
                Some(n) => (c[1].to_string(), n.as_str().to_string()),
                None => (pkg.to_string(), c[1].to_string()),
            };
            let found = by_name
                .get_key_value(&(p.clone(), name.clone()))
                .or_else(|| by_name.get_key_value(&(root.clone(), name.clone())))
                .or_else(|| by_name.iter().find(|((_, n), _)| *n == name));
            if let Some(((dp, dn), _)) = found {
                used.push(format!("doc.{dp}.{dn}"));
            }
            found.map(|(_, v)| v).cloned().unwrap_or_else(|| {
                missing.push(name.clone());
                String::new()
            })
        });
        *text = out.into_owned();
        for name in &missing {
            diags.push(
                Diagnostic::new(
                    DiagKind::UnknownRef,
                    format!("doc('{name}') refers to a docs block that does not exist"),
                )
                .file(file)
                .hint("define it in a .md file as {% docs name %}...{% enddocs %}"),
            );
        }
        used
    };
    for n in m.nodes.values_mut() {
        let file = n
            .patch_path
            .clone()
            .unwrap_or_else(|| n.display_path.clone());
        n.doc_blocks = fix(&mut n.description, &n.package, &file);
        for c in n.columns.values_mut() {
            fix(&mut c.description, &n.package, &file);
        }
    }
    for s in m.sources.values_mut() {
        fix(&mut s.description, &s.package, &s.original_file_path);
        fix(&mut s.source_description, &s.package, &s.original_file_path);
        for c in s.columns.values_mut() {
            fix(&mut c.description, &s.package, &s.original_file_path);
        }
    }
}

/// Turns refs and sources into `depends_on.nodes`, reporting unknown names with suggestions.
fn resolve_dependencies(project: &Project, m: &mut Manifest, diags: &mut Diagnostics) {
    let root = project.name().to_string();
    let mut by_name: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for n in m.nodes.values() {
        if matches!(
            n.resource_type,
            ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
        ) {
            by_name
                .entry(n.name.clone())
                .or_default()
                .push((n.package.clone(), n.unique_id.clone()));
        }
    }
    let disabled: HashSet<(String, String)> = m
        .disabled
        .values()
        .flatten()
        .map(|n| (n.package.clone(), n.name.clone()))
        .collect();
    let source_ids: HashMap<(String, String), String> = m
        .sources
        .values()
        .map(|s| ((s.source_name.clone(), s.name.clone()), s.unique_id.clone()))
        .collect();
    let lookup_ref = |from_pkg: &str, r: &crate::jinja::RefCall| -> Option<String> {
        let cands = by_name.get(r.name.as_str())?;
        let pick = |p: &str| {
            cands
                .iter()
                .find(|(cp, _)| cp == p)
                .map(|(_, u)| u.to_string())
        };
        match &r.package {
            Some(p) => pick(p),
            None => pick(from_pkg)
                .or_else(|| pick(&root))
                .or_else(|| cands.first().map(|(_, u)| u.to_string())),
        }
    };
    let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
    let src_names: Vec<String> = source_ids.keys().map(|(s, t)| format!("{s}.{t}")).collect();

    let mut updates: Vec<(String, Vec<String>, Option<String>)> = Vec::new();
    let mut newly_disabled: Vec<String> = Vec::new();
    for n in m.nodes.values() {
        let mut deps: Vec<String> = Vec::new();
        let mut attached = None;
        let mut broken = false;
        let file_src = || project_source(project, n);
        for r in &n.refs {
            match lookup_ref(&n.package, r) {
                Some(u) => {
                    if attached.is_none() && n.test.is_some() {
                        attached = Some(u.clone());
                    }
                    if !deps.contains(&u) {
                        deps.push(u);
                    }
                }
                None => {
                    if n.test.is_some() && disabled.iter().any(|(_, name)| *name == r.name) {
                        broken = true;
                        continue;
                    }
                    let file_src = file_src();
                    let (line, col) =
                        find_call(file_src.as_deref(), &format!("'{}'", r.name), n.line_offset);
                    let mut d = Diagnostic::new(
                        DiagKind::UnknownRef,
                        if disabled.iter().any(|(_, name)| *name == r.name) {
                            format!("{} '{}' depends on '{}', which is disabled", n.resource_type.as_str(), n.name, r.name)
                        } else {
                            format!(
                                "{} '{}' refers to ref('{}'), which is not a model, seed or snapshot{}",
                                n.resource_type.as_str(),
                                n.name,
                                r.name,
                                r.package.as_ref().map(|p| format!(" in package '{p}'")).unwrap_or_default()
                            )
                        },
                    )
                    .at(&n.display_path, file_src.as_deref(), line, col);
                    d.hint = if disabled.iter().any(|(_, name)| *name == r.name) {
                        Some(format!(
                            "enable '{}' (it sets enabled: false) or remove this ref()",
                            r.name
                        ))
                    } else {
                        suggest(&r.name, names.iter().copied()).or_else(|| {
                            Some(
                                "check the spelling, or whether the file is under a model-path"
                                    .into(),
                            )
                        })
                    };
                    diags.push(d);
                }
            }
        }
        for (s, t) in &n.sources {
            match source_ids.get(&(s.clone(), t.clone())) {
                Some(u) => {
                    let u = u.to_string();
                    if !deps.contains(&u) {
                        deps.push(u);
                    }
                }
                None => {
                    let file_src = file_src();
                    let (line, col) =
                        find_call(file_src.as_deref(), &format!("'{t}'"), n.line_offset);
                    let wanted = format!("{s}.{t}");
                    let mut d = Diagnostic::new(
                        DiagKind::UnknownSource,
                        format!(
                            "{} '{}' refers to source('{s}', '{t}'), which is not defined in any sources: YAML",
                            n.resource_type.as_str(),
                            n.name
                        ),
                    )
                    .at(&n.display_path, file_src.as_deref(), line, col);
                    d.hint = suggest(&wanted, src_names.iter().map(String::as_str)).or_else(|| {
                        Some("declare it under `sources:` in a properties .yml file".into())
                    });
                    diags.push(d);
                }
            }
        }
        if broken {
            newly_disabled.push(n.unique_id.clone());
        }
        updates.push((n.unique_id.clone(), deps, attached));
    }
    for (uid, deps, attached) in updates {
        if let Some(n) = m.nodes.get_mut(&uid) {
            n.depends_on_nodes = deps;
            if let Some(t) = &mut n.test {
                t.attached_node = attached;
            }
        }
    }
    for uid in newly_disabled {
        if let Some(n) = m.nodes.shift_remove(&uid) {
            m.disabled.entry(uid).or_default().push(n);
        }
    }
    let exp_updates: Vec<(String, Vec<String>)> = m
        .exposures
        .values()
        .map(|e| {
            let mut deps = Vec::new();
            for r in &e.refs {
                match lookup_ref(&e.package, r) {
                    Some(u) => deps.push(u),
                    None => diags.push(
                        Diagnostic::new(
                            DiagKind::UnknownRef,
                            format!(
                                "exposure '{}' depends on ref('{}'), which does not exist",
                                e.name, r.name
                            ),
                        )
                        .file(&e.original_file_path)
                        .hint(suggest(&r.name, names.iter().copied()).unwrap_or_default()),
                    ),
                }
            }
            for (s, t) in &e.sources {
                if let Some(u) = source_ids.get(&(s.clone(), t.clone())) {
                    deps.push(u.to_string());
                }
            }
            (e.unique_id.clone(), deps)
        })
        .collect();
    for (uid, deps) in exp_updates {
        if let Some(e) = m.exposures.get_mut(&uid) {
            e.depends_on_nodes = deps;
        }
    }
}

fn project_source(project: &Project, n: &Node) -> Option<String> {
    project
        .files
        .iter()
        .find(|f| {
            f.original_path == n.original_file_path
                && project.packages[f.package].name() == n.package
        })
        .map(|f| f.contents.clone())
}

/// Line and column of the first occurrence of `needle` at or after the node's first line.
fn find_call(src: Option<&str>, needle: &str, line_offset: usize) -> (usize, usize) {
    let Some(src) = src else { return (1, 1) };
    for (i, l) in src.lines().enumerate().skip(line_offset) {
        if let Some(c) = l.find(needle) {
            return (i + 1, c + 1);
        }
    }
    (line_offset + 1, 1)
}
