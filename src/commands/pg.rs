//! `strata pg start|stop|status|url|psql`: the project's local PostgreSQL.

use anyhow::{bail, Result};

use super::{load_options, Outcome};
use crate::adapter::ensure_local;
use crate::cli::{PgAction, PgArgs};
use crate::localpg::LocalCluster;
use crate::project::profiles::Connection;
use crate::project::Project;

pub fn run(args: &PgArgs) -> Result<Outcome> {
    let project = Project::load(&load_options(&args.common, false))?;
    let t = &project.target;
    let Connection::Postgres(c) = &t.connection else {
        bail!(
            "target '{}' is not a postgres target; `strata pg` manages local Postgres clusters",
            t.name
        );
    };
    if !c.local.unwrap_or(false) {
        bail!(
            "target '{}' does not set `local: true`; `strata pg` only manages the cluster Strata runs for the project",
            t.name
        );
    }
    let user = c.user.clone().unwrap_or_else(|| "strata".into());
    match args.action {
        PgAction::Start => {
            let cluster = ensure_local(&project.dir, c, &t.database)?;
            crate::outln!(
                "running on 127.0.0.1:{} ({})",
                cluster.port,
                cluster.root.display()
            );
        }
        PgAction::Stop => {
            let cluster = LocalCluster::for_project(&project.dir, &user)?;
            if cluster.stop()? {
                crate::outln!("stopped");
            } else {
                crate::outln!("not running");
            }
        }
        PgAction::Status => {
            let cluster = LocalCluster::for_project(&project.dir, &user)?;
            if cluster.status()? {
                crate::outln!(
                    "running on 127.0.0.1:{} ({})",
                    cluster.port,
                    cluster.root.display()
                );
            } else if cluster.is_initialized() {
                crate::outln!("stopped ({})", cluster.root.display());
                return Ok(Outcome::Failed);
            } else {
                crate::outln!("not created yet; `strata pg start` creates it");
                return Ok(Outcome::Failed);
            }
        }
        PgAction::Url => {
            let cluster = ensure_local(&project.dir, c, &t.database)?;
            crate::outln!("{}", cluster.url(&t.database));
        }
        PgAction::Psql => {
            let cluster = ensure_local(&project.dir, c, &t.database)?;
            let status = cluster.psql(&t.database).status()?;
            if !status.success() {
                return Ok(Outcome::Failed);
            }
        }
    }
    Ok(Outcome::Success)
}
