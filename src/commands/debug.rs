//! `strata debug`: show what project, profile and target Strata resolved.

use anyhow::Result;

use super::{load_options, Outcome};
use crate::cli::CommonArgs;
use crate::project::profiles::{profiles_dir, Connection};
use crate::project::Project;

pub fn run(args: &CommonArgs) -> Result<Outcome> {
    crate::outln!("strata {}", env!("CARGO_PKG_VERSION"));
    crate::outln!("project dir:   {}", args.project_dir.display());
    let pdir = profiles_dir(args.profiles_dir.as_deref(), &args.project_dir);
    crate::outln!("profiles.yml:  {}", pdir.join("profiles.yml").display());
    let project = Project::load(&load_options(args, false))?;
    let s = &project.root().settings;
    crate::outln!("project:       {} (dbt_project.yml OK)", s.name);
    crate::outln!("packages:      {}", project.packages.len() - 1);
    let t = &project.target;
    crate::outln!("profile:       {}", t.profile_name);
    crate::outln!("target:        {}", t.name);
    crate::outln!("type:          {}", t.connection.type_name());
    match &t.connection {
        Connection::Postgres(c) => {
            crate::outln!(
                "host:          {}",
                c.host.as_deref().unwrap_or("(local socket)")
            );
            crate::outln!("port:          {}", c.port.unwrap_or(5432));
            crate::outln!("user:          {}", c.user.as_deref().unwrap_or(""));
            crate::outln!("local cluster: {}", c.local.unwrap_or(false));
        }
        Connection::Redshift(c) => {
            let method = c.method.unwrap_or_default();
            crate::outln!("method:        {}", method.as_str());
            if method != crate::project::profiles::RedshiftMethod::DataApi {
                crate::outln!("host:          {}", c.host.as_deref().unwrap_or(""));
                crate::outln!("port:          {}", c.port.unwrap_or(5439));
                crate::outln!("user:          {}", c.user.as_deref().unwrap_or(""));
            }
            if let Some(w) = &c.workgroup_name {
                crate::outln!("workgroup:     {w}");
            } else {
                crate::outln!("cluster_id:    {}", c.cluster_id.as_deref().unwrap_or(""));
            }
            if let Some(r) = &c.region {
                crate::outln!("region:        {r}");
            }
        }
    }
    crate::outln!("database:      {}", t.database);
    crate::outln!("schema:        {}", t.schema);
    crate::outln!("threads:       {}", t.threads);
    match crate::adapter::connect(&project.dir, t, Some(1)).and_then(|a| {
        a.server_version().map_err(|e| {
            crate::error::Diagnostic::new(crate::error::DiagKind::Io, e.message).into()
        })
    }) {
        Ok(v) => {
            crate::outln!("connection:    OK ({v})");
            crate::outln!("All checks passed!");
            Ok(Outcome::Success)
        }
        Err(e) => {
            crate::outln!("connection:    FAILED");
            crate::errln!("{e}");
            Ok(Outcome::Failed)
        }
    }
}
