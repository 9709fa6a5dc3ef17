//! The only module that touches minijinja: the dbt Jinja environment, macros,
//! the phase-aware context, and mapping template errors to diagnostics.

pub mod column;
pub mod context;
pub mod macros;
pub mod objects;
pub mod preprocess;
pub mod relation;
pub mod services;

/// The stack a thread that renders templates gets: printing, comparing and
/// dropping nested values recurses, so deep but legal data needs room.
/// Reserved, not committed: untouched pages cost nothing.
pub const STACK_BYTES: usize = 256 << 20;

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::value::Value;
use minijinja::{Environment, ErrorKind};
use serde_json::Value as Json;

pub use context::{
    Capture, NodeInfo, Phase, RefCall, RenderCtx, RenderInputs, ResolvedRef, SecretEnv, Shared,
};
pub use macros::{MacroDef, MacroRegistry, INTERNAL_PACKAGE};
pub use relation::{QuotePolicy, RelationName};
pub use services::{
    DropKind, FolderConfigs, LogSink, Resolver, Services, Silent, Warehouse, WarehouseColumn,
    WarehouseError,
};

use crate::error::{DiagKind, Diagnostic, Diagnostics};

const BUILTINS: &str = include_str!("builtins.sql");
const BUILTINS_PATH: &str = "<strata>/macros/builtins.sql";
const CROSS_DATABASE: &str = include_str!("cross_database.sql");
const CROSS_DATABASE_PATH: &str = "<strata>/macros/cross_database.sql";
const ADAPTER: &str = include_str!("adapter.sql");
const ADAPTER_PATH: &str = "<strata>/macros/adapter.sql";

/// A macro file to register: its package and its path for messages.
pub struct MacroSource<'a> {
    pub package: &'a str,
    pub display_path: &'a str,
    pub original_path: &'a str,
    pub contents: &'a str,
}

/// The built Jinja environment for one invocation.
pub struct JinjaEnv {
    pub env: Environment<'static>,
    pub shared: Arc<Shared>,
    /// Some macro mentions `graph`, so compiling builds it.
    pub macros_use_graph: bool,
    /// Some macro mentions `selected_resources`.
    pub macros_use_selected: bool,
}

/// Whether template text may read dbt's `graph` variable.
pub fn mentions_graph(text: &str) -> bool {
    text.contains("graph") && GRAPH_USE.is_match(text)
}

static GRAPH_USE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"\bgraph\s*[.\[|)]|context\s*\[").expect("static regex")
});

/// Settings of the environment that come from the project and target.
pub struct EnvSettings {
    pub project_name: String,
    pub adapter_type: String,
    pub target: Json,
    pub target_schema: String,
    pub target_database: String,
    pub vars: HashMap<String, Arc<IndexMap<String, Json>>>,
    pub quoting: QuotePolicy,
    pub packages: Vec<String>,
    pub search_orders: HashMap<String, Vec<String>>,
    pub flags: Json,
    /// Where `log`, `print` and `exceptions.warn` write.
    pub log: Arc<dyn LogSink>,
    /// The project's folder configs, for parse-phase `config.get`.
    pub folder_configs: Option<Arc<dyn services::FolderConfigs>>,
}

impl JinjaEnv {
    pub fn build(
        settings: EnvSettings,
        files: &[MacroSource<'_>],
    ) -> Result<JinjaEnv, Diagnostics> {
        let mut diags = Diagnostics::default();
        let prefixes: Vec<String> = dispatch_prefixes(&settings.adapter_type);
        let mut reg = MacroRegistry::new(&settings.project_name, prefixes);
        reg.search_orders = settings.search_orders.clone();
        reg.packages = settings.packages.clone();

        let mut env = Environment::new();
        configure(&mut env);

        let builtins = [
            MacroSource {
                package: INTERNAL_PACKAGE,
                display_path: BUILTINS_PATH,
                original_path: "macros/builtins.sql",
                contents: BUILTINS,
            },
            MacroSource {
                package: INTERNAL_PACKAGE,
                display_path: CROSS_DATABASE_PATH,
                original_path: "macros/cross_database.sql",
                contents: CROSS_DATABASE,
            },
            MacroSource {
                package: INTERNAL_PACKAGE,
                display_path: ADAPTER_PATH,
                original_path: "macros/adapter.sql",
                contents: ADAPTER,
            },
        ];
        let mut seen: HashMap<(String, String), String> = HashMap::new();
        for f in builtins.iter().chain(files.iter()) {
            let rewritten = preprocess::rewrite_macro_file(f.contents);
            for span in preprocess::macro_spans(&rewritten) {
                let key = (f.package.to_string(), span.name.clone());
                if let Some(prev) = seen.get(&key) {
                    diags.push(
                        Diagnostic::new(
                            DiagKind::Duplicate,
                            format!(
                                "macro '{}' is defined twice in package '{}' (also in {prev})",
                                span.name, f.package
                            ),
                        )
                        .at(f.display_path, Some(f.contents), span.line, 1),
                    );
                    continue;
                }
                seen.insert(key, f.display_path.to_string());
                let mut body = &rewritten[span.start..span.end];
                let extra = preprocess::extra_args(body);
                if let Some((_, with_extra)) = &extra {
                    body = with_extra;
                }
                let mut source = "\n".repeat(span.line - 1);
                source.push_str(body);
                let template = format!("{}#{}", f.display_path, span.name);
                if let Err(e) = env.add_template_owned(template.clone(), source) {
                    diags.push(diagnostic_from_jinja(
                        &e,
                        f.display_path,
                        Some(f.contents),
                        0,
                    ));
                    continue;
                }
                let original = &f.contents.get(span.start..span.end.min(f.contents.len()));
                reg.add(MacroDef {
                    package: f.package.to_string(),
                    name: span.name.clone(),
                    unique_id: format!("macro.{}.{}", f.package, span.name),
                    template,
                    file: f.display_path.to_string(),
                    original_path: f.original_path.to_string(),
                    line: span.line,
                    sql: original.unwrap_or(body).to_string(),
                    extra_args: extra.map(|(params, _)| params),
                });
            }
        }

        // User macros may shadow built-in functions (dbt allows overriding `ref`).
        let builtin_fns: Vec<&str> = Vec::new();
        for name in reg.names() {
            if builtin_fns.contains(&name) {
                continue;
            }
            env.add_global(
                name.to_string(),
                Value::from_object(macros::MacroRef {
                    name: name.to_string(),
                    package: None,
                }),
            );
        }
        for p in settings
            .packages
            .iter()
            .map(String::as_str)
            .chain([INTERNAL_PACKAGE])
        {
            if reg.names().any(|n| n == p) {
                continue;
            }
            env.add_global(
                p.to_string(),
                Value::from_object(macros::PackageNs {
                    package: p.to_string(),
                    names: reg.names_in(p),
                }),
            );
        }

        let shared = Arc::new(Shared {
            target: crate::jinja::to_value(&settings.target),
            target_schema: settings.target_schema,
            target_database: settings.target_database,
            project_name: settings.project_name.clone(),
            root_package: settings.project_name,
            adapter_type: settings.adapter_type,
            run_started_at: chrono::Utc::now(),
            invocation_id: uuid::Uuid::new_v4().to_string(),
            vars: settings.vars,
            quoting: settings.quoting,
            macros: Arc::new(reg),
            flags: crate::jinja::to_value(&settings.flags),
            log: settings.log,
            folder_configs: settings.folder_configs,
            compile_effects: Default::default(),
        });
        let macros_use_graph = files.iter().any(|f| mentions_graph(f.contents));
        let macros_use_selected = files
            .iter()
            .any(|f| f.contents.contains("selected_resources"));
        if diags.is_empty() {
            Ok(JinjaEnv {
                env,
                shared,
                macros_use_graph,
                macros_use_selected,
            })
        } else {
            Err(diags)
        }
    }

    /// A context without a manifest or warehouse: parse renders, and compile
    /// renders that need neither (naming macros).
    pub fn ctx(&self, node: NodeInfo, phase: Phase) -> Arc<RenderCtx> {
        RenderCtx::new(self.shared.clone(), node, phase, None)
    }

    /// A compile-phase context resolving against `services`.
    pub fn compile_ctx(&self, node: NodeInfo, services: &Arc<Services>) -> Arc<RenderCtx> {
        RenderCtx::new(
            self.shared.clone(),
            node,
            Phase::Compile,
            Some(services.clone()),
        )
    }

    /// Renders a node's source with `ctx` as its root context.
    pub fn render(
        &self,
        name: &str,
        source: &str,
        ctx: &Arc<RenderCtx>,
    ) -> Result<String, minijinja::Error> {
        let tmpl = self.env.template_from_named_str(name, source)?;
        tmpl.render(Value::from_dyn_object(ctx.clone()))
    }

    /// Evaluates one expression (test arguments such as `ref('x')`).
    pub fn eval(&self, expr: &str, ctx: &Arc<RenderCtx>) -> Result<Value, minijinja::Error> {
        let e = self.env.compile_expression(expr)?;
        e.eval(Value::from_dyn_object(ctx.clone()))
    }

    pub fn macros(&self) -> &MacroRegistry {
        &self.shared.macros
    }
}

/// The macro prefixes `adapter.dispatch` tries for a warehouse, most specific first.
pub fn dispatch_prefixes(adapter_type: &str) -> Vec<String> {
    let chain: &[&str] = match adapter_type {
        "redshift" => &["redshift", "postgres", "default"],
        "postgres" => &["postgres", "default"],
        _ => &["default"],
    };
    chain.iter().map(|s| s.to_string()).collect()
}

fn configure(env: &mut Environment<'static>) {
    // SQL is never escaped, whatever the template's file extension.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_unknown_method_callback(objects::unknown_method);
    env.add_filter("truncate", objects::truncate);
    env.add_filter("wordcount", objects::wordcount);
    env.set_recursion_limit(500);
    // Printing a list or dict recurses: refuse absurd nesting with an error.
    env.set_formatter(|out, state, value| {
        objects::check_nesting(value)?;
        minijinja::escape_formatter(out, state, value)
    });
    env.add_function("ref", context::ref_fn);
    env.add_function("source", context::source_fn);
    env.add_global("var", Value::from_object(context::VarObj));
    env.add_function("env_var", context::env_var_fn);
    env.add_function("is_incremental", context::is_incremental_fn);
    env.add_function("return", context::return_fn);
    env.add_function("log", context::log_fn);
    env.add_function("print", context::print_fn);
    env.add_function("run_query", objects::run_query_fn);
    env.add_function("load_result", objects::load_result_fn);
    env.add_function("zip", objects::zip_fn);
    env.add_function("set", objects::set_fn);
    env.add_function("set_strict", objects::set_fn);
    env.add_function("local_md5", objects::local_md5_fn);
    env.add_function("tojson", objects::tojson_fn);
    env.add_function("fromjson", objects::fromjson_fn);
    env.add_function("toyaml", objects::toyaml_fn);
    env.add_function("fromyaml", objects::fromyaml_fn);
    env.add_function("__strata_list", objects::new_list);
    env.add_function("__strata_dict", objects::new_dict);
    env.add_global("adapter", Value::from_object(objects::AdapterObj));
    env.add_global("api", Value::from_object(objects::ApiObj));
    env.add_global("exceptions", Value::from_object(objects::ExceptionsObj));
    env.add_global("modules", Value::from_object(objects::ModulesObj));
    env.add_global("statement", Value::from_object(objects::StatementObj));
    env.add_global("dbt_version", Value::from("1.12.0"));
    env.add_filter("as_bool", objects::as_bool);
    env.add_filter("as_number", objects::as_number);
    env.add_filter("as_text", objects::as_text);
    env.add_filter("as_native", objects::as_native);
}

/// Renders a string from dbt_project.yml or profiles.yml (`env_var`, `var`, `target`).
/// `secrets` says whether `DBT_ENV_SECRET_*` variables may be read there
/// (profiles.yml and packages.yml only).
pub fn render_config_string(
    s: &str,
    vars: &IndexMap<String, Json>,
    target: Option<&Json>,
    secrets: context::SecretEnv,
) -> Result<String, String> {
    let mut env = Environment::new();
    env.add_function("env_var", move |name: String, default: Option<Value>| {
        context::env_var_value(&name, default, secrets)
    });
    // dbt's conversions, which profiles use for ports and flags.
    env.add_filter("as_bool", objects::as_bool);
    env.add_filter("as_number", objects::as_number);
    env.add_filter("as_text", objects::as_text);
    env.add_filter("as_native", objects::as_native);
    let vars = vars.clone();
    env.add_function(
        "var",
        move |name: String, default: Option<Value>| -> Result<Value, minijinja::Error> {
            match (vars.get(&name), default) {
                (Some(v), _) => Ok(crate::jinja::to_value(v)),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("var('{name}') is not defined (pass it with --vars)"),
                )),
            }
        },
    );
    let ctx = match target {
        Some(t) => minijinja::context! { target => crate::jinja::to_value(t) },
        None => minijinja::context! {},
    };
    env.render_str(s, ctx).map_err(|e| {
        e.detail()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string())
    })
}

/// Turns a minijinja error into a diagnostic pointing into the user's file.
/// `fallback_file` is used when the error carries no template name; `line_offset`
/// is added to lines of the node's own template (snapshot bodies start mid-file).
pub fn diagnostic_from_jinja(
    err: &minijinja::Error,
    fallback_file: &str,
    fallback_source: Option<&str>,
    line_offset: usize,
) -> Diagnostic {
    // The innermost error with a location is where the user needs to look.
    let mut best: &minijinja::Error = err;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(c) = cur {
        if let Some(me) = c.downcast_ref::<minijinja::Error>() {
            if me.line().is_some() {
                best = me;
            }
        }
        cur = c.source();
    }
    let msg = best
        .detail()
        .or(err.detail())
        .map(str::to_string)
        .unwrap_or_else(|| best.kind().to_string());
    let tag = services::tag_of(best).or_else(|| services::tag_of(err));
    let kind = match (tag, best.kind()) {
        (Some(k), _) => k,
        (_, ErrorKind::SyntaxError) => DiagKind::JinjaSyntax,
        (_, ErrorKind::UnknownFunction) => DiagKind::UnknownMacro,
        _ => DiagKind::JinjaRuntime,
    };
    let message = match best.kind() {
        ErrorKind::SyntaxError => format!("Jinja syntax error: {msg}"),
        ErrorKind::UnknownFunction if tag.is_none() => {
            format!("{msg} (no macro or function of that name)")
        }
        _ => msg.to_string(),
    };
    let name = best.name().unwrap_or(fallback_file);
    let (file, is_own) = match name.split_once('#') {
        Some((f, _)) => (f.to_string(), false),
        None => (name.to_string(), name == fallback_file),
    };
    let line = best.line().unwrap_or(1) + if is_own { line_offset } else { 0 };
    let column = match (best.range(), best.template_source()) {
        (Some(r), Some(src)) => {
            let before = &src[..r.start.min(src.len())];
            before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1
        }
        _ => 1,
    };
    let source_text: Option<String> = if is_own {
        fallback_source.map(str::to_string)
    } else {
        best.template_source().map(str::to_string)
    };
    let mut d = Diagnostic::new(kind, message).at(&file, source_text.as_deref(), line, column);
    d.hint = Some(
        match kind {
            DiagKind::UnknownVar => "define it under `vars:` in dbt_project.yml, pass --vars, or give var() a default",
            DiagKind::UnknownMacro => "check the macro name and that its file is under a macro-path; package macros are called as package.macro()",
            DiagKind::JinjaSyntax => "check that every {% %} block is closed and the expression is valid Jinja",
            DiagKind::EnvVar => "export the variable, or give env_var() a default",
            _ => "see the line above",
        }
        .to_string(),
    );
    d
}

/// Replaces parse-phase placeholders with resolved names; `None` when the output
/// transformed a placeholder in a way that needs a real compile render.
pub fn substitute(
    rendered: &str,
    refs: &[String],
    sources: &[String],
    this: Option<&str>,
) -> Option<String> {
    if !rendered.contains('\u{0}') {
        return Some(rendered.to_string());
    }
    let mut out = String::with_capacity(rendered.len() + 64);
    let mut rest = rendered;
    while let Some(start) = rest.find('\u{0}') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('\u{0}')?;
        let token = &after[..end];
        let mut chars = token.chars();
        let kind = chars.next()?;
        let idx: usize = chars.as_str().parse().ok()?;
        let text = match kind {
            'R' => refs.get(idx)?.as_str(),
            'S' => sources.get(idx)?.as_str(),
            'T' => this?,
            _ => return None,
        };
        out.push_str(text);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Converts JSON data into a template value without going through serde.
pub fn json_value(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(json_value).collect::<Vec<_>>()),
        J::Object(o) => Value::from_pairs(
            o.iter()
                .map(|(k, v)| (k.as_str(), json_value(v)))
                .collect::<Vec<_>>(),
        ),
    }
}

/// Converts any serializable data into a template value.
pub fn to_value<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}
