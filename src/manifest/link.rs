//! The link step: puts the per-file parse results together into a manifest.
//! Patches from properties files meet the nodes they describe, configs are
//! layered (project folders → properties → inline `config()`) and validated,
//! names come from the naming macros, refs and sources become dependencies
//! (with the one `RefIndex` compilation uses too), docs are resolved.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use indexmap::IndexMap;
use rayon::prelude::*;
use regex::Regex;
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

use super::parse_file::{dirs, sha256, FileItems, FileParse, Properties};
use super::*;
use crate::confmap::{
    merge_all, merge_key, normalize_hooks, normalize_key, yaml_to_json, ConfigMap,
};
use crate::error::{line_of, suggest, DiagKind, Diagnostic, Diagnostics, Error};
use crate::jinja::{self, JinjaEnv, MacroRegistry, NodeInfo, Phase, QuotePolicy, RelationName};
use crate::project::config::{
    apply_folder_configs, config_from_yaml, ConfigProblem, ConfigScope, Extensions, NodeConfig,
};
use crate::project::schema::{ColumnDef, NodePatch};
use crate::project::{Project, SourceFile};

static DOC_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\{\{\s*doc\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]+)['"]\s*)?\)\s*\}\}"#)
        .expect("static regex")
});

/// A properties entry describing a node, and the file it is in.
type Patch<'a> = (&'a FileId, &'a NodePatch);

/// Names configs may use besides the built-in ones, from the project's macros.
pub fn extensions(reg: &MacroRegistry) -> Extensions {
    let mut ext = Extensions::default();
    for name in reg.names() {
        if let Some(rest) = name.strip_prefix("materialization_") {
            for prefix in &reg.dispatch_prefixes {
                if let Some(m) = rest.strip_suffix(&format!("_{prefix}")) {
                    ext.materializations.insert(m.to_string());
                }
            }
        } else if let Some(s) = name
            .strip_prefix("get_incremental_")
            .and_then(|r| r.strip_suffix("_sql"))
        {
            ext.incremental_strategies.insert(s.to_string());
        } else if let Some(s) = name
            .strip_prefix("snapshot_")
            .and_then(|r| r.strip_suffix("_strategy"))
        {
            ext.snapshot_strategies.insert(s.to_string());
        }
    }
    ext
}

pub fn quote_policy(project: &Project) -> QuotePolicy {
    let q = project.root().settings.quoting;
    QuotePolicy {
        database: q.database.unwrap_or(true),
        schema: q.schema.unwrap_or(true),
        identifier: q.identifier.unwrap_or(true),
    }
}

/// Everything linking reads that does not change while it runs.
struct Linker<'a> {
    project: &'a Project,
    jinja: &'a JinjaEnv,
    ext: Extensions,
    files: HashMap<&'a FileId, &'a SourceFile>,
}

/// Links per-file parse results into the manifest.
pub fn link(
    project: &Project,
    jinja: &JinjaEnv,
    parses: Vec<FileParse>,
) -> Result<Manifest, Error> {
    let t0 = std::time::Instant::now();
    let root = project.name().to_string();
    let quoting = quote_policy(project);
    let lk = Linker {
        project,
        jinja,
        ext: extensions(jinja.macros()),
        files: project.files.iter().map(|f| (&f.id, f)).collect(),
    };
    let mut diags = Diagnostics::default();
    let mut m = Manifest {
        project_name: root.clone(),
        adapter_type: project.target.connection.type_name().to_string(),
        quoting,
        warnings: project.warnings.clone(),
        ..Default::default()
    };

    // What each file brought.
    let mut drafts: Vec<Node> = Vec::new();
    let mut props: Vec<(FileId, Box<Properties>)> = Vec::new();
    // Files that failed to render and so define nothing: a ref() to their
    // node is not reported again as unknown (one error, not a cascade).
    let mut failed: HashSet<String> = HashSet::new();
    for fp in parses {
        if !fp.diagnostics.is_empty() && matches!(&fp.items, FileItems::Nodes(v) if v.is_empty()) {
            if let Some(stem) = std::path::Path::new(&fp.file.path).file_stem() {
                failed.insert(stem.to_string_lossy().into_owned());
            }
        }
        diags.0.extend(fp.diagnostics);
        match fp.items {
            FileItems::Nodes(v) => drafts.extend(v),
            FileItems::Properties(p) => props.push((fp.file, p)),
            FileItems::Docs(docs) => {
                for d in docs {
                    if m.docs.contains_key(&d.unique_id) {
                        let f = lk.files.get(&fp.file);
                        diags.push(
                            Diagnostic::new(
                                DiagKind::Duplicate,
                                format!("docs block '{}' is defined twice", d.name),
                            )
                            .at(
                                f.map(|f| f.display.as_str()).unwrap_or(&d.path),
                                f.map(|f| f.contents.as_str()),
                                d.line,
                                1,
                            ),
                        );
                        continue;
                    }
                    m.docs.insert(d.unique_id.clone(), d);
                }
            }
            FileItems::Macros => {}
        }
    }

    // Nodes the properties files define; moved out, the rest of the YAML stays.
    let mut test_drafts: Vec<(Node, ConfigMap)> = Vec::new();
    let mut yaml_snapshots: Vec<(usize, Node)> = Vec::new();
    for (i, (_, p)) in props.iter_mut().enumerate() {
        test_drafts.append(&mut p.tests);
        yaml_snapshots.extend(std::mem::take(&mut p.snapshots).into_iter().map(|n| (i, n)));
    }

    // Patches: a node's properties, found once.
    let mut patches: HashMap<(String, ResourceType, String), Patch<'_>> = HashMap::new();
    for (id, p) in &props {
        let lists: [(&Vec<NodePatch>, ResourceType); 4] = [
            (&p.schema.models, ResourceType::Model),
            (&p.schema.seeds, ResourceType::Seed),
            (&p.schema.snapshots, ResourceType::Snapshot),
            (&p.schema.analyses, ResourceType::Analysis),
        ];
        for (list, rt) in lists {
            for np in list {
                if rt == ResourceType::Snapshot && np.relation.is_some() {
                    continue;
                }
                let key = (id.package.clone(), rt, np.name.clone());
                if let Some((prev, _)) = patches.get(&key) {
                    let f = lk.files.get(id);
                    let text = f.map(|f| f.contents.as_str()).unwrap_or("");
                    diags.push(
                        Diagnostic::new(
                            DiagKind::Duplicate,
                            format!(
                                "{} '{}' has properties in two files (also {})",
                                rt.as_str(),
                                np.name,
                                lk.display(prev)
                            ),
                        )
                        .at(
                            &lk.display(id),
                            Some(text),
                            line_of(text, &format!("name: {}", np.name)),
                            1,
                        ),
                    );
                    continue;
                }
                patches.insert(key, (id, np));
            }
        }
    }

    // Versioned models: each version's file (`<name>_v<v>` or `defined_in`)
    // becomes a version of the model the properties name.
    let mut versions: HashMap<(String, String), (String, ModelVersion)> = HashMap::new();
    for ((pkg, rt, name), (_, np)) in &patches {
        if *rt != ResourceType::Model || np.versions.is_empty() {
            continue;
        }
        let vs: Vec<(String, Option<String>)> = np
            .versions
            .iter()
            .filter_map(|e| {
                let v = yaml_scalar(e.get("v")?)?;
                let defined_in = e.get("defined_in").and_then(yaml_scalar);
                Some((v, defined_in))
            })
            .collect();
        let latest = np
            .latest_version
            .as_ref()
            .and_then(yaml_scalar)
            .or_else(|| vs.iter().map(|(v, _)| v.clone()).max_by(version_order))
            .unwrap_or_default();
        for (v, defined_in) in vs {
            let file = defined_in.unwrap_or_else(|| format!("{name}_v{v}"));
            versions.insert(
                (pkg.clone(), file),
                (
                    name.clone(),
                    ModelVersion {
                        v,
                        latest: latest.clone(),
                    },
                ),
            );
        }
    }
    let versioned_names: HashSet<(String, String)> = versions
        .values()
        .map(|(name, _)| name.clone())
        .zip(versions.keys().map(|(p, _)| p.clone()))
        .map(|(n, p)| (p, n))
        .collect();

    // Nodes with their patches; YAML snapshots carry their own entry.
    let mut with_patch: Vec<(Node, Option<Patch<'_>>)> = Vec::with_capacity(drafts.len());
    for mut n in drafts {
        if n.resource_type == ResourceType::Model {
            if let Some((base, version)) = versions.get(&(n.package.clone(), n.name.clone())) {
                n.unique_id = format!("model.{}.{base}.v{}", n.package, version.v);
                n.name = base.clone();
                if let Some(last) = n.fqn.last_mut() {
                    *last = base.clone();
                }
                n.fqn.push(format!("v{}", version.v));
                n.version = Some(version.clone());
                let patch = patches
                    .get(&(n.package.clone(), ResourceType::Model, base.clone()))
                    .copied();
                with_patch.push((n, patch));
                continue;
            }
        }
        let patch = patches.remove(&(n.package.clone(), n.resource_type, n.name.clone()));
        with_patch.push((n, patch));
    }
    // A versioned model's properties were used by its versions.
    patches.retain(|(pkg, rt, name), _| {
        !(*rt == ResourceType::Model && versioned_names.contains(&(pkg.clone(), name.clone())))
    });
    for (i, n) in yaml_snapshots {
        let (id, p) = &props[i];
        let own = p
            .schema
            .snapshots
            .iter()
            .find(|s| s.name == n.name && s.relation.is_some())
            .map(|s| (id, s));
        with_patch.push((n, own));
    }
    // Properties that match no file: dbt warns, and their tests are not made.
    let mut unmatched: HashSet<(String, String)> = HashSet::new();
    for ((pkg, rt, name), (id, _)) in &patches {
        let section = match rt {
            ResourceType::Analysis => "analyses".to_string(),
            other => format!("{}s", other.as_str()),
        };
        unmatched.insert((pkg.to_string(), format!("{section}.{name}")));
        if *pkg == root {
            m.warnings.push(format!(
                "{}: properties for {} '{}' match no file (its data tests are skipped)",
                lk.display(id),
                rt.as_str(),
                name
            ));
        }
    }
    if !unmatched.is_empty() {
        test_drafts.retain(|(n, _)| {
            n.test
                .as_ref()
                .is_none_or(|t| !unmatched.contains(&(n.package.clone(), t.file_key_name.clone())))
        });
    }
    timing("link: patches", t0);

    // Configs, layered and checked, in parallel.
    let configured: Vec<Result<Node, Vec<Diagnostic>>> = with_patch
        .into_par_iter()
        .map(|(n, patch)| lk.configure(n, patch))
        .collect();
    let mut nodes: Vec<Node> = Vec::with_capacity(configured.len());
    for r in configured {
        match r {
            Ok(n) => nodes.push(n),
            Err(d) => diags.0.extend(d),
        }
    }
    let tests: Vec<Result<Node, Vec<Diagnostic>>> = test_drafts
        .into_par_iter()
        .map(|(n, cfg)| lk.configure_test(n, &cfg))
        .collect();
    for r in tests {
        match r {
            Ok(n) => nodes.push(n),
            Err(d) => diags.0.extend(d),
        }
    }
    timing("link: configs", t0);

    // Sources and exposures.
    for (id, p) in &props {
        let Some(f) = lk.files.get(id) else { continue };
        for src in &p.schema.sources {
            for t in &src.tables {
                match lk.source(f, src, t, quoting) {
                    Ok(s) => {
                        if s.config.enabled {
                            m.sources.insert(s.unique_id.clone(), s);
                        }
                    }
                    Err(d) => diags.push(d.at(
                        &f.display,
                        Some(&f.contents),
                        line_of(&f.contents, &format!("name: {}", t.name)),
                        1,
                    )),
                }
            }
        }
        for e in &p.schema.exposures {
            let x = lk.exposure(f, e);
            m.exposures.insert(x.unique_id.clone(), x);
        }
    }
    nodes.extend(lk.operations());

    // Names: database, schema, alias.
    let named: Vec<Result<Node, Diagnostic>> =
        nodes.into_par_iter().map(|n| lk.resolve_names(n)).collect();
    let mut nodes = Vec::with_capacity(named.len());
    for r in named {
        match r {
            Ok(n) => nodes.push(n),
            Err(d) => diags.push(d),
        }
    }
    timing("link: names", t0);

    // Enabled nodes and duplicates.
    m.nodes.reserve(nodes.len());
    for n in nodes {
        if !n.config.enabled {
            m.disabled.entry(n.unique_id.clone()).or_default().push(n);
            continue;
        }
        if let Some(prev) = m.nodes.get(&n.unique_id).map(|p| &p.display_path) {
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
        m.nodes.insert(n.unique_id.clone(), n);
    }

    timing("link: nodes inserted", t0);
    for (_, p) in &props {
        for u in &p.unit_tests {
            let mut u = u.clone();
            if let Err(d) = lk.read_fixture_files(&mut u) {
                diags.push(d);
                continue;
            }
            if let Err(d) = lk.configure_unit_test(&mut u) {
                diags.push(d);
                continue;
            }
            if u.enabled {
                m.unit_tests.insert(u.unique_id.clone(), u);
            }
        }
    }
    timing("link: unit tests", t0);
    lk.macros(&mut m, &props);
    let semantic_inputs: Vec<super::semantic::SemanticInput> = props
        .iter()
        .filter(|(_, p)| {
            !(p.schema.semantic_models.is_empty()
                && p.schema.metrics.is_empty()
                && p.schema.saved_queries.is_empty())
        })
        .map(|(id, p)| super::semantic::SemanticInput {
            package: id.package.clone(),
            path: id.path.clone(),
            display: lk.display(id),
            semantic_models: p.schema.semantic_models.clone(),
            metrics: p.schema.metrics.clone(),
            saved_queries: p.schema.saved_queries.clone(),
        })
        .collect();
    timing("link: macros+semantic inputs", t0);
    // The parsed YAML is large and no longer needed: free it off the critical path.
    std::thread::spawn(move || drop(props));
    resolve_docs(&mut m, &mut diags);
    timing("link: docs", t0);
    m.refs = std::sync::Arc::new(RefIndex::new(m.nodes.values(), &root));
    timing("link: ref index", t0);
    resolve_dependencies(project, &mut m, &failed, &mut diags);
    timing("link: dependencies", t0);
    if !semantic_inputs.is_empty() {
        let (layer, problems) = super::semantic::build(&semantic_inputs, &m);
        m.semantic = layer;
        diags.0.extend(problems);
    }
    m.selectors = match &project.selectors_yml {
        Some((file, text)) => {
            crate::selector_syntax::selectors_json(file, text).unwrap_or_else(|d| {
                diags.push(d);
                Json::Object(Default::default())
            })
        }
        None => Json::Object(Default::default()),
    };
    timing("link: resolve", t0);
    diags.into_result()?;
    Ok(m)
}

/// Prints phase timings (and the resident memory, where /proc tells it) to
/// stderr when `STRATA_TIMINGS` is set.
pub fn timing(label: &str, since: std::time::Instant) {
    if std::env::var_os("STRATA_TIMINGS").is_some() {
        // statm's second field: resident pages.
        let rss_mb = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| format!(", {} MB resident", pages * 4096 / (1 << 20)))
            .unwrap_or_default();
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "[timing] {label}: {:.1} ms{rss_mb}",
                since.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
}

/// The folder configs of every package, for parse-phase renders.
pub struct ProjectFolderConfigs {
    /// (package name, is root, its settings), the root first.
    packages: Vec<(String, bool, crate::project::ProjectSettings)>,
}

impl ProjectFolderConfigs {
    pub fn new(project: &Project) -> Self {
        ProjectFolderConfigs {
            packages: project
                .packages
                .iter()
                .map(|p| (p.name().to_string(), p.is_root, p.settings.clone()))
                .collect(),
        }
    }
}

impl jinja::FolderConfigs for ProjectFolderConfigs {
    fn config_for(&self, package: &str, resource_type: &str, fqn: &[String]) -> ConfigMap {
        let mut cfg = ConfigMap::default();
        let Some(rt) = ResourceType::parse(resource_type) else {
            return cfg;
        };
        // As `project_configs`: the package's own, then the root's on top.
        if let Some((_, _, own)) = self
            .packages
            .iter()
            .find(|(name, is_root, _)| name == package && !is_root)
        {
            apply_folder_configs(section(own, rt), fqn, &mut cfg);
        }
        if let Some((_, _, root)) = self.packages.iter().find(|(_, is_root, _)| *is_root) {
            apply_folder_configs(section(root, rt), fqn, &mut cfg);
        }
        cfg
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

fn columns_from(defs: &[ColumnDef]) -> IndexMap<String, ColumnInfo> {
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
                ColumnInfo {
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

/// Hooks as dbt stores them in configs and the manifest.
fn finalize_config(cfg: &mut ConfigMap) {
    for k in ["pre-hook", "post-hook"] {
        let hooks = normalize_hooks(cfg.get(k));
        cfg.insert(k.to_string(), Json::Array(hooks));
    }
}

/// The first line at or after `from` (1-based) matching `re`.
fn line_matching(text: &str, from: usize, re: &Regex) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| re.is_match(l))
        .map(|(i, _)| i + 1)
}

/// The 1-based column where `key` (or its `_` spelling) starts on `line`.
fn key_column(text: &str, line: usize, key: &str) -> usize {
    let alt = key.replace('-', "_");
    text.lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.find(key).or_else(|| l.find(&alt)))
        .map(|c| c + 1)
        .unwrap_or(1)
}

fn key_regex(key: &str, sql: bool) -> Option<Regex> {
    let k = regex::escape(key);
    let k_alt = regex::escape(&key.replace('-', "_"));
    if sql {
        Regex::new(&format!(r#"\b({k}|{k_alt})\s*=|['"]({k}|{k_alt})['"]\s*:"#)).ok()
    } else {
        Regex::new(&format!(r#"^\s*(-\s*)?\+?({k}|{k_alt})\s*:"#)).ok()
    }
}

impl Linker<'_> {
    fn display(&self, id: &FileId) -> String {
        self.files
            .get(id)
            .map(|f| f.display.clone())
            .unwrap_or_else(|| id.path.clone())
    }

    /// Project-level configs for a node: its own package's dbt_project.yml, then the root's.
    fn project_configs(&self, package: &str, rt: ResourceType, fqn: &[String]) -> ConfigMap {
        let mut cfg = ConfigMap::default();
        if let Some(pkg) = self.project.package(package).filter(|p| !p.is_root) {
            apply_folder_configs(section(&pkg.settings, rt), fqn, &mut cfg);
        }
        apply_folder_configs(section(&self.project.root().settings, rt), fqn, &mut cfg);
        cfg
    }

    /// Layers a node's configs, applies its properties and checks the result.
    fn configure(&self, mut node: Node, patch: Option<Patch<'_>>) -> Result<Node, Vec<Diagnostic>> {
        let rt = node.resource_type;
        let mut cfg = self.project_configs(&node.package, rt, &node.fqn);
        if let Some((pid, p)) = patch {
            node.patch_path = Some(format!("{}://{}", node.package, pid.path));
            node.description = p.description.clone().unwrap_or_default();
            node.columns = columns_from(&p.columns);
            // dbt renders a properties file's configs and column types with
            // the target, vars and env vars (`"{{ 'int' if target.type … }}"`).
            for col in node.columns.values_mut() {
                if let Some(t) = col.data_type.as_mut().filter(|t| t.contains("{{")) {
                    *t = self
                        .render_str(t)
                        .map_err(|d| vec![d.file(&node.display_path)])?;
                }
            }
            if let Some(c) = &p.config {
                let mut own = config_from_yaml(c);
                // Hooks are rendered when they run, with `this`.
                for (k, v) in own.iter_mut() {
                    if matches!(
                        k.as_str(),
                        "pre-hook" | "post-hook" | "pre_hook" | "post_hook"
                    ) {
                        continue;
                    }
                    self.render_json(v)
                        .map_err(|d| vec![d.file(&node.display_path)])?;
                }
                merge_all(&mut cfg, &own);
            }
            if let Some(meta) = &p.meta {
                merge_key(&mut cfg, "meta", yaml_to_json(&Yaml::Mapping(meta.clone())));
            }
            if let Some(t) = &p.tags {
                merge_key(&mut cfg, "tags", yaml_to_json(t));
            }
            // `access:` and `group:` may sit beside `config:`, as in dbt.
            if let Some(a) = &p.access {
                merge_key(&mut cfg, "access", Json::from(a.as_str()));
            }
            if let Some(g) = &p.group {
                merge_key(&mut cfg, "group", Json::from(g.as_str()));
            }
            if let Some(ts) = &p.time_spine {
                let mut ts = yaml_to_json(ts);
                if let Some(o) = ts.as_object_mut() {
                    o.entry("custom_granularities")
                        .or_insert_with(|| Json::Array(Vec::new()));
                }
                node.time_spine = Some(Box::new(ts));
            }
            if let Some(Yaml::Mapping(docs)) = &p.docs {
                if let Some(Yaml::Bool(show)) = docs.get("show") {
                    node.docs_show = *show;
                }
            }
        }
        for (k, v) in &node.config_call {
            merge_key(&mut cfg, k, v.clone());
        }
        if rt == ResourceType::Test {
            cfg.entry("schema".to_string())
                .or_insert(Json::from("dbt_test__audit"));
        } else {
            finalize_config(&mut cfg);
        }
        node.meta = cfg
            .get("meta")
            .cloned()
            .unwrap_or(Json::Object(Default::default()));
        let (config, problems) = NodeConfig::resolve(cfg, rt.config_scope(), &self.ext);
        *node.config = config;
        if node.config.enabled && !problems.is_empty() {
            return Err(problems
                .iter()
                .map(|p| self.config_diagnostic(&node, patch, None, p))
                .collect());
        }
        Ok(node)
    }

    /// A generic test's configs: project folders, then its own YAML entry.
    fn configure_test(&self, mut node: Node, own: &ConfigMap) -> Result<Node, Vec<Diagnostic>> {
        let mut cfg = self.project_configs(&node.package, ResourceType::Test, &node.fqn);
        for (k, v) in own {
            // dbt renders a test's config values written with Jinja (natively:
            // `"{{ 'warn' if ... }}"` becomes the string, `"{{ 5 }}"` the number).
            let v = match v.as_str() {
                Some(text) if text.contains("{{") || text.contains("{%") => {
                    let rendered = self
                        .render_str(text)
                        .map_err(|d| vec![d.file(&node.display_path)])?;
                    native_value(rendered)
                }
                _ => v.clone(),
            };
            merge_key(&mut cfg, k, v);
        }
        cfg.entry("schema".to_string())
            .or_insert(Json::from("dbt_test__audit"));
        node.meta = cfg
            .get("meta")
            .cloned()
            .unwrap_or(Json::Object(Default::default()));
        let (config, problems) = NodeConfig::resolve(cfg, ConfigScope::Test, &self.ext);
        *node.config = config;
        if node.config.enabled && !problems.is_empty() {
            return Err(problems
                .iter()
                .map(|p| self.config_diagnostic(&node, None, Some(own), p))
                .collect());
        }
        Ok(node)
    }

    /// A config problem, located where the value that won was set: the
    /// node's own `config()` call, its properties YAML (or a test's entry), or
    /// a dbt_project.yml.
    fn config_diagnostic(
        &self,
        node: &Node,
        patch: Option<Patch<'_>>,
        test_config: Option<&ConfigMap>,
        p: &ConfigProblem,
    ) -> Diagnostic {
        let d = Diagnostic::new(
            DiagKind::Config,
            format!(
                "{} '{}': {}",
                node.resource_type.as_str(),
                node.name,
                p.message
            ),
        );
        let d = match &p.hint {
            Some(h) => d.hint(h.clone()),
            None => d,
        };
        let key = p.key.as_str();
        let own_file = self
            .project
            .file_text(&node.package, &node.original_file_path);
        // 1. Inline config() in the node's SQL.
        if node.config_call.contains_key(key) {
            if let (Some(text), Some(re)) = (own_file, key_regex(key, true)) {
                let line =
                    line_matching(text, node.line_offset + 1, &re).unwrap_or(node.line_offset + 1);
                return d.at(
                    &node.display_path,
                    Some(text),
                    line,
                    key_column(text, line, key),
                );
            }
            return d.file(&node.display_path);
        }
        // 2. The properties YAML: a patch's config, or a test's own entry.
        let yaml_file = match (patch, test_config) {
            (Some((id, np)), _)
                if np.config.as_ref().is_some_and(|c| {
                    c.keys().any(|k| k.as_str().map(normalize_key) == Some(key))
                }) =>
            {
                Some((
                    self.display(id),
                    self.files.get(id).map(|f| f.contents.as_str()),
                    np.name.clone(),
                ))
            }
            (_, Some(own)) if own.contains_key(key) => {
                let target = node
                    .test
                    .as_ref()
                    .and_then(|t| t.file_key_name.split('.').nth(1).map(str::to_string))
                    .unwrap_or_default();
                Some((node.display_path.clone(), own_file, target))
            }
            _ => None,
        };
        if let Some((file, text, name)) = yaml_file {
            if let (Some(text), Some(re)) = (text, key_regex(key, false)) {
                let start = line_of(text, &format!("name: {name}"));
                let line = line_matching(text, start, &re).unwrap_or(start);
                return d.at(&file, Some(text), line, key_column(text, line, key));
            }
            return d.file(&file);
        }
        // 3. A dbt_project.yml: the root's wins over the package's.
        let candidates = [
            Some((
                self.project.dir.join("dbt_project.yml"),
                "dbt_project.yml".to_string(),
            )),
            self.project
                .package(&node.package)
                .filter(|p| !p.is_root)
                .map(|p| {
                    let path = p.root.join("dbt_project.yml");
                    let shown = path
                        .strip_prefix(&self.project.dir)
                        .map(|r| r.display().to_string())
                        .unwrap_or_else(|_| path.display().to_string());
                    (path, shown)
                }),
        ];
        for (path, shown) in candidates.into_iter().flatten() {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Some(line) = key_regex(key, false).and_then(|re| line_matching(&text, 1, &re)) {
                return d.at(&shown, Some(&text), line, key_column(&text, line, key));
            }
        }
        d.file(&node.display_path)
    }

    /// A unit test's `fixture:` files, read into rows or SQL: dbt looks for
    /// `<name>.csv` / `<name>.sql` under a `fixtures/` folder of a test path.
    fn read_fixture_files(&self, u: &mut UnitTest) -> Result<(), Diagnostic> {
        let pkg = self.project.package(&u.package);
        let read = |f: &mut Fixture| -> Result<(), Diagnostic> {
            let Fixture::File { name, format } = f else {
                return Ok(());
            };
            let ext = match format {
                FixtureFormat::Csv => "csv",
                FixtureFormat::Sql => "sql",
            };
            let file_name = format!("{name}.{ext}");
            let found = pkg.into_iter().find_map(|p| {
                p.settings.test_paths.iter().find_map(|tp| {
                    walkdir::WalkDir::new(p.root.join(tp).join("fixtures"))
                        .into_iter()
                        .filter_map(|e| e.ok())
                        .find(|e| {
                            e.file_type().is_file() && e.file_name().to_string_lossy() == file_name
                        })
                        .map(|e| e.into_path())
                })
            });
            let problem = |msg: String| {
                Diagnostic::new(DiagKind::Yaml, format!("unit test '{}': {msg}", u.name))
                    .file(&u.display_path)
            };
            let path = found.ok_or_else(|| {
                problem(format!(
                    "fixture '{name}' not found: no {file_name} under a test path's fixtures/"
                ))
            })?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| problem(format!("cannot read {}: {e}", path.display())))?;
            *f = match format {
                FixtureFormat::Sql => Fixture::Sql(text),
                FixtureFormat::Csv => Fixture::Rows(
                    super::parse_file::csv_rows(&text)
                        .map_err(|e| problem(format!("{}: {e}", path.display())))?,
                ),
            };
            Ok(())
        };
        for g in &mut u.given {
            read(&mut g.rows)?;
        }
        read(&mut u.expect)
    }

    /// A unit test's config: the project's `unit_tests:` folder configs, then
    /// its own `config:`, whose Jinja is rendered (tags chosen by target …).
    fn configure_unit_test(&self, u: &mut UnitTest) -> Result<(), Diagnostic> {
        let mut cfg = self.project_configs(&u.package, ResourceType::UnitTest, &u.fqn);
        if let Some(own) = u.raw.get("config").and_then(Json::as_object) {
            for (k, v) in own {
                let v = match v.as_str() {
                    Some(text) if text.contains("{{") || text.contains("{%") => {
                        native_value(self.render_str(text).map_err(|d| d.file(&u.display_path))?)
                    }
                    _ => v.clone(),
                };
                merge_key(&mut cfg, k, v);
            }
        }
        u.tags = match cfg.get("tags") {
            Some(Json::String(t)) => vec![t.clone()],
            Some(Json::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        u.enabled = cfg.get("enabled").and_then(Json::as_bool).unwrap_or(true);
        u.config = cfg;
        Ok(())
    }

    /// Renders every string holding Jinja in a config value, in place.
    fn render_json(&self, v: &mut Json) -> Result<(), Diagnostic> {
        match v {
            Json::String(text) if text.contains("{{") => {
                *v = native_value(self.render_str(text)?);
            }
            Json::Array(a) => {
                for x in a {
                    self.render_json(x)?;
                }
            }
            Json::Object(o) => {
                for x in o.values_mut() {
                    self.render_json(x)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn render_str(&self, s: &str) -> Result<String, Diagnostic> {
        if !s.contains("{{") {
            return Ok(s.to_string());
        }
        let target = self.project.target.to_json();
        jinja::render_config_string(
            s,
            &self.project.root().vars,
            Some(&target),
            jinja::SecretEnv::Refused,
        )
        .map_err(|e| Diagnostic::new(DiagKind::JinjaRuntime, e))
    }

    fn source(
        &self,
        f: &SourceFile,
        src: &crate::project::schema::SourceDef,
        t: &crate::project::schema::SourceTableDef,
        quoting: QuotePolicy,
    ) -> Result<Source, Diagnostic> {
        let pkg = f.id.package.as_str();
        let mut fqn = vec![pkg.to_string()];
        fqn.extend(dirs(&f.path));
        fqn.push(src.name.clone());
        fqn.push(t.name.clone());
        let mut cfg = self.project_configs(pkg, ResourceType::Source, &fqn);
        if let Some(c) = &src.config {
            merge_all(&mut cfg, &config_from_yaml(c));
        }
        if let Some(c) = &t.config {
            merge_all(&mut cfg, &config_from_yaml(c));
        }
        let database = match &src.database {
            Some(d) => self.render_str(d)?,
            None => self.project.target.database.clone(),
        };
        let schema = match &src.schema {
            Some(s) => self.render_str(s)?,
            None => src.name.clone(),
        };
        let identifier = match &t.identifier {
            Some(i) => self.render_str(i)?,
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
        let (config, problems) = NodeConfig::resolve(cfg, ConfigScope::Other, &self.ext);
        if let Some(p) = problems.first() {
            return Err(Diagnostic::new(
                DiagKind::Config,
                format!("source '{}.{}': {}", src.name, t.name, p.message),
            ));
        }
        let relation_name = RelationName::new(&database, &schema, &identifier, q).render();
        // The location may depend on the target (`s3://` on Redshift, a
        // local directory on a laptop), as dbt renders source properties.
        let external_yaml = match &t.external {
            Some(Yaml::Mapping(m)) => {
                let mut m = m.clone();
                if let Some(Yaml::String(l)) = m.get_mut("location") {
                    if l.contains("{{") || l.contains("{%") {
                        *l = self.render_str(l)?;
                    }
                }
                Some(Yaml::Mapping(m))
            }
            other => other.clone(),
        };
        let external = match &external_yaml {
            Some(y) => crate::manifest::external::External::parse(y).map_err(|e| {
                Diagnostic::new(
                    DiagKind::Config,
                    format!("source '{}.{}': external: {e}", src.name, t.name),
                )
            })?,
            None => None,
        };
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
            path: f.id.path.clone(),
            original_file_path: f.id.path.clone(),
            fqn,
            relation_name,
            external_raw: external_yaml
                .as_ref()
                .map(yaml_to_json)
                .unwrap_or(Json::Null),
            external,
        })
    }

    fn exposure(&self, f: &SourceFile, e: &crate::project::schema::ExposureDef) -> Exposure {
        let pkg = f.id.package.as_str();
        let mut refs = Vec::new();
        let mut sources = Vec::new();
        for d in &e.depends_on {
            generic_tests::scan_calls(&Json::from(d.clone()), &mut refs, &mut sources);
        }
        let mut fqn = vec![pkg.to_string()];
        fqn.extend(dirs(&f.path));
        fqn.push(e.name.clone());
        let mut cfg = self.project_configs(pkg, ResourceType::Exposure, &fqn);
        if let Some(c) = &e.config {
            merge_all(&mut cfg, &config_from_yaml(c));
        }
        if let Some(t) = &e.tags {
            merge_key(&mut cfg, "tags", yaml_to_json(t));
        }
        let config = NodeConfig::resolve(cfg, ConfigScope::Other, &self.ext).0;
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
            path: f.id.path.clone(),
            original_file_path: f.id.path.clone(),
            fqn,
            refs,
            sources,
            depends_on_nodes: vec![],
        }
    }

    /// Project hooks become operation nodes, as in dbt's manifest.
    fn operations(&self) -> Vec<Node> {
        let mut out = Vec::new();
        for pkg in &self.project.packages {
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
                    let mut n = Node::new(NodeBase {
                        unique_id: format!("operation.{}.{name}", pkg.name()),
                        resource_type: ResourceType::Operation,
                        package: pkg.name().to_string(),
                        path: format!("hooks/{name}.sql"),
                        original_file_path: "./dbt_project.yml".into(),
                        display_path: "dbt_project.yml".into(),
                        fqn: vec![pkg.name().to_string(), "hooks".into(), name.clone()],
                        name,
                    });
                    n.checksum = yml_checksum.clone();
                    n.raw_code = sql.clone();
                    *n.config = NodeConfig::resolve(cfg, ConfigScope::Other, &self.ext).0;
                    n.phase_sensitive = true;
                    out.push(n);
                }
            }
        }
        out
    }

    /// Database, schema and alias through the generate_*_name macros; the built-in
    /// defaults are computed directly unless the project overrides them.
    fn resolve_names(&self, mut n: Node) -> Result<Node, Diagnostic> {
        let (project, jinja) = (self.project, self.jinja);
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
                "version": n.version.as_ref().map(|v| Json::from(v.v.clone())),
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
                .unwrap_or_else(|| match &n.version {
                    // dbt's default for a versioned model: `<name>_v<v>`.
                    Some(v) => format!("{}_v{}", n.name, v.v),
                    None => n.name.clone(),
                })
        };
        Ok(n)
    }

    /// Macros for the manifest, with their YAML descriptions.
    fn macros(&self, m: &mut Manifest, props: &[(FileId, Box<Properties>)]) {
        let mut macro_patches: HashMap<
            (&str, &str),
            (String, &crate::project::schema::MacroPatch),
        > = HashMap::new();
        for (id, p) in props {
            for mp in &p.schema.macros {
                macro_patches.insert(
                    (id.package.as_str(), mp.name.as_str()),
                    (id.to_string(), mp),
                );
            }
        }
        for d in &self.jinja.macros().defs {
            let patch = macro_patches.get(&(d.package.as_str(), d.name.as_str()));
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
    }
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
fn resolve_dependencies(
    project: &Project,
    m: &mut Manifest,
    failed: &HashSet<String>,
    diags: &mut Diagnostics,
) {
    let disabled: HashSet<&str> = m
        .disabled
        .values()
        .flatten()
        .map(|n| n.name.as_str())
        .collect();
    // source name → table name → unique id (looked up without allocating).
    let mut source_ids: HashMap<&str, HashMap<&str, String>> = HashMap::new();
    for s in m.sources.values() {
        source_ids
            .entry(s.source_name.as_str())
            .or_default()
            .insert(s.name.as_str(), s.unique_id.clone());
    }
    let source_ids = source_ids;
    let names: Vec<&str> = m.refs.names().collect();
    let src_names: Vec<String> = source_ids
        .iter()
        .flat_map(|(s, tables)| tables.keys().map(move |t| format!("{s}.{t}")))
        .collect();

    // Each node's dependencies, in parallel; problems kept in node order.
    use rayon::prelude::*;
    let refs = m.refs.clone();
    let per_node: Vec<(Option<String>, Vec<Diagnostic>)> = m
        .nodes
        .par_values_mut()
        .map(|n| {
        let mut diags: Vec<Diagnostic> = Vec::new();
        let mut deps: Vec<String> = Vec::new();
        let mut attached = None;
        let mut broken = false;
        let file_src = || project.file_text(&n.package, &n.original_file_path);
        for r in &n.refs {
            match refs.resolve(&n.package, r) {
                Ok(u) => {
                    if attached.is_none() && n.test.is_some() {
                        attached = Some(u.to_string());
                    }
                    if !deps.iter().any(|d| d == u) {
                        deps.push(u.to_string());
                    }
                }
                Err(_) => {
                    let is_disabled = disabled.contains(r.name.as_str());
                    if n.test.is_some() && is_disabled {
                        broken = true;
                        continue;
                    }
                    if failed.contains(r.name.as_str()) {
                        // Its file's own error says what is wrong.
                        broken |= n.test.is_some();
                        continue;
                    }
                    let file_src = file_src();
                    let (line, col) = find_call(file_src, &format!("'{}'", r.name), n.line_offset);
                    let mut d = Diagnostic::new(
                        DiagKind::UnknownRef,
                        if is_disabled {
                            format!(
                                "{} '{}' depends on '{}', which is disabled",
                                n.resource_type.as_str(),
                                n.name,
                                r.name
                            )
                        } else {
                            format!(
                                "{} '{}' refers to ref('{}'), which is not a model, seed or snapshot{}",
                                n.resource_type.as_str(),
                                n.name,
                                r.name,
                                r.package
                                    .as_ref()
                                    .map(|p| format!(" in package '{p}'"))
                                    .unwrap_or_default()
                            )
                        },
                    )
                    .at(&n.display_path, file_src, line, col);
                    d.hint = if is_disabled {
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
            match source_ids.get(s.as_str()).and_then(|tables| tables.get(t.as_str())) {
                Some(u) => {
                    if !deps.contains(u) {
                        deps.push(u.clone());
                    }
                }
                None => {
                    let file_src = file_src();
                    let (line, col) = find_call(file_src, &format!("'{t}'"), n.line_offset);
                    let wanted = format!("{s}.{t}");
                    let mut d = Diagnostic::new(
                        DiagKind::UnknownSource,
                        format!(
                            "{} '{}' refers to source('{s}', '{t}'), which is not defined in any sources: YAML",
                            n.resource_type.as_str(),
                            n.name
                        ),
                    )
                    .at(&n.display_path, file_src, line, col);
                    d.hint = suggest(&wanted, src_names.iter().map(String::as_str)).or_else(|| {
                        Some("declare it under `sources:` in a properties .yml file".into())
                    });
                    diags.push(d);
                }
            }
        }
        n.depends_on_nodes = deps;
        if let Some(t) = &mut n.test {
            t.attached_node = attached;
        }
        (broken.then(|| n.unique_id.clone()), diags)
    })
        .collect();
    let mut newly_disabled: Vec<String> = Vec::new();
    for (broken, d) in per_node {
        newly_disabled.extend(broken);
        diags.0.extend(d);
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
                match m.refs.resolve(&e.package, r) {
                    Ok(u) => deps.push(u.to_string()),
                    Err(_) => diags.push(
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
                if let Some(u) = source_ids
                    .get(s.as_str())
                    .and_then(|tables| tables.get(t.as_str()))
                {
                    deps.push(u.clone());
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

/// A rendered string as dbt's native rendering reads it: a number, a boolean
/// or null when it is one, else the string.
fn native_value(rendered: String) -> Json {
    match serde_yaml::from_str::<serde_yaml::Value>(rendered.trim()) {
        Ok(
            y @ (serde_yaml::Value::Number(_)
            | serde_yaml::Value::Bool(_)
            | serde_yaml::Value::Null),
        ) if !rendered.trim().is_empty() => crate::confmap::yaml_to_json(&y),
        _ => Json::from(rendered),
    }
}

/// A YAML scalar as text (`v: 2` and `v: "2"` are the same version).
fn yaml_scalar(y: &serde_yaml::Value) -> Option<String> {
    match y {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Versions compare as numbers when both are, else as text.
fn version_order(a: &String, b: &String) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}
