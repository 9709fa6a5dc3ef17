//! `profiles.yml`: profiles, targets and typed connection settings for each warehouse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value as Yaml};

use crate::error::{line_of, yaml_diagnostic, DiagKind, Diagnostic, Result};

/// Settings shared by every Postgres-protocol connection.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(default)]
pub struct PostgresConnection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    #[serde(alias = "pass", skip_serializing)]
    pub password: Option<String>,
    #[serde(alias = "database")]
    pub dbname: Option<String>,
    pub schema: Option<String>,
    pub threads: Option<usize>,
    pub sslmode: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub sslrootcert: Option<String>,
    pub keepalives_idle: Option<u64>,
    pub connect_timeout: Option<u64>,
    pub retries: Option<u32>,
    pub search_path: Option<String>,
    pub role: Option<String>,
    /// Strata extension: a cluster Strata creates and manages under the project.
    pub local: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Yaml>,
}

/// Redshift settings: the Postgres protocol fields plus IAM and Data API ones.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(default)]
pub struct RedshiftConnection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    #[serde(alias = "pass", skip_serializing)]
    pub password: Option<String>,
    #[serde(alias = "database")]
    pub dbname: Option<String>,
    pub schema: Option<String>,
    pub threads: Option<usize>,
    pub sslmode: Option<String>,
    pub connect_timeout: Option<u64>,
    pub retries: Option<u32>,
    /// How Strata reaches the cluster and authenticates.
    pub method: Option<RedshiftMethod>,
    pub cluster_id: Option<String>,
    /// A Redshift Serverless workgroup (IAM and Data API).
    pub workgroup_name: Option<String>,
    /// dbt-redshift's name for a Serverless target under `method: iam`.
    pub is_serverless: Option<bool>,
    /// The AWS profile of the credential chain (`~/.aws/config`).
    pub iam_profile: Option<String>,
    /// The role COPY uses to read S3 (seeds through S3).
    pub iam_role: Option<String>,
    pub region: Option<String>,
    pub autocreate: Option<bool>,
    pub db_groups: Option<Vec<String>>,
    /// Lifetime of IAM database credentials, 900 to 3600 seconds.
    pub iam_duration_seconds: Option<u64>,
    /// Data API: the database user, when not authenticating with a secret.
    pub db_user: Option<String>,
    /// Data API: a Secrets Manager secret holding the database credentials.
    pub secret_arn: Option<String>,
    /// Static AWS keys instead of the credential chain.
    pub access_key_id: Option<String>,
    #[serde(skip_serializing)]
    pub secret_access_key: Option<String>,
    /// Strata extension: an S3 prefix (`s3://bucket/prefix/`) where seeds are
    /// staged for a server-side COPY with `iam_role`.
    pub s3_staging_dir: Option<String>,
    /// Strata extension: the AWS endpoint to call instead of the public one
    /// (VPC endpoints, tests).
    pub endpoint_url: Option<String>,
    /// Quoted identifiers keep their case (the session sets Redshift's
    /// `enable_case_sensitive_identifier`); wire protocol only.
    pub enable_case_sensitive_identifier: Option<bool>,
    /// Strata extension: the S3 endpoint, when not the public one or
    /// `endpoint_url` (S3-compatible stores, tests); addressed by path.
    pub s3_endpoint_url: Option<String>,
    pub ra3_node: Option<bool>,
    pub autocommit: Option<bool>,
    pub keepalives_idle: Option<u64>,
    pub search_path: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Yaml>,
}

/// How a Redshift target connects (`method:`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RedshiftMethod {
    /// The Postgres wire protocol with a user and password.
    #[default]
    Database,
    /// The Postgres wire protocol with temporary credentials from IAM.
    Iam,
    /// The Redshift Data API over HTTPS: no network path to the cluster needed.
    DataApi,
}

impl RedshiftMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            RedshiftMethod::Database => "database",
            RedshiftMethod::Iam => "iam",
            RedshiftMethod::DataApi => "data_api",
        }
    }
}

/// The warehouse a target talks to. One per run: the size difference of the
/// variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Postgres(PostgresConnection),
    Redshift(RedshiftConnection),
}

impl Connection {
    pub fn type_name(&self) -> &'static str {
        match self {
            Connection::Postgres(_) => "postgres",
            Connection::Redshift(_) => "redshift",
        }
    }
}

/// The selected target of a profile, as the Jinja `target` variable sees it.
#[derive(Debug, Clone)]
pub struct Target {
    pub profile_name: String,
    pub name: String,
    pub schema: String,
    pub database: String,
    pub threads: usize,
    pub connection: Connection,
}

impl Target {
    /// A placeholder target for commands that run without a profile.
    pub fn offline(profile_name: &str) -> Target {
        Target {
            profile_name: profile_name.to_string(),
            name: "default".into(),
            schema: "public".into(),
            database: "postgres".into(),
            threads: 1,
            connection: Connection::Postgres(PostgresConnection::default()),
        }
    }

    /// The fields Jinja's `target` exposes (never the password).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = match &self.connection {
            Connection::Postgres(c) => serde_json::to_value(c),
            Connection::Redshift(c) => serde_json::to_value(c),
        }
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
        m.retain(|_, v| !v.is_null());
        m.insert("type".into(), self.connection.type_name().into());
        m.insert("name".into(), self.name.clone().into());
        m.insert("target_name".into(), self.name.clone().into());
        m.insert("profile_name".into(), self.profile_name.clone().into());
        m.insert("schema".into(), self.schema.clone().into());
        m.insert("database".into(), self.database.clone().into());
        m.insert("dbname".into(), self.database.clone().into());
        m.insert("threads".into(), self.threads.into());
        serde_json::Value::Object(m)
    }
}

/// Where profiles.yml is looked for: the flag, `DBT_PROFILES_DIR`, the project, `~/.dbt`.
pub fn profiles_dir(flag: Option<&Path>, project_dir: &Path) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Ok(p) = std::env::var("DBT_PROFILES_DIR") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    if project_dir.join("profiles.yml").exists() {
        return project_dir.to_path_buf();
    }
    std::env::var("HOME")
        .map(|h| PathBuf::from(h).join(".dbt"))
        .unwrap_or_else(|_| project_dir.to_path_buf())
}

/// Renders `{{ env_var(...) }}` and `{{ var(...) }}` inside one string.
pub type StringRenderer<'a> = &'a dyn Fn(&str) -> std::result::Result<String, String>;

/// Reads profiles.yml and resolves one profile's target into typed settings.
pub fn load_target(
    dir: &Path,
    profile_name: &str,
    target_override: Option<&str>,
    render: StringRenderer<'_>,
) -> Result<Target> {
    let path = dir.join("profiles.yml");
    let file = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Diagnostic::new(
            DiagKind::Config,
            format!("cannot read profiles.yml in {}: {e}", dir.display()),
        )
        .hint("pass --profiles-dir, set DBT_PROFILES_DIR, or put a profiles.yml in the project (strata init writes one)")
    })?;
    let mut doc: Yaml = crate::error::yaml_from_str(&file, &text)?;
    doc.apply_merge()
        .map_err(|e| yaml_diagnostic(&file, &text, &e))?;
    let profile = doc.get(profile_name).ok_or_else(|| {
        let names: Vec<&str> = doc
            .as_mapping()
            .map(|m| m.keys().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        let mut d = Diagnostic::new(
            DiagKind::Config,
            format!("profile '{profile_name}' is not in {file}"),
        )
        .file(&file);
        if let Some(h) = crate::error::suggest(profile_name, names.iter().copied()) {
            d = d.hint(h);
        } else {
            d = d.hint(format!("profiles defined there: {}", names.join(", ")));
        }
        d
    })?;
    let target_name = match target_override {
        Some(t) => t.to_string(),
        None => match profile.get("target") {
            Some(Yaml::String(t)) => render(t).map_err(|e| {
                Diagnostic::new(DiagKind::EnvVar, e).at(
                    &file,
                    Some(&text),
                    line_of(&text, "target:"),
                    1,
                )
            })?,
            _ => "default".to_string(),
        },
    };
    let outputs = profile
        .get("outputs")
        .and_then(Yaml::as_mapping)
        .ok_or_else(|| {
            Diagnostic::new(
                DiagKind::Config,
                format!("profile '{profile_name}' has no 'outputs'"),
            )
            .at(
                &file,
                Some(&text),
                line_of(&text, &format!("{profile_name}:")),
                1,
            )
        })?;
    let out = outputs.get(target_name.as_str()).ok_or_else(|| {
        let names: Vec<&str> = outputs.keys().filter_map(|k| k.as_str()).collect();
        Diagnostic::new(
            DiagKind::Config,
            format!("target '{target_name}' is not an output of profile '{profile_name}'"),
        )
        .at(&file, Some(&text), line_of(&text, "outputs:"), 1)
        .hint(format!("outputs defined: {}", names.join(", ")))
    })?;
    let rendered = render_yaml(out.clone(), render).map_err(|e| {
        Diagnostic::new(DiagKind::EnvVar, e).at(
            &file,
            Some(&text),
            line_of(&text, &format!("{target_name}:")),
            1,
        )
    })?;
    let kind = rendered
        .get("type")
        .and_then(Yaml::as_str)
        .unwrap_or("")
        .to_string();
    let loc_line = line_of(&text, &format!("{target_name}:"));
    let bad = |e: serde_yaml::Error| {
        Diagnostic::new(
            DiagKind::Config,
            format!("target '{target_name}' has an invalid field: {e}"),
        )
        .at(&file, Some(&text), loc_line, 1)
    };
    let connection = match kind.as_str() {
        "postgres" => Connection::Postgres(serde_yaml::from_value(rendered).map_err(bad)?),
        "redshift" => Connection::Redshift(serde_yaml::from_value(rendered).map_err(bad)?),
        other => {
            return Err(Diagnostic::new(
                DiagKind::Config,
                format!("target '{target_name}' has type '{other}'; Strata supports 'postgres' and 'redshift'"),
            )
            .at(&file, Some(&text), loc_line, 1)
            .into())
        }
    };
    let (schema, database, threads) = match &connection {
        Connection::Postgres(c) => (c.schema.clone(), c.dbname.clone(), c.threads),
        Connection::Redshift(c) => (c.schema.clone(), c.dbname.clone(), c.threads),
    };
    let schema = schema.ok_or_else(|| {
        Diagnostic::new(
            DiagKind::Config,
            format!("target '{target_name}' has no 'schema'"),
        )
        .at(&file, Some(&text), loc_line, 1)
    })?;
    Ok(Target {
        profile_name: profile_name.to_string(),
        name: target_name,
        schema,
        database: database.unwrap_or_else(|| "postgres".into()),
        threads: threads.unwrap_or(1).max(1),
        connection,
    })
}

/// Renders every string in a YAML tree through `render`.
pub fn render_yaml(v: Yaml, render: StringRenderer<'_>) -> std::result::Result<Yaml, String> {
    Ok(match v {
        Yaml::String(s) if s.contains("{{") || s.contains("{%") => {
            let out = render(&s)?;
            // Rendered numbers and booleans keep their type (the text is
            // checked first: a rendered value may be absurdly nested YAML).
            let parsed = crate::yaml_depth::check(&out)
                .ok()
                .and_then(|()| serde_yaml::from_str::<Yaml>(&out).ok());
            match parsed {
                Some(y @ (Yaml::Number(_) | Yaml::Bool(_))) => y,
                _ => Yaml::String(out),
            }
        }
        Yaml::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, v) in m {
                out.insert(k, render_yaml(v, render)?);
            }
            Yaml::Mapping(out)
        }
        Yaml::Sequence(s) => Yaml::Sequence(
            s.into_iter()
                .map(|v| render_yaml(v, render))
                .collect::<std::result::Result<_, _>>()?,
        ),
        other => other,
    })
}
