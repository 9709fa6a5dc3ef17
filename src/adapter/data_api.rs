//! Redshift over the Redshift Data API (HTTPS, signed with the AWS
//! credential chain): no network path to the cluster is needed.
//!
//! Each statement is submitted, then polled with backoff until it ends
//! (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html). An atomic
//! batch of up to 40 statements is one `BatchExecuteStatement`, which runs as
//! one transaction; a longer one runs in a Data API session
//! (`SessionKeepAliveSeconds`, then `SessionId`) between BEGIN and COMMIT.
//! Submissions carry a `ClientToken`, so the SDK's retries after a lost
//! response never run a statement twice; `ActiveStatementsExceeded` is waited
//! out, not failed. Ctrl-C cancels what is in flight (`CancelStatement`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_redshiftdata::error::ProvideErrorMetadata;
use aws_sdk_redshiftdata::types::{Field, StatusString};
use aws_sdk_redshiftdata::Client;

use super::{
    Adapter, AdapterError, Batch, BatchResult, Column, Dialect, FailureKind, ObjectStage,
    RedshiftDialect, Table,
};
use crate::error::{DiagKind, Diagnostic, Result};
use crate::project::profiles::{RedshiftConnection, Target};

/// Statements per `BatchExecuteStatement` (the API's limit).
const MAX_BATCH: usize = 40;
/// The Data API refuses statements over 100 KB.
const MAX_STATEMENT_BYTES: usize = 100_000;
/// How long a session outlives its last statement.
const SESSION_KEEP_ALIVE_SECONDS: i32 = 60;
/// Attempts at a submission the service refuses for load.
const BUSY_ATTEMPTS: u32 = 8;

/// Where statements run: a provisioned cluster or a Serverless workgroup.
#[derive(Debug, Clone)]
enum Endpoint {
    Cluster(String),
    Workgroup(String),
}

/// How the Data API authenticates to the database.
#[derive(Debug, Clone)]
enum DbAuth {
    /// Temporary credentials for this database user (clusters only).
    User(String),
    /// A Secrets Manager secret.
    Secret(String),
    /// The caller's IAM identity (Serverless).
    Iam,
}

pub struct DataApiAdapter {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client,
    endpoint: Endpoint,
    database: String,
    auth: DbAuth,
    dialect: RedshiftDialect,
    stage: Option<super::aws::S3Stage>,
    cancelled: AtomicBool,
    in_flight: Mutex<HashSet<String>>,
    poll_max: Duration,
}

/// A statement that ended.
struct Finished {
    id: String,
    has_result_set: bool,
    rows: Option<u64>,
    sub_rows: Vec<Option<u64>>,
}

impl DataApiAdapter {
    pub fn new(target: &Target, c: &RedshiftConnection, _threads: usize) -> Result<DataApiAdapter> {
        let fail =
            |m: &str| Diagnostic::new(DiagKind::Config, format!("target '{}': {m}", target.name));
        let endpoint = match (&c.cluster_id, &c.workgroup_name) {
            (Some(cl), None) => Endpoint::Cluster(cl.clone()),
            (None, Some(w)) => Endpoint::Workgroup(w.clone()),
            (Some(_), Some(_)) => {
                return Err(fail("method 'data_api' takes 'cluster_id' or 'workgroup_name', not both").into())
            }
            (None, None) => {
                return Err(fail("method 'data_api' needs 'cluster_id' (provisioned) or 'workgroup_name' (Serverless)").into())
            }
        };
        if c.enable_case_sensitive_identifier.unwrap_or(false) {
            // Each Data API statement runs in a session of its own, where a
            // SET would not last.
            return Err(fail("enable_case_sensitive_identifier needs the wire protocol (method 'database' or 'iam'); over the Data API set it for the user (ALTER USER ... SET)").into());
        }
        let auth = match (&c.secret_arn, c.db_user.as_ref().or(c.user.as_ref())) {
            (Some(s), _) => DbAuth::Secret(s.clone()),
            (None, Some(u)) if matches!(endpoint, Endpoint::Cluster(_)) => DbAuth::User(u.clone()),
            (None, _) if matches!(endpoint, Endpoint::Workgroup(_)) => DbAuth::Iam,
            _ => {
                return Err(
                    fail("method 'data_api' on a cluster needs 'db_user' or 'secret_arn'").into(),
                )
            }
        };
        let rt = Arc::new(super::io_runtime().map_err(|e| fail(&e.message))?);
        let config = super::aws::sdk_config(&rt, c);
        let stage =
            super::aws::S3Stage::from_profile(rt.clone(), &config, c).map_err(|e| fail(&e))?;
        let adapter = DataApiAdapter {
            client: Client::new(&config),
            rt,
            endpoint,
            database: target.database.clone(),
            auth,
            dialect: RedshiftDialect::default(),
            stage,
            cancelled: AtomicBool::new(false),
            in_flight: Mutex::new(HashSet::new()),
            poll_max: Duration::from_millis(500),
        };
        Ok(adapter)
    }

    fn refuse_if_cancelled(&self) -> std::result::Result<(), AdapterError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(AdapterError::new(
                FailureKind::Cancelled,
                "cancelled: the run was interrupted, nothing was committed",
            ));
        }
        Ok(())
    }

    /// Runs `submit` until the service accepts it: `ActiveStatementsExceeded`
    /// (and sessions) mean "later", with backoff; any other error is final.
    fn submit<T, E>(
        &self,
        mut submit: impl FnMut(
            &str,
        )
            -> std::result::Result<T, Box<aws_sdk_redshiftdata::error::SdkError<E>>>,
    ) -> std::result::Result<T, AdapterError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        // One token for every attempt: a retried submission is the same one.
        let token = uuid::Uuid::new_v4().to_string();
        let mut wait = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            self.refuse_if_cancelled()?;
            match submit(&token) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let busy = matches!(
                        e.code(),
                        Some(
                            "ActiveStatementsExceededException"
                                | "ActiveSessionsExceededException"
                                | "ThrottlingException"
                        )
                    );
                    attempt += 1;
                    if !busy || attempt >= BUSY_ATTEMPTS {
                        return Err(api_error(&e));
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn execute_one(
        &self,
        sql: &str,
        session: Session<'_>,
    ) -> std::result::Result<(Finished, Option<String>), AdapterError> {
        let out = self.submit(|token| {
            let mut req = self.client.execute_statement().sql(sql).client_token(token);
            req = match session {
                Session::None => self.addressed(req),
                Session::Start => self
                    .addressed(req)
                    .session_keep_alive_seconds(SESSION_KEEP_ALIVE_SECONDS),
                Session::In(id) => req.session_id(id),
            };
            self.rt.block_on(req.send()).map_err(Box::new)
        })?;
        let session_id = out.session_id().map(str::to_string);
        let id = out.id().unwrap_or_default().to_string();
        Ok((self.wait(&id)?, session_id))
    }

    /// The cluster or workgroup, database and authentication of a new statement.
    fn addressed(
        &self,
        req: aws_sdk_redshiftdata::operation::execute_statement::builders::ExecuteStatementFluentBuilder,
    ) -> aws_sdk_redshiftdata::operation::execute_statement::builders::ExecuteStatementFluentBuilder
    {
        let req = match &self.endpoint {
            Endpoint::Cluster(c) => req.cluster_identifier(c),
            Endpoint::Workgroup(w) => req.workgroup_name(w),
        };
        let req = req.database(&self.database);
        match &self.auth {
            DbAuth::User(u) => req.db_user(u),
            DbAuth::Secret(s) => req.secret_arn(s),
            DbAuth::Iam => req,
        }
    }

    /// Polls until the statement ends, backing off from 20 ms to `poll_max`.
    fn wait(&self, id: &str) -> std::result::Result<Finished, AdapterError> {
        self.track(id, true);
        let result = self.poll(id);
        self.track(id, false);
        result
    }

    fn track(&self, id: &str, on: bool) {
        let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if on {
            set.insert(id.to_string());
        } else {
            set.remove(id);
        }
    }

    fn poll(&self, id: &str) -> std::result::Result<Finished, AdapterError> {
        let mut wait = Duration::from_millis(20);
        loop {
            let d = self
                .rt
                .block_on(self.client.describe_statement().id(id).send())
                .map_err(|e| api_error(&e))?;
            match d.status() {
                Some(StatusString::Finished) => {
                    return Ok(Finished {
                        id: id.to_string(),
                        has_result_set: d.has_result_set().unwrap_or(false),
                        rows: u64::try_from(d.result_rows()).ok(),
                        // A batch's rows affected, statement by statement.
                        sub_rows: d
                            .sub_statements()
                            .iter()
                            .map(|s| u64::try_from(s.result_rows()).ok())
                            .collect(),
                    });
                }
                Some(StatusString::Failed) => {
                    // Which statement of a batch failed: the first sub-statement that did.
                    let failed_at = d
                        .sub_statements()
                        .iter()
                        .position(|s| s.status().map(|st| st.as_str()) == Some("FAILED"));
                    let mut e = AdapterError::new(
                        FailureKind::Statement,
                        d.error().unwrap_or("the statement failed").to_string(),
                    );
                    e.statement = failed_at.or(Some(0));
                    return Err(e);
                }
                Some(StatusString::Aborted) => {
                    return Err(AdapterError::new(
                        FailureKind::Cancelled,
                        "cancelled: the statement was aborted",
                    ))
                }
                _ => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(self.poll_max);
                }
            }
        }
    }

    /// Every page of a finished statement's result.
    fn fetch(&self, id: &str) -> std::result::Result<Fetched, AdapterError> {
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .rt
                .block_on(
                    self.client
                        .get_statement_result()
                        .id(id)
                        .set_next_token(token.take())
                        .send(),
                )
                .map_err(|e| api_error(&e))?;
            if columns.is_empty() {
                columns = out
                    .column_metadata()
                    .iter()
                    .map(|c| ColumnMeta {
                        name: c.name().unwrap_or_default().to_string(),
                        type_name: c.type_name().unwrap_or_default().to_string(),
                        length: c.length(),
                        precision: c.precision(),
                        scale: c.scale(),
                    })
                    .collect();
            }
            for record in out.records() {
                rows.push(record.iter().map(field_text).collect());
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(Fetched { columns, rows }),
            }
        }
    }

    fn batch(&self, statements: &[String]) -> std::result::Result<BatchResult, AdapterError> {
        let out = self.submit(|token| {
            let req = self
                .client
                .batch_execute_statement()
                .set_sqls(Some(statements.to_vec()))
                .client_token(token);
            let req = match &self.endpoint {
                Endpoint::Cluster(c) => req.cluster_identifier(c),
                Endpoint::Workgroup(w) => req.workgroup_name(w),
            }
            .database(&self.database);
            let req = match &self.auth {
                DbAuth::User(u) => req.db_user(u),
                DbAuth::Secret(s) => req.secret_arn(s),
                DbAuth::Iam => req,
            };
            self.rt.block_on(req.send()).map_err(Box::new)
        })?;
        let id = out.id().unwrap_or_default().to_string();
        let done = self.wait(&id)?;
        let mut rows_affected = done.sub_rows;
        rows_affected.resize(statements.len(), None);
        Ok(BatchResult { rows_affected })
    }

    /// A long atomic batch: BEGIN, each statement and COMMIT in one session.
    fn in_session(&self, statements: &[String]) -> std::result::Result<BatchResult, AdapterError> {
        let (_, session) = self.execute_one("begin", Session::Start)?;
        let session = session.ok_or_else(|| {
            AdapterError::new(FailureKind::Statement, "the Data API opened no session")
        })?;
        let mut out = BatchResult::default();
        for (i, sql) in statements.iter().enumerate() {
            match self.execute_one(sql, Session::In(&session)) {
                Ok((f, _)) => out.rows_affected.push(f.rows),
                Err(mut e) => {
                    let _ = self.execute_one("rollback", Session::In(&session));
                    e.statement = Some(i);
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.refuse_if_cancelled() {
            let _ = self.execute_one("rollback", Session::In(&session));
            return Err(e);
        }
        self.execute_one("commit", Session::In(&session))?;
        Ok(out)
    }
}

#[derive(Clone, Copy)]
enum Session<'a> {
    None,
    Start,
    In(&'a str),
}

/// A statement's whole result.
struct Fetched {
    columns: Vec<ColumnMeta>,
    rows: Vec<Vec<Option<String>>>,
}

struct ColumnMeta {
    name: String,
    type_name: String,
    length: i32,
    precision: i32,
    scale: i32,
}

impl ColumnMeta {
    /// The type as the catalog writes it, with its modifiers.
    fn data_type(&self) -> String {
        let base = super::dialect::redshift_type(&self.type_name)
            .unwrap_or_else(|| self.type_name.clone());
        match base.as_str() {
            "character varying" | "character" if self.length > 0 => {
                format!("{base}({})", self.length)
            }
            "numeric" if self.precision > 0 => {
                format!("numeric({},{})", self.precision, self.scale)
            }
            _ => base,
        }
    }
}

/// A value as the Postgres text protocol would show it (`t`/`f` for booleans).
fn field_text(f: &Field) -> Option<String> {
    match f {
        Field::IsNull(true) => None,
        Field::StringValue(s) => Some(s.clone()),
        Field::LongValue(v) => Some(v.to_string()),
        Field::DoubleValue(v) => Some(v.to_string()),
        Field::BooleanValue(b) => Some(if *b { "t" } else { "f" }.to_string()),
        Field::BlobValue(b) => Some(b.as_ref().iter().map(|x| format!("{x:02x}")).collect()),
        _ => None,
    }
}

fn api_error<E, R>(e: &aws_sdk_redshiftdata::error::SdkError<E, R>) -> AdapterError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_redshiftdata::error::SdkError;
    let kind = match e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => FailureKind::Connection,
        _ => FailureKind::Statement,
    };
    AdapterError::new(kind, super::aws::sdk_message(e))
}

impl Adapter for DataApiAdapter {
    fn dialect(&self) -> &dyn Dialect {
        &self.dialect
    }

    fn server_version(&self) -> std::result::Result<String, AdapterError> {
        let t = self.query("select version()")?;
        Ok(t.rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .map(|v| format!("{v} (Data API)"))
            .unwrap_or_default())
    }

    fn execute(&self, batch: &Batch) -> std::result::Result<BatchResult, AdapterError> {
        self.refuse_if_cancelled()?;
        if batch.statements.is_empty() {
            return Ok(BatchResult::default());
        }
        if batch.atomic && batch.statements.len() > 1 {
            return if batch.statements.len() <= MAX_BATCH {
                self.batch(&batch.statements)
            } else {
                self.in_session(&batch.statements)
            };
        }
        let mut out = BatchResult::default();
        for (i, sql) in batch.statements.iter().enumerate() {
            let (f, _) = self.execute_one(sql, Session::None).map_err(|mut e| {
                e.statement = Some(i);
                e
            })?;
            out.rows_affected.push(f.rows);
        }
        Ok(out)
    }

    fn query(&self, sql: &str) -> std::result::Result<Table, AdapterError> {
        self.refuse_if_cancelled()?;
        let (f, _) = self.execute_one(sql, Session::None)?;
        if !f.has_result_set {
            return Ok(Table::default());
        }
        let Fetched { columns, rows } = self.fetch(&f.id)?;
        Ok(Table {
            columns: columns.into_iter().map(|c| c.name).collect(),
            rows,
        })
    }

    fn load(
        &self,
        _before: &[String],
        _copy_sql: &str,
        _data: &[u8],
        _after: &[String],
    ) -> std::result::Result<u64, AdapterError> {
        Err(AdapterError::new(
            FailureKind::Statement,
            "the Data API cannot stream data from the client; seeds load through S3 or INSERTs",
        ))
    }

    fn describe_many(
        &self,
        queries: &[&str],
    ) -> std::result::Result<Vec<Vec<Column>>, AdapterError> {
        // No prepare over the Data API: run each with no rows and read the
        // result's column metadata.
        queries
            .iter()
            .map(|q| {
                let (f, _) = self.execute_one(
                    &format!("select * from (\n{q}\n) as dbt_describe limit 0"),
                    Session::None,
                )?;
                let Fetched { columns, .. } = self.fetch(&f.id)?;
                Ok(columns
                    .iter()
                    .map(|c| Column {
                        name: c.name.clone(),
                        data_type: c.data_type(),
                    })
                    .collect())
            })
            .collect()
    }

    fn seed_stage(&self) -> Option<&dyn ObjectStage> {
        self.stage.as_ref().map(|s| s as &dyn ObjectStage)
    }

    fn max_statement_bytes(&self) -> usize {
        MAX_STATEMENT_BYTES
    }

    fn cancel_all(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let ids: Vec<String> = self
            .in_flight
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            let _ = self
                .rt
                .block_on(self.client.cancel_statement().id(id).send());
        }
    }

    fn resume(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }
}
