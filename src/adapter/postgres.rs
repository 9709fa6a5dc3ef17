//! The Postgres wire protocol over tokio-postgres, for PostgreSQL and for
//! Redshift (which speaks it): a pool of `threads` sessions, TLS, keepalives
//! and timeouts, retries of connection errors and server-side cancellation.
//! What to say is the dialect's business; the catalog is read through the
//! dialect's queries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::{CancelToken, Client, Config, NoTls, SimpleQueryMessage};

use super::{
    Adapter, AdapterError, Batch, BatchResult, Column, Dialect, FailureKind, PostgresDialect, Table,
};

/// Connection settings resolved from a profile target.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub connect_timeout: Duration,
    pub keepalives_idle: Option<Duration>,
    pub retries: u32,
    pub search_path: Option<String>,
    pub role: Option<String>,
    pub threads: usize,
    pub tls: TlsMode,
    /// A PEM file of extra trusted certificates (`sslrootcert`).
    pub root_cert: Option<std::path::PathBuf>,
}

/// libpq's `sslmode`, as far as Strata implements it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// `disable` and `allow`: no encryption is attempted.
    #[default]
    Disable,
    /// `prefer`: encrypted when the server offers it (Redshift always does),
    /// the server's certificate not checked, as libpq does.
    Prefer,
    /// `require`: encrypted, the server's certificate is not checked.
    Require,
    /// `verify-ca` and `verify-full`: the certificate chain and host name are checked.
    VerifyFull,
}

impl TlsMode {
    pub fn parse(s: Option<&str>) -> Result<TlsMode, String> {
        Ok(match s {
            None | Some("disable") | Some("allow") => TlsMode::Disable,
            Some("prefer") => TlsMode::Prefer,
            Some("require") => TlsMode::Require,
            Some("verify-ca") | Some("verify-full") => TlsMode::VerifyFull,
            Some(other) => return Err(format!("sslmode '{other}' is not one of disable, allow, prefer, require, verify-ca, verify-full")),
        })
    }
}

/// Accepts any server certificate: libpq's `sslmode=require` encrypts without
/// authenticating the server.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector(
    mode: TlsMode,
    root_cert: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, AdapterError> {
    let fail = |message: String| AdapterError::new(FailureKind::Statement, message);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS setup failed: {e}")))?;
    let config = match mode {
        TlsMode::Require | TlsMode::Prefer => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
        _ => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(path) = root_cert {
                use rustls_pki_types::pem::PemObject;
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
                    fail(format!("cannot read sslrootcert {}: {e}", path.display()))
                })?;
                for c in certs {
                    let c =
                        c.map_err(|e| fail(format!("bad certificate in {}: {e}", path.display())))?;
                    roots
                        .add(c)
                        .map_err(|e| fail(format!("bad certificate in {}: {e}", path.display())))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

struct Conn {
    client: Client,
    cancel: CancelToken,
}

struct Pool {
    idle: Vec<Conn>,
    open: usize,
    cancels: Vec<CancelToken>,
    /// Connections outside the pool holding a lock (`hold_lock`), by id:
    /// cancelled too, so Ctrl-C ends a wait for a lock.
    held: Vec<(u64, CancelToken)>,
    next_held: u64,
}

pub struct PostgresAdapter {
    settings: PgSettings,
    /// Postgres, or Redshift over the same protocol.
    dialect: Arc<dyn Dialect>,
    /// Where seeds are staged for a server-side load (Redshift and S3).
    stage: Option<Box<dyn super::ObjectStage>>,
    rt: Runtime,
    pool: Mutex<Pool>,
    available: Condvar,
    /// Set by `cancel_all`: nothing new starts and nothing commits.
    cancelled: AtomicBool,
}

fn err(e: tokio_postgres::Error, statement: Option<usize>) -> AdapterError {
    // No server error, or the server ending the session (shutdown, crash,
    // terminated backend: SQLSTATE class 57P and 08): the connection is gone.
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    let kind = match code.as_deref() {
        None => FailureKind::Connection,
        Some(c) if c.starts_with("57P") || c.starts_with("08") => FailureKind::Connection,
        Some("57014") => FailureKind::Cancelled,
        Some(_) if e.is_closed() => FailureKind::Connection,
        Some(_) => FailureKind::Statement,
    };
    let message = match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                m.push_str(&format!("\nDETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("\nHINT: {h}"));
            }
            if let Some(w) = db.where_() {
                m.push_str(&format!("\nCONTEXT: {w}"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            m
        }
    };
    AdapterError {
        message,
        statement,
        kind,
        sqlstate: code,
    }
}

impl PostgresAdapter {
    /// A Postgres server.
    pub fn new(settings: PgSettings) -> Result<PostgresAdapter, AdapterError> {
        PostgresAdapter::speaking(settings, Arc::new(PostgresDialect))
    }

    /// A server of the Postgres wire protocol that speaks `dialect`.
    pub fn speaking(
        settings: PgSettings,
        dialect: Arc<dyn Dialect>,
    ) -> Result<PostgresAdapter, AdapterError> {
        let rt = super::io_runtime()?;
        let adapter = PostgresAdapter {
            settings,
            dialect,
            stage: None,
            rt,
            pool: Mutex::new(Pool {
                held: Vec::new(),
                next_held: 0,
                idle: Vec::new(),
                open: 0,
                cancels: Vec::new(),
            }),
            available: Condvar::new(),
            cancelled: AtomicBool::new(false),
        };
        // Fail early, with the server's words, when the target is unreachable.
        let s = adapter.acquire()?;
        adapter.release(s);
        Ok(adapter)
    }

    /// Stages seeds in `stage` for a server-side COPY.
    pub fn with_stage(mut self, stage: Box<dyn super::ObjectStage>) -> PostgresAdapter {
        self.stage = Some(stage);
        self
    }

    fn config(&self) -> Config {
        let s = &self.settings;
        let mut c = Config::new();
        c.host(&s.host)
            .port(s.port)
            .user(&s.user)
            .dbname(&s.dbname)
            .connect_timeout(s.connect_timeout)
            .application_name("strata");
        match s.tls {
            TlsMode::Disable => {}
            TlsMode::Prefer => {
                c.ssl_mode(tokio_postgres::config::SslMode::Prefer);
            }
            TlsMode::Require | TlsMode::VerifyFull => {
                c.ssl_mode(tokio_postgres::config::SslMode::Require);
            }
        }
        if let Some(p) = &s.password {
            c.password(p);
        }
        if let Some(k) = s.keepalives_idle {
            c.keepalives(true).keepalives_idle(k);
        }
        let mut opts = Vec::new();
        if let Some(sp) = &s.search_path {
            opts.push(format!("-c search_path={}", sp.replace(' ', "\\ ")));
        }
        if let Some(r) = &s.role {
            opts.push(format!("-c role={r}"));
        }
        if !opts.is_empty() {
            c.options(opts.join(" "));
        }
        c
    }

    fn connect(&self) -> Result<Conn, AdapterError> {
        let config = self.config();
        let mut attempt = 0;
        loop {
            let res: Result<Client, tokio_postgres::Error> = match self.settings.tls {
                TlsMode::Disable => self.rt.block_on(async {
                    let (client, connection) = config.connect(NoTls).await?;
                    self.rt.spawn(async move {
                        let _ = connection.await;
                    });
                    Ok(client)
                }),
                mode => {
                    let tls = tls_connector(mode, self.settings.root_cert.as_deref())?;
                    self.rt.block_on(async {
                        let (client, connection) = config.connect(tls).await?;
                        self.rt.spawn(async move {
                            let _ = connection.await;
                        });
                        Ok(client)
                    })
                }
            };
            match res {
                Ok(client) => {
                    let cancel = client.cancel_token();
                    for sql in self.dialect.session_setup() {
                        self.rt
                            .block_on(client.batch_execute(&sql))
                            .map_err(|e| err(e, None))?;
                    }
                    return Ok(Conn { client, cancel });
                }
                Err(e) if attempt < self.settings.retries => {
                    attempt += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200 * attempt as u64));
                }
                Err(e) => {
                    let mut a = err(e, None);
                    a.message = format!(
                        "cannot connect to {} at {}:{} as {} (database {}): {}",
                        self.dialect.name(),
                        self.settings.host,
                        self.settings.port,
                        self.settings.user,
                        self.settings.dbname,
                        a.message
                    );
                    return Err(a);
                }
            }
        }
    }

    /// Takes an idle session or opens one, up to `threads` sessions.
    fn acquire(&self) -> Result<Conn, AdapterError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(s) = pool.idle.pop() {
                if !s.client.is_closed() {
                    return Ok(s);
                }
                pool.open -= 1;
                continue;
            }
            if pool.open < self.settings.threads.max(1) {
                pool.open += 1;
                drop(pool);
                return match self.connect() {
                    Ok(s) => {
                        let mut p = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                        p.cancels.push(s.cancel.clone());
                        Ok(s)
                    }
                    Err(e) => {
                        let mut p = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                        p.open -= 1;
                        Err(e)
                    }
                };
            }
            pool = self.available.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn release(&self, s: Conn) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if s.client.is_closed() {
            pool.open -= 1;
        } else {
            pool.idle.push(s);
        }
        self.available.notify_one();
    }

    /// An error once `cancel_all` was called: nothing new starts, nothing commits.
    fn refuse_if_cancelled(&self) -> Result<(), AdapterError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(AdapterError::new(
                FailureKind::Cancelled,
                "cancelled: the run was interrupted, nothing was committed",
            ));
        }
        Ok(())
    }

    /// Commits the open transaction unless the run was cancelled meanwhile
    /// (then it rolls back): an interrupt never lets work land after it.
    async fn commit_unless_cancelled(&self, client: &Client) -> Result<(), AdapterError> {
        if let Err(e) = self.refuse_if_cancelled() {
            let _ = client.batch_execute("rollback").await;
            return Err(e);
        }
        client
            .batch_execute("commit")
            .await
            .map_err(|e| err(e, None))
    }

    fn with_session<T>(
        &self,
        f: impl FnOnce(&Client) -> Result<T, AdapterError>,
    ) -> Result<T, AdapterError> {
        self.refuse_if_cancelled()?;
        let s = self.acquire()?;
        let r = f(&s.client);
        self.release(s);
        r
    }
}

/// A transaction holding a lock on a connection of its own; it ends (and
/// the lock with it) when dropped, or when the process dies and the server
/// sees the connection close.
struct HeldPgLock<'a> {
    adapter: &'a PostgresAdapter,
    conn: Option<Conn>,
    id: u64,
}

impl super::HeldLock for HeldPgLock<'_> {}

impl Drop for HeldPgLock<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.adapter.pool.lock() {
            p.held.retain(|(id, _)| *id != self.id);
        }
        if let Some(conn) = self.conn.take() {
            let _ = self
                .adapter
                .rt
                .block_on(conn.client.batch_execute("rollback"));
        }
    }
}

fn rows_affected(msgs: &[SimpleQueryMessage]) -> Option<u64> {
    msgs.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    })
}

impl Adapter for PostgresAdapter {
    fn dialect(&self) -> &dyn Dialect {
        self.dialect.as_ref()
    }

    fn server_version(&self) -> Result<String, AdapterError> {
        let t = self.query("select version()")?;
        Ok(t.rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default())
    }

    fn execute(&self, batch: &Batch) -> Result<BatchResult, AdapterError> {
        self.with_session(|client| {
            self.rt.block_on(async {
                let mut out = BatchResult::default();
                if batch.atomic {
                    client
                        .batch_execute("begin")
                        .await
                        .map_err(|e| err(e, None))?;
                }
                for (i, sql) in batch.statements.iter().enumerate() {
                    match client.simple_query(sql).await {
                        Ok(msgs) => out.rows_affected.push(rows_affected(&msgs)),
                        Err(e) => {
                            if batch.atomic {
                                let _ = client.batch_execute("rollback").await;
                            }
                            return Err(err(e, Some(i)));
                        }
                    }
                }
                if batch.atomic {
                    self.commit_unless_cancelled(client).await?;
                }
                Ok(out)
            })
        })
    }

    fn query(&self, sql: &str) -> Result<Table, AdapterError> {
        self.with_session(|client| {
            self.rt.block_on(async {
                let msgs = client
                    .simple_query(sql)
                    .await
                    .map_err(|e| err(e, Some(0)))?;
                let mut t = Table::default();
                for m in msgs {
                    match m {
                        SimpleQueryMessage::RowDescription(cols) => {
                            t.columns = cols.iter().map(|c| c.name().to_string()).collect();
                        }
                        SimpleQueryMessage::Row(r) => {
                            if t.columns.is_empty() {
                                t.columns =
                                    r.columns().iter().map(|c| c.name().to_string()).collect();
                            }
                            t.rows
                                .push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
                        }
                        _ => {}
                    }
                }
                Ok(t)
            })
        })
    }

    fn load(
        &self,
        before: &[String],
        copy_sql: &str,
        data: &[u8],
        after: &[String],
    ) -> Result<u64, AdapterError> {
        use futures_util::SinkExt;
        self.with_session(|client| {
            self.rt.block_on(async {
                client
                    .batch_execute("begin")
                    .await
                    .map_err(|e| err(e, None))?;
                let result: Result<u64, AdapterError> = async {
                    for (i, sql) in before.iter().enumerate() {
                        client
                            .simple_query(sql)
                            .await
                            .map_err(|e| err(e, Some(i)))?;
                    }
                    let sink = client
                        .copy_in::<_, bytes::Bytes>(copy_sql)
                        .await
                        .map_err(|e| err(e, Some(before.len())))?;
                    futures_util::pin_mut!(sink);
                    for chunk in data.chunks(1 << 20) {
                        sink.send(bytes::Bytes::copy_from_slice(chunk))
                            .await
                            .map_err(|e| err(e, Some(before.len())))?;
                    }
                    let rows = sink
                        .finish()
                        .await
                        .map_err(|e| err(e, Some(before.len())))?;
                    for (i, sql) in after.iter().enumerate() {
                        client
                            .simple_query(sql)
                            .await
                            .map_err(|e| err(e, Some(before.len() + 1 + i)))?;
                    }
                    Ok(rows)
                }
                .await;
                match result {
                    Ok(rows) => {
                        self.commit_unless_cancelled(client).await?;
                        Ok(rows)
                    }
                    Err(e) => {
                        let _ = client.batch_execute("rollback").await;
                        Err(e)
                    }
                }
            })
        })
    }

    fn load_stream(
        &self,
        before: &[String],
        copy_sql: &str,
        data: &mut dyn std::io::Read,
        after: &dyn Fn() -> Vec<String>,
    ) -> Result<u64, AdapterError> {
        use futures_util::SinkExt;
        // The reader runs outside the runtime: it may block, or drive a
        // runtime of its own (an S3 download).
        self.with_session(|client| {
            let rt = &self.rt;
            rt.block_on(client.batch_execute("begin"))
                .map_err(|e| err(e, None))?;
            let result: Result<u64, AdapterError> = (|| {
                for (i, sql) in before.iter().enumerate() {
                    rt.block_on(client.simple_query(sql))
                        .map_err(|e| err(e, Some(i)))?;
                }
                let at = Some(before.len());
                let mut sink = Box::pin(
                    rt.block_on(client.copy_in::<_, bytes::Bytes>(copy_sql))
                        .map_err(|e| err(e, at))?,
                );
                let mut chunk = vec![0u8; 1 << 20];
                loop {
                    // One chunk at a time, so memory stays flat.
                    let n = match data.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let mut a = AdapterError::new(FailureKind::Statement, e.to_string());
                            a.statement = at;
                            return Err(a);
                        }
                    };
                    self.refuse_if_cancelled()?;
                    rt.block_on(
                        sink.as_mut()
                            .send(bytes::Bytes::copy_from_slice(&chunk[..n])),
                    )
                    .map_err(|e| err(e, at))?;
                }
                let rows = rt
                    .block_on(sink.as_mut().finish())
                    .map_err(|e| err(e, at))?;
                for (i, sql) in after().iter().enumerate() {
                    rt.block_on(client.simple_query(sql))
                        .map_err(|e| err(e, Some(before.len() + 1 + i)))?;
                }
                Ok(rows)
            })();
            match result {
                Ok(rows) => {
                    rt.block_on(self.commit_unless_cancelled(client))?;
                    Ok(rows)
                }
                Err(e) => {
                    let _ = rt.block_on(client.batch_execute("rollback"));
                    Err(e)
                }
            }
        })
    }

    fn describe_many(&self, queries: &[&str]) -> Result<Vec<Vec<Column>>, AdapterError> {
        self.with_session(|client| {
            self.rt.block_on(async {
                // Prepared together, the statements travel in one pipeline.
                let prepared =
                    futures_util::future::join_all(queries.iter().map(|q| client.prepare(q))).await;
                let mut statements = Vec::with_capacity(prepared.len());
                for (i, p) in prepared.into_iter().enumerate() {
                    statements.push(p.map_err(|e| err(e, Some(i)))?);
                }
                // Exact type names (with modifiers) come from the catalog, once per type.
                let mut oids: Vec<u32> = statements
                    .iter()
                    .flat_map(|s| s.columns().iter().map(|c| c.type_().oid()))
                    .collect();
                oids.sort_unstable();
                oids.dedup();
                let msgs = client
                    .simple_query(&self.dialect.type_names_sql(&oids))
                    .await
                    .map_err(|e| err(e, None))?;
                let names: std::collections::HashMap<u32, String> = msgs
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(r) => {
                            Some((r.get(0)?.parse().ok()?, r.get(1)?.to_string()))
                        }
                        _ => None,
                    })
                    .collect();
                Ok(statements
                    .iter()
                    .map(|s| {
                        s.columns()
                            .iter()
                            .map(|c| Column {
                                name: c.name().to_string(),
                                data_type: names
                                    .get(&c.type_().oid())
                                    .cloned()
                                    .unwrap_or_else(|| c.type_().name().to_string()),
                            })
                            .collect()
                    })
                    .collect())
            })
        })
    }

    fn resume(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    fn hold_lock(&self, lock: &str) -> Result<Option<Box<dyn super::HeldLock + '_>>, AdapterError> {
        self.refuse_if_cancelled()?;
        let conn = self.connect()?;
        let id = {
            let mut p = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            p.next_held += 1;
            let id = p.next_held;
            p.held.push((id, conn.cancel.clone()));
            id
        };
        // From here the guard owns the connection: an error drops it, which
        // rolls back and unregisters.
        let held = HeldPgLock {
            adapter: self,
            conn: Some(conn),
            id,
        };
        if let Some(c) = &held.conn {
            self.rt
                .block_on(c.client.batch_execute("begin"))
                .map_err(|e| err(e, None))?;
            self.rt
                .block_on(c.client.simple_query(lock))
                .map_err(|e| err(e, Some(0)))?;
        }
        self.refuse_if_cancelled()?;
        Ok(Some(Box::new(held)))
    }

    fn seed_stage(&self) -> Option<&dyn super::ObjectStage> {
        self.stage.as_deref()
    }

    fn cancel_all(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let cancels = self
            .pool
            .lock()
            .map(|p| {
                let mut all = p.cancels.clone();
                all.extend(p.held.iter().map(|(_, c)| c.clone()));
                all
            })
            .unwrap_or_default();
        for c in cancels {
            match self.settings.tls {
                TlsMode::Disable => {
                    let _ = self.rt.block_on(async { c.cancel_query(NoTls).await });
                }
                mode => {
                    if let Ok(tls) = tls_connector(mode, self.settings.root_cert.as_deref()) {
                        let _ = self.rt.block_on(async { c.cancel_query(tls).await });
                    }
                }
            }
        }
    }
}

/// Shared handle used by commands.
pub type SharedAdapter = Arc<dyn Adapter>;
