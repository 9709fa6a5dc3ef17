//! `strata deps`: install the packages packages.yml declares (see `crate::deps`).

use anyhow::Result;

use super::Outcome;
use crate::cli::CommonArgs;
use crate::project::ProjectSettings;
use crate::report::Reporter;

pub fn run(args: &CommonArgs) -> Result<Outcome> {
    let reporter = Reporter::new(args.report_settings());
    let dir = &args.project_dir;
    let text = crate::project::read_project_yml(dir)?;
    let settings = ProjectSettings::parse("dbt_project.yml", &text)?;
    let install = dir.join(&settings.packages_install_path);
    let done = crate::deps::install(dir, &install, &crate::deps::Sources::from_env())?;
    if done.is_empty() {
        reporter.info(
            "deps",
            "No packages declared in packages.yml or dependencies.yml",
        );
    }
    for p in done {
        reporter.info(
            "deps",
            &format!("{} {} ({})", p.action, p.name, p.spec.describe()),
        );
    }
    Ok(Outcome::Success)
}
