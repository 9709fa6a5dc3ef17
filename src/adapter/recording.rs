//! Records every statement a run sends, per worker thread, so the engine can
//! write each node's SQL under `target/run/` (dbt's layout). In a dry run
//! the statements are only recorded: reads still go to the warehouse when
//! there is one (introspection makes the plans right), and with no
//! warehouse at all (`--offline`) the catalog is empty, so every node plans
//! its first run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use super::{
    Adapter, AdapterError, Batch, BatchResult, Column, Dialect, FailureKind, Grant, ObjectStage,
    RelationInfo, RelationKind, Table,
};

/// What the recorder does with the statements it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Record and execute.
    Execute,
    /// Record only; read from the warehouse.
    DryRun,
}

pub struct Recording {
    /// `None` offline.
    inner: Option<Arc<dyn Adapter>>,
    /// The dialect planned for when there is no warehouse to ask.
    offline_dialect: Option<Arc<dyn Dialect>>,
    mode: Mode,
    log: Mutex<HashMap<ThreadId, Vec<String>>>,
}

impl Recording {
    /// Records what `inner` runs (or, in a dry run, would run).
    pub fn around(inner: Arc<dyn Adapter>, mode: Mode) -> Recording {
        Recording {
            inner: Some(inner),
            offline_dialect: None,
            mode,
            log: Mutex::new(HashMap::new()),
        }
    }

    /// A dry run with no connection: nothing exists, nothing runs.
    pub fn offline(dialect: Arc<dyn Dialect>) -> Recording {
        Recording {
            inner: None,
            offline_dialect: Some(dialect),
            mode: Mode::DryRun,
            log: Mutex::new(HashMap::new()),
        }
    }

    fn record<'a>(&self, statements: impl IntoIterator<Item = &'a str>) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.entry(std::thread::current().id())
            .or_default()
            .extend(statements.into_iter().map(str::to_string));
    }

    fn executes(&self) -> Option<&dyn Adapter> {
        match self.mode {
            Mode::Execute => self.inner.as_deref(),
            Mode::DryRun => None,
        }
    }
}

fn offline_error() -> AdapterError {
    AdapterError::new(
        FailureKind::Statement,
        "offline: this needs the warehouse to describe a query (run the dry run without --offline)",
    )
}

impl Adapter for Recording {
    fn dialect(&self) -> &dyn Dialect {
        match (&self.inner, &self.offline_dialect) {
            (Some(a), _) => a.dialect(),
            (None, Some(d)) => d.as_ref(),
            (None, None) => &super::PostgresDialect,
        }
    }

    fn server_version(&self) -> Result<String, AdapterError> {
        match &self.inner {
            Some(a) => a.server_version(),
            None => Ok(format!("{} (offline)", self.dialect().name())),
        }
    }

    fn execute(&self, batch: &Batch) -> Result<BatchResult, AdapterError> {
        self.record(batch.statements.iter().map(String::as_str));
        match self.executes() {
            Some(a) => a.execute(batch),
            None => Ok(BatchResult {
                rows_affected: vec![None; batch.statements.len()],
            }),
        }
    }

    fn query(&self, sql: &str) -> Result<Table, AdapterError> {
        match &self.inner {
            Some(a) => a.query(sql),
            None => Ok(Table::default()),
        }
    }

    fn load(
        &self,
        before: &[String],
        copy_sql: &str,
        data: &[u8],
        after: &[String],
    ) -> Result<u64, AdapterError> {
        let note = format!(
            "{copy_sql}\n-- ({} bytes of CSV streamed from the client)",
            data.len()
        );
        self.record(
            before
                .iter()
                .map(String::as_str)
                .chain([note.as_str()])
                .chain(after.iter().map(String::as_str)),
        );
        match self.executes() {
            Some(a) => a.load(before, copy_sql, data, after),
            None => Ok(0),
        }
    }

    fn load_stream(
        &self,
        before: &[String],
        copy_sql: &str,
        data: &mut dyn std::io::Read,
        after: &dyn Fn() -> Vec<String>,
    ) -> Result<u64, AdapterError> {
        match self.executes() {
            Some(a) => {
                let rows = a.load_stream(before, copy_sql, data, after)?;
                let note = format!("{copy_sql}\n-- (data streamed from the client)");
                let after = after();
                self.record(
                    before
                        .iter()
                        .map(String::as_str)
                        .chain([note.as_str()])
                        .chain(after.iter().map(String::as_str)),
                );
                Ok(rows)
            }
            None => {
                let note = format!("{copy_sql}\n-- (data streamed from the client)");
                self.record(before.iter().map(String::as_str).chain([note.as_str()]));
                Ok(0)
            }
        }
    }

    fn describe_many(&self, queries: &[&str]) -> Result<Vec<Vec<Column>>, AdapterError> {
        match &self.inner {
            Some(a) => a.describe_many(queries),
            None => Err(offline_error()),
        }
    }

    fn list_relations(&self, schemas: &[String]) -> Result<Vec<RelationInfo>, AdapterError> {
        match &self.inner {
            Some(a) => a.list_relations(schemas),
            None => Ok(Vec::new()),
        }
    }

    fn relation_type(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Option<RelationKind>, AdapterError> {
        match &self.inner {
            Some(a) => a.relation_type(schema, identifier),
            None => Ok(None),
        }
    }

    fn columns_of(&self, schema: &str, identifier: &str) -> Result<Vec<Column>, AdapterError> {
        match &self.inner {
            Some(a) => a.columns_of(schema, identifier),
            None => Ok(Vec::new()),
        }
    }

    fn canonical_types(&self, types: &[&str]) -> Result<Vec<Option<String>>, AdapterError> {
        match &self.inner {
            Some(a) => a.canonical_types(types),
            None => match self.dialect().canonical_types(types) {
                super::dialect::CanonicalTypes::Known(v) => Ok(v),
                // Offline, a name is taken as written.
                super::dialect::CanonicalTypes::Query(_) => {
                    Ok(types.iter().map(|t| Some(t.to_lowercase())).collect())
                }
            },
        }
    }

    fn grants_on(&self, schema: &str, identifier: &str) -> Result<Vec<Grant>, AdapterError> {
        match &self.inner {
            Some(a) => a.grants_on(schema, identifier),
            None => Ok(Vec::new()),
        }
    }

    fn hold_lock(&self, lock: &str) -> Result<Option<Box<dyn super::HeldLock + '_>>, AdapterError> {
        match self.executes() {
            Some(a) => {
                self.record([lock]);
                a.hold_lock(lock)
            }
            None => Ok(None),
        }
    }

    fn seed_stage(&self) -> Option<&dyn ObjectStage> {
        // A dry run uploads nothing, so it plans the INSERT path.
        match self.executes() {
            Some(a) => a.seed_stage(),
            None => None,
        }
    }

    fn max_statement_bytes(&self) -> usize {
        match &self.inner {
            Some(a) => a.max_statement_bytes(),
            None => 16 << 20,
        }
    }

    fn cancel_all(&self) {
        if let Some(a) = &self.inner {
            a.cancel_all();
        }
    }

    fn resume(&self) {
        if let Some(a) = &self.inner {
            a.resume();
        }
    }

    fn take_recorded(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&std::thread::current().id())
            .unwrap_or_default()
    }
}
