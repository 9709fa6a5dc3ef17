//! Manifest → compiled SQL: resolves refs and sources, reuses parse renders where
//! possible, renders generic tests, and injects ephemeral models as CTEs.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use minijinja::value::Value;
use rayon::prelude::*;
use regex::Regex;
use serde_json::Value as Json;

use crate::error::{DiagKind, Diagnostic, Diagnostics, Error};
use crate::graph::Graph;
use crate::jinja::{
    self, JinjaEnv, NodeInfo, RefCall, RelationName, ResolvedRef, Resolver, Services, Warehouse,
};
use crate::manifest::parser::Parsed;
use crate::manifest::{Manifest, Node, RefIndex, ResourceType};

/// A node's rendered SQL.
#[derive(Debug, Clone)]
pub struct CompiledNode {
    pub unique_id: String,
    /// The SQL as rendered, before ephemeral CTEs are injected.
    pub pre_injected: String,
    /// Ephemeral CTEs this node needs, in dependency order: (unique id, `name as (...)`).
    pub extra_ctes: Vec<(String, String)>,
    pub sql: String,
    /// Relative to the target directory.
    pub compiled_path: String,
    /// The render asked the warehouse something (`run_query`, introspective
    /// `adapter` calls), so a run renders the node again once its parents are built.
    pub introspected: bool,
}

/// Why a node did not compile.
#[derive(Debug)]
pub struct CompileFailure {
    pub diagnostic: Box<Diagnostic>,
    /// The render had asked the warehouse, so it may succeed once the node's
    /// parents are built (a run renders it again then).
    pub introspected: bool,
}

impl From<Diagnostic> for CompileFailure {
    fn from(diagnostic: Diagnostic) -> Self {
        CompileFailure {
            diagnostic: Box::new(diagnostic),
            introspected: false,
        }
    }
}

/// The warehouse a hook renders against: statements are kept to run in the
/// node's transaction; queries and introspection go to the warehouse.
struct DeferredStatements {
    inner: Option<Arc<dyn Warehouse>>,
    statements: std::sync::Mutex<Vec<String>>,
}

impl DeferredStatements {
    fn inner(&self) -> Result<&Arc<dyn Warehouse>, jinja::WarehouseError> {
        self.inner
            .as_ref()
            .ok_or_else(|| "no warehouse connection while rendering this hook".into())
    }
}

impl Warehouse for DeferredStatements {
    fn query(&self, sql: &str) -> Result<crate::table::Table, jinja::WarehouseError> {
        self.inner()?.query(sql)
    }
    fn execute(&self, sql: &str) -> Result<(), jinja::WarehouseError> {
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sql.to_string());
        Ok(())
    }
    fn relation_type(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Option<String>, jinja::WarehouseError> {
        self.inner()?.relation_type(schema, identifier)
    }
    fn columns(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Vec<jinja::WarehouseColumn>, jinja::WarehouseError> {
        self.inner()?.columns(schema, identifier)
    }
    fn drop_relation(
        &self,
        relation: &str,
        kind: jinja::DropKind,
    ) -> Result<(), jinja::WarehouseError> {
        self.inner()?.drop_relation(relation, kind)
    }
    fn truncate_relation(&self, relation: &str) -> Result<(), jinja::WarehouseError> {
        self.inner()?.truncate_relation(relation)
    }
    fn create_schema(&self, schema: &str) -> Result<(), jinja::WarehouseError> {
        self.inner()?.create_schema(schema)
    }
    fn drop_schema(&self, schema: &str) -> Result<(), jinja::WarehouseError> {
        self.inner()?.drop_schema(schema)
    }
}

/// Every selected node, compiled or not.
#[derive(Debug, Default)]
pub struct CompileOutcome {
    pub nodes: HashMap<String, CompiledNode>,
    pub failures: HashMap<String, CompileFailure>,
}

/// What a render produced.
struct Rendered {
    sql: String,
    ephemerals: Vec<String>,
    introspected: bool,
}

/// Resolves `ref`/`source` against the parsed manifest.
pub struct ManifestResolver {
    refs: Arc<RefIndex>,
    relations: HashMap<String, (RelationName, bool)>,
    /// Each relation's rendered name, computed once.
    rendered: HashMap<String, String>,
    sources: HashMap<(String, String), (String, RelationName)>,
}

impl ManifestResolver {
    pub fn new(m: &Manifest) -> Self {
        let mut relations = HashMap::new();
        let mut rendered = HashMap::new();
        for n in m.nodes.values() {
            if !matches!(
                n.resource_type,
                ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
            ) {
                continue;
            }
            let eph = n.is_ephemeral();
            let rel = if eph {
                RelationName::cte(&n.name)
            } else {
                RelationName::new(&n.database, &n.schema, &n.alias, m.quoting)
            };
            rendered.insert(n.unique_id.clone(), rel.render());
            relations.insert(n.unique_id.clone(), (rel, eph));
        }
        let sources = m
            .sources
            .values()
            .map(|s| {
                let mut r = RelationName::new(&s.database, &s.schema, &s.identifier, s.quoting);
                r.kind = Some("table".into());
                (
                    (s.source_name.clone(), s.name.clone()),
                    (s.unique_id.clone(), r),
                )
            })
            .collect();
        ManifestResolver {
            refs: m.refs.clone(),
            relations,
            rendered,
            sources,
        }
    }
}

impl ManifestResolver {
    fn pick(&self, from_package: &str, r: &RefCall) -> Result<&str, String> {
        self.refs
            .resolve(from_package, r)
            .map_err(|e| e.to_string())
    }

    /// (unique id, rendered relation, ephemeral) without cloning names.
    pub fn resolve_rendered(
        &self,
        from_package: &str,
        r: &RefCall,
    ) -> Result<(&str, &str, bool), String> {
        let uid = self.pick(from_package, r)?;
        let rendered = self
            .rendered
            .get(uid)
            .map(String::as_str)
            .unwrap_or_default();
        let eph = self.relations.get(uid).is_some_and(|(_, e)| *e);
        Ok((uid, rendered, eph))
    }
}

impl Resolver for ManifestResolver {
    fn resolve_ref(&self, from_package: &str, r: &RefCall) -> Result<ResolvedRef, String> {
        let uid = self.pick(from_package, r)?.to_string();
        let (relation, ephemeral) = self
            .relations
            .get(&uid)
            .cloned()
            .ok_or_else(|| format!("ref('{}') has no relation", r.name))?;
        Ok(ResolvedRef {
            unique_id: uid,
            relation,
            ephemeral,
        })
    }

    fn resolve_source(&self, source: &str, table: &str) -> Result<(String, RelationName), String> {
        self.sources
            .get(&(source.to_string(), table.to_string()))
            .cloned()
            .ok_or_else(|| format!("source('{source}', '{table}') is not defined"))
    }
}

static LOOKS_LIKE_FUNC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(env_var|ref|var|source|doc)\s*\(.+\)\s*$").expect("static regex")
});
static MODEL_KWARG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^\{\{ get_where_subquery\((ref\('([^']+)'\)|source\('([^']+)', '([^']+)'\))\) \}\}$"#,
    )
    .expect("static regex")
});

/// Where a node's compiled SQL is written, relative to the target directory.
pub fn compiled_path(n: &Node) -> String {
    match &n.test {
        Some(_) => format!("compiled/{}/{}/{}", n.package, n.original_file_path, n.path),
        None => format!("compiled/{}/{}", n.package, n.original_file_path),
    }
}

pub struct Compiler<'a> {
    pub parsed: &'a Parsed,
    resolver: Arc<ManifestResolver>,
    /// The manifest (and warehouse, when connected) compile renders resolve against.
    services: Arc<Services>,
    /// Render dbt's four built-in generic tests without Jinja when the project
    /// does not override them (`STRATA_JINJA_TESTS=1` turns this off).
    pub native_tests: bool,
    /// Models for which `is_incremental()` is true in this run.
    pub incremental: rustc_hash::FxHashSet<String>,
    /// Some template may read `selected_resources`.
    uses_selected: bool,
}

/// Whether any node's code may read `graph` or `selected_resources` (or
/// look names up through `context`).
fn context_words(m: &Manifest) -> (bool, bool) {
    m.nodes
        .values()
        .map(|n| {
            if !(n.raw_code.contains("graph")
                || n.raw_code.contains("selected_resources")
                || n.raw_code.contains("context"))
            {
                return (false, false);
            }
            (
                jinja::mentions_graph(&n.raw_code),
                n.raw_code.contains("selected_resources"),
            )
        })
        .fold((false, false), |a, b| (a.0 || b.0, a.1 || b.1))
}

impl<'a> Compiler<'a> {
    /// A compiler for `parsed`; with a warehouse, templates may query it
    /// (`run_query`, `statement`, introspective `adapter` methods).
    ///
    /// `graph` builds dbt's `graph` variable from the manifest (the artifacts
    /// module writes nodes as dbt does); it is called only when a template
    /// mentions `graph`.
    pub fn new(
        parsed: &'a Parsed,
        warehouse: Option<Arc<dyn Warehouse>>,
        graph: fn(&Manifest) -> Json,
    ) -> Self {
        // The scan for context words overlaps building the resolver.
        let (resolver, (nodes_use_graph, nodes_use_selected)) = rayon::join(
            || Arc::new(ManifestResolver::new(&parsed.manifest)),
            || context_words(&parsed.manifest),
        );
        // dbt's `graph`, only when some macro or node can read it.
        let graph = (parsed.jinja.macros_use_graph || nodes_use_graph)
            .then(|| jinja::to_value(graph(&parsed.manifest)));
        let services = Arc::new(Services {
            resolver: resolver.clone(),
            warehouse,
            graph,
            selected: Value::from(Vec::<Value>::new()),
        });
        let uses_selected = parsed.jinja.macros_use_selected || nodes_use_selected;
        Compiler {
            uses_selected,
            parsed,
            resolver,
            services,
            native_tests: std::env::var_os("STRATA_JINJA_TESTS").is_none(),
            incremental: Default::default(),
        }
    }

    /// Sets `selected_resources` (before any render), when a template can
    /// read it.
    pub fn with_selected<'s>(mut self, ids: impl IntoIterator<Item = &'s String>) -> Self {
        if !self.uses_selected {
            return self;
        }
        let list = Value::from(ids.into_iter().cloned().collect::<Vec<String>>());
        self.services = self.services_with(self.services.warehouse.clone(), list);
        self
    }

    fn jinja(&self) -> &JinjaEnv {
        &self.parsed.jinja
    }

    fn manifest(&self) -> &Manifest {
        &self.parsed.manifest
    }

    /// Compiles the selected nodes (and the ephemeral models they need); any
    /// failure is an error.
    pub fn compile(
        &self,
        graph: &Graph,
        selected: &BTreeSet<String>,
    ) -> Result<HashMap<String, CompiledNode>, Error> {
        let out = self.compile_each(graph, selected, &|_| false);
        if out.failures.is_empty() {
            return Ok(out.nodes);
        }
        let mut failures: Vec<(String, CompileFailure)> = out.failures.into_iter().collect();
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        let mut diags = Diagnostics::default();
        for (_, f) in failures {
            diags.push(*f.diagnostic);
        }
        diags.into_result()?;
        Ok(out.nodes)
    }

    /// Compiles the selected nodes (and the ephemeral models they need), each
    /// on its own: a node that fails does not stop the others. Nodes for which
    /// `later` holds are left for the caller to compile (the ephemeral models
    /// they need are compiled here).
    pub fn compile_each(
        &self,
        graph: &Graph,
        selected: &BTreeSet<String>,
        later: &(dyn Fn(&Node) -> bool + Sync),
    ) -> CompileOutcome {
        let m = self.manifest();
        let need: Vec<&String> = selected
            .iter()
            .filter(|id| m.nodes.get(*id).is_some_and(|n| n.has_sql()))
            .collect();
        // Ephemeral models the selection inlines, found through ephemeral parents only.
        let mut eph_needed: rustc_hash::FxHashSet<&str> = Default::default();
        let mut stack: Vec<&str> = Vec::new();
        for id in &need {
            let n = &m.nodes[*id];
            if n.is_ephemeral() {
                stack.push(id.as_str());
            }
            stack.extend(n.depends_on_nodes.iter().map(String::as_str));
        }
        while let Some(id) = stack.pop() {
            match m.nodes.get(id) {
                Some(n) if n.is_ephemeral() && eph_needed.insert(id) => {
                    stack.extend(n.depends_on_nodes.iter().map(String::as_str));
                }
                _ => {}
            }
        }
        let ephemerals: Vec<String> = if eph_needed.is_empty() {
            Vec::new()
        } else {
            graph
                .topo_order()
                .into_iter()
                .filter(|id| eph_needed.contains(id.as_str()))
                .collect()
        };
        let mut out: HashMap<String, CompiledNode> =
            HashMap::with_capacity(need.len() + ephemerals.len());
        let mut failures: HashMap<String, CompileFailure> = HashMap::new();
        // Ephemeral models first, in dependency order, so dependents can inline them.
        for id in &ephemerals {
            match self.compile_node(&m.nodes[id], &out) {
                Ok(c) => {
                    out.insert(id.clone(), c);
                }
                Err(f) => {
                    failures.insert(id.clone(), f);
                }
            }
        }
        let rest: Vec<&String> = need
            .into_iter()
            .filter(|id| !out.contains_key(*id) && !later(&m.nodes[*id]))
            .collect();
        let results: Vec<(&String, Result<CompiledNode, CompileFailure>)> = rest
            .par_iter()
            .map(|id| (*id, self.compile_node(&m.nodes[*id], &out)))
            .collect();
        for (id, r) in results {
            match r {
                Ok(c) => {
                    out.insert(c.unique_id.clone(), c);
                }
                Err(f) => {
                    failures.insert(id.clone(), f);
                }
            }
        }
        CompileOutcome {
            nodes: out,
            failures,
        }
    }

    /// Calls a macro with keyword arguments in the project context (run-operation).
    pub fn call_macro(&self, name: &str, args: Value) -> Result<String, Diagnostic> {
        let info = NodeInfo {
            package: self.manifest().project_name.clone(),
            name: name.to_string(),
            resource_type: "operation".into(),
            extra: vec![("__strata_args".into(), args)],
            ..Default::default()
        };
        let ctx = self.jinja().compile_ctx(info, &self.services);
        let src = format!("{{{{ {name}(**__strata_args) }}}}");
        self.jinja()
            .render("<run-operation>", &src, &ctx)
            .map_err(|e| jinja::diagnostic_from_jinja(&e, "<run-operation>", None, 0))
    }

    /// Renders a node's hook. Statements the hook's Jinja runs while it is
    /// rendered (`{% call statement() %}` without fetching, `run_query` of DDL
    /// is not caught) are returned instead of run, to go first into the
    /// node's transaction: a post-hook that inserts into `this` sees the
    /// relation the node just built, and fails with it.
    pub fn render_hook(&self, n: &Node, sql: &str) -> Result<(Vec<String>, String), Diagnostic> {
        if !sql.contains("{{") && !sql.contains("{%") {
            return Ok((Vec::new(), sql.to_string()));
        }
        let deferred = Arc::new(DeferredStatements {
            inner: self.services.warehouse.clone(),
            statements: std::sync::Mutex::new(Vec::new()),
        });
        let services = self.services_with(Some(deferred.clone()), self.services.selected.clone());
        let out = self.render_with(&services, Some(n), sql)?;
        let statements = std::mem::take(
            &mut *deferred
                .statements
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        Ok((statements, out))
    }

    /// Renders a hook or other SQL snippet in a node's compile context
    /// (`this`, `config`, `target` …); `None` renders in the project context.
    pub fn render_snippet(&self, n: Option<&Node>, sql: &str) -> Result<String, Diagnostic> {
        self.render_with(&self.services, n, sql)
    }

    /// `render_snippet` against the given services.
    fn render_with(
        &self,
        services: &Arc<Services>,
        n: Option<&Node>,
        sql: &str,
    ) -> Result<String, Diagnostic> {
        if !sql.contains("{{") && !sql.contains("{%") {
            return Ok(sql.to_string());
        }
        let info = match n {
            Some(n) => self.node_info(n, vec![]),
            None => NodeInfo {
                package: self.manifest().project_name.clone(),
                name: "hooks".into(),
                resource_type: "operation".into(),
                ..Default::default()
            },
        };
        let file = n
            .map(|n| n.display_path.clone())
            .unwrap_or_else(|| "dbt_project.yml".into());
        let ctx = self.jinja().compile_ctx(info, services);
        self.jinja()
            .render(
                &file,
                &jinja::preprocess::rewrite_mutable_literals(sql),
                &ctx,
            )
            .map_err(|e| jinja::diagnostic_from_jinja(&e, &file, None, 0))
    }

    /// These services with another warehouse and `selected_resources`.
    fn services_with(
        &self,
        warehouse: Option<Arc<dyn Warehouse>>,
        selected: Value,
    ) -> Arc<Services> {
        Arc::new(Services {
            resolver: self.services.resolver.clone(),
            warehouse,
            graph: self.services.graph.clone(),
            selected,
        })
    }

    fn node_info(&self, n: &Node, extra: Vec<(String, Value)>) -> NodeInfo {
        NodeInfo {
            package: n.package.clone(),
            name: n.name.clone(),
            unique_id: n.unique_id.clone(),
            resource_type: n.resource_type.as_str().to_string(),
            this: Some(RelationName::new(
                &n.database,
                &n.schema,
                &n.alias,
                self.manifest().quoting,
            )),
            config: Some(Arc::new({
                // `config.get` sees resolved defaults too, as in dbt.
                let mut c = n.config.all.clone();
                c.entry("materialized".into())
                    .or_insert_with(|| Json::from(n.config.materialized.as_str()));
                c.entry("enabled".into())
                    .or_insert(Json::Bool(n.config.enabled));
                c
            })),
            is_incremental: self.incremental.contains(&n.unique_id),
            extra,
            fqn: n.fqn.clone(),
            // A generic test's `model` is its model argument (in `extra`).
            model: n.test.is_none().then(|| self.model_value(n)),
        }
    }

    /// dbt's `model`: the node's dict in `graph` when that was built, else
    /// the parts macros read (names, relation, config, code, dependencies).
    fn model_value(&self, n: &Node) -> Value {
        if let Some(g) = &self.services.graph {
            if let Ok(v) = g
                .get_attr("nodes")
                .and_then(|nodes| nodes.get_item(&Value::from(n.unique_id.as_str())))
            {
                if !v.is_undefined() {
                    return v;
                }
            }
        }
        let mut config = n.config.all.clone();
        config
            .entry("materialized".into())
            .or_insert_with(|| Json::from(n.config.materialized.as_str()));
        jinja::to_value(serde_json::json!({
            "unique_id": n.unique_id,
            "name": n.name,
            "alias": n.alias,
            "schema": n.schema,
            "database": n.database,
            "resource_type": n.resource_type.as_str(),
            "package_name": n.package,
            "fqn": n.fqn,
            "original_file_path": n.original_file_path,
            "path": n.path,
            "raw_code": n.raw_code,
            "language": "sql",
            "tags": n.config.tags,
            "config": config,
            "meta": n.meta,
            "description": n.description,
            "depends_on": {"nodes": n.depends_on_nodes, "macros": n.depends_on_macros},
        }))
    }

    fn diag(&self, n: &Node, e: &minijinja::Error) -> Diagnostic {
        let src = std::fs::read_to_string(self.parsed_dir().join(&n.display_path)).ok();
        let d = jinja::diagnostic_from_jinja(e, &n.display_path, src.as_deref(), n.line_offset);
        crate::manifest::parser::with_call_site(d, &n.display_path, n.resource_type, &n.name)
    }

    fn parsed_dir(&self) -> &std::path::Path {
        &self.parsed.project_dir
    }

    pub fn compile_node(
        &self,
        n: &Node,
        done: &HashMap<String, CompiledNode>,
    ) -> Result<CompiledNode, CompileFailure> {
        let r = if n.test.is_some() {
            self.render_generic_test(n)?
        } else {
            self.render_sql(n)?
        };
        let introspected = r.introspected;
        let mut c = self
            .finish(n, r.sql, r.ephemerals, done)
            .map_err(|diagnostic| CompileFailure {
                diagnostic: Box::new(diagnostic),
                introspected,
            })?;
        c.introspected = introspected;
        Ok(c)
    }

    /// A model rendered for a unit test: always in the compile phase, with the
    /// test's `vars`/`env_vars`/`macros` overrides in its context.
    pub fn compile_with_overrides(
        &self,
        n: &Node,
        overrides: Vec<(String, Value)>,
        done: &HashMap<String, CompiledNode>,
    ) -> Result<CompiledNode, Diagnostic> {
        let ctx = self
            .jinja()
            .compile_ctx(self.node_info(n, overrides), &self.services);
        let src = jinja::preprocess::rewrite_mutable_literals(&n.raw_code);
        let sql = self
            .jinja()
            .render(&n.display_path, &src, &ctx)
            .map_err(|e| self.diag(n, &e))?;
        let ephemerals = ctx.take_capture().ephemerals;
        self.finish(n, sql, ephemerals, done)
    }

    pub fn resolver(&self) -> &ManifestResolver {
        &self.resolver
    }

    fn finish(
        &self,
        n: &Node,
        sql: String,
        ephemerals: Vec<String>,
        done: &HashMap<String, CompiledNode>,
    ) -> Result<CompiledNode, Diagnostic> {
        let mut extra: Vec<(String, String)> = Vec::new();
        for e in &ephemerals {
            let Some(c) = done.get(e) else {
                return Err(Diagnostic::new(
                    DiagKind::JinjaRuntime,
                    format!(
                        "ephemeral model {e} was not compiled before {}",
                        n.unique_id
                    ),
                )
                .file(&n.display_path));
            };
            for (id, cte) in &c.extra_ctes {
                if !extra.iter().any(|(x, _)| x == id) {
                    extra.push((id.clone(), cte.clone()));
                }
            }
            if !extra.iter().any(|(x, _)| x == e) {
                let name = e.rsplit('.').next().unwrap_or(e);
                extra.push((
                    e.clone(),
                    format!(" __dbt__cte__{name} as (\n{}\n)", c.pre_injected),
                ));
            }
        }
        let injected = inject_ctes(&sql, &extra);
        Ok(CompiledNode {
            unique_id: n.unique_id.clone(),
            pre_injected: sql,
            extra_ctes: extra,
            sql: injected,
            compiled_path: compiled_path(n),
            introspected: false,
        })
    }

    /// A model, analysis, snapshot or singular test: substitute the parse render
    /// when it was phase-insensitive, else render again in the compile phase.
    fn render_sql(&self, n: &Node) -> Result<Rendered, CompileFailure> {
        if let (Some(out), false) = (&n.parse_output, n.phase_sensitive) {
            let mut refs = Vec::with_capacity(n.refs.len());
            let mut ephemerals = Vec::new();
            for r in &n.refs {
                let (uid, rendered, eph) = self
                    .resolver
                    .resolve_rendered(&n.package, r)
                    .map_err(|e| Diagnostic::new(DiagKind::UnknownRef, e).file(&n.display_path))?;
                if eph && !ephemerals.iter().any(|e| e == uid) {
                    ephemerals.push(uid.to_string());
                }
                refs.push(rendered.to_string());
            }
            let mut sources = Vec::with_capacity(n.sources.len());
            for (s, t) in &n.sources {
                let (_, rel) = self.resolver.resolve_source(s, t).map_err(|e| {
                    Diagnostic::new(DiagKind::UnknownSource, e).file(&n.display_path)
                })?;
                sources.push(rel.render());
            }
            let this = RelationName::new(&n.database, &n.schema, &n.alias, self.manifest().quoting)
                .render();
            if let Some(sql) = jinja::substitute(out, &refs, &sources, Some(&this)) {
                return Ok(Rendered {
                    sql,
                    ephemerals,
                    introspected: false,
                });
            }
        }
        let ctx = self
            .jinja()
            .compile_ctx(self.node_info(n, vec![]), &self.services);
        let src = jinja::preprocess::rewrite_mutable_literals(&n.raw_code);
        let sql = self
            .jinja()
            .render(&n.display_path, &src, &ctx)
            .map_err(|e| CompileFailure {
                diagnostic: Box::new(self.diag(n, &e)),
                introspected: ctx.introspected(),
            })?;
        Ok(Rendered {
            sql,
            ephemerals: ctx.take_capture().ephemerals,
            introspected: ctx.introspected(),
        })
    }

    fn render_generic_test(&self, n: &Node) -> Result<Rendered, CompileFailure> {
        let Some(t) = &n.test else {
            return self.render_sql(n);
        };
        // The argument context is built only when an argument needs Jinja.
        let mut arg_ctx: Option<Arc<jinja::RenderCtx>> = None;
        let mut ctx_for_args = || {
            arg_ctx
                .get_or_insert_with(|| {
                    self.jinja()
                        .compile_ctx(self.node_info(n, vec![]), &self.services)
                })
                .clone()
        };
        let fast_model = !self.jinja().macros().is_overridden("get_where_subquery")
            && n.config.get("where").is_none_or(Json::is_null);
        let mut ephemerals = Vec::new();
        let mut kwargs: Vec<(String, Value)> = Vec::with_capacity(t.kwargs.len());
        for (k, v) in &t.kwargs {
            let value = if k == "column_name" {
                crate::jinja::json_value(v)
            } else if let (true, Some(c)) = (
                k == "model" && fast_model,
                v.as_str().and_then(|s| MODEL_KWARG.captures(s)),
            ) {
                let rel = match (c.get(2), c.get(3), c.get(4)) {
                    (Some(name), _, _) => self
                        .resolver
                        .resolve_ref(
                            &n.package,
                            &RefCall {
                                name: name.as_str().into(),
                                package: None,
                                version: None,
                            },
                        )
                        .map(|r| {
                            if r.ephemeral {
                                ephemerals.push(r.unique_id.clone());
                            }
                            r.relation
                        }),
                    (_, Some(s), Some(tb)) => self
                        .resolver
                        .resolve_source(s.as_str(), tb.as_str())
                        .map(|r| r.1),
                    _ => Err("bad model argument".into()),
                }
                .map_err(|e| Diagnostic::new(DiagKind::UnknownRef, e).file(&t.yaml_path))?;
                // A Relation, as dbt passes it (macros read its parts).
                Value::from_object(crate::jinja::relation::Relation::resolved(rel))
            } else if needs_jinja(v) {
                let ctx = ctx_for_args();
                self.render_arg(n, v, &ctx)
                    .map_err(|diagnostic| CompileFailure {
                        diagnostic: Box::new(diagnostic),
                        introspected: ctx.introspected(),
                    })?
            } else {
                crate::jinja::json_value(v)
            };
            kwargs.push((k.clone(), value));
        }
        let mut introspected = false;
        if let Some(ctx) = &arg_ctx {
            ephemerals.extend(ctx.take_capture().ephemerals);
            introspected = ctx.introspected();
        }
        if t.namespace.is_none() && self.native_tests {
            if let Some(sql) = native_test(&t.name, &kwargs, self.jinja().macros()) {
                return Ok(Rendered {
                    sql,
                    ephemerals,
                    introspected,
                });
            }
        }
        let kw = Value::from_pairs(kwargs);
        let ctx = self.jinja().compile_ctx(
            self.node_info(n, vec![("_dbt_generic_test_kwargs".into(), kw)]),
            &self.services,
        );
        let macro_name = match &t.namespace {
            Some(ns) => format!("{ns}.test_{}", t.name),
            None => format!("test_{}", t.name),
        };
        let src = format!("{{{{ {macro_name}(**_dbt_generic_test_kwargs) }}}}");
        let sql = self.jinja().render(&t.yaml_path, &src, &ctx).map_err(|e| {
            let mut d = self.diag(n, &e);
            if d.kind == DiagKind::UnknownMacro {
                d.message = format!("data test '{}' has no definition: {}", t.name, d.message);
                d.hint = Some(format!(
                    "define it with {{% test {}(model, column_name) %}} in a macro-path or tests/generic/",
                    t.name
                ));
            }
            CompileFailure {
                diagnostic: Box::new(d),
                introspected: introspected || ctx.introspected(),
            }
        })?;
        ephemerals.extend(ctx.take_capture().ephemerals);
        Ok(Rendered {
            sql,
            ephemerals,
            introspected: introspected || ctx.introspected(),
        })
    }

    /// dbt's rendering of test arguments: function-looking strings are evaluated,
    /// other templated strings rendered, everything else passed through.
    fn render_arg(
        &self,
        n: &Node,
        v: &Json,
        ctx: &Arc<jinja::RenderCtx>,
    ) -> Result<Value, Diagnostic> {
        let file = n
            .test
            .as_ref()
            .map(|t| t.yaml_path.clone())
            .unwrap_or_else(|| n.display_path.clone());
        match v {
            Json::String(s) if LOOKS_LIKE_FUNC.is_match(s) => self
                .jinja()
                .eval(s.trim(), ctx)
                .map_err(|e| jinja::diagnostic_from_jinja(&e, &file, None, 0)),
            // dbt renders test arguments natively: "{{ var('list') }}" yields a list.
            Json::String(s) if s.contains("{{") || s.contains("{%") => self
                .jinja()
                .render(&file, s, ctx)
                .map(|out| jinja::objects::as_native(Value::from(out)))
                .map_err(|e| jinja::diagnostic_from_jinja(&e, &file, None, 0)),
            Json::Array(a) => Ok(Value::from(
                a.iter()
                    .map(|x| self.render_arg(n, x, ctx))
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            Json::Object(o) => Ok(Value::from_pairs(
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), self.render_arg(n, x, ctx)?)))
                    .collect::<Result<Vec<_>, Diagnostic>>()?,
            )),
            other => Ok(crate::jinja::to_value(other)),
        }
    }
}

fn needs_jinja(v: &Json) -> bool {
    match v {
        Json::String(s) => s.contains("{{") || s.contains("{%") || LOOKS_LIKE_FUNC.is_match(s),
        Json::Array(a) => a.iter().any(needs_jinja),
        Json::Object(o) => o.values().any(needs_jinja),
        _ => false,
    }
}

/// The SQL of Strata's built-in `not_null`, `unique`, `accepted_values` and
/// `relationships` macros, produced directly; byte-identical to rendering them
/// (checked by a test). `None` when the project overrides the test or any of its
/// dispatch targets, or an argument is missing.
fn native_test(
    name: &str,
    kwargs: &[(String, Value)],
    reg: &jinja::MacroRegistry,
) -> Option<String> {
    if !matches!(
        name,
        "not_null" | "unique" | "accepted_values" | "relationships"
    ) {
        return None;
    }
    let macro_name = format!("test_{name}");
    if reg.is_overridden(&macro_name)
        || reg
            .dispatch_prefixes
            .iter()
            .any(|p| reg.is_overridden(&format!("{p}__{macro_name}")))
    {
        return None;
    }
    let get = |k: &str| kwargs.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let model = get("model")?.to_string();
    let col = get("column_name")?.to_string();
    Some(match name {
        "not_null" => format!("\nselect {col}\nfrom {model}\nwhere {col} is null\n"),
        "unique" => format!(
            "\nselect\n    {col} as unique_field,\n    count(*) as n_records\nfrom {model}\nwhere {col} is not null\ngroup by {col}\nhaving count(*) > 1\n"
        ),
        "accepted_values" => {
            let values = get("values")?;
            let quote = get("quote").is_none_or(|q| q.is_true());
            let items: Vec<String> = values
                .try_iter()
                .ok()?
                .map(|v| if quote { format!("'{v}'") } else { v.to_string() })
                .collect();
            format!(
                "\nwith all_values as (\n    select\n        {col} as value_field,\n        count(*) as n_records\n    from {model}\n    group by {col}\n)\nselect *\nfrom all_values\nwhere value_field not in (\n    {}\n)\n",
                // dbt separates the values with a bare comma.
                items.join(",")
            )
        }
        _ => {
            let to = get("to")?.to_string();
            let field = get("field")?.to_string();
            format!(
                "\nwith child as (\n    select {col} as from_field\n    from {model}\n    where {col} is not null\n),\nparent as (\n    select {field} as to_field\n    from {to}\n)\nselect from_field\nfrom child\nleft join parent on child.from_field = parent.to_field\nwhere parent.to_field is null\n"
            )
        }
    })
}

/// dbt's CTE injection: after a leading `with` (adding a comma) or as a new `with`.
pub fn inject_ctes(sql: &str, ctes: &[(String, String)]) -> String {
    if ctes.is_empty() {
        return sql.to_string();
    }
    let joined = ctes
        .iter()
        .map(|(_, s)| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let start = first_token(sql);
    let rest = &sql[start..];
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if word.eq_ignore_ascii_case("with") {
        let mut after = start + word.len();
        let tail = &sql[after..];
        let ws = tail.len() - tail.trim_start().len();
        let next: String = tail[ws..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if next.eq_ignore_ascii_case("recursive") {
            after += ws + next.len();
        }
        format!("{}{},{}", &sql[..after], joined, &sql[after..])
    } else {
        format!("{}with{}{}", &sql[..start], joined, rest)
    }
}

/// Byte offset of the first token that is not whitespace or a comment.
fn first_token(sql: &str) -> usize {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            match sql[i + 2..].find("*/") {
                Some(e) => i = i + 2 + e + 2,
                None => return i,
            }
        } else {
            break;
        }
    }
    i
}

/// Name of the file, inside `<target>/compiled`, that records a hash of each
/// compiled file Strata wrote, so unchanged files are neither read nor rewritten.
pub(crate) const WRITE_INDEX: &str = ".strata-index";

fn content_hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

/// Writes compiled SQL under `<target>/compiled/...`, in parallel. A file whose
/// content hash matches the previous write and that still exists is left alone.
pub fn write_compiled(
    target_dir: &Path,
    compiled: &HashMap<String, CompiledNode>,
) -> Result<(), Error> {
    let root = target_dir.join("compiled");
    let index_path = root.join(WRITE_INDEX);
    let previous: rustc_hash::FxHashMap<String, u64> = std::fs::read_to_string(&index_path)
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_once('\t'))
                .filter_map(|(h, p)| Some((p.to_string(), u64::from_str_radix(h, 16).ok()?)))
                .collect()
        })
        .unwrap_or_default();
    // Listing directories is far cheaper than a stat per file.
    let existing: rustc_hash::FxHashSet<String> = if previous.is_empty() {
        Default::default()
    } else {
        walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| {
                e.path()
                    .strip_prefix(target_dir)
                    .ok()
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
            })
            .collect()
    };
    let mut dirs: BTreeSet<std::path::PathBuf> = BTreeSet::new();
    for c in compiled.values() {
        if let Some(p) = target_dir.join(&c.compiled_path).parent() {
            dirs.insert(p.to_path_buf());
        }
    }
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|source| Error::Write {
            path: d.clone(),
            source,
        })?;
    }
    let written: Vec<(u64, &str)> = compiled
        .par_iter()
        .map(|(_, c)| {
            let sql = crate::secrets::scrub(&c.sql);
            let hash = content_hash(&sql);
            let unchanged = previous.get(&c.compiled_path) == Some(&hash)
                && existing.contains(&c.compiled_path);
            if !unchanged {
                let p = target_dir.join(&c.compiled_path);
                std::fs::write(&p, sql.as_bytes())
                    .map_err(|source| Error::Write { path: p, source })?;
            }
            Ok((hash, c.compiled_path.as_str()))
        })
        .collect::<Result<_, Error>>()?;
    let mut index = String::with_capacity(written.len() * 80);
    for (h, p) in &written {
        index.push_str(&format!("{h:016x}\t{p}\n"));
    }
    // Entries of files not written this time are kept: a narrower selection
    // must not make the next full compile rewrite everything.
    let now: rustc_hash::FxHashSet<&str> = written.iter().map(|(_, p)| *p).collect();
    for (p, h) in &previous {
        if !now.contains(p.as_str()) {
            index.push_str(&format!("{h:016x}\t{p}\n"));
        }
    }
    std::fs::create_dir_all(&root).map_err(|source| Error::Write {
        path: root.clone(),
        source,
    })?;
    std::fs::write(&index_path, index).map_err(|source| Error::Write {
        path: index_path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cte_injection() {
        let c = vec![(
            "model.p.e".to_string(),
            " __dbt__cte__e as (\nselect 1\n)".to_string(),
        )];
        assert_eq!(
            inject_ctes("select * from __dbt__cte__e", &c),
            "with __dbt__cte__e as (\nselect 1\n)select * from __dbt__cte__e"
        );
        assert_eq!(
            inject_ctes("-- hi\nwith a as (select 1) select * from a", &c),
            "-- hi\nwith __dbt__cte__e as (\nselect 1\n), a as (select 1) select * from a"
        );
    }
}
