//! `strata deps`: install local packages; remote ones must already be in place.

use anyhow::Result;

use super::Outcome;
use crate::cli::CommonArgs;
use crate::project::{packages, ProjectSettings};
use crate::report::Reporter;

pub fn run(args: &CommonArgs) -> Result<Outcome> {
    let reporter = Reporter::new(args.report_settings());
    let dir = &args.project_dir;
    let text = crate::project::read_project_yml(dir)?;
    let settings = ProjectSettings::parse("dbt_project.yml", &text)?;
    let install = dir.join(&settings.packages_install_path);
    let done = packages::install(dir, &install)?;
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
