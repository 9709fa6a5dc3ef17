//! `strata init NAME`: scaffold a project from `project_template/`.

use anyhow::{bail, Context, Result};

use super::Outcome;
use crate::cli::InitArgs;

/// The template files, embedded so the binary works anywhere.
const TEMPLATE: &[(&str, &str)] = &[
    (
        "dbt_project.yml",
        include_str!("../../project_template/dbt_project.yml"),
    ),
    (
        "profiles.yml",
        include_str!("../../project_template/profiles.yml"),
    ),
    (
        "README.md",
        include_str!("../../project_template/README.md"),
    ),
    (
        "models/example/my_first_model.sql",
        include_str!("../../project_template/models/example/my_first_model.sql"),
    ),
    (
        "models/example/my_second_model.sql",
        include_str!("../../project_template/models/example/my_second_model.sql"),
    ),
    (
        "models/example/schema.yml",
        include_str!("../../project_template/models/example/schema.yml"),
    ),
    ("seeds/.gitkeep", ""),
    ("macros/.gitkeep", ""),
    ("snapshots/.gitkeep", ""),
    ("tests/.gitkeep", ""),
    ("analyses/.gitkeep", ""),
    (".gitignore", "target/\ndbt_packages/\nlogs/\n.strata/\n"),
];

pub fn run(args: &InitArgs) -> Result<Outcome> {
    let name = &args.name;
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        bail!("project name '{name}' must be letters, digits and underscores, not starting with a digit");
    }
    let dir = args.dir.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or remove it",
            dir.display()
        );
    }
    for (path, text) in TEMPLATE {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, text.replace("strata_starter", name))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    crate::outln!("Created project '{name}' in {}", dir.display());
    crate::outln!("Next: cd {} && strata compile", dir.display());
    Ok(Outcome::Success)
}
