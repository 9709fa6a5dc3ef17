//! Warehouse adapters. Materializations produce statement batches; an adapter
//! decides how to execute a batch atomically (a session transaction over the
//! Postgres protocol, or one batch call for the Redshift Data API). Warehouse
//! differences are capability methods, never matches on the warehouse type.

#[cfg(feature = "aws")]
mod aws;
mod catalog;
#[cfg(feature = "aws")]
pub mod data_api;
pub mod dialect;
pub mod postgres;
pub mod recording;
pub mod redshift;

use std::fmt;

pub use dialect::{Dialect, PostgresDialect, RedshiftDialect, RelationId, RelationKind};

pub use crate::table::Table;

/// Statements to run in order, optionally as one atomic unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub statements: Vec<String>,
    pub atomic: bool,
}

impl Batch {
    pub fn atomic(statements: Vec<String>) -> Batch {
        Batch {
            statements,
            atomic: true,
        }
    }
}

/// What the warehouse reported for a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// Rows affected by each statement, when the warehouse reports it.
    pub rows_affected: Vec<Option<u64>>,
}

/// A column name and its warehouse data type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: String,
}

/// A failure reported by the warehouse or the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError {
    pub message: String,
    /// Index of the failing statement within its batch.
    pub statement: Option<usize>,
    pub kind: FailureKind,
    /// The server's SQLSTATE, when it gave one.
    pub sqlstate: Option<String>,
}

/// What went wrong, as far as the engine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The warehouse rejected a statement (syntax, types, permissions, ...),
    /// or the client could not be set up.
    Statement,
    /// The connection could not be made or was lost: the warehouse may be gone.
    Connection,
    /// Stopped by a cancel (Ctrl-C, SIGTERM, fail-fast).
    Cancelled,
}

impl AdapterError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> AdapterError {
        AdapterError {
            message: message.into(),
            statement: None,
            kind,
            sqlstate: None,
        }
    }
}

impl AdapterError {
    /// A `create ... if not exists` that lost a race with another session
    /// creating the same object: PostgreSQL checks for the object before
    /// taking the catalog's unique index, so two sessions can both decide to
    /// create it, and the second fails (duplicate table, schema or object, or
    /// a unique violation in the catalog). Running the statement again is
    /// then a no-op.
    pub fn is_concurrent_create(&self) -> bool {
        matches!(
            self.sqlstate.as_deref(),
            Some("42P07" | "42P06" | "42710" | "23505")
        )
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AdapterError {}

/// A relation found in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationInfo {
    pub schema: String,
    pub identifier: String,
    pub kind: RelationKind,
    /// Privileges on it are granted to others than its owner.
    pub granted: bool,
}

/// A privilege held on a relation by a grantee other than its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Lower case, as configs write it (`select`).
    pub privilege: String,
    /// Unquoted.
    pub grantee: String,
}

/// An object uploaded to a staging location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedObject {
    /// How the warehouse names it (`s3://bucket/key`).
    pub url: String,
}

/// The runtime a transport drives its connections on: two workers, so a
/// blocking caller on each of the scheduler's threads is served.
pub(crate) fn io_runtime() -> Result<tokio::runtime::Runtime, AdapterError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            AdapterError::new(
                FailureKind::Statement,
                format!("cannot start the I/O runtime: {e}"),
            )
        })
}

/// A lock held by [`Adapter::hold_lock`]; dropping it releases the lock.
pub trait HeldLock {}

/// An object store the warehouse can load from (S3 for Redshift).
pub trait ObjectStage: Send + Sync {
    /// Uploads `data` under a name derived from `name` (`stem.ext`).
    fn put(&self, name: &str, data: &[u8]) -> Result<StagedObject, AdapterError>;
    /// Removes an object once loaded; failures are not errors.
    fn remove(&self, object: &StagedObject);
    /// The role the warehouse reads the location with.
    fn iam_role(&self) -> &str;
}

/// A connection to one warehouse: one transport (how statements travel) plus
/// the dialect it speaks. Methods block the calling thread; the scheduler calls
/// them from its worker threads.
pub trait Adapter: Send + Sync {
    /// The SQL this warehouse speaks.
    fn dialect(&self) -> &dyn Dialect;
    /// A one-line description of the server, for `strata debug`.
    fn server_version(&self) -> Result<String, AdapterError>;
    /// Runs a batch; an atomic batch either fully applies or leaves no trace.
    fn execute(&self, batch: &Batch) -> Result<BatchResult, AdapterError>;
    /// Runs one query and returns its rows as text.
    fn query(&self, sql: &str) -> Result<Table, AdapterError>;
    /// Runs `before`, streams `data` (CSV) through `copy_sql`, runs `after`,
    /// all in one transaction; returns the rows loaded. Only for dialects that
    /// can copy from the client.
    fn load(
        &self,
        before: &[String],
        copy_sql: &str,
        data: &[u8],
        after: &[String],
    ) -> Result<u64, AdapterError>;
    /// Like [`Adapter::load`], streaming `data` in chunks (memory stays flat
    /// however large it is); `after` is made once the data is sent, so it can
    /// use what reading it found (row counts). A read error aborts the load
    /// and is returned as the failure of the COPY statement.
    fn load_stream(
        &self,
        before: &[String],
        copy_sql: &str,
        data: &mut dyn std::io::Read,
        after: &dyn Fn() -> Vec<String>,
    ) -> Result<u64, AdapterError> {
        let mut buf = Vec::new();
        data.read_to_end(&mut buf)
            .map_err(|e| AdapterError::new(FailureKind::Statement, e.to_string()))?;
        self.load(before, copy_sql, &buf, &after())
    }
    /// The output columns of each query, with their warehouse types, without
    /// running them, in one round trip where the transport allows.
    fn describe_many(&self, queries: &[&str]) -> Result<Vec<Vec<Column>>, AdapterError>;
    /// The output columns of one query.
    fn describe(&self, sql: &str) -> Result<Vec<Column>, AdapterError> {
        Ok(self.describe_many(&[sql])?.pop().unwrap_or_default())
    }
    /// Tables, views and materialized views in these schemas.
    fn list_relations(&self, schemas: &[String]) -> Result<Vec<RelationInfo>, AdapterError> {
        if schemas.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.query(&self.dialect().list_relations_sql(schemas))?;
        Ok(catalog::relations(t))
    }
    /// What exists under a name, if anything.
    fn relation_type(
        &self,
        schema: &str,
        identifier: &str,
    ) -> Result<Option<RelationKind>, AdapterError> {
        let t = self.query(&self.dialect().relation_type_sql(schema, identifier))?;
        Ok(catalog::strongest_kind(
            t.rows.iter().filter_map(|r| r.first().cloned().flatten()),
        ))
    }
    /// Columns of an existing relation, in order.
    fn columns_of(&self, schema: &str, identifier: &str) -> Result<Vec<Column>, AdapterError> {
        let t = self.query(&self.dialect().columns_sql(schema, identifier))?;
        Ok(t.rows
            .into_iter()
            .filter_map(|r| {
                let mut r = r.into_iter();
                Some(Column {
                    name: r.next().flatten()?,
                    data_type: r.next().flatten().unwrap_or_default(),
                })
            })
            .collect())
    }
    /// Each type name as the warehouse canonically writes it, without
    /// modifiers (`int` → `integer`); `None` for a name that is not a type.
    fn canonical_types(&self, types: &[&str]) -> Result<Vec<Option<String>>, AdapterError> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        match self.dialect().canonical_types(types) {
            dialect::CanonicalTypes::Known(v) => Ok(v),
            dialect::CanonicalTypes::Query(sql) => Ok(self
                .query(&sql)?
                .rows
                .into_iter()
                .map(|r| r.into_iter().next().flatten())
                .collect()),
        }
    }
    /// Privileges on a relation held by others than the current user.
    fn grants_on(&self, schema: &str, identifier: &str) -> Result<Vec<Grant>, AdapterError> {
        let t = self.query(&self.dialect().grants_sql(schema, identifier))?;
        Ok(t.rows
            .into_iter()
            .filter_map(|r| {
                let mut r = r.into_iter();
                Some(Grant {
                    privilege: r.next().flatten()?,
                    grantee: r.next().flatten()?,
                })
            })
            .collect())
    }
    /// Runs `lock` in a transaction of its own connection (outside the
    /// pool) and keeps it open until the guard is dropped: a lock that
    /// serializes whole runs while their work travels on other connections.
    /// `None` where the transport cannot hold one; callers then lock inside
    /// each transaction.
    fn hold_lock(&self, lock: &str) -> Result<Option<Box<dyn HeldLock + '_>>, AdapterError> {
        let _ = lock;
        Ok(None)
    }
    /// Where seeds can be staged for a server-side load, if anywhere.
    fn seed_stage(&self) -> Option<&dyn ObjectStage> {
        None
    }
    /// The longest statement the transport sends, in bytes.
    fn max_statement_bytes(&self) -> usize {
        // Redshift's limit over the wire protocol; Postgres allows 1 GB.
        // https://docs.aws.amazon.com/redshift/latest/dg/r_SELECT_synopsis.html
        16 << 20
    }
    /// The statements this thread sent (or, in a dry run, would have sent)
    /// since the last call, for `target/run/`; empty where nothing records.
    fn take_recorded(&self) -> Vec<String> {
        Vec::new()
    }
    /// Cancels every statement in flight, server side, and refuses to start
    /// or commit anything more until [`Adapter::resume`].
    fn cancel_all(&self);
    /// Accepts statements again after [`Adapter::cancel_all`].
    fn resume(&self);
}

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{DiagKind, Diagnostic};
use crate::localpg::LocalCluster;
use crate::project::profiles::{Connection, PostgresConnection, Target};

/// The local cluster of a `local: true` Postgres target, started and with the
/// target database created.
pub fn ensure_local(
    project_dir: &Path,
    c: &PostgresConnection,
    dbname: &str,
) -> crate::error::Result<LocalCluster> {
    let user = c.user.clone().unwrap_or_else(|| "strata".into());
    let mut cluster = LocalCluster::for_project(project_dir, &user)?;
    cluster.ensure_running()?;
    let admin = postgres::PostgresAdapter::new(postgres::PgSettings {
        host: "127.0.0.1".into(),
        port: cluster.port,
        user: user.clone(),
        password: Some(cluster.password()?),
        dbname: "postgres".into(),
        connect_timeout: Duration::from_secs(10),
        keepalives_idle: None,
        retries: 3,
        search_path: None,
        role: None,
        threads: 1,
        tls: postgres::TlsMode::Disable,
        root_cert: None,
    })
    .map_err(|e| Diagnostic::new(DiagKind::Io, e.message))?;
    let exists = admin
        .query(&format!(
            "select 1 from pg_database where datname = {}",
            crate::sql::quote_literal(dbname)
        ))
        .map_err(|e| Diagnostic::new(DiagKind::Io, e.message))?;
    if exists.rows.is_empty() {
        admin
            .execute(&Batch {
                statements: vec![format!(
                    "create database {}",
                    crate::sql::quote_ident(dbname)
                )],
                atomic: false,
            })
            .map_err(|e| {
                Diagnostic::new(
                    DiagKind::Io,
                    format!("cannot create database '{dbname}': {}", e.message),
                )
            })?;
    }
    Ok(cluster)
}

/// An AWS SDK error's code and message, for errors outside the adapters.
#[cfg(feature = "aws")]
pub fn aws_message<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    aws::sdk_message(e)
}

/// An AWS SDK error's code (`NoSuchKey`, `InvalidRange`, ...).
#[cfg(feature = "aws")]
pub fn aws_code<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    e.code()
}

/// The dialect a target speaks, without connecting to it.
pub fn dialect_for(target: &Target) -> Arc<dyn Dialect> {
    match &target.connection {
        Connection::Postgres(_) => Arc::new(PostgresDialect),
        Connection::Redshift(c) if c.enable_case_sensitive_identifier.unwrap_or(false) => {
            Arc::new(RedshiftDialect::case_sensitive())
        }
        Connection::Redshift(_) => Arc::new(RedshiftDialect::default()),
    }
}

/// Opens the adapter for a target, starting the project's local cluster first
/// when the target says `local: true`.
pub fn connect(
    project_dir: &Path,
    target: &Target,
    threads: Option<usize>,
) -> crate::error::Result<Arc<dyn Adapter>> {
    match &target.connection {
        Connection::Postgres(c) => {
            let tls = postgres::TlsMode::parse(c.sslmode.as_deref()).map_err(|e| {
                Diagnostic::new(DiagKind::Config, format!("target '{}': {e}", target.name))
            })?;
            let (host, port, password) = if c.local.unwrap_or(false) {
                let cluster = ensure_local(project_dir, c, &target.database)?;
                (
                    "127.0.0.1".to_string(),
                    cluster.port,
                    Some(cluster.password()?),
                )
            } else {
                (
                    c.host.clone().unwrap_or_else(|| "localhost".into()),
                    c.port.unwrap_or(5432),
                    c.password.clone(),
                )
            };
            let settings = postgres::PgSettings {
                host,
                port,
                user: c.user.clone().unwrap_or_else(|| "strata".into()),
                password,
                dbname: target.database.clone(),
                connect_timeout: Duration::from_secs(c.connect_timeout.unwrap_or(10)),
                keepalives_idle: c
                    .keepalives_idle
                    .filter(|k| *k > 0)
                    .map(Duration::from_secs),
                retries: c.retries.unwrap_or(1),
                search_path: c.search_path.clone(),
                role: c.role.clone(),
                threads: threads.unwrap_or(target.threads).max(1),
                tls,
                root_cert: c.sslrootcert.clone().map(|p| project_dir.join(p)),
            };
            let a = postgres::PostgresAdapter::new(settings).map_err(|e| {
                Diagnostic::new(DiagKind::Io, e.message).hint(
                    "check host, port, user and password in profiles.yml, or set `local: true` to let Strata run a local Postgres",
                )
            })?;
            Ok(Arc::new(a))
        }
        Connection::Redshift(c) => redshift::connect(project_dir, target, c, threads),
    }
}
