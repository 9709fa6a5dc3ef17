//! The AWS SDK, as Redshift targets use it: one shared configuration from the
//! standard credential chain (or the profile's keys), temporary database
//! credentials for `method: iam`, and the S3 location seeds are staged in.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};

use super::{AdapterError, FailureKind, ObjectStage, StagedObject};
use crate::error::{DiagKind, Diagnostic, Result};
use crate::project::profiles::{RedshiftConnection, Target};

/// The SDK configuration a Redshift target asks for: its region, AWS profile
/// (`iam_profile`), static keys when given, and an endpoint override.
pub(super) fn sdk_config(rt: &tokio::runtime::Runtime, c: &RedshiftConnection) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &c.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = &c.iam_profile {
        loader = loader.profile_name(p);
    }
    if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "profiles.yml",
        ));
    }
    if let Some(url) = &c.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    rt.block_on(loader.load())
}

/// A database user and password valid for a while.
pub(super) struct DbCredentials {
    pub user: String,
    pub password: String,
}

/// Temporary credentials for `method: iam`: `GetCredentials` for a
/// Serverless workgroup, `GetClusterCredentials` for a provisioned cluster
/// (https://docs.aws.amazon.com/redshift/latest/mgmt/generating-iam-credentials-cli-api.html).
pub(super) fn database_credentials(
    target: &Target,
    c: &RedshiftConnection,
) -> Result<DbCredentials> {
    let fail = |m: String| Diagnostic::new(DiagKind::Io, format!("target '{}': {m}", target.name));
    let rt = super::io_runtime().map_err(|e| fail(e.message))?;
    let config = sdk_config(&rt, c);
    let duration = c.iam_duration_seconds.map(|d| d as i32);
    let serverless = c.workgroup_name.is_some() || c.is_serverless.unwrap_or(false);
    let (user, password) = if serverless {
        let workgroup = c.workgroup_name.clone().or_else(|| {
            // dbt-redshift: the workgroup is the host's first label.
            c.host
                .as_deref()
                .and_then(|h| h.split('.').next())
                .map(str::to_string)
        });
        let Some(workgroup) = workgroup else {
            return Err(
                fail("method 'iam' on Serverless needs 'workgroup_name' or 'host'".into()).into(),
            );
        };
        let client = aws_sdk_redshiftserverless::Client::new(&config);
        let out = rt
            .block_on(
                client
                    .get_credentials()
                    .workgroup_name(workgroup)
                    .db_name(&target.database)
                    .set_duration_seconds(duration)
                    .send(),
            )
            .map_err(|e| fail(format!("GetCredentials failed: {}", sdk_message(&e))))?;
        (out.db_user, out.db_password)
    } else {
        let Some(cluster) = &c.cluster_id else {
            return Err(fail(
                "method 'iam' needs 'cluster_id' (or 'workgroup_name' for Serverless)".into(),
            )
            .hint("the cluster identifier is the first label of the host name")
            .into());
        };
        let Some(user) = &c.user else {
            return Err(fail("method 'iam' needs the database 'user'".into()).into());
        };
        let client = aws_sdk_redshift::Client::new(&config);
        let out = rt
            .block_on(
                client
                    .get_cluster_credentials()
                    .cluster_identifier(cluster)
                    .db_user(user)
                    .db_name(&target.database)
                    .auto_create(c.autocreate.unwrap_or(false))
                    .set_db_groups(c.db_groups.clone())
                    .set_duration_seconds(duration)
                    .send(),
            )
            .map_err(|e| fail(format!("GetClusterCredentials failed: {}", sdk_message(&e))))?;
        (out.db_user, out.db_password)
    };
    match (user, password) {
        (Some(user), Some(password)) => Ok(DbCredentials { user, password }),
        _ => Err(fail("IAM returned no database credentials".into()).into()),
    }
}

/// An SDK error's code and message, or its display form.
pub(super) fn sdk_message<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            m
        }
    }
}

/// The S3 prefix seeds are uploaded to before a server-side COPY.
pub(super) struct S3Stage {
    rt: Arc<tokio::runtime::Runtime>,
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    iam_role: String,
}

impl S3Stage {
    /// From `s3_staging_dir` and `iam_role`; `None` unless both are set.
    pub(super) fn from_profile(
        rt: Arc<tokio::runtime::Runtime>,
        config: &SdkConfig,
        c: &RedshiftConnection,
    ) -> std::result::Result<Option<S3Stage>, String> {
        let (Some(dir), Some(role)) = (&c.s3_staging_dir, &c.iam_role) else {
            return Ok(None);
        };
        let rest = dir
            .strip_prefix("s3://")
            .ok_or_else(|| format!("s3_staging_dir '{dir}' is not an s3://bucket/prefix/ URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("s3_staging_dir '{dir}' names no bucket"));
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let mut s3 = aws_sdk_s3::config::Builder::from(config);
        // A custom endpoint (tests, S3-compatible stores) is addressed by path.
        if let Some(url) = &c.s3_endpoint_url {
            s3 = s3.endpoint_url(url);
        }
        if c.endpoint_url.is_some() || c.s3_endpoint_url.is_some() {
            s3 = s3.force_path_style(true);
        }
        Ok(Some(S3Stage {
            rt,
            client: aws_sdk_s3::Client::from_conf(s3.build()),
            bucket: bucket.to_string(),
            prefix,
            iam_role: role.clone(),
        }))
    }
}

impl ObjectStage for S3Stage {
    fn put(&self, name: &str, data: &[u8]) -> std::result::Result<StagedObject, AdapterError> {
        use sha2::Digest;
        // Named by content: a retried upload overwrites itself.
        let hash = sha2::Sha256::digest(data);
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "bin"));
        let key = format!(
            "{}{stem}-{}.{ext}",
            self.prefix,
            hash.iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let content_type = if ext == "csv" {
            "text/csv"
        } else {
            "application/json"
        };
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .content_type(content_type)
                    .body(aws_sdk_s3::primitives::ByteStream::from(data.to_vec()))
                    .send(),
            )
            .map_err(|e| AdapterError::new(FailureKind::Statement, sdk_message(&e)))?;
        Ok(StagedObject {
            url: format!("s3://{}/{key}", self.bucket),
        })
    }

    fn remove(&self, object: &StagedObject) {
        let Some(key) = object.url.strip_prefix(&format!("s3://{}/", self.bucket)) else {
            return;
        };
        let _ = self.rt.block_on(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
    }

    fn iam_role(&self) -> &str {
        &self.iam_role
    }
}
