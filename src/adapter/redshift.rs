//! Amazon Redshift: the Redshift dialect over one of its transports, chosen by
//! the profile's `method`: the Postgres wire protocol with a password
//! (`database`) or with temporary IAM credentials (`iam`), or the Redshift
//! Data API (`data_api`). The AWS-dependent transports are built with the
//! `aws` cargo feature.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::postgres::{PgSettings, PostgresAdapter, TlsMode};
use super::{Adapter, RedshiftDialect};
use crate::error::{DiagKind, Diagnostic, Result};
use crate::project::profiles::{RedshiftConnection, RedshiftMethod, Target};

/// Redshift's default port.
const DEFAULT_PORT: u16 = 5439;

fn config_error(target: &Target, message: impl std::fmt::Display) -> Diagnostic {
    Diagnostic::new(
        DiagKind::Config,
        format!("target '{}': {message}", target.name),
    )
}

/// Opens the transport the profile names.
pub(super) fn connect(
    project_dir: &Path,
    target: &Target,
    c: &RedshiftConnection,
    threads: Option<usize>,
) -> Result<Arc<dyn Adapter>> {
    let threads = threads.unwrap_or(target.threads).max(1);
    match c.method.unwrap_or_default() {
        RedshiftMethod::Database => {
            let password = c.password.clone().ok_or_else(|| {
                config_error(target, "method 'database' needs a 'password'")
                    .hint("or use `method: iam` for temporary credentials from IAM")
            })?;
            let user = c
                .user
                .clone()
                .ok_or_else(|| config_error(target, "method 'database' needs a 'user'"))?;
            wire(project_dir, target, c, threads, user, password)
        }
        RedshiftMethod::Iam => iam(project_dir, target, c, threads),
        RedshiftMethod::DataApi => data_api(target, c, threads),
    }
}

/// The Postgres wire protocol to the cluster's endpoint, TLS when the server
/// offers it (Redshift always does) unless `sslmode` says otherwise.
fn wire(
    project_dir: &Path,
    target: &Target,
    c: &RedshiftConnection,
    threads: usize,
    user: String,
    password: String,
) -> Result<Arc<dyn Adapter>> {
    let host = c.host.clone().ok_or_else(|| {
        config_error(
            target,
            "a Redshift target over the wire protocol needs a 'host'",
        )
    })?;
    let tls = match c.sslmode.as_deref() {
        None => TlsMode::Prefer,
        s => TlsMode::parse(s).map_err(|e| config_error(target, e))?,
    };
    let root_cert = c
        .extra
        .get("sslrootcert")
        .and_then(|v| v.as_str())
        .map(|p| project_dir.join(p));
    let settings = PgSettings {
        host,
        port: c.port.unwrap_or(DEFAULT_PORT),
        user,
        password: Some(password),
        dbname: target.database.clone(),
        connect_timeout: Duration::from_secs(c.connect_timeout.unwrap_or(10)),
        keepalives_idle: Some(Duration::from_secs(c.keepalives_idle.unwrap_or(240)))
            .filter(|k| !k.is_zero()),
        retries: c.retries.unwrap_or(1),
        search_path: c.search_path.clone(),
        role: None,
        threads,
        tls,
        root_cert,
    };
    let dialect = if c.enable_case_sensitive_identifier.unwrap_or(false) {
        RedshiftDialect::case_sensitive()
    } else {
        RedshiftDialect::default()
    };
    let mut a = PostgresAdapter::speaking(settings, Arc::new(dialect))
        .map_err(|e| {
            Diagnostic::new(DiagKind::Io, e.message)
                .hint("check host, port, user and password in profiles.yml, and that the cluster accepts connections from this machine")
        })?;
    if let Some(stage) = seed_stage(target, c)? {
        a = a.with_stage(stage);
    }
    Ok(Arc::new(a))
}

/// The S3 location seeds are staged in, when the profile names one.
#[cfg(feature = "aws")]
fn seed_stage(
    target: &Target,
    c: &RedshiftConnection,
) -> Result<Option<Box<dyn super::ObjectStage>>> {
    if c.s3_staging_dir.is_none() {
        return Ok(None);
    }
    let rt = Arc::new(super::io_runtime().map_err(|e| config_error(target, e.message))?);
    let config = super::aws::sdk_config(&rt, c);
    let stage =
        super::aws::S3Stage::from_profile(rt, &config, c).map_err(|e| config_error(target, e))?;
    Ok(stage.map(|s| Box::new(s) as Box<dyn super::ObjectStage>))
}

#[cfg(not(feature = "aws"))]
fn seed_stage(
    target: &Target,
    c: &RedshiftConnection,
) -> Result<Option<Box<dyn super::ObjectStage>>> {
    match c.s3_staging_dir {
        Some(_) => Err(without_aws(target, "s3_staging_dir").into()),
        None => Ok(None),
    }
}

#[cfg(feature = "aws")]
fn iam(
    project_dir: &Path,
    target: &Target,
    c: &RedshiftConnection,
    threads: usize,
) -> Result<Arc<dyn Adapter>> {
    let creds = super::aws::database_credentials(target, c)?;
    wire(project_dir, target, c, threads, creds.user, creds.password)
}

#[cfg(not(feature = "aws"))]
fn iam(
    _project_dir: &Path,
    target: &Target,
    _c: &RedshiftConnection,
    _threads: usize,
) -> Result<Arc<dyn Adapter>> {
    Err(without_aws(target, "method: iam").into())
}

#[cfg(feature = "aws")]
fn data_api(target: &Target, c: &RedshiftConnection, threads: usize) -> Result<Arc<dyn Adapter>> {
    Ok(Arc::new(super::data_api::DataApiAdapter::new(
        target, c, threads,
    )?))
}

#[cfg(not(feature = "aws"))]
fn data_api(target: &Target, _c: &RedshiftConnection, _threads: usize) -> Result<Arc<dyn Adapter>> {
    Err(without_aws(target, "method: data_api").into())
}

#[cfg(not(feature = "aws"))]
fn without_aws(target: &Target, method: &str) -> Diagnostic {
    config_error(
        target,
        format!("'{method}' needs the AWS SDK, and this strata was built without it"),
    )
    .hint("build with `cargo build --release --features aws`, or use `method: database`")
}
