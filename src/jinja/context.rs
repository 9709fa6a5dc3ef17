//! The per-render context object and the phase-aware dbt functions that read it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use minijinja::value::{from_args, Kwargs, Object, ObjectRepr, Rest, Value};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::macros::MacroRegistry;
use super::relation::{QuotePolicy, Relation, RelationName};
use super::services::{tagged, LogSink, Resolver, Services, Warehouse};
use crate::confmap::{merge_key, ConfigMap};
use crate::error::DiagKind;

/// Parsing records dependencies and configs; compiling resolves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Parse,
    Compile,
}

/// One `ref()` call as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RefCall {
    pub name: String,
    pub package: Option<String>,
    pub version: Option<String>,
}

/// A resolved `ref()`.
#[derive(Debug, Clone)]
pub struct ResolvedRef {
    pub unique_id: String,
    pub relation: RelationName,
    pub ephemeral: bool,
}

/// Invocation-wide values shared by every render.
pub struct Shared {
    pub target: Value,
    pub target_schema: String,
    pub target_database: String,
    pub project_name: String,
    pub root_package: String,
    pub adapter_type: String,
    pub run_started_at: chrono::DateTime<chrono::Utc>,
    pub invocation_id: String,
    /// Vars as each package sees them.
    pub vars: HashMap<String, Arc<IndexMap<String, Json>>>,
    pub quoting: QuotePolicy,
    pub macros: Arc<MacroRegistry>,
    pub flags: Value,
    /// Where `log`, `print` and `exceptions.warn` write.
    pub log: Arc<dyn LogSink>,
    /// The project's folder configs, for parse-phase `config.get`/`model.config`.
    pub folder_configs: Option<Arc<dyn super::services::FolderConfigs>>,
    /// What compile-phase renders read or did beyond their templates.
    pub compile_effects: Mutex<CompileEffects>,
}

/// What the compile-phase renders of one invocation read besides templates,
/// macros, vars and the manifest, and whether any did something a rerun
/// could not reproduce from those: a compile's outputs can be reused only
/// when none of it changed (see `compile_memo`).
#[derive(Debug, Default, Clone)]
pub struct CompileEffects {
    pub env_vars: BTreeSet<String>,
    /// The clock, the invocation id, the warehouse, or a log line.
    pub unrepeatable: bool,
}

impl Shared {
    fn effects(&self) -> MutexGuard<'_, CompileEffects> {
        self.compile_effects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The compile-phase effects recorded so far.
    pub fn compile_effects(&self) -> CompileEffects {
        self.effects().clone()
    }

    pub(crate) fn mark_unrepeatable(&self) {
        self.effects().unrepeatable = true;
    }
}

impl Shared {
    /// A var as `package` sees it (`--vars` and dbt_project.yml).
    pub fn var(&self, package: &str, name: &str) -> Option<&Json> {
        self.vars
            .get(package)
            .or_else(|| self.vars.get(&self.root_package))
            .and_then(|v| v.get(name))
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("project_name", &self.project_name)
            .finish()
    }
}

/// What the node being rendered is.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub package: String,
    pub name: String,
    pub unique_id: String,
    pub resource_type: String,
    pub this: Option<RelationName>,
    /// The final config, for `config.get` while compiling.
    pub config: Option<Arc<ConfigMap>>,
    pub is_incremental: bool,
    /// Extra context variables (`_dbt_generic_test_kwargs`, `model` …).
    pub extra: Vec<(String, Value)>,
    /// `[package, dirs…, name]`, for the parse phase's folder configs.
    pub fqn: Vec<String>,
    /// The node as dbt's `model` variable while compiling (its manifest dict).
    pub model: Option<Value>,
}

/// What a render recorded.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    pub config: ConfigMap,
    pub macros: BTreeSet<String>,
    /// Unique ids of ephemeral models referenced while compiling.
    pub ephemerals: Vec<String>,
    /// What the output depends on besides the template and its macros.
    pub inputs: RenderInputs,
}

/// The vars and env vars a render read, and whether it read something that
/// differs every invocation: what a cached parse result must be checked against.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RenderInputs {
    /// (package the lookup was made from, var name).
    pub vars: BTreeSet<(String, String)>,
    pub env_vars: BTreeSet<String>,
    /// `run_started_at`, `invocation_id`, `flags`, `now()`: never reusable.
    pub volatile: bool,
}

impl RenderInputs {
    pub fn extend(&mut self, other: RenderInputs) {
        self.vars.extend(other.vars);
        self.env_vars.extend(other.env_vars);
        self.volatile |= other.volatile;
    }
}

#[derive(Debug, Default)]
struct RenderState {
    capture: Capture,
    package_stack: Vec<String>,
    return_value: Option<Value>,
    /// `statement` results by name, for `load_result`.
    results: HashMap<String, Value>,
}

/// The root object of every render: dbt's context variables live here.
#[derive(Debug)]
pub struct RenderCtx {
    pub shared: Arc<Shared>,
    pub node: NodeInfo,
    pub phase: Phase,
    /// The manifest and warehouse of a compile-phase render.
    pub services: Option<Arc<Services>>,
    pub sensitive: Arc<AtomicBool>,
    /// The folder configs of the node, computed on first use (parse phase).
    folder: std::sync::OnceLock<Arc<ConfigMap>>,
    /// The render asked the warehouse something, so its output depends on what
    /// is built there: the engine renders it again once its parents are built.
    introspected: AtomicBool,
    state: Mutex<RenderState>,
}

/// The token a parse-phase relation renders as; substituted when compiling.
pub fn placeholder(kind: char, idx: usize) -> String {
    format!("\u{0}{kind}{idx}\u{0}")
}

impl RenderCtx {
    pub fn new(
        shared: Arc<Shared>,
        node: NodeInfo,
        phase: Phase,
        services: Option<Arc<Services>>,
    ) -> Arc<RenderCtx> {
        Arc::new(RenderCtx {
            shared,
            node,
            phase,
            services,
            sensitive: Arc::new(AtomicBool::new(false)),
            introspected: AtomicBool::new(false),
            folder: std::sync::OnceLock::new(),
            state: Mutex::new(RenderState::default()),
        })
    }

    fn st(&self) -> MutexGuard<'_, RenderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn mark_sensitive(&self) {
        self.sensitive.store(true, Ordering::Relaxed);
    }

    pub fn is_sensitive(&self) -> bool {
        self.sensitive.load(Ordering::Relaxed)
    }

    pub fn take_capture(&self) -> Capture {
        std::mem::take(&mut self.st().capture)
    }

    pub fn current_package(&self) -> String {
        self.st()
            .package_stack
            .last()
            .cloned()
            .unwrap_or_else(|| self.node.package.clone())
    }

    pub fn push_package(&self, p: &str) {
        self.st().package_stack.push(p.to_string());
    }

    pub fn pop_package(&self) {
        self.st().package_stack.pop();
    }

    /// Records a macro called from the node's own template (dbt lists only those).
    pub fn record_macro(&self, unique_id: &str) {
        let mut st = self.st();
        if st.package_stack.is_empty() && !st.capture.macros.contains(unique_id) {
            st.capture.macros.insert(unique_id.to_string());
        }
    }

    /// Records a var lookup made from the current package.
    fn record_var(&self, name: &str) {
        let pkg = self.current_package();
        self.st()
            .capture
            .inputs
            .vars
            .insert((pkg, name.to_string()));
    }

    pub(crate) fn record_env_var(&self, name: &str) {
        if self.phase == Phase::Compile {
            self.shared.effects().env_vars.insert(name.to_string());
        }
        let mut st = self.st();
        if !st.capture.inputs.env_vars.contains(name) {
            st.capture.inputs.env_vars.insert(name.to_string());
        }
    }

    /// The render read something that changes every invocation.
    pub(crate) fn mark_volatile(&self) {
        if self.phase == Phase::Compile {
            self.shared.mark_unrepeatable();
        }
        self.st().capture.inputs.volatile = true;
    }

    pub fn set_return(&self, v: Value) {
        self.st().return_value = Some(v);
    }

    pub fn take_return(&self) -> Option<Value> {
        self.st().return_value.take()
    }

    /// The warehouse connection, but only while compiling.
    pub fn warehouse(&self) -> Option<Arc<dyn Warehouse>> {
        if self.phase != Phase::Compile {
            return None;
        }
        let w = self.services.as_ref()?.warehouse.clone();
        if w.is_some() {
            self.shared.mark_unrepeatable();
            self.introspected.store(true, Ordering::Relaxed);
        }
        w
    }

    /// A var as the current package sees it (`--vars` and dbt_project.yml).
    fn project_var(&self, name: &str) -> Option<&Json> {
        self.record_var(name);
        self.shared.var(&self.current_package(), name)
    }

    /// Whether this render asked the warehouse anything (see `warehouse`).
    pub fn introspected(&self) -> bool {
        self.introspected.load(Ordering::Relaxed)
    }

    fn resolver(&self, kind: DiagKind, what: &str) -> Result<Arc<dyn Resolver>, Error> {
        self.services
            .as_ref()
            .map(|s| s.resolver.clone())
            .ok_or_else(|| tagged(kind, format!("{what}() has no manifest to resolve against")))
    }

    pub fn store_result(&self, name: &str, v: Value) {
        self.st().results.insert(name.to_string(), v);
    }

    pub fn load_result(&self, name: &str) -> Option<Value> {
        self.st().results.get(name).cloned()
    }

    fn this_value(&self) -> Value {
        match (&self.node.this, self.phase) {
            (Some(name), Phase::Parse) => Value::from_object(Relation {
                name: name.clone(),
                placeholder: Some(placeholder('T', 0)),
                sensitive: Some(self.sensitive.clone()),
            }),
            (Some(name), Phase::Compile) => Value::from_object(Relation::resolved(name.clone())),
            (None, _) => Value::from(()),
        }
    }

    /// A unit test's override (`vars`, `env_vars`, `macros`) for `name`, if any.
    pub fn override_of(&self, kind: &str, name: &str) -> Option<Value> {
        if self.node.extra.is_empty() {
            return None;
        }
        let key = format!("__strata_{kind}_overrides");
        let map = self.node.extra.iter().find(|(k, _)| *k == key)?;
        map.1.get_attr(name).ok().filter(|v| !v.is_undefined())
    }

    fn config_get(&self, key: &str) -> Option<Json> {
        if let Some(c) = &self.node.config {
            return c.get(key).cloned();
        }
        if let Some(v) = self.st().capture.config.get(key) {
            return Some(v.clone());
        }
        // While parsing: what dbt_project.yml sets for the node's folder.
        self.folder_config().get(key).cloned()
    }

    /// The folder configs for this node (parse phase), computed once.
    fn folder_config(&self) -> Arc<ConfigMap> {
        self.folder
            .get_or_init(|| {
                Arc::new(match &self.shared.folder_configs {
                    Some(f) if !self.node.fqn.is_empty() => {
                        f.config_for(&self.node.package, &self.node.resource_type, &self.node.fqn)
                    }
                    _ => ConfigMap::default(),
                })
            })
            .clone()
    }

    /// dbt's `model`: the node's manifest dict while compiling; while
    /// parsing, what is known so far (names, folder and inline config).
    fn model_value(&self) -> Value {
        if let Some(m) = &self.node.model {
            return m.clone();
        }
        let mut config = match &self.node.config {
            Some(c) => (**c).clone(),
            None => (*self.folder_config()).clone(),
        };
        if self.node.config.is_none() {
            for (k, v) in self.st().capture.config.iter() {
                config.insert(k.clone(), v.clone());
            }
        }
        crate::jinja::to_value(serde_json::json!({
            "unique_id": self.node.unique_id,
            "name": self.node.name,
            "resource_type": self.node.resource_type,
            "package_name": self.node.package,
            "fqn": self.node.fqn,
            "config": config,
        }))
    }
}

/// dbt's `context`: `context['name']` / `context.get('name')` find a
/// variable of the render or a macro, as a template would by name.
#[derive(Debug)]
pub struct ContextObj(Arc<RenderCtx>);

impl ContextObj {
    fn lookup(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.0.get_value_by_str(name) {
            return Some(v);
        }
        let reg = &self.0.shared.macros;
        reg.resolve(&self.0.current_package(), name)?;
        Some(Value::from_object(super::macros::MacroRef {
            name: name.to_string(),
            package: None,
        }))
    }
}

impl Object for ContextObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookup(key.as_str()?)
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "get" => {
                let (name, default): (String, Option<Value>) = from_args(args)?;
                Ok(self.lookup(&name).or(default).unwrap_or(Value::from(())))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// dbt's `var`: callable (`var('x', default)`) with `var.has_var('x')`.
#[derive(Debug)]
pub struct VarObj;

impl Object for VarObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (name, rest): (String, minijinja::value::Rest<Value>) = from_args(args)?;
        var_fn(state, name, rest)
    }
    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "has_var" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let (name,): (String,) = from_args(args)?;
        let ctx = ctx_of(state)?;
        if ctx.override_of("var", &name).is_some() {
            return Ok(Value::from(true));
        }
        Ok(Value::from(ctx.project_var(&name).is_some()))
    }
}

pub fn ctx_of(state: &State) -> Result<Arc<RenderCtx>, Error> {
    state
        .lookup("__strata_ctx")
        .and_then(|v| v.downcast_object::<RenderCtx>())
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "no dbt context in this render"))
}

impl Object for RenderCtx {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        Some(match key {
            "__strata_ctx" => Value::from_dyn_object(self.clone()),
            "target" => self.shared.target.clone(),
            "project_name" => Value::from(self.shared.project_name.clone()),
            "invocation_id" => {
                self.mark_volatile();
                Value::from(self.shared.invocation_id.clone())
            }
            "run_started_at" => {
                self.mark_volatile();
                super::objects::datetime_value(self.shared.run_started_at.naive_utc())
            }
            "execute" => {
                self.mark_sensitive();
                Value::from(self.phase == Phase::Compile)
            }
            "this" => self.this_value(),
            "schema" => {
                self.mark_sensitive();
                Value::from(
                    self.node
                        .this
                        .as_ref()
                        .and_then(|t| t.schema.clone())
                        .unwrap_or_else(|| self.shared.target_schema.clone()),
                )
            }
            "database" => {
                self.mark_sensitive();
                Value::from(
                    self.node
                        .this
                        .as_ref()
                        .and_then(|t| t.database.clone())
                        .unwrap_or_else(|| self.shared.target_database.clone()),
                )
            }
            "config" => Value::from_object(ConfigObj),
            "flags" => {
                self.mark_volatile();
                self.shared.flags.clone()
            }
            "model" => {
                self.mark_sensitive();
                self.node
                    .extra
                    .iter()
                    .find(|(k, _)| k == "model")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| self.model_value())
            }
            // dbt's `context`: the render's variables and macros by name.
            "context" => Value::from_object(ContextObj(self.clone())),
            "builtins" => Value::from_pairs(vec![
                ("ref", Value::from_function(ref_fn)),
                ("source", Value::from_function(source_fn)),
                ("config", Value::from_object(ConfigObj)),
            ]),
            "selected_resources" => {
                self.mark_sensitive();
                match (&self.phase, &self.services) {
                    (Phase::Compile, Some(s)) => s.selected.clone(),
                    _ => Value::from(Vec::<Value>::new()),
                }
            }
            "invocation_args_dict" => {
                self.mark_volatile();
                let which = self.shared.flags.get_attr("WHICH").unwrap_or_default();
                let full_refresh = self
                    .shared
                    .flags
                    .get_attr("FULL_REFRESH")
                    .unwrap_or_default();
                Value::from_pairs(vec![
                    ("which", which),
                    ("full_refresh", full_refresh),
                    ("invocation_command", Value::from("strata")),
                ])
            }
            "graph" => {
                // Complete only while compiling; parse renders see an empty one.
                self.mark_sensitive();
                match (
                    &self.phase,
                    self.services.as_ref().and_then(|s| s.graph.clone()),
                ) {
                    (Phase::Compile, Some(g)) => g,
                    _ => crate::jinja::to_value(serde_json::json!({
                        "nodes": {}, "sources": {}, "exposures": {}, "metrics": {},
                        "groups": {}, "semantic_models": {}, "saved_queries": {}, "unit_tests": {},
                    })),
                }
            }
            other => {
                return self
                    .node
                    .extra
                    .iter()
                    .find(|(k, _)| k == other)
                    .map(|(_, v)| v.clone())
            }
        })
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(&[
            "target",
            "project_name",
            "invocation_id",
            "run_started_at",
            "execute",
            "this",
            "config",
        ])
    }
}

/// `ref('name')`, `ref('package', 'name')`, `ref('name', v=2)`.
pub fn ref_fn(state: &State, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let ctx = ctx_of(state)?;
    let strs: Vec<String> = args
        .iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                tagged(
                    DiagKind::UnknownRef,
                    format!("ref() takes string arguments, got {v}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let (package, name) = match strs.as_slice() {
        [n] => (None, n.clone()),
        [p, n] => (Some(p.clone()), n.clone()),
        _ => {
            return Err(tagged(
                DiagKind::UnknownRef,
                "ref() takes one or two arguments",
            ))
        }
    };
    let version = kwargs
        .get::<Option<Value>>("v")?
        .or(kwargs.get::<Option<Value>>("version")?)
        .map(|v| v.to_string());
    kwargs.assert_all_used()?;
    let call = RefCall {
        name,
        package,
        version,
    };
    match ctx.phase {
        Phase::Parse => {
            let idx = {
                let mut st = ctx.st();
                let idx = st.capture.refs.iter().position(|r| r == &call);
                idx.unwrap_or_else(|| {
                    st.capture.refs.push(call.clone());
                    st.capture.refs.len() - 1
                })
            };
            Ok(Value::from_object(Relation {
                name: RelationName::new(
                    &ctx.shared.target_database,
                    &ctx.shared.target_schema,
                    &call.name,
                    ctx.shared.quoting,
                ),
                placeholder: Some(placeholder('R', idx)),
                sensitive: Some(ctx.sensitive.clone()),
            }))
        }
        Phase::Compile => {
            let resolver = ctx.resolver(DiagKind::UnknownRef, "ref")?;
            let r = resolver
                .resolve_ref(&ctx.current_package(), &call)
                .map_err(|e| tagged(DiagKind::UnknownRef, e))?;
            if r.ephemeral {
                let mut st = ctx.st();
                if !st.capture.ephemerals.contains(&r.unique_id) {
                    st.capture.ephemerals.push(r.unique_id.clone());
                }
            }
            Ok(Value::from_object(Relation::resolved(r.relation)))
        }
    }
}

/// `source('source_name', 'table_name')`.
pub fn source_fn(state: &State, source: String, table: String) -> Result<Value, Error> {
    let ctx = ctx_of(state)?;
    match ctx.phase {
        Phase::Parse => {
            let key = (source.clone(), table.clone());
            let idx = {
                let mut st = ctx.st();
                match st.capture.sources.iter().position(|s| s == &key) {
                    Some(i) => i,
                    None => {
                        st.capture.sources.push(key);
                        st.capture.sources.len() - 1
                    }
                }
            };
            Ok(Value::from_object(Relation {
                name: RelationName::new(
                    &ctx.shared.target_database,
                    &source,
                    &table,
                    ctx.shared.quoting,
                ),
                placeholder: Some(placeholder('S', idx)),
                sensitive: Some(ctx.sensitive.clone()),
            }))
        }
        Phase::Compile => {
            let resolver = ctx.resolver(DiagKind::UnknownSource, "source")?;
            let (_, name) = resolver
                .resolve_source(&source, &table)
                .map_err(|e| tagged(DiagKind::UnknownSource, e))?;
            Ok(Value::from_object(Relation::resolved(name)))
        }
    }
}

/// `var('name', default)`.
pub fn var_fn(
    state: &State,
    name: String,
    rest: minijinja::value::Rest<Value>,
) -> Result<Value, Error> {
    // `var('x', none)` has a default (none), unlike `var('x')`.
    let default = rest.first().cloned();
    let ctx = ctx_of(state)?;
    if let Some(v) = ctx.override_of("var", &name) {
        return Ok(v);
    }
    match (ctx.project_var(&name), default) {
        // dbt_project.yml's vars are rendered when used, in the render that
        // uses them (so `"{{ source('a', 'b') }}"` works in a var).
        (Some(Json::String(text)), _) if text.contains("{{") || text.contains("{%") => {
            let out = state
                .env()
                .render_str(text, Value::from_dyn_object(ctx.clone()))?;
            Ok(super::objects::as_native(Value::from(out)))
        }
        (Some(v), _) => Ok(crate::jinja::to_value(v)),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(tagged(
            DiagKind::UnknownVar,
            format!(
                "{} '{}' uses var('{name}'), which is not defined and has no default",
                ctx.node.resource_type, ctx.node.name
            ),
        )),
    }
}

/// `env_var('NAME', default)`; values of `DBT_ENV_SECRET_*` are remembered for redaction.
pub fn env_var_fn(state: &State, name: String, default: Option<Value>) -> Result<Value, Error> {
    if let Ok(ctx) = ctx_of(state) {
        if let Some(v) = ctx.override_of("env", &name) {
            return Ok(v);
        }
        ctx.record_env_var(&name);
    }
    env_var_value(&name, default, SecretEnv::Refused)
}

/// Whether `env_var()` may read `DBT_ENV_SECRET_*` variables where it renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretEnv {
    /// profiles.yml and packages.yml: the value goes to a connection or a
    /// download, never into SQL, artifacts or logs.
    Allowed,
    /// Everywhere else (models, macros, hooks, dbt_project.yml, properties):
    /// the value would end up in compiled SQL, artifacts or logs.
    Refused,
}

pub const SECRET_ENV_PREFIX: &str = "DBT_ENV_SECRET_";

/// `env_var(name, default)`, refusing secret variables where they would leak.
pub fn env_var_value(
    name: &str,
    default: Option<Value>,
    secrets: SecretEnv,
) -> Result<Value, Error> {
    let secret = name.starts_with(SECRET_ENV_PREFIX);
    if secret && secrets == SecretEnv::Refused {
        return Err(tagged(
            DiagKind::EnvVar,
            format!(
                "secret env var '{name}' can only be used in profiles.yml or packages.yml: here its value would end up in compiled SQL, artifacts or logs"
            ),
        ));
    }
    match std::env::var(name) {
        Ok(v) => {
            if secret {
                crate::secrets::register(&v);
            }
            Ok(Value::from(v))
        }
        Err(_) => match default {
            Some(d) => Ok(d),
            None => Err(tagged(
                DiagKind::EnvVar,
                format!("env var '{name}' is not set and env_var() was given no default"),
            )),
        },
    }
}

pub fn is_incremental_fn(state: &State) -> Result<bool, Error> {
    let ctx = ctx_of(state)?;
    ctx.mark_sensitive();
    if let Some(v) = ctx.override_of("macro", "is_incremental") {
        return Ok(v.is_true());
    }
    Ok(ctx.phase == Phase::Compile && ctx.node.is_incremental)
}

/// dbt's `return()`: unwinds to the calling macro, which yields the value.
pub fn return_fn(state: &State, value: Option<Value>) -> Result<Value, Error> {
    let ctx = ctx_of(state)?;
    ctx.set_return(value.unwrap_or(Value::from(())));
    Err(Error::new(ErrorKind::InvalidOperation, RETURN_SENTINEL))
}

pub const RETURN_SENTINEL: &str = "__strata_return__";

pub fn log_fn(state: &State, msg: Value, kwargs: Kwargs) -> Result<String, Error> {
    let info: bool = kwargs.get::<Option<bool>>("info")?.unwrap_or(false);
    let _ = kwargs.assert_all_used();
    let ctx = ctx_of(state)?;
    // Logged while compiling: a template that logs is rendered in both phases.
    ctx.mark_sensitive();
    if ctx.phase == Phase::Compile && info {
        ctx.shared.mark_unrepeatable();
        ctx.shared.log.info(&msg.to_string());
    }
    Ok(String::new())
}

pub fn print_fn(state: &State, msg: Value) -> Result<String, Error> {
    let ctx = ctx_of(state)?;
    ctx.mark_sensitive();
    if ctx.phase == Phase::Compile {
        ctx.shared.mark_unrepeatable();
        ctx.shared.log.print(&msg.to_string());
    }
    Ok(String::new())
}

/// `config(...)` records while parsing; `config.get`/`config.require` read.
#[derive(Debug)]
pub struct ConfigObj;

impl Object for ConfigObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let ctx = ctx_of(state)?;
        let (pos, kwargs): (Option<Value>, Kwargs) = from_args(args)?;
        if ctx.phase == Phase::Parse {
            let mut st = ctx.st();
            if let Some(p) = pos {
                if let Ok(Json::Object(m)) = serde_json::to_value(&p) {
                    for (k, v) in m {
                        merge_key(&mut st.capture.config, &k, v);
                    }
                }
            }
            for k in kwargs.args() {
                let v: Value = kwargs.peek(k)?;
                let j = serde_json::to_value(&v).map_err(|e| {
                    tagged(
                        DiagKind::Config,
                        format!("config({k}=...) has a value that is not data: {e}"),
                    )
                })?;
                merge_key(&mut st.capture.config, k, j);
            }
        }
        Ok(Value::from(""))
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let ctx = ctx_of(state)?;
        ctx.mark_sensitive();
        match method {
            "get" => {
                let (key, default, _kw): (String, Option<Value>, Option<Kwargs>) = from_args(args)?;
                if ctx.phase == Phase::Parse {
                    return Ok(default.unwrap_or(Value::from(())));
                }
                Ok(ctx
                    .config_get(&key)
                    .filter(|v| !v.is_null())
                    .map(crate::jinja::to_value)
                    .or(default)
                    .unwrap_or(Value::from(())))
            }
            "require" => {
                let (key, _kw): (String, Option<Kwargs>) = from_args(args)?;
                if ctx.phase == Phase::Parse {
                    return Ok(Value::from(""));
                }
                ctx.config_get(&key)
                    .map(crate::jinja::to_value)
                    .ok_or_else(|| {
                        tagged(
                            DiagKind::Config,
                            format!(
                                "config '{key}' is required for {} '{}'",
                                ctx.node.resource_type, ctx.node.name
                            ),
                        )
                    })
            }
            "set" | "persist_relation_docs" | "persist_column_docs" => Ok(Value::from(())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}
