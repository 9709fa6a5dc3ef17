//! A local Redshift Data API for tests: an HTTP server speaking the API's
//! JSON protocol (`X-Amz-Target: RedshiftData.*`, awsJson 1.1) that runs the
//! statements on the test PostgreSQL, so the real `aws-sdk-redshiftdata`
//! client (request signing, retries, paging) is exercised end to end.
//!
//! Like the service, statements run asynchronously: ExecuteStatement returns
//! an id at once, DescribeStatement reports SUBMITTED, STARTED, then
//! FINISHED, FAILED or ABORTED. BatchExecuteStatement runs its statements as
//! one transaction and rolls back on failure; results are paged
//! (`page_size` rows per GetStatementResult); CancelStatement cancels the
//! backend; sessions keep one connection. Faults can be injected: busy
//! refusals (`ActiveStatementsExceededException`) and a lost response after
//! a statement was accepted (HTTP 500), which the SDK retries with the same
//! ClientToken.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use strata::adapter::postgres::{PgSettings, PostgresAdapter, TlsMode};
use strata::adapter::{Adapter, Batch};

#[derive(Clone)]
struct Statement {
    status: &'static str,
    error: Option<String>,
    has_result_set: bool,
    result_rows: i64,
    /// Rows affected by each statement of a batch.
    sub_rows: Vec<i64>,
    columns: Vec<(String, String)>,
    rows: Vec<Vec<Option<String>>>,
    sub: Vec<(String, &'static str)>,
    adapter: Option<Arc<PostgresAdapter>>,
}

#[derive(Default)]
struct State {
    statements: HashMap<String, Statement>,
    tokens: HashMap<String, String>,
    sessions: HashMap<String, Arc<PostgresAdapter>>,
    next: usize,
}

/// What the server saw, for assertions.
#[derive(Default)]
pub struct Counters {
    pub executed: Mutex<Vec<String>>,
    pub batches: AtomicUsize,
    pub busy_refusals: AtomicUsize,
    pub cancels: AtomicUsize,
    pub result_pages: AtomicUsize,
    pub unsigned: AtomicUsize,
    pub sessions: AtomicUsize,
    /// GetClusterCredentials requests, as forms.
    pub iam_requests: Mutex<Vec<String>>,
}

pub struct DataApi {
    pub url: String,
    server: Arc<Server>,
    pub counters: Arc<Counters>,
    /// ExecuteStatement calls still to refuse as busy.
    pub busy: Arc<AtomicUsize>,
    /// Answer the next accepted statement containing this text with a 500,
    /// as if the response were lost.
    pub lose_response_to: Arc<Mutex<Option<String>>>,
}

struct Server {
    db: String,
    /// Where COPY ... FROM 's3://bucket/key' finds its object (s3s-fs's
    /// layout: one directory per bucket).
    s3_root: Mutex<Option<std::path::PathBuf>>,
    /// What GetClusterCredentials hands out.
    iam: Mutex<Option<(String, String)>>,
    page_size: usize,
    state: Mutex<State>,
    counters: Arc<Counters>,
    busy: Arc<AtomicUsize>,
    lose_response_to: Arc<Mutex<Option<String>>>,
}

/// Starts a server over database `db` of the test cluster.
pub fn start(db: &str, page_size: usize) -> DataApi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counters = Arc::new(Counters::default());
    let busy = Arc::new(AtomicUsize::new(0));
    let lose = Arc::new(Mutex::new(None));
    let server = Arc::new(Server {
        db: db.to_string(),
        s3_root: Mutex::new(None),
        iam: Mutex::new(None),
        page_size,
        state: Mutex::new(State::default()),
        counters: counters.clone(),
        busy: busy.clone(),
        lose_response_to: lose.clone(),
    });
    let server_handle = server.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let server = server.clone();
            std::thread::spawn(move || server.serve(conn));
        }
    });
    DataApi {
        url,
        server: server_handle,
        counters,
        busy,
        lose_response_to: lose,
    }
}

impl DataApi {
    /// Serves COPY from S3 objects stored under `root` (an s3s-fs root).
    pub fn read_s3_from(&self, root: &std::path::Path) {
        *self.server.s3_root.lock().unwrap() = Some(root.to_path_buf());
    }

    /// Answers Redshift's GetClusterCredentials with this user and password.
    pub fn issue_credentials(&self, user: &str, password: &str) {
        *self.server.iam.lock().unwrap() = Some((user.into(), password.into()));
    }
}

/// A failed COPY as Redshift reports it: a pointer to SYS_LOAD_ERROR_DETAIL,
/// where the line, column and reason are recorded (taken here from
/// Postgres's `COPY t, line N, column c` context).
fn redshift_load_error(
    adapter: &PostgresAdapter,
    url: &str,
    head: &str,
    mut e: strata::adapter::AdapterError,
) -> strata::adapter::AdapterError {
    let context = e
        .message
        .split("CONTEXT: ")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let line: i64 = context
        .split(", line ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let column = context
        .split(", column ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or_default()
        .to_string();
    let reason = e
        .message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("ERROR: ")
        .to_string();
    let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let _ = adapter.execute(&Batch {
        statements: vec![format!(
            "insert into public.sys_load_error_detail (start_time, file_name, line_number, column_name, error_code, error_message) \
             values (clock_timestamp(), {}, {line}, {}, 1207, {})",
            q(url),
            q(&column),
            q(&reason)
        )],
        atomic: false,
    });
    let table = head.split_whitespace().nth(1).unwrap_or_default();
    e.message = format!(
        "Load into table '{table}' failed. Check 'sys_load_error_detail' system table for details."
    );
    e
}

/// `copy <relation> (<columns>) from 's3://bucket/key' ...` as (head, bucket, key).
fn s3_copy(sql: &str) -> Option<(String, String, String)> {
    let lower = sql.to_lowercase();
    let from = lower.find(" from 's3://")?;
    if !lower.trim_start().starts_with("copy ") {
        return None;
    }
    let rest = &sql[from + " from 's3://".len()..];
    let end = rest.find('\'')?;
    let (bucket, key) = rest[..end].split_once('/')?;
    Some((sql[..from].to_string(), bucket.to_string(), key.to_string()))
}

/// A `COPY ... FROM 's3://…manifest' ... MANIFEST` as Redshift runs it:
/// every object the manifest lists, read in the COPY's format (decoded by
/// Strata's own readers, which turn each format into CSV), becomes one
/// INSERT of its rows that also leaves the count where the catalog shim's
/// `pg_last_copy_count()` reads it. A missing object or unreadable data
/// fails the statement, as the COPY would.
fn manifest_copy(sql: &str, root: &std::path::Path) -> Option<String> {
    let lower = sql.to_lowercase();
    if !lower.starts_with("copy ") || !lower.contains(" manifest") {
        return None;
    }
    let (head, bucket, key) = s3_copy(sql)?;
    Some(
        match manifest_insert(&lower, &head, &root.join(&bucket).join(&key), root) {
            Ok(stmt) => stmt,
            Err(e) => format!(
                "do $$ begin raise exception '%', '{}'; end $$",
                e.replace('\'', "''")
            ),
        },
    )
}

/// A CSV record as a JSON object of its columns (empty fields NULL), for
/// `json_populate_recordset`.
fn json_row(columns: &[String], rec: &csv::StringRecord) -> serde_json::Value {
    let row: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .zip(rec.iter())
        .map(|(c, v)| {
            let v = if v.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(v.to_string())
            };
            (c.clone(), v)
        })
        .collect();
    serde_json::Value::Object(row)
}

fn manifest_insert(
    lower: &str,
    head: &str,
    manifest: &std::path::Path,
    root: &std::path::Path,
) -> Result<String, String> {
    use strata::load::rows;
    use strata::manifest::external::{Compression, CsvOptions, FileFormat};
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("S3ServiceException: the manifest does not exist ({e})"))?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let head = head.trim_start_matches("copy ").trim();
    let (table, listed) = match head.split_once(" (") {
        Some((t, cols)) => (
            t.trim().to_string(),
            cols.trim_end_matches(')')
                .split(',')
                .map(|c| c.trim().trim_matches('"').to_string())
                .collect::<Vec<_>>(),
        ),
        None => (head.to_string(), Vec::new()),
    };
    let option = |name: &str| {
        lower
            .split(&format!(" {name} '"))
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .map(str::to_string)
    };
    let format = if lower.contains("format as parquet") {
        FileFormat::Parquet
    } else if lower.contains("format as json") {
        FileFormat::JsonLines
    } else {
        FileFormat::Csv(CsvOptions {
            delimiter: option("delimiter")
                .and_then(|d| d.bytes().next())
                .unwrap_or(b','),
            skip_header_rows: lower
                .split(" ignoreheader ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    };
    let compression = if lower.contains(" gzip") {
        Compression::Gzip
    } else if lower.contains(" zstd") {
        Compression::Zstd
    } else {
        Compression::None
    };
    let mut values: Vec<serde_json::Value> = Vec::new();
    let mut columns = listed.clone();
    for entry in m["entries"].as_array().cloned().unwrap_or_default() {
        let url = entry["url"].as_str().unwrap_or_default();
        let (b, k) = url
            .trim_start_matches("s3://")
            .split_once('/')
            .ok_or("bad url")?;
        let path = root.join(b).join(k);
        if !path.exists() {
            return Err(format!(
                "S3ServiceException: the object {url} does not exist"
            ));
        }
        if format == FileFormat::Parquet {
            // By position: the file's own columns.
            use parquet::file::reader::{FileReader, SerializedFileReader};
            let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            let r = SerializedFileReader::new(f).map_err(|e| e.to_string())?;
            columns = r
                .metadata()
                .file_metadata()
                .schema_descr()
                .root_schema()
                .get_fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect();
        }
        if let FileFormat::Csv(o) = &format {
            // Redshift maps CSV fields to the column list by position.
            let raw: Box<dyn std::io::Read + Send> =
                Box::new(std::fs::File::open(&path).map_err(|e| e.to_string())?);
            let data = rows::decompress(k, compression, raw).map_err(|e| e.to_string())?;
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(o.delimiter)
                .from_reader(data);
            for (i, rec) in r.records().enumerate() {
                let rec = rec.map_err(|e| format!("Load into table failed: {e}"))?;
                if i < o.skip_header_rows {
                    continue;
                }
                if rec.len() != columns.len() {
                    return Err(format!(
                        "Load into table failed: {url}, line {}: {} fields for {} columns",
                        i + 1,
                        rec.len(),
                        columns.len()
                    ));
                }
                values.push(json_row(&columns, &rec));
            }
            continue;
        }
        let shape = rows::Shape {
            format: format.clone(),
            compression,
            columns: columns.clone(),
        };
        let open: rows::Opener = Box::new(move |_k: &str| {
            Ok(rows::Opened {
                reader: Box::new(std::fs::File::open(&path)?),
                path: Some(path.clone()),
            })
        });
        let info = rows::FileInfo {
            display: url.to_string(),
            extra: Vec::new(),
        };
        let mut csv_text = String::new();
        std::io::Read::read_to_string(
            &mut rows::RowStream::new(shape, vec![(k.to_string(), info)], open),
            &mut csv_text,
        )
        .map_err(|e| format!("Load into table failed: {e}"))?;
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(csv_text.as_bytes());
        for rec in r.records() {
            let rec = rec.map_err(|e| e.to_string())?;
            values.push(json_row(&columns, &rec));
        }
    }
    // Typed by the table's row type, counted as the COPY's rows.
    let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let json = serde_json::Value::Array(values.clone()).to_string();
    Ok(format!(
        "insert into {table} ({cols}) select {cols} from json_populate_recordset(null::{table}, '{}'), \
         (select set_config('strata_test.last_copy_count', '{}', true)) as counted",
        json.replace('\'', "''"),
        values.len(),
        cols = cols.join(", ")
    ))
}

fn connect(db: &str) -> PostgresAdapter {
    PostgresAdapter::new(PgSettings {
        host: "127.0.0.1".into(),
        port: super::pg::port(),
        user: "strata".into(),
        password: Some(super::pg::password()),
        dbname: db.into(),
        connect_timeout: Duration::from_secs(10),
        keepalives_idle: None,
        retries: 0,
        search_path: None,
        role: None,
        threads: 1,
        tls: TlsMode::Disable,
        root_cert: None,
    })
    .expect("connect to the test database")
}

/// A Postgres type as the Data API's column metadata names it.
fn redshift_type(pg: &str) -> (String, i32, i32, i32) {
    let (base, mods) = match pg.split_once('(') {
        Some((b, m)) => (b.trim(), m.trim_end_matches(')')),
        None => (pg, ""),
    };
    let nums: Vec<i32> = mods
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let n = |i: usize| nums.get(i).copied().unwrap_or(0);
    match base {
        "character varying" | "text" => ("varchar".into(), n(0), 0, 0),
        "character" => ("bpchar".into(), n(0), 0, 0),
        "integer" => ("int4".into(), 0, 10, 0),
        "bigint" => ("int8".into(), 0, 19, 0),
        "smallint" => ("int2".into(), 0, 5, 0),
        "numeric" => ("numeric".into(), 0, n(0), n(1)),
        "double precision" => ("float8".into(), 0, 17, 0),
        "real" => ("float4".into(), 0, 8, 0),
        "boolean" => ("bool".into(), 0, 1, 0),
        "timestamp without time zone" => ("timestamp".into(), 0, 29, 6),
        "timestamp with time zone" => ("timestamptz".into(), 0, 35, 6),
        other => (other.to_string(), 0, 0, 0),
    }
}

fn field(type_name: &str, v: &Option<String>) -> Value {
    match v {
        None => json!({"isNull": true}),
        Some(s) => match type_name {
            "int2" | "int4" | "int8" => s
                .parse::<i64>()
                .map(|i| json!({"longValue": i}))
                .unwrap_or_else(|_| json!({"stringValue": s})),
            "float4" | "float8" => s
                .parse::<f64>()
                .map(|f| json!({"doubleValue": f}))
                .unwrap_or_else(|_| json!({"stringValue": s})),
            "bool" => json!({"booleanValue": s == "t"}),
            _ => json!({"stringValue": s}),
        },
    }
}

impl Server {
    fn serve(self: Arc<Self>, conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut out = conn;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut headers: HashMap<String, String> = HashMap::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            if !headers
                .get("authorization")
                .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential="))
            {
                self.counters.unsigned.fetch_add(1, Ordering::SeqCst);
            }
            let target = headers.get("x-amz-target").cloned().unwrap_or_default();
            let form = String::from_utf8_lossy(&body).to_string();
            let (status, response, content_type) = if form.starts_with("Action=") {
                // Redshift's own API (awsQuery: a form in, XML out).
                let (s, xml) = self.redshift_api(&form);
                (s, Value::String(xml), "text/xml")
            } else {
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let (s, v) = self.handle(&target, &request);
                (s, v, "application/x-amz-json-1.1")
            };
            let text = match &response {
                Value::String(xml) => xml.clone(),
                other => other.to_string(),
            };
            let error_type = response
                .get("__type")
                .and_then(Value::as_str)
                .map(|t| format!("x-amzn-errortype: {t}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\n{error_type}content-length: {}\r\n\r\n",
                if status == 200 { "OK" } else { "Error" },
                text.len()
            );
            if out.write_all(head.as_bytes()).is_err() || out.write_all(text.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn redshift_api(&self, form: &str) -> (u16, String) {
        let field = |k: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_default()
                .to_string()
        };
        if field("Action") != "GetClusterCredentials" || field("ClusterIdentifier").is_empty() {
            return (400, "<ErrorResponse><Error><Code>InvalidParameterValue</Code><Message>unsupported</Message></Error></ErrorResponse>".into());
        }
        let Some((user, password)) = self.iam.lock().unwrap().clone() else {
            return (403, "<ErrorResponse><Error><Code>AccessDenied</Code><Message>no credentials</Message></Error></ErrorResponse>".into());
        };
        self.counters
            .iam_requests
            .lock()
            .unwrap()
            .push(form.to_string());
        (
            200,
            format!(
                "<GetClusterCredentialsResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><GetClusterCredentialsResult><DbUser>{user}</DbUser><DbPassword>{password}</DbPassword><Expiration>2030-01-01T00:00:00Z</Expiration></GetClusterCredentialsResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetClusterCredentialsResponse>"
            ),
        )
    }

    fn error(status: u16, kind: &str, message: &str) -> (u16, Value) {
        (status, json!({"__type": kind, "message": message}))
    }

    fn handle(self: &Arc<Self>, target: &str, r: &Value) -> (u16, Value) {
        if target == "RedshiftServerless.GetCredentials" {
            let Some((user, password)) = self.iam.lock().unwrap().clone() else {
                return Self::error(403, "AccessDeniedException", "no credentials");
            };
            self.counters
                .iam_requests
                .lock()
                .unwrap()
                .push(r.to_string());
            return (
                200,
                json!({"dbUser": user, "dbPassword": password, "expiration": 1893456000}),
            );
        }
        let op = target.strip_prefix("RedshiftData.").unwrap_or(target);
        let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
        match op {
            "ExecuteStatement" | "BatchExecuteStatement" => {
                let session = s("SessionId");
                if session.is_none()
                    && s("ClusterIdentifier").is_none()
                    && s("WorkgroupName").is_none()
                {
                    return Self::error(
                        400,
                        "ValidationException",
                        "ClusterIdentifier or WorkgroupName is required",
                    );
                }
                if session.is_none() && s("Database").is_none() {
                    return Self::error(400, "ValidationException", "Database is required");
                }
                let token = s("ClientToken");
                if let Some(t) = &token {
                    if let Some(id) = self.state.lock().unwrap().tokens.get(t) {
                        return (200, json!({"Id": id, "SessionId": session}));
                    }
                }
                if self
                    .busy
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                    .is_ok()
                {
                    self.counters.busy_refusals.fetch_add(1, Ordering::SeqCst);
                    return Self::error(
                        400,
                        "ActiveStatementsExceededException",
                        "Active statements exceeded the allowed quota.",
                    );
                }
                let sqls: Vec<String> = if op == "BatchExecuteStatement" {
                    self.counters.batches.fetch_add(1, Ordering::SeqCst);
                    r.get("Sqls")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    s("Sql").into_iter().collect()
                };
                if sqls.is_empty() || sqls.len() > 40 {
                    return Self::error(400, "ValidationException", "1 to 40 statements");
                }
                if sqls.iter().any(|q| q.len() > 100_000) {
                    return Self::error(
                        400,
                        "ValidationException",
                        "Cannot process query string larger than 100kB",
                    );
                }
                // A session: a connection of its own, kept between statements.
                let (adapter, session_out) = match &session {
                    Some(id) => match self.state.lock().unwrap().sessions.get(id) {
                        Some(a) => (a.clone(), Some(id.clone())),
                        None => {
                            return Self::error(400, "ValidationException", "session not found")
                        }
                    },
                    None => {
                        let a = Arc::new(connect(&self.db));
                        if r.get("SessionKeepAliveSeconds").is_some() {
                            self.counters.sessions.fetch_add(1, Ordering::SeqCst);
                            let id = uuid::Uuid::new_v4().to_string();
                            self.state
                                .lock()
                                .unwrap()
                                .sessions
                                .insert(id.clone(), a.clone());
                            (a, Some(id))
                        } else {
                            (a, None)
                        }
                    }
                };
                let id = {
                    let mut st = self.state.lock().unwrap();
                    st.next += 1;
                    let id = format!("{:08x}-0000-4000-8000-{:012x}", st.next, st.next);
                    st.statements.insert(
                        id.clone(),
                        Statement {
                            status: "SUBMITTED",
                            error: None,
                            has_result_set: false,
                            result_rows: -1,
                            columns: Vec::new(),
                            rows: Vec::new(),
                            sub: Vec::new(),
                            sub_rows: Vec::new(),
                            adapter: Some(adapter.clone()),
                        },
                    );
                    if let Some(t) = token {
                        st.tokens.insert(t, id.clone());
                    }
                    id
                };
                let lose = {
                    let mut l = self.lose_response_to.lock().unwrap();
                    match l.as_deref() {
                        Some(text) if sqls.iter().any(|q| q.contains(text)) => l.take().is_some(),
                        _ => false,
                    }
                };
                let server = self.clone();
                let batch = op == "BatchExecuteStatement";
                let run_id = id.clone();
                std::thread::spawn(move || {
                    server.run(&run_id, &adapter, sqls, batch);
                    // Done: a connection outside a session closes, as
                    // Redshift's does (cancel has nothing left to reach).
                    server.update(&run_id, |x| x.adapter = None);
                });
                if lose {
                    return Self::error(500, "InternalServerException", "the response was lost");
                }
                (
                    200,
                    json!({"Id": id, "SessionId": session_out, "CreatedAt": 0}),
                )
            }
            "DescribeStatement" => {
                let id = s("Id").unwrap_or_default();
                let st = self.state.lock().unwrap();
                let Some(x) = st.statements.get(&id) else {
                    return Self::error(400, "ResourceNotFoundException", "no such statement");
                };
                let subs: Vec<Value> = x
                    .sub
                    .iter()
                    .enumerate()
                    .map(|(i, (q, status))| json!({"Id": format!("{id}:{}", i + 1), "QueryString": q, "Status": status, "ResultRows": x.sub_rows.get(i).copied().unwrap_or(-1)}))
                    .collect();
                (
                    200,
                    json!({
                        "Id": id,
                        "Status": x.status,
                        "Error": x.error,
                        "HasResultSet": x.has_result_set,
                        "ResultRows": x.result_rows,
                        "SubStatements": subs,
                        "Duration": 1000,
                    }),
                )
            }
            "GetStatementResult" => {
                self.counters.result_pages.fetch_add(1, Ordering::SeqCst);
                let id = s("Id").unwrap_or_default();
                let st = self.state.lock().unwrap();
                let Some(x) = st.statements.get(&id) else {
                    return Self::error(400, "ResourceNotFoundException", "no such statement");
                };
                if x.status != "FINISHED" || !x.has_result_set {
                    return Self::error(
                        400,
                        "ValidationException",
                        "the statement has no result yet",
                    );
                }
                let start: usize = s("NextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
                let end = (start + self.page_size).min(x.rows.len());
                let meta: Vec<Value> = x
                    .columns
                    .iter()
                    .map(|(n, t)| {
                        let (type_name, length, precision, scale) = redshift_type(t);
                        json!({"name": n, "label": n, "typeName": type_name, "length": length, "precision": precision, "scale": scale, "nullable": 1})
                    })
                    .collect();
                let records: Vec<Value> = x.rows[start..end]
                    .iter()
                    .map(|row| {
                        Value::Array(
                            row.iter()
                                .zip(&x.columns)
                                .map(|(v, (_, t))| field(&redshift_type(t).0, v))
                                .collect(),
                        )
                    })
                    .collect();
                let next = (end < x.rows.len()).then(|| end.to_string());
                (
                    200,
                    json!({"Records": records, "ColumnMetadata": meta, "TotalNumRows": x.rows.len(), "NextToken": next}),
                )
            }
            "CancelStatement" => {
                self.counters.cancels.fetch_add(1, Ordering::SeqCst);
                let id = s("Id").unwrap_or_default();
                let adapter = {
                    let st = self.state.lock().unwrap();
                    st.statements.get(&id).and_then(|x| x.adapter.clone())
                };
                if let Some(a) = adapter {
                    a.cancel_all();
                }
                (200, json!({"Status": true}))
            }
            other => Self::error(400, "UnknownOperationException", other),
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Statement)) {
        if let Some(x) = self.state.lock().unwrap().statements.get_mut(id) {
            f(x);
        }
    }

    fn run(&self, id: &str, adapter: &PostgresAdapter, sqls: Vec<String>, batch: bool) {
        // Long enough that a client sees it running and has to poll.
        std::thread::sleep(Duration::from_millis(20));
        self.update(id, |x| x.status = "STARTED");
        std::thread::sleep(Duration::from_millis(20));
        self.counters
            .executed
            .lock()
            .unwrap()
            .extend(sqls.iter().cloned());
        if batch {
            // A COPY from S3 runs as Redshift would: the object's rows go
            // into the table inside the batch's transaction.
            let root = self.s3_root.lock().unwrap().clone();
            let sqls: Vec<String> = match &root {
                Some(root) => sqls
                    .iter()
                    .map(|q| manifest_copy(q, root).unwrap_or_else(|| q.clone()))
                    .collect(),
                None => sqls,
            };
            let copy_at = sqls.iter().position(|q| s3_copy(q).is_some());
            let result = match (copy_at, root) {
                (Some(i), Some(root)) => {
                    let (head, bucket, key) = s3_copy(&sqls[i]).unwrap();
                    let url = format!("s3://{bucket}/{key}");
                    match std::fs::read(root.join(&bucket).join(&key)) {
                        Ok(data) => adapter
                            .load(
                                &sqls[..i],
                                &format!("{head} from stdin with (format csv)"),
                                &data,
                                &sqls[i + 1..],
                            )
                            .map(|_| Default::default())
                            .map_err(|e| redshift_load_error(adapter, &url, &head, e)),
                        Err(e) => Err(strata::adapter::AdapterError {
                            message: format!("S3ServiceException: the object does not exist ({e})"),
                            statement: Some(i),
                            kind: strata::adapter::FailureKind::Statement,
                            sqlstate: None,
                        }),
                    }
                }
                _ => adapter.execute(&Batch::atomic(sqls.clone())),
            };
            self.update(id, |x| match result {
                Ok(r) => {
                    x.status = "FINISHED";
                    x.sub = sqls.iter().map(|q| (q.clone(), "FINISHED")).collect();
                    x.sub_rows = r
                        .rows_affected
                        .iter()
                        .map(|n| n.map(|n| n as i64).unwrap_or(-1))
                        .collect();
                }
                Err(e) => {
                    let failed = e.statement.unwrap_or(0);
                    x.status = "FAILED";
                    x.error = Some(e.message.clone());
                    x.sub = sqls
                        .iter()
                        .enumerate()
                        .map(|(i, q)| {
                            let s = match i.cmp(&failed) {
                                std::cmp::Ordering::Less => "FINISHED",
                                std::cmp::Ordering::Equal => "FAILED",
                                std::cmp::Ordering::Greater => "ABORTED",
                            };
                            (q.clone(), s)
                        })
                        .collect();
                }
            });
            return;
        }
        let sql = &sqls[0];
        // Types from a prepare (no execution), then the rows.
        let columns = adapter.describe(sql).unwrap_or_default();
        let result = adapter.query(sql);
        self.update(id, |x| match result {
            Ok(t) => {
                x.status = "FINISHED";
                x.has_result_set = !t.columns.is_empty();
                x.result_rows = if x.has_result_set {
                    t.rows.len() as i64
                } else {
                    -1
                };
                x.columns = columns
                    .iter()
                    .map(|c| (c.name.clone(), c.data_type.clone()))
                    .collect();
                x.rows = t.rows;
            }
            Err(e) => {
                x.status = if e.message.contains("canceling statement") {
                    "ABORTED"
                } else {
                    "FAILED"
                };
                x.error = Some(e.message);
            }
        });
    }
}
