//! dbt's helper objects: `adapter`, `api`, `exceptions`, `modules`, statements,
//! Python-style mutable containers and the small conversion functions.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{Datelike, NaiveDateTime, Timelike};
use minijinja::value::{
    from_args, DynObject, Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueKind,
};
use minijinja::{Error, ErrorKind, State};

use super::context::{ctx_of, Phase};
use super::macros::BoundMacro;
use super::relation::{Relation, RelationName};
use super::services::{tagged, DropKind, WarehouseError};
use crate::error::DiagKind;
use crate::sql::quote_ident;

fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// The warehouse's error as the source of a template error.
#[derive(Debug)]
struct WrappedWarehouseError(WarehouseError);

impl fmt::Display for WrappedWarehouseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for WrappedWarehouseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

fn warehouse_err(e: WarehouseError) -> Error {
    err(e.to_string()).with_source(WrappedWarehouseError(e))
}

/// The `adapter` object. Warehouse methods need a connection and arrive with the
/// adapters; while parsing they mark the render phase-sensitive.
#[derive(Debug)]
pub struct AdapterObj;

impl Object for AdapterObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let ctx = ctx_of(state)?;
        match method {
            "dispatch" => {
                let (name, namespace, kwargs): (String, Option<String>, Kwargs) = from_args(args)?;
                let ns = namespace.or(kwargs.get::<Option<String>>("macro_namespace")?);
                let reg = ctx.shared.macros.clone();
                let def = reg
                    .dispatch(&name, ns.as_deref(), &ctx.current_package())
                    .ok_or_else(|| {
                        tagged(DiagKind::UnknownMacro, format!(
                            "adapter.dispatch found no implementation of '{name}'{} (tried prefixes {})",
                            ns.as_deref().map(|n| format!(" in namespace '{n}'")).unwrap_or_default(),
                            reg.dispatch_prefixes.join(", ")
                        ))
                    })?;
                Ok(Value::from_object(BoundMacro(def.clone())))
            }
            "quote" => {
                let (s,): (String,) = from_args(args)?;
                Ok(Value::from(quote_ident(&s)))
            }
            "quote_as_configured" => {
                let (s, _kind): (String, Option<String>) = from_args(args)?;
                Ok(Value::from(quote_ident(&s)))
            }
            "quote_seed_column" => {
                let (s, q): (String, Option<bool>) = from_args(args)?;
                Ok(Value::from(if q.unwrap_or(true) {
                    quote_ident(&s)
                } else {
                    s
                }))
            }
            "type" => Ok(Value::from(ctx.shared.adapter_type.clone())),
            "get_relation" | "load_relation" => {
                ctx.mark_sensitive();
                let Some(a) = ctx.warehouse() else {
                    return Ok(Value::from(()));
                };
                let (database, schema, identifier) = if method == "load_relation" {
                    let (rel,): (Value,) = from_args(args)?;
                    (
                        rel.get_attr("database")?,
                        rel.get_attr("schema")?,
                        rel.get_attr("identifier")?,
                    )
                } else {
                    let (d, s, i, kw): (Option<Value>, Option<Value>, Option<Value>, Kwargs) =
                        from_args(args)?;
                    let pick = |v: Option<Value>, k: &str| -> Result<Value, Error> {
                        Ok(v.or(kw.get::<Option<Value>>(k)?).unwrap_or(Value::from(())))
                    };
                    (
                        pick(d, "database")?,
                        pick(s, "schema")?,
                        pick(i, "identifier")?,
                    )
                };
                let (schema, identifier) = (schema.to_string(), identifier.to_string());
                let kind = a
                    .relation_type(&schema, &identifier)
                    .map_err(warehouse_err)?;
                Ok(match kind {
                    None => Value::from(()),
                    Some(k) => {
                        let db = if database.is_none() || database.is_undefined() {
                            ctx.shared.target_database.clone()
                        } else {
                            database.to_string()
                        };
                        let mut name =
                            RelationName::new(&db, &schema, &identifier, ctx.shared.quoting);
                        name.kind = Some(k);
                        Value::from_object(Relation::resolved(name))
                    }
                })
            }
            "get_columns_in_relation" => {
                ctx.mark_sensitive();
                let Some(a) = ctx.warehouse() else {
                    return Ok(Value::from(Vec::<Value>::new()));
                };
                let (rel,): (Value,) = from_args(args)?;
                let cols = a
                    .columns(
                        &rel.get_attr("schema")?.to_string(),
                        &rel.get_attr("identifier")?.to_string(),
                    )
                    .map_err(warehouse_err)?;
                Ok(Value::from(
                    cols.into_iter()
                        .map(|c| {
                            Value::from_object(super::column::Column::from_description(
                                &c.name,
                                &c.data_type,
                            ))
                        })
                        .collect::<Vec<_>>(),
                ))
            }
            // `adapter.execute(sql, auto_begin=False, fetch=False)`: (response, table).
            "execute" => {
                ctx.mark_sensitive();
                let (sql, kwargs): (String, Kwargs) = from_args(args)?;
                let fetch = kwargs.get::<Option<bool>>("fetch")?.unwrap_or(false);
                let _ = kwargs.get::<Option<bool>>("auto_begin")?;
                let Some(a) = ctx.warehouse() else {
                    return Ok(Value::from(vec![Value::from(()), Value::from(())]));
                };
                let failed = |e: WarehouseError| {
                    err(format!("adapter.execute failed: {e}"))
                        .with_source(WrappedWarehouseError(e))
                };
                let t = if fetch {
                    a.query(&sql).map_err(failed)?
                } else {
                    a.execute(&sql).map_err(failed)?;
                    crate::table::Table::default()
                };
                let response = Value::from_pairs(vec![
                    ("code", Value::from("SUCCESS")),
                    ("rows_affected", Value::from(t.rows.len())),
                    ("_message", Value::from("OK")),
                ]);
                Ok(Value::from(vec![response, table_value(t)]))
            }
            "list_relations_without_caching" | "get_missing_columns" => {
                ctx.mark_sensitive();
                Ok(Value::from(Vec::<Value>::new()))
            }
            "check_schema_exists" | "already_exists" => {
                ctx.mark_sensitive();
                Ok(Value::from(false))
            }
            "drop_relation" | "create_schema" | "drop_schema" | "truncate_relation" => {
                ctx.mark_sensitive();
                let Some(a) = ctx.warehouse() else {
                    if ctx.phase == Phase::Compile {
                        return Err(err(format!(
                            "adapter.{method}() needs a warehouse connection, which `compile` does not open"
                        )));
                    }
                    return Ok(Value::from(()));
                };
                let (rel,): (Value,) = from_args(args)?;
                let schema =
                    || -> Result<String, Error> { Ok(rel.get_attr("schema")?.to_string()) };
                match method {
                    "drop_relation" => {
                        let kind = match rel
                            .get_attr("type")
                            .ok()
                            .and_then(|t| t.as_str().map(str::to_string))
                            .as_deref()
                        {
                            Some("view") => DropKind::View,
                            Some("materialized_view") => DropKind::MaterializedView,
                            _ => DropKind::Table,
                        };
                        a.drop_relation(&rel.to_string(), kind)
                    }
                    "truncate_relation" => a.truncate_relation(&rel.to_string()),
                    "create_schema" => a.create_schema(&schema()?),
                    _ => a.drop_schema(&schema()?),
                }
                .map_err(warehouse_err)?;
                Ok(Value::from(()))
            }
            "rename_relation" | "expand_target_column_types" | "commit" => {
                ctx.mark_sensitive();
                Ok(Value::from(()))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("adapter has no method '{method}'"),
            )),
        }
    }
}

/// `api.Relation.create(...)`.
#[derive(Debug)]
pub struct ApiObj;

impl Object for ApiObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "Relation" => Some(Value::from_object(RelationApi)),
            "Column" => Some(Value::from_object(super::column::ColumnApi)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct RelationApi;

impl Object for RelationApi {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "create" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let ctx = ctx_of(state)?;
        let (kwargs,): (Kwargs,) = from_args(args)?;
        let s = |k: &str| -> Result<Option<String>, Error> { kwargs.get::<Option<String>>(k) };
        let mut name = RelationName::new("", "", "", ctx.shared.quoting);
        name.database = s("database")?;
        name.schema = s("schema")?;
        name.identifier = s("identifier")?;
        name.kind = s("type")?;
        let _ = kwargs.get::<Option<Value>>("quote_policy");
        Ok(Value::from_object(Relation::resolved(name)))
    }
}

/// `exceptions.raise_compiler_error(msg)` and `exceptions.warn(msg)`.
#[derive(Debug)]
pub struct ExceptionsObj;

impl Object for ExceptionsObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let msg = args.first().map(|v| v.to_string()).unwrap_or_default();
        match method {
            "warn" => {
                let ctx = ctx_of(state)?;
                ctx.shared.mark_unrepeatable();
                ctx.shared.log.warn(&msg);
                Ok(Value::from(""))
            }
            "raise_compiler_error"
            | "raise_database_error"
            | "raise_not_implemented"
            | "raise_fail_fast_error" => Err(err(msg)),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// `{% call statement('name', fetch_result=True) %}`: a no-op while parsing and
/// until a warehouse connection is available.
#[derive(Debug)]
pub struct StatementObj;

impl Object for StatementObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let ctx = ctx_of(state)?;
        ctx.mark_sensitive();
        let (rest, kwargs): (Rest<Value>, Kwargs) = from_args(args)?;
        let name = rest
            .first()
            .map(|v| v.to_string())
            .or(kwargs.get::<Option<String>>("name")?);
        let fetch = kwargs.get::<Option<bool>>("fetch_result")?.unwrap_or(false);
        let _ = kwargs.get::<Option<Value>>("auto_begin")?;
        let _ = kwargs.get::<Option<Value>>("language")?;
        let Some(caller) = kwargs.get::<Option<Value>>("caller")? else {
            return Ok(Value::from(""));
        };
        // Rendering the body still records the refs and macros it uses.
        let sql = caller.call(state, &[])?.to_string();
        if let Some(a) = ctx.warehouse() {
            let failed = |e: WarehouseError| {
                err(format!(
                    "statement '{}' failed: {e}",
                    name.clone().unwrap_or_default()
                ))
                .with_source(WrappedWarehouseError(e))
            };
            let t = if fetch {
                a.query(&sql).map_err(failed)?
            } else {
                a.execute(&sql).map_err(failed)?;
                crate::table::Table::default()
            };
            if let Some(n) = name {
                let data: Vec<Value> = t
                    .rows
                    .iter()
                    .map(|r| Value::from(r.iter().map(cell).collect::<Vec<_>>()))
                    .collect();
                let rows = t.rows.len();
                let result = Value::from_pairs(vec![
                    (
                        "response",
                        Value::from_pairs(vec![
                            ("code", Value::from("SUCCESS")),
                            ("rows_affected", Value::from(rows)),
                        ]),
                    ),
                    ("data", Value::from(data)),
                    ("table", table_value(t)),
                ]);
                ctx.store_result(&n, result);
            }
        }
        Ok(Value::from(""))
    }
}

pub fn run_query_fn(state: &State, sql: Value) -> Result<Value, Error> {
    let ctx = ctx_of(state)?;
    ctx.mark_sensitive();
    match ctx.warehouse() {
        Some(a) => {
            let t = a.query(&sql.to_string()).map_err(|e| {
                err(format!("run_query failed: {e}")).with_source(WrappedWarehouseError(e))
            })?;
            Ok(table_value(t))
        }
        None => Ok(Value::from(())),
    }
}

pub fn load_result_fn(state: &State, name: String) -> Result<Value, Error> {
    let ctx = ctx_of(state)?;
    ctx.mark_sensitive();
    Ok(ctx.load_result(&name).unwrap_or(Value::from(())))
}

/// A query result as dbt's agate table: `.rows` (indexable by position or
/// column name), `.columns` (with `.name` and `.values()`), `.column_names`.
#[derive(Debug)]
pub struct TableObj(pub crate::table::Table);

pub fn table_value(t: crate::table::Table) -> Value {
    Value::from_object(TableObj(t))
}

fn cell(v: &Option<String>) -> Value {
    match v {
        None => Value::from(()),
        Some(s) => match (s.parse::<i64>(), s.parse::<f64>()) {
            (Ok(i), _) => Value::from(i),
            (_, Ok(f))
                if s.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')) =>
            {
                Value::from(f)
            }
            _ => Value::from(s.as_str()),
        },
    }
}

#[derive(Debug)]
struct RowObj {
    columns: Arc<Vec<String>>,
    values: Vec<Value>,
}

impl Object for RowObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_i64() {
            let i = if i < 0 {
                self.values.len() as i64 + i
            } else {
                i
            };
            return self.values.get(usize::try_from(i).ok()?).cloned();
        }
        let k = key.as_str()?;
        self.columns
            .iter()
            .position(|c| c == k)
            .and_then(|i| self.values.get(i).cloned())
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.values.clone())
    }
}

/// An agate column: its values, in order, with its `name`.
#[derive(Debug)]
struct ColumnObj {
    name: String,
    values: Vec<Value>,
}

impl Object for ColumnObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_i64() {
            return self.values.get(usize::try_from(i).ok()?).cloned();
        }
        match key.as_str()? {
            "name" => Some(Value::from(self.name.clone())),
            _ => None,
        }
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.values.clone())
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "values" => Ok(Value::from(self.values.clone())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// agate's `table.columns`: a sequence of columns that is also a mapping by
/// name (`keys()`, `values()`, `items()`, `columns['id']`).
#[derive(Debug)]
struct ColumnsObj(Vec<Arc<ColumnObj>>);

impl Object for ColumnsObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_i64() {
            let i = if i < 0 { self.0.len() as i64 + i } else { i };
            return self
                .0
                .get(usize::try_from(i).ok()?)
                .map(|c| Value::from_dyn_object(c.clone()));
        }
        let k = key.as_str()?;
        self.0
            .iter()
            .find(|c| c.name == k)
            .map(|c| Value::from_dyn_object(c.clone()))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.columns())
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "keys" => Ok(Value::from(
                self.0
                    .iter()
                    .map(|c| Value::from(c.name.clone()))
                    .collect::<Vec<_>>(),
            )),
            "values" => Ok(Value::from(self.columns())),
            "items" => Ok(Value::from(
                self.0
                    .iter()
                    .map(|c| {
                        Value::from(vec![
                            Value::from(c.name.clone()),
                            Value::from_dyn_object(c.clone()),
                        ])
                    })
                    .collect::<Vec<_>>(),
            )),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

impl ColumnsObj {
    fn columns(&self) -> Vec<Value> {
        self.0
            .iter()
            .map(|c| Value::from_dyn_object(c.clone()))
            .collect()
    }
}

impl TableObj {
    fn rows(&self) -> Vec<Value> {
        let columns = Arc::new(self.0.columns.clone());
        self.0
            .rows
            .iter()
            .map(|r| {
                Value::from_object(RowObj {
                    columns: columns.clone(),
                    values: r.iter().map(cell).collect(),
                })
            })
            .collect()
    }
}

impl Object for TableObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_i64() {
            return self.rows().get(usize::try_from(i).ok()?).cloned();
        }
        match key.as_str()? {
            "rows" => Some(Value::from(self.rows())),
            "column_names" => Some(Value::from(self.0.columns.clone())),
            "columns" => Some(Value::from_object(ColumnsObj(
                self.0
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        Arc::new(ColumnObj {
                            name: c.clone(),
                            values: self.0.rows.iter().map(|r| cell(&r[i])).collect(),
                        })
                    })
                    .collect(),
            ))),
            _ => None,
        }
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.rows())
    }
    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "print_table" => {
                ctx_of(state)?
                    .shared
                    .log
                    .print(&crate::table::format_table(&self.0));
                Ok(Value::from(()))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// How deeply a value may nest when it is printed or serialized: far beyond
/// any real macro's data, and well within the renderer's stack.
pub(crate) const MAX_NESTING: usize = 1000;

/// The children of a list or dict value (keys and values), nothing for
/// scalars, strings and plain objects (relations, datetimes).
fn children_of(v: &Value) -> Vec<Value> {
    // A relation prints its name, not its parts (and reading them would mark
    // the render as needing the compile phase).
    if v.downcast_object_ref::<Relation>().is_some() {
        return Vec::new();
    }
    match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => {
            v.try_iter().map(|i| i.collect()).unwrap_or_default()
        }
        ValueKind::Map => match v.try_iter() {
            Ok(keys) => keys
                .flat_map(|k| {
                    let item = v.get_item(&k).unwrap_or_default();
                    [k, item]
                })
                .collect(),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Refuses a value nested deeper than [`MAX_NESTING`] before it is printed or
/// serialized: both recurse, and a deep enough value would overflow the stack.
/// Walks without recursion.
pub(crate) fn check_nesting(v: &Value) -> Result<(), Error> {
    if !matches!(v.kind(), ValueKind::Seq | ValueKind::Map) {
        return Ok(());
    }
    let mut stack = vec![(v.clone(), 0usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_NESTING {
            return Err(err(format!(
                "this value is nested more than {MAX_NESTING} levels deep (lists or dicts inside each other); it cannot be printed or serialized"
            )));
        }
        for c in children_of(&v) {
            if matches!(c.kind(), ValueKind::Seq | ValueKind::Map) {
                stack.push((c, depth + 1));
            }
        }
    }
    Ok(())
}

/// The identity of a mutable list or dict, for cycle checks.
fn mutable_identity(v: &Value) -> Option<*const ()> {
    if let Some(l) = v.downcast_object_ref::<MutList>() {
        return Some(l as *const MutList as *const ());
    }
    v.downcast_object_ref::<MutDict>()
        .map(|d| d as *const MutDict as *const ())
}

/// Refuses to put a mutable list or dict inside itself: a value containing
/// itself cannot be printed, compared or serialized (each would recurse
/// forever), so it is an error where it is made, not a crash later.
fn refuse_cycle(target: *const (), inserted: &Value, what: &str) -> Result<(), Error> {
    let mut seen: std::collections::HashSet<*const ()> = std::collections::HashSet::new();
    let mut stack = vec![inserted.clone()];
    while let Some(v) = stack.pop() {
        if let Some(id) = mutable_identity(&v) {
            if id == target {
                return Err(err(format!(
                    "cannot put this {what} inside itself: a {what} that contains itself cannot be printed, compared or serialized"
                )));
            }
            if !seen.insert(id) {
                continue;
            }
        }
        stack.extend(children_of(&v).into_iter().filter(|c| {
            matches!(
                c.kind(),
                ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
            )
        }));
    }
    Ok(())
}

/// A list that supports `.append()`/`.extend()` etc., for `{% set x = [] %}`.
#[derive(Debug, Default)]
pub struct MutList(pub Mutex<Vec<Value>>);

impl MutList {
    fn items(&self) -> Vec<Value> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Object for MutList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.items();
        let idx = key.as_i64()?;
        let idx = if idx < 0 {
            items.len() as i64 + idx
        } else {
            idx
        };
        items.get(usize::try_from(idx).ok()?).cloned()
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.items())
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        // Checked before the lock is taken: the walk may meet this list.
        if matches!(method, "append" | "extend" | "insert") {
            let me = Arc::as_ptr(self) as *const ();
            for a in args {
                refuse_cycle(me, a, "list")?;
            }
        }
        let mut v = self.0.lock().map_err(|_| err("list lock poisoned"))?;
        match method {
            "append" => {
                let (x,): (Value,) = from_args(args)?;
                v.push(x);
            }
            "extend" => {
                let (x,): (Value,) = from_args(args)?;
                v.extend(x.try_iter()?);
            }
            "insert" => {
                let (i, x): (usize, Value) = from_args(args)?;
                let i = i.min(v.len());
                v.insert(i, x);
            }
            "pop" => {
                let (i,): (Option<i64>,) = from_args(args)?;
                let len = v.len() as i64;
                let i = i
                    .map(|i| if i < 0 { len + i } else { i })
                    .unwrap_or(len - 1);
                if i < 0 || i >= len {
                    return Err(err("pop index out of range"));
                }
                return Ok(v.remove(i as usize));
            }
            "remove" => {
                let (x,): (Value,) = from_args(args)?;
                if let Some(p) = v.iter().position(|y| y == &x) {
                    v.remove(p);
                }
            }
            "index" => {
                let (x,): (Value,) = from_args(args)?;
                return v
                    .iter()
                    .position(|y| y == &x)
                    .map(Value::from)
                    .ok_or_else(|| err("value not in list"));
            }
            "count" => {
                let (x,): (Value,) = from_args(args)?;
                return Ok(Value::from(v.iter().filter(|y| *y == &x).count()));
            }
            "reverse" => v.reverse(),
            "copy" => return Ok(Value::from(v.clone())),
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        }
        Ok(Value::from(()))
    }
}

/// A dict that supports `.update()`/`.pop()`, for `{% set d = {} %}`.
#[derive(Debug, Default)]
pub struct MutDict(pub Mutex<indexmap::IndexMap<Value, Value>>);

impl MutDict {
    fn entries(&self) -> Vec<(Value, Value)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

impl Object for MutDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.lock().ok()?.get(key).cloned()
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.entries().into_iter().map(|(k, _)| k).collect())
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if matches!(method, "update" | "setdefault") {
            let me = Arc::as_ptr(self) as *const ();
            for a in args {
                refuse_cycle(me, a, "dict")?;
            }
        }
        match method {
            "update" => {
                let (other, kwargs): (Option<Value>, Kwargs) = from_args(args)?;
                let mut m = self.0.lock().map_err(|_| err("dict lock poisoned"))?;
                if let Some(o) = other {
                    for k in o.try_iter()? {
                        let v = o.get_item(&k)?;
                        m.insert(k, mutable(v)?);
                    }
                }
                for k in kwargs.args() {
                    m.insert(Value::from(k), mutable(kwargs.peek::<Value>(k)?)?);
                }
                Ok(Value::from(()))
            }
            "pop" => {
                let (k, d): (Value, Option<Value>) = from_args(args)?;
                let mut m = self.0.lock().map_err(|_| err("dict lock poisoned"))?;
                Ok(m.shift_remove(&k).or(d).unwrap_or(Value::from(())))
            }
            "setdefault" => {
                let (k, d): (Value, Option<Value>) = from_args(args)?;
                let mut m = self.0.lock().map_err(|_| err("dict lock poisoned"))?;
                let d = mutable(d.unwrap_or(Value::from(())))?;
                Ok(m.entry(k).or_insert(d).clone())
            }
            "get" => {
                let (k, d): (Value, Option<Value>) = from_args(args)?;
                Ok(self.get_value(&k).or(d).unwrap_or(Value::from(())))
            }
            "items" => Ok(Value::from(
                self.entries()
                    .into_iter()
                    .map(|(k, v)| Value::from(vec![k, v]))
                    .collect::<Vec<_>>(),
            )),
            "keys" => Ok(Value::from(
                self.entries()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )),
            "values" => Ok(Value::from(
                self.entries()
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect::<Vec<_>>(),
            )),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// A list or dict literal stored into a mutable dict becomes mutable too, as
/// every Python list is (`{% do d.update({k: []}) %}{% do d[k].append(x) %}`).
pub(crate) fn mutable(v: Value) -> Result<Value, Error> {
    if v.downcast_object_ref::<Vec<Value>>().is_some() {
        return new_list(Some(v));
    }
    if is_plain_container(&v) {
        return new_dict(Some(v));
    }
    Ok(v)
}

/// A list or dict as minijinja builds it from a literal or a filter (not a
/// mutable one of ours, not keyword arguments, not another object).
pub(crate) fn is_plain_container(v: &Value) -> bool {
    !v.is_kwargs()
        && (v.downcast_object_ref::<Vec<Value>>().is_some()
            || v.downcast_object_ref::<indexmap::IndexMap<Value, Value>>()
                .is_some())
}

/// Python methods on plain values: minijinja-contrib's, plus `pop` on a list
/// that is not a literal (`(xs | list).pop()` takes its last item).
pub fn unknown_method(
    state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if method == "pop" && value.kind() == ValueKind::Seq {
        let (index,): (Option<i64>,) = from_args(args)?;
        let len = value.len().unwrap_or(0) as i64;
        let i = match index {
            Some(i) if i < 0 => len + i,
            Some(i) => i,
            None => len - 1,
        };
        if i < 0 || i >= len {
            return Err(err("pop from empty list or index out of range"));
        }
        return value.get_item(&Value::from(i));
    }
    if matches!(method, "index" | "count") && value.kind() == ValueKind::Seq {
        let (x,): (Value,) = from_args(args)?;
        let mut items = value.try_iter()?;
        return if method == "index" {
            items
                .position(|v| v == x)
                .map(Value::from)
                .ok_or_else(|| err(format!("{x} is not in list")))
        } else {
            Ok(Value::from(items.filter(|v| *v == x).count()))
        };
    }
    if let Some(text) = value.as_str() {
        match method {
            "partition" | "rpartition" => {
                let (sep,): (String,) = from_args(args)?;
                let found = if method == "partition" {
                    text.split_once(sep.as_str())
                } else {
                    text.rsplit_once(sep.as_str())
                };
                let parts = match (found, method) {
                    (Some((a, b)), _) => [a.to_string(), sep, b.to_string()],
                    (None, "partition") => [text.to_string(), String::new(), String::new()],
                    (None, _) => [String::new(), String::new(), text.to_string()],
                };
                return Ok(Value::from(parts.map(Value::from).to_vec()));
            }
            "title" => {
                let mut out = String::with_capacity(text.len());
                let mut start = true;
                for c in text.chars() {
                    if c.is_alphabetic() {
                        if start {
                            out.extend(c.to_uppercase());
                        } else {
                            out.extend(c.to_lowercase());
                        }
                        start = false;
                    } else {
                        out.push(c);
                        start = true;
                    }
                }
                return Ok(Value::from(out));
            }
            "zfill" => {
                let (width,): (usize,) = from_args(args)?;
                let n = text.chars().count();
                return Ok(Value::from(if n >= width {
                    text.to_string()
                } else {
                    format!("{}{text}", "0".repeat(width - n))
                }));
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Jinja2's `truncate(length=255, killwords=False, end='...', leeway=5)`.
pub fn truncate(
    s: String,
    length: Option<usize>,
    killwords: Option<bool>,
    end: Option<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let length = kwargs
        .get::<Option<usize>>("length")?
        .or(length)
        .unwrap_or(255);
    let killwords = kwargs
        .get::<Option<bool>>("killwords")?
        .or(killwords)
        .unwrap_or(false);
    let end = kwargs
        .get::<Option<String>>("end")?
        .or(end)
        .unwrap_or_else(|| "...".into());
    let leeway = kwargs.get::<Option<usize>>("leeway")?.unwrap_or(5);
    kwargs.assert_all_used()?;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= length + leeway {
        return Ok(Value::from(s));
    }
    let keep: String = chars[..length.saturating_sub(end.chars().count())]
        .iter()
        .collect();
    let head = if killwords {
        keep
    } else {
        match keep.rsplit_once(' ') {
            Some((h, _)) => h.to_string(),
            None => keep,
        }
    };
    Ok(Value::from(format!("{head}{end}")))
}

/// Jinja2's `wordcount`: the number of words.
pub fn wordcount(s: String) -> usize {
    s.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .count()
}

/// A mutable list, empty or holding a literal's items.
pub fn new_list(init: Option<Value>) -> Result<Value, Error> {
    let items: Vec<Value> = match init {
        Some(v) => v.try_iter()?.collect(),
        None => Vec::new(),
    };
    Ok(Value::from_object(MutList(Mutex::new(items))))
}

/// A mutable dict, empty or holding a literal's entries.
pub fn new_dict(init: Option<Value>) -> Result<Value, Error> {
    let mut map = indexmap::IndexMap::new();
    if let Some(v) = init {
        for k in v.try_iter()? {
            let item = v.get_item(&k)?;
            map.insert(k, item);
        }
    }
    Ok(Value::from_object(MutDict(Mutex::new(map))))
}

/// A Python-like datetime (`run_started_at`, `modules.datetime.datetime.now()`).
#[derive(Debug, Clone)]
pub struct DateTimeObj(pub NaiveDateTime);

pub fn datetime_value(dt: NaiveDateTime) -> Value {
    Value::from_object(DateTimeObj(dt))
}

impl Object for DateTimeObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let d = &self.0;
        let key = key.as_str()?;
        if let Some(v) = date_part(d, key) {
            return Some(v);
        }
        Some(Value::from(match key {
            "hour" => d.hour() as i64,
            "minute" => d.minute() as i64,
            "second" => d.second() as i64,
            "microsecond" => (d.nanosecond() / 1000) as i64,
            _ => return None,
        }))
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => strftime(args, |f, out| {
                fmt::Write::write_fmt(out, format_args!("{}", self.0.format(f)))
            }),
            "isoformat" => Ok(Value::from(
                self.0.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            )),
            "date" => Ok(Value::from_object(DateObj(self.0.date()))),
            "timestamp" => Ok(Value::from(self.0.and_utc().timestamp() as f64)),
            "weekday" | "isoweekday" => Ok(weekday(self.0.weekday(), method)),
            "astimezone" => Ok(Value::from_object(self.as_ref().clone())),
            "replace" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let d = self.0;
                let part = |k: &str, cur: u32| -> Result<u32, Error> {
                    Ok(kwargs.get::<Option<u32>>(k)?.unwrap_or(cur))
                };
                let year = kwargs.get::<Option<i32>>("year")?.unwrap_or(d.year());
                let date = chrono::NaiveDate::from_ymd_opt(
                    year,
                    part("month", d.month())?,
                    part("day", d.day())?,
                );
                let time = chrono::NaiveTime::from_hms_micro_opt(
                    part("hour", d.hour())?,
                    part("minute", d.minute())?,
                    part("second", d.second())?,
                    part("microsecond", d.nanosecond() / 1000)?,
                );
                let _ = kwargs.get::<Option<Value>>("tzinfo")?;
                kwargs.assert_all_used()?;
                match (date, time) {
                    (Some(date), Some(time)) => Ok(datetime_value(date.and_time(time))),
                    _ => Err(err("datetime.replace(): a part is out of range")),
                }
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
    fn binary_op(
        self: &Arc<Self>,
        op: &str,
        other: &Value,
        reflected: bool,
    ) -> Option<Result<Value, Error>> {
        if let Some(d) = other.downcast_object_ref::<TimedeltaObj>() {
            return match (op, reflected) {
                ("+", _) => Some(shifted(self.0.checked_add_signed(d.0)).map(datetime_value)),
                ("-", false) => Some(shifted(self.0.checked_sub_signed(d.0)).map(datetime_value)),
                _ => None,
            };
        }
        let o = other.downcast_object_ref::<DateTimeObj>()?;
        match (op, reflected) {
            ("-", false) => Some(Ok(Value::from_object(TimedeltaObj(self.0 - o.0)))),
            ("-", true) => Some(Ok(Value::from_object(TimedeltaObj(o.0 - self.0)))),
            _ => None,
        }
    }
    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<std::cmp::Ordering> {
        Some(self.0.cmp(&other.downcast_ref::<Self>()?.0))
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As Python prints it: microseconds only when there are some.
        if self.0.nanosecond() / 1000 == 0 {
            write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S"))
        } else {
            write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.6f"))
        }
    }
}

/// Python's `strftime(format)`; a format chrono cannot write is an error.
fn strftime(
    args: &[Value],
    write: impl Fn(&str, &mut String) -> fmt::Result,
) -> Result<Value, Error> {
    let (fmt,): (String,) = from_args(args)?;
    let mut out = String::new();
    write(&fmt, &mut out).map_err(|_| err(format!("bad strftime format '{fmt}'")))?;
    Ok(Value::from(out))
}

/// `year`, `month` and `day` of a Python date or datetime.
fn date_part(d: &impl Datelike, key: &str) -> Option<Value> {
    Some(Value::from(match key {
        "year" => d.year() as i64,
        "month" => d.month() as i64,
        "day" => d.day() as i64,
        _ => return None,
    }))
}

/// Python's `weekday()` (Monday is 0) and `isoweekday()` (Monday is 1).
fn weekday(day: chrono::Weekday, method: &str) -> Value {
    if method == "weekday" {
        Value::from(day.num_days_from_monday())
    } else {
        Value::from(day.number_from_monday())
    }
}

/// Date arithmetic that left the representable range is an error, as in Python.
fn shifted<T>(v: Option<T>) -> Result<T, Error> {
    v.ok_or_else(|| err("date value out of range"))
}

/// A Python `datetime.date` (`modules.datetime.date(...)`, `.today()`).
#[derive(Debug, Clone)]
pub struct DateObj(pub chrono::NaiveDate);

impl Object for DateObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        date_part(&self.0, key.as_str()?)
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => strftime(args, |f, out| {
                fmt::Write::write_fmt(out, format_args!("{}", self.0.format(f)))
            }),
            "isoformat" => Ok(Value::from(self.0.to_string())),
            "weekday" | "isoweekday" => Ok(weekday(self.0.weekday(), method)),
            "replace" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let d = self.0;
                let year = kwargs.get::<Option<i32>>("year")?.unwrap_or(d.year());
                let month = kwargs.get::<Option<u32>>("month")?.unwrap_or(d.month());
                let day = kwargs.get::<Option<u32>>("day")?.unwrap_or(d.day());
                kwargs.assert_all_used()?;
                chrono::NaiveDate::from_ymd_opt(year, month, day)
                    .map(|d| Value::from_object(DateObj(d)))
                    .ok_or_else(|| err("date.replace(): a part is out of range"))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
    fn binary_op(
        self: &Arc<Self>,
        op: &str,
        other: &Value,
        reflected: bool,
    ) -> Option<Result<Value, Error>> {
        // As in Python, only whole days of a timedelta move a date.
        if let Some(d) = other.downcast_object_ref::<TimedeltaObj>() {
            let days = chrono::Duration::days(d.0.num_days());
            let moved = match (op, reflected) {
                ("+", _) => self.0.checked_add_signed(days),
                ("-", false) => self.0.checked_sub_signed(days),
                _ => return None,
            };
            return Some(shifted(moved).map(|d| Value::from_object(DateObj(d))));
        }
        let o = other.downcast_object_ref::<DateObj>()?;
        match (op, reflected) {
            ("-", false) => Some(Ok(Value::from_object(TimedeltaObj(self.0 - o.0)))),
            ("-", true) => Some(Ok(Value::from_object(TimedeltaObj(o.0 - self.0)))),
            _ => None,
        }
    }
    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<std::cmp::Ordering> {
        Some(self.0.cmp(&other.downcast_ref::<Self>()?.0))
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Python `datetime.timedelta`: its parts, normalized as Python does.
#[derive(Debug, Clone)]
pub struct TimedeltaObj(pub chrono::Duration);

impl Object for TimedeltaObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let micros = self.0.num_microseconds()?;
        let days = micros.div_euclid(86_400_000_000);
        let rest = micros.rem_euclid(86_400_000_000);
        Some(Value::from(match key.as_str()? {
            "days" => days,
            "seconds" => rest / 1_000_000,
            "microseconds" => rest % 1_000_000,
            _ => return None,
        }))
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "total_seconds" => Ok(Value::from(
                self.0.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6,
            )),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
    fn binary_op(
        self: &Arc<Self>,
        op: &str,
        other: &Value,
        reflected: bool,
    ) -> Option<Result<Value, Error>> {
        let o = other.downcast_object_ref::<TimedeltaObj>()?;
        let (a, b) = if reflected {
            (o.0, self.0)
        } else {
            (self.0, o.0)
        };
        let r = match op {
            "+" => a.checked_add(&b),
            "-" => a.checked_sub(&b),
            _ => return None,
        };
        Some(shifted(r).map(|d| Value::from_object(TimedeltaObj(d))))
    }
    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<std::cmp::Ordering> {
        Some(self.0.cmp(&other.downcast_ref::<Self>()?.0))
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.num_microseconds().unwrap_or(0);
        let days = micros.div_euclid(86_400_000_000);
        let rest = micros.rem_euclid(86_400_000_000);
        let (h, m, s, us) = (
            rest / 3_600_000_000,
            rest / 60_000_000 % 60,
            rest / 1_000_000 % 60,
            rest % 1_000_000,
        );
        if days != 0 {
            write!(f, "{days} day{}, ", if days.abs() == 1 { "" } else { "s" })?;
        }
        write!(f, "{h}:{m:02}:{s:02}")?;
        if us != 0 {
            write!(f, ".{us:06}")?;
        }
        Ok(())
    }
}

/// A `pytz` time zone: its name (datetimes stay naive in Strata).
#[derive(Debug, Clone)]
struct TimeZoneObj(String);

impl Object for TimeZoneObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "zone" => Some(Value::from(self.0.clone())),
            _ => None,
        }
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            // `tz.localize(dt)`: the same wall-clock time.
            "localize" | "normalize" => args
                .first()
                .cloned()
                .ok_or_else(|| err(format!("{method}() needs a datetime"))),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `datetime.datetime(year, month, day, hour=0, minute=0, second=0,
/// microsecond=0, tzinfo=None)` and `datetime.date(year, month, day)`.
fn make_datetime(args: &[Value], date_only: bool) -> Result<Value, Error> {
    let (pos, kwargs): (Rest<i64>, Kwargs) = from_args(args)?;
    let names = [
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "microsecond",
    ];
    let mut parts = [0i64, 1, 1, 0, 0, 0, 0];
    for (i, v) in pos.iter().enumerate() {
        if i >= parts.len() {
            return Err(err("too many arguments"));
        }
        parts[i] = *v;
    }
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = kwargs.get::<Option<i64>>(name)? {
            parts[i] = v;
        }
    }
    let _ = kwargs.get::<Option<Value>>("tzinfo")?;
    kwargs.assert_all_used()?;
    if pos.len() < 3 && kwargs.args().count() < 3 {
        return Err(err("year, month and day are required"));
    }
    let u = |v: i64| u32::try_from(v).map_err(|_| err(format!("{v} is out of range")));
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(parts[0]).map_err(|_| err("year is out of range"))?,
        u(parts[1])?,
        u(parts[2])?,
    )
    .ok_or_else(|| err("day is out of range for month"))?;
    if date_only {
        return Ok(Value::from_object(DateObj(date)));
    }
    let time = chrono::NaiveTime::from_hms_micro_opt(
        u(parts[3])?,
        u(parts[4])?,
        u(parts[5])?,
        u(parts[6])?,
    )
    .ok_or_else(|| err("time is out of range"))?;
    Ok(datetime_value(date.and_time(time)))
}

/// `datetime.timedelta(days=0, seconds=0, microseconds=0, milliseconds=0,
/// minutes=0, hours=0, weeks=0)`.
fn make_timedelta(args: &[Value]) -> Result<Value, Error> {
    let (pos, kwargs): (Rest<f64>, Kwargs) = from_args(args)?;
    let names = [
        "days",
        "seconds",
        "microseconds",
        "milliseconds",
        "minutes",
        "hours",
        "weeks",
    ];
    let scale = [86_400e6, 1e6, 1.0, 1e3, 60e6, 3_600e6, 604_800e6];
    let mut micros = 0f64;
    for (i, v) in pos.iter().enumerate() {
        micros += v * scale.get(i).ok_or_else(|| err("too many arguments"))?;
    }
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = kwargs.get::<Option<f64>>(name)? {
            micros += v * scale[i];
        }
    }
    kwargs.assert_all_used()?;
    Ok(Value::from_object(TimedeltaObj(
        chrono::Duration::microseconds(micros.round() as i64),
    )))
}

/// `modules.datetime`, `modules.re`, `modules.itertools`.
#[derive(Debug)]
pub struct ModulesObj;

impl Object for ModulesObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "datetime" => Some(Value::from_object(PyModule("datetime"))),
            "pytz" => Some(Value::from_object(PyModule("pytz"))),
            "re" => Some(Value::from_object(PyModule("re"))),
            "itertools" => Some(Value::from_object(PyModule("itertools"))),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct PyModule(&'static str);

impl Object for PyModule {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str()?;
        match (self.0, k) {
            ("datetime", "datetime") => Some(Value::from_object(PyModule("datetime.datetime"))),
            ("datetime", "date") => Some(Value::from_object(PyModule("datetime.date"))),
            ("datetime", "timedelta") => Some(Value::from_object(PyModule("datetime.timedelta"))),
            ("pytz", "utc" | "UTC") => Some(Value::from_object(TimeZoneObj("UTC".into()))),
            ("re", "IGNORECASE" | "I") => Some(Value::from(2)),
            ("re", "MULTILINE" | "M") => Some(Value::from(8)),
            _ => None,
        }
    }
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        match self.0 {
            "datetime.datetime" => make_datetime(args, false),
            "datetime.date" => make_datetime(args, true),
            "datetime.timedelta" => make_timedelta(args),
            other => Err(err(format!("modules.{other} is not callable"))),
        }
    }
    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if matches!(method, "now" | "utcnow" | "today") {
            // The clock makes the output differ every invocation.
            if let Ok(ctx) = super::context::ctx_of(state) {
                ctx.mark_volatile();
            }
        }
        match (self.0, method) {
            ("pytz", "timezone") => {
                let (name,): (String,) = from_args(args)?;
                Ok(Value::from_object(TimeZoneObj(name)))
            }
            ("datetime.datetime", "now") => Ok(datetime_value(chrono::Local::now().naive_local())),
            ("datetime.datetime", "utcnow") => Ok(datetime_value(chrono::Utc::now().naive_utc())),
            ("datetime.datetime", "today") => {
                Ok(datetime_value(chrono::Local::now().naive_local()))
            }
            ("datetime.date", "today") => Ok(Value::from_object(DateObj(
                chrono::Local::now().date_naive(),
            ))),
            ("datetime.datetime", "strptime") => {
                let (s, fmt): (String, String) = from_args(args)?;
                NaiveDateTime::parse_from_str(&s, &fmt)
                    .map(datetime_value)
                    .map_err(|e| err(format!("strptime('{s}', '{fmt}'): {e}")))
            }
            ("re", m) => regex_call(m, args),
            ("itertools", "chain") => {
                let mut out = Vec::new();
                for a in args {
                    out.extend(a.try_iter()?);
                }
                Ok(Value::from(out))
            }
            ("itertools", "product") => {
                let mut acc: Vec<Vec<Value>> = vec![vec![]];
                for a in args {
                    let items: Vec<Value> = a.try_iter()?.collect();
                    acc = acc
                        .into_iter()
                        .flat_map(|p| {
                            items.iter().map(move |i| {
                                let mut q = p.clone();
                                q.push(i.clone());
                                q
                            })
                        })
                        .collect();
                }
                Ok(Value::from(
                    acc.into_iter().map(Value::from).collect::<Vec<_>>(),
                ))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.{} has no function '{method}' in Strata", self.0),
            )),
        }
    }
}

/// A Python `re` pattern, compiled with look-around and backreferences
/// (fancy-regex), which dbt packages use.
fn compile_re(pattern: &str, flags: i64) -> Result<fancy_regex::Regex, Error> {
    let mut prefix = String::new();
    if flags & 2 != 0 {
        prefix.push_str("(?i)");
    }
    if flags & 8 != 0 {
        prefix.push_str("(?m)");
    }
    if flags & 16 != 0 {
        prefix.push_str("(?s)");
    }
    if flags & 64 != 0 {
        prefix.push_str("(?x)");
    }
    fancy_regex::Regex::new(&format!("{prefix}{}", python_pattern(pattern)))
        .map_err(|e| err(format!("bad regex '{pattern}': {e}")))
}

fn re_failed(pattern: &str, e: fancy_regex::Error) -> Error {
    err(format!("regex '{pattern}' failed: {e}"))
}

/// A Python `re` pattern in the regex crate's syntax: a `{` that does not
/// start a repetition (`{2}`, `{1,3}`, `{,3}`) is a literal in Python and
/// must be escaped here.
fn python_pattern(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains('{') {
        return pattern.into();
    }
    let b = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            // An escape: copied with the character it escapes.
            let end =
                (i + 1 + pattern[i + 1..].chars().next().map_or(0, char::len_utf8)).min(b.len());
            out.push_str(&pattern[i..end]);
            i = end;
            continue;
        }
        match c {
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'{' if !in_class => {
                let rest = &pattern[i + 1..];
                let close = rest.find('}');
                let quantifier = close.is_some_and(|j| {
                    let body = &rest[..j];
                    let (lo, hi) = body.split_once(',').unwrap_or((body, ""));
                    !body.is_empty()
                        && body != ","
                        && lo.bytes().all(|d| d.is_ascii_digit())
                        && hi.bytes().all(|d| d.is_ascii_digit())
                });
                if !quantifier {
                    out.push_str("\\{");
                    i += 1;
                    continue;
                }
                if rest.starts_with(',') {
                    // `{,m}`: Python's short form of `{0,m}`.
                    out.push_str("{0");
                    i += 1;
                    continue;
                }
            }
            b'}' if !in_class => {
                // A `}` that closes no quantifier is a literal too.
                let opened = out
                    .rfind('{')
                    .is_some_and(|o| !out[..o].ends_with('\\') && !out[o..].contains('}'));
                if !opened {
                    out.push_str("\\}");
                    i += 1;
                    continue;
                }
            }
            _ => {}
        }
        let ch_len = pattern[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&pattern[i..i + ch_len]);
        i += ch_len;
    }
    out.into()
}

/// A Python `re.sub` replacement in fancy-regex's syntax: `\1`, `\g<1>` and
/// `\g<name>` become `${1}` / `${name}`, and a literal `$` is doubled.
fn python_replacement(repl: &str) -> String {
    static GROUP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\\g<(\w+)>|\\(\d+)|\$").expect("static regex")
    });
    GROUP
        .replace_all(repl, |c: &regex::Captures| match (c.get(1), c.get(2)) {
            (Some(g), _) | (_, Some(g)) => format!("${{{}}}", g.as_str()),
            _ => "$$".to_string(),
        })
        .into_owned()
}

fn regex_call(method: &str, args: &[Value]) -> Result<Value, Error> {
    let (rest, kwargs): (Rest<Value>, Kwargs) = from_args(args)?;
    let flags = kwargs.get::<Option<i64>>("flags")?.unwrap_or(0);
    let s = |i: usize| rest.get(i).map(|v| v.to_string()).unwrap_or_default();
    match method {
        "match" | "search" | "fullmatch" => {
            let re = compile_re(
                &s(0),
                flags.max(rest.get(2).and_then(Value::as_i64).unwrap_or(0)),
            )?;
            let text = s(1);
            let caps = re.captures(&text).map_err(|e| re_failed(&s(0), e))?;
            let ok = caps.as_ref().is_some_and(|c| {
                let m = c.get(0).map(|m| (m.start(), m.end())).unwrap_or((0, 0));
                match method {
                    "match" => m.0 == 0,
                    "fullmatch" => m.0 == 0 && m.1 == text.len(),
                    _ => true,
                }
            });
            Ok(match (ok, caps) {
                (true, Some(c)) => {
                    let groups: Vec<Value> = c
                        .iter()
                        .map(|g| {
                            g.map(|m| Value::from(m.as_str()))
                                .unwrap_or(Value::from(()))
                        })
                        .collect();
                    Value::from_object(MatchObj(groups))
                }
                _ => Value::from(()),
            })
        }
        "findall" => {
            let re = compile_re(&s(0), flags)?;
            let text = s(1);
            Ok(Value::from(
                re.captures_iter(&text)
                    .map(|c| {
                        let c = c.map_err(|e| re_failed(&s(0), e))?;
                        Ok(if c.len() == 2 {
                            Value::from(c.get(1).map(|m| m.as_str()).unwrap_or(""))
                        } else if c.len() > 2 {
                            Value::from(
                                c.iter()
                                    .skip(1)
                                    .map(|g| Value::from(g.map(|m| m.as_str()).unwrap_or("")))
                                    .collect::<Vec<_>>(),
                            )
                        } else {
                            Value::from(c.get(0).map(|m| m.as_str()).unwrap_or(""))
                        })
                    })
                    .collect::<Result<Vec<_>, Error>>()?,
            ))
        }
        "sub" => {
            let re = compile_re(&s(0), flags)?;
            let repl = python_replacement(&s(1));
            let text = s(2);
            Ok(Value::from(
                re.try_replacen(&text, 0, repl.as_str())
                    .map_err(|e| re_failed(&s(0), e))?
                    .into_owned(),
            ))
        }
        "split" => {
            let re = compile_re(&s(0), flags)?;
            let text = s(1);
            Ok(Value::from(
                re.split(&text)
                    .map(|p| p.map(Value::from).map_err(|e| re_failed(&s(0), e)))
                    .collect::<Result<Vec<_>, Error>>()?,
            ))
        }
        "escape" => Ok(Value::from(regex::escape(&s(0)))),
        "compile" => Ok(Value::from_object(CompiledRe(s(0), flags))),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

#[derive(Debug)]
struct CompiledRe(String, i64);

impl Object for CompiledRe {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let mut full = vec![Value::from(self.0.clone())];
        full.extend_from_slice(args);
        full.push(Value::from(Kwargs::from_iter([(
            "flags",
            Value::from(self.1),
        )])));
        regex_call(method, &full)
    }
}

#[derive(Debug)]
struct MatchObj(Vec<Value>);

impl Object for MatchObj {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "group" => {
                let (i,): (Option<usize>,) = from_args(args)?;
                Ok(self
                    .0
                    .get(i.unwrap_or(0))
                    .cloned()
                    .unwrap_or(Value::from(())))
            }
            "groups" => Ok(Value::from(self.0[1..].to_vec())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

pub fn zip_fn(args: Rest<Value>) -> Result<Value, Error> {
    let lists: Vec<Vec<Value>> = args
        .iter()
        .map(|a| a.try_iter().map(|i| i.collect()))
        .collect::<Result<_, _>>()?;
    let n = lists.iter().map(Vec::len).min().unwrap_or(0);
    Ok(Value::from(
        (0..n)
            // Tuples, as Python's zip gives (they print as `(1, 'a')`).
            .map(|i| {
                Value::from(minijinja::value::Tuple::from(
                    lists.iter().map(|l| l[i].clone()).collect::<Vec<_>>(),
                ))
            })
            .collect::<Vec<_>>(),
    ))
}

pub fn set_fn(v: Value) -> Result<Value, Error> {
    let mut out: Vec<Value> = Vec::new();
    for x in v.try_iter()? {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(Value::from(out))
}

pub fn local_md5_fn(s: String) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(s.as_bytes());
    format!("{:x}", h.finalize())
}

pub fn tojson_fn(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let sort = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let _ = kwargs.assert_all_used();
    check_nesting(&v)?;
    let mut j = serde_json::to_value(&v).map_err(|e| err(format!("tojson: {e}")))?;
    if sort {
        j = sort_json(j);
    }
    Ok(serde_json::to_string(&j).unwrap_or_default())
}

fn sort_json(j: serde_json::Value) -> serde_json::Value {
    match j {
        serde_json::Value::Object(m) => {
            let mut items: Vec<_> = m.into_iter().collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(items.into_iter().map(|(k, v)| (k, sort_json(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sort_json).collect())
        }
        o => o,
    }
}

pub fn fromjson_fn(s: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_json::from_str::<serde_json::Value>(&s) {
        Ok(j) => Ok(crate::jinja::to_value(j)),
        Err(e) => default.ok_or_else(|| err(format!("fromjson: {e}"))),
    }
}

pub fn toyaml_fn(v: Value) -> Result<String, Error> {
    check_nesting(&v)?;
    serde_yaml::to_string(&v).map_err(|e| err(format!("toyaml: {e}")))
}

pub fn fromyaml_fn(s: String, default: Option<Value>) -> Result<Value, Error> {
    if let Err(e) = crate::yaml_depth::check(&s) {
        return default.ok_or_else(|| err(format!("fromyaml: {e}")));
    }
    match serde_yaml::from_str::<serde_yaml::Value>(&s) {
        Ok(y) => Ok(crate::jinja::to_value(crate::confmap::yaml_to_json(&y))),
        Err(e) => default.ok_or_else(|| err(format!("fromyaml: {e}"))),
    }
}

/// Filters dbt adds: `as_bool`, `as_number`, `as_text`, `as_native`.
pub fn as_bool(v: Value) -> Value {
    match v.kind() {
        ValueKind::String => match v.as_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("true") => Value::from(true),
            Some("false") => Value::from(false),
            _ => v,
        },
        _ => v,
    }
}

pub fn as_number(v: Value) -> Value {
    if let Some(s) = v.as_str() {
        if let Ok(i) = s.trim().parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(f) = s.trim().parse::<f64>() {
            return Value::from(f);
        }
    }
    v
}

pub fn as_text(v: Value) -> String {
    v.to_string()
}

pub fn as_native(v: Value) -> Value {
    if let Some(s) = v.as_str().filter(|s| crate::yaml_depth::check(s).is_ok()) {
        if let Ok(y) = serde_yaml::from_str::<serde_yaml::Value>(s) {
            if !matches!(y, serde_yaml::Value::String(_)) {
                return crate::jinja::to_value(crate::confmap::yaml_to_json(&y));
            }
        }
    }
    v
}

#[cfg(test)]
mod python_regex_tests {
    use super::*;

    #[test]
    fn python_patterns_keep_their_meaning() {
        let re = compile_re(r#"({{\s*ref\s*\(\s*['\"]?)([^)'\"]+)"#, 64 | 2).unwrap();
        let c = re.captures("from {{ ref('orders') }}").unwrap().unwrap();
        assert_eq!(&c[2], "orders");
        let matches = |p: &str, text: &str| compile_re(p, 0).unwrap().is_match(text).unwrap();
        assert!(matches(r"^a{2,3}$", "aaa"));
        assert!(compile_re(r"^a{,2}x{2}$", 0).is_ok());
        assert!(matches(r"^\{x}$", "{x}"));
        assert!(matches(r"[{}]+", "{}"));
        let verbose =
            compile_re("(?ix)\n  # a comment\n  (from|join)\\s+ # trailing\n", 0).unwrap();
        assert!(verbose.is_match("FROM  x").unwrap());
        assert_eq!(
            python_replacement(r"\g<1> x \2 $ \g<name>"),
            "${1} x ${2} $$ ${name}"
        );
        // Look-around, as codegen's patterns use it.
        assert!(matches(r"(\w+)(?=\s|$)", "abc def"));
        assert!(!matches(r"^(?!abc)", "abc"));
    }
}
