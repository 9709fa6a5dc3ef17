//! Macro registry and calls: every macro is its own template, called by name
//! with dbt's resolution order (current package → root project → dbt internals).

use std::collections::HashMap;
use std::sync::Arc;

use minijinja::value::{Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

use super::context::{ctx_of, RenderCtx};

/// The package name of Strata's built-in macros, as in dbt.
pub const INTERNAL_PACKAGE: &str = "dbt";

#[derive(Debug, Clone)]
pub struct MacroDef {
    pub package: String,
    pub name: String,
    pub unique_id: String,
    /// Name of the minijinja template holding only this macro.
    pub template: String,
    pub file: String,
    pub original_path: String,
    pub line: usize,
    pub sql: String,
    /// For a macro using Jinja2's implicit `varargs`/`kwargs`: its declared
    /// parameters (extra arguments are gathered into those two).
    pub extra_args: Option<Vec<String>>,
}

#[derive(Debug, Default)]
pub struct MacroRegistry {
    pub defs: Vec<MacroDef>,
    by_name: HashMap<String, Vec<usize>>,
    pub root_package: String,
    /// Prefixes tried by `adapter.dispatch`, most specific first.
    pub dispatch_prefixes: Vec<String>,
    /// Project `dispatch:` search orders by namespace.
    pub search_orders: HashMap<String, Vec<String>>,
    pub packages: Vec<String>,
}

impl MacroRegistry {
    pub fn new(root_package: &str, dispatch_prefixes: Vec<String>) -> Self {
        MacroRegistry {
            root_package: root_package.to_string(),
            dispatch_prefixes,
            ..Default::default()
        }
    }

    /// Adds a definition; a later one in the same package replaces the earlier.
    pub fn add(&mut self, def: MacroDef) {
        let list = self.by_name.entry(def.name.clone()).or_default();
        if let Some(i) = list
            .iter()
            .position(|&i| self.defs[i].package == def.package)
        {
            self.defs[list[i]] = def;
            return;
        }
        list.push(self.defs.len());
        self.defs.push(def);
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The names of the macros `package` defines.
    pub fn names_in(&self, package: &str) -> std::collections::HashSet<String> {
        self.defs
            .iter()
            .filter(|d| d.package == package)
            .map(|d| d.name.clone())
            .collect()
    }

    pub fn get_in(&self, package: &str, name: &str) -> Option<&MacroDef> {
        self.by_name
            .get(name)?
            .iter()
            .map(|&i| &self.defs[i])
            .find(|d| d.package == package)
    }

    /// dbt's lookup for a bare macro name called from `current` package.
    pub fn resolve(&self, current: &str, name: &str) -> Option<&MacroDef> {
        let list = self.by_name.get(name)?;
        let find = |p: &str| list.iter().map(|&i| &self.defs[i]).find(|d| d.package == p);
        find(current)
            .or_else(|| find(&self.root_package))
            .or_else(|| find(INTERNAL_PACKAGE))
            .or_else(|| list.first().map(|&i| &self.defs[i]))
    }

    /// Whether anything but the internal package defines `name` (used to skip
    /// rendering the default naming macros).
    pub fn is_overridden(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .map(|l| l.iter().any(|&i| self.defs[i].package != INTERNAL_PACKAGE))
            .unwrap_or(false)
    }

    /// `adapter.dispatch(name, macro_namespace)`: search order × adapter prefixes.
    pub fn dispatch(
        &self,
        name: &str,
        namespace: Option<&str>,
        current: &str,
    ) -> Option<&MacroDef> {
        let order: Vec<Option<String>> = match namespace {
            None => vec![None],
            Some(ns) => match self.search_orders.get(ns) {
                Some(o) => o.iter().cloned().map(Some).collect(),
                None => vec![Some(self.root_package.clone()), Some(ns.to_string())],
            },
        };
        for pkg in &order {
            for prefix in &self.dispatch_prefixes {
                let full = format!("{prefix}__{name}");
                let hit = match pkg {
                    Some(p) => self.get_in(p, &full),
                    None => self.resolve(current, &full),
                };
                if let Some(d) = hit {
                    return Some(d);
                }
            }
        }
        // A namespace with no prefixed implementation may define the name itself.
        match namespace {
            Some(ns) => self.get_in(ns, name),
            None => self.resolve(current, name),
        }
    }
}

/// Calls one macro definition with the caller's arguments and the render's context.
pub fn invoke(state: &mut State, def: &MacroDef, args: &[Value]) -> Result<Value, Error> {
    let ctx_value = state
        .lookup("__strata_ctx")
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "no dbt context in this render"))?;
    let ctx = ctx_value
        .downcast_object::<RenderCtx>()
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "no dbt context in this render"))?;
    ctx.record_macro(&def.unique_id);
    // A `{% call %}` block's body belongs to this template's state, which the
    // macro's own render cannot reach: render it here, once, and hand the
    // macro a `caller()` that returns it.
    let precomputed;
    let args = match args.last().map(|v| (v, v.is_kwargs())) {
        Some((last, true)) if !last.get_attr("caller").is_ok_and(|c| c.is_undefined()) => {
            let kw = minijinja::value::Kwargs::try_from(last.clone())?;
            let mut pairs: Vec<(String, Value)> = Vec::new();
            for k in kw.args() {
                let v: Value = kw.peek(k)?;
                let v = if k == "caller" {
                    Value::from_object(CallerOutput(v.call(state, &[])?))
                } else {
                    v
                };
                pairs.push((k.to_string(), v));
            }
            let mut all = args[..args.len() - 1].to_vec();
            all.push(Value::from(minijinja::value::Kwargs::from_iter(pairs)));
            precomputed = all;
            precomputed.as_slice()
        }
        _ => args,
    };
    // Jinja2's implicit `varargs` and `kwargs`: arguments beyond the
    // declared ones are gathered into them.
    let gathered;
    let args = match &def.extra_args {
        Some(declared) => {
            gathered = gather_extra_args(declared, args)?;
            gathered.as_slice()
        }
        None => args,
    };
    // Lists and dicts passed in are mutable in the macro, as in Python
    // (`{% do columns.append(...) %}` on an argument); a shallow copy.
    let owned;
    let args = if args.iter().any(super::objects::is_plain_container) {
        owned = args
            .iter()
            .map(|a| {
                if super::objects::is_plain_container(a) {
                    super::objects::mutable(a.clone())
                } else {
                    Ok(a.clone())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        owned.as_slice()
    } else {
        args
    };
    let tmpl = state.env().get_template(&def.template)?;
    ctx.push_package(&def.package);
    let result = tmpl.render_captured(ctx_value.clone()).and_then(|mut cap| {
        cap.with_state_mut(|st| {
            let m = st.lookup(&def.name).ok_or_else(|| {
                Error::new(
                    ErrorKind::UnknownFunction,
                    format!("macro {} not found", def.name),
                )
            })?;
            m.call(st, args)
        })
    });
    ctx.pop_package();
    match result {
        Ok(v) => Ok(v),
        Err(e) => match ctx.take_return() {
            Some(v) if is_return(&e) => Ok(v),
            _ => Err(e),
        },
    }
}

/// Splits a call's arguments for a macro with implicit `varargs`/`kwargs`.
fn gather_extra_args(declared: &[String], args: &[Value]) -> Result<Vec<Value>, Error> {
    let (positional, kw) = match args.last() {
        Some(last) if last.is_kwargs() => (
            &args[..args.len() - 1],
            Some(minijinja::value::Kwargs::try_from(last.clone())?),
        ),
        _ => (args, None),
    };
    let n = positional.len().min(declared.len());
    let mut out: Vec<Value> = positional[..n].to_vec();
    let varargs: Vec<Value> = positional[n..].to_vec();
    let mut keep: Vec<(String, Value)> = Vec::new();
    let mut extra: Vec<(Value, Value)> = Vec::new();
    if let Some(kw) = &kw {
        for k in kw.args() {
            let v: Value = kw.peek(k)?;
            if k == "caller" || declared.iter().any(|d| d == k) {
                keep.push((k.to_string(), v));
            } else {
                extra.push((Value::from(k), v));
            }
        }
    }
    keep.push(("varargs".into(), Value::from(varargs)));
    keep.push(("kwargs".into(), Value::from_pairs(extra)));
    out.push(Value::from(minijinja::value::Kwargs::from_iter(keep)));
    Ok(out)
}

/// `caller()` for a macro called with `{% call %}`: the block's output.
#[derive(Debug)]
struct CallerOutput(Value);

impl Object for CallerOutput {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, _args: &[Value]) -> Result<Value, Error> {
        Ok(self.0.clone())
    }
}

fn is_return(e: &Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains(super::context::RETURN_SENTINEL) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A global name bound to a macro: bare (`foo()`) or namespaced (`pkg.foo()`).
#[derive(Debug)]
pub struct MacroRef {
    pub name: String,
    pub package: Option<String>,
}

impl Object for MacroRef {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let ctx = ctx_of(state)?;
        // A unit test may override a macro by its name or as `package.name`.
        if let Some(v) = ctx.override_of("macro", &self.name) {
            return Ok(v);
        }
        let package = self
            .package
            .clone()
            .unwrap_or_else(|| ctx.current_package());
        if !ctx.node.extra.is_empty() {
            if let Some(v) = ctx.override_of("macro", &format!("{package}.{}", self.name)) {
                return Ok(v);
            }
        }
        let reg = ctx.shared.macros.clone();
        let def = match &self.package {
            Some(p) => reg.get_in(p, &self.name),
            None => reg.resolve(&package, &self.name),
        }
        .ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownFunction,
                format!("macro '{}' is not defined", self.qualified()),
            )
            .with_source(super::services::ErrorTag(
                crate::error::DiagKind::UnknownMacro,
            ))
        })?;
        invoke(state, def, args)
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" => Some(Value::from(self.name.clone())),
            _ => None,
        }
    }
}

impl MacroRef {
    fn qualified(&self) -> String {
        match &self.package {
            Some(p) => format!("{p}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A resolved macro handed out by `adapter.dispatch`.
#[derive(Debug)]
pub struct BoundMacro(pub MacroDef);

impl Object for BoundMacro {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        invoke(state, &self.0, args)
    }
}

/// `package_name.macro_name` access.
#[derive(Debug)]
pub struct PackageNs {
    pub package: String,
    /// The macros the package defines: `pkg.x is defined` only for those.
    pub names: std::collections::HashSet<String>,
}

impl Object for PackageNs {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if !self.names.contains(name) {
            return None;
        }
        Some(Value::from_object(MacroRef {
            name: name.to_string(),
            package: Some(self.package.clone()),
        }))
    }
}
