//! `strata clean`: delete clean-targets, refusing paths outside the project.

use anyhow::{bail, Context, Result};

use super::Outcome;
use crate::cli::CommonArgs;
use crate::project::ProjectSettings;
use crate::report::Reporter;

pub fn run(args: &CommonArgs) -> Result<Outcome> {
    let reporter = Reporter::new(args.report_settings());
    let dir = &args.project_dir;
    let text = crate::project::read_project_yml(dir)?;
    let settings = ProjectSettings::parse("dbt_project.yml", &text)?;
    let targets = if settings.clean_targets.is_empty() {
        vec![
            settings.target_path.clone(),
            settings.packages_install_path.clone(),
        ]
    } else {
        settings.clean_targets.clone()
    };
    let root = dir.canonicalize().unwrap_or(dir.clone());
    for t in targets {
        let p = dir.join(&t);
        if !p.exists() {
            continue;
        }
        let abs = p.canonicalize().unwrap_or(p.clone());
        if !abs.starts_with(&root) || abs == root {
            bail!("clean-target '{t}' is outside the project directory; refusing to delete it");
        }
        std::fs::remove_dir_all(&p).with_context(|| format!("cannot delete {}", p.display()))?;
        reporter.info("clean", &format!("Deleted {t}/"));
    }
    Ok(Outcome::Success)
}
