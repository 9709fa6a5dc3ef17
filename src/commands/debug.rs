//! `strata debug`: show what project, profile and target Strata resolved.

use anyhow::Result;

use super::{load_options, Outcome};
use crate::cli::CommonArgs;
use crate::project::profiles::{profiles_dir, Connection};
use crate::project::Project;

pub fn run(args: &CommonArgs) -> Result<Outcome> {
    println!("strata {}", env!("CARGO_PKG_VERSION"));
    println!("project dir:   {}", args.project_dir.display());
    let pdir = profiles_dir(args.profiles_dir.as_deref(), &args.project_dir);
    println!("profiles.yml:  {}", pdir.join("profiles.yml").display());
    let project = Project::load(&load_options(args, false))?;
    let s = &project.root().settings;
    println!("project:       {} (dbt_project.yml OK)", s.name);
    println!("packages:      {}", project.packages.len() - 1);
    let t = &project.target;
    println!("profile:       {}", t.profile_name);
    println!("target:        {}", t.name);
    println!("type:          {}", t.connection.type_name());
    match &t.connection {
        Connection::Postgres(c) => {
            println!(
                "host:          {}",
                c.host.as_deref().unwrap_or("(local socket)")
            );
            println!("port:          {}", c.port.unwrap_or(5432));
            println!("user:          {}", c.user.as_deref().unwrap_or(""));
            println!("local cluster: {}", c.local.unwrap_or(false));
        }
        Connection::Redshift(c) => {
            println!("host:          {}", c.host.as_deref().unwrap_or(""));
            println!(
                "method:        {}",
                c.method.as_deref().unwrap_or("database")
            );
            println!("cluster_id:    {}", c.cluster_id.as_deref().unwrap_or(""));
        }
    }
    println!("database:      {}", t.database);
    println!("schema:        {}", t.schema);
    println!("threads:       {}", t.threads);
    match crate::adapter::connect(&project.dir, t, Some(1)).and_then(|a| {
        a.server_version().map_err(|e| {
            crate::error::Diagnostic::new(crate::error::DiagKind::Io, e.message).into()
        })
    }) {
        Ok(v) => {
            println!("connection:    OK ({v})");
            println!("All checks passed!");
            Ok(Outcome::Success)
        }
        Err(e) => {
            println!("connection:    FAILED");
            eprintln!("{e}");
            Ok(Outcome::Failed)
        }
    }
}
