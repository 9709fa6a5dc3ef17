//! What templates need from the rest of Strata, as traits this module defines
//! and others implement: resolving `ref`/`source`, reaching the warehouse
//! (`run_query`, `statement`, introspective `adapter` methods) and printing
//! (`log`, `print`, `exceptions.warn`). A render gets them when its context is
//! made, never through globals or setters, so two invocations never share them.

use std::sync::Arc;

use super::context::{RefCall, ResolvedRef};
use super::relation::RelationName;
use crate::error::DiagKind;
use crate::table::Table;

/// Answers `ref`/`source` during compilation, from the parsed manifest.
pub trait Resolver: Send + Sync {
    fn resolve_ref(&self, from_package: &str, r: &RefCall) -> Result<ResolvedRef, String>;
    fn resolve_source(&self, source: &str, table: &str) -> Result<(String, RelationName), String>;
}

/// A failure reported by the warehouse, kept whole as the source of the template error.
pub type WarehouseError = Box<dyn std::error::Error + Send + Sync>;

/// A column of an existing relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarehouseColumn {
    pub name: String,
    pub data_type: String,
}

/// The kinds of relation `adapter.drop_relation` may be asked to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    Table,
    View,
    MaterializedView,
}

/// The warehouse as templates see it. The implementation writes the SQL for
/// its warehouse; templates only name what they want done.
pub trait Warehouse: Send + Sync {
    /// Runs a query and returns its rows as text.
    fn query(&self, sql: &str) -> Result<Table, WarehouseError>;
    /// Runs a statement outside any transaction of Strata's.
    fn execute(&self, sql: &str) -> Result<(), WarehouseError>;
    /// `table`, `view` or `materialized_view` when the relation exists.
    fn relation_type(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Option<String>, WarehouseError>;
    fn columns(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Vec<WarehouseColumn>, WarehouseError>;
    /// Drops a relation given by its rendered name, if it exists.
    fn drop_relation(&self, relation: &str, kind: DropKind) -> Result<(), WarehouseError>;
    fn truncate_relation(&self, relation: &str) -> Result<(), WarehouseError>;
    fn create_schema(&self, schema: &str) -> Result<(), WarehouseError>;
    fn drop_schema(&self, schema: &str) -> Result<(), WarehouseError>;
}

/// Where `log(info=True)`, `print()`, `exceptions.warn()` and `print_table` go.
pub trait LogSink: Send + Sync {
    fn info(&self, msg: &str);
    fn warn(&self, msg: &str);
    /// Plain output (`print()`, `print_table`), not a log event.
    fn print(&self, msg: &str);
}

/// A sink that drops everything (parsing in tests, tools that want no output).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl LogSink for Silent {
    fn info(&self, _msg: &str) {}
    fn warn(&self, _msg: &str) {}
    fn print(&self, _msg: &str) {}
}

/// What compile-phase renders resolve against: the manifest always, the
/// warehouse when the command has connected to one.
pub struct Services {
    pub resolver: Arc<dyn Resolver>,
    pub warehouse: Option<Arc<dyn Warehouse>>,
    /// dbt's `graph` (the manifest's nodes, sources, exposures … as dicts),
    /// built only when some template mentions it.
    pub graph: Option<minijinja::Value>,
    /// `selected_resources`: the unique ids this invocation selected (a list).
    pub selected: minijinja::Value,
}

/// A project's folder configs (`models:` … in dbt_project.yml), which the
/// parse phase needs for `config.get` and `model.config` as dbt sees them.
pub trait FolderConfigs: Send + Sync {
    fn config_for(
        &self,
        package: &str,
        resource_type: &str,
        fqn: &[String],
    ) -> crate::confmap::ConfigMap;
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("warehouse", &self.warehouse.is_some())
            .finish()
    }
}

/// The kind of user problem a template error is, attached as its source so the
/// diagnostic gets the right `error[kind]` without parsing message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorTag(pub DiagKind);

impl std::fmt::Display for ErrorTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.code())
    }
}

impl std::error::Error for ErrorTag {}

/// A template error of a given kind.
pub fn tagged(kind: DiagKind, msg: impl std::fmt::Display) -> minijinja::Error {
    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg.to_string())
        .with_source(ErrorTag(kind))
}

/// The kind tagged on `err` or on any error it wraps.
pub fn tag_of(err: &minijinja::Error) -> Option<DiagKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<ErrorTag>() {
            return Some(t.0);
        }
        cur = e.source();
    }
    None
}
