//! `packages.yml`/`dependencies.yml` and installing local packages into
//! `dbt_packages/` (remote ones are fetched by the deps module).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use crate::error::{DiagKind, Diagnostic, Result};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct PackagesFile {
    packages: Vec<Yaml>,
}

/// One declared dependency.
#[derive(Debug, Clone, PartialEq)]
pub enum PackageSpec {
    Local {
        path: String,
    },
    /// `package: org/name` with its version constraints (`>=1.0.0`, `<2.0.0`).
    Hub {
        package: String,
        versions: Vec<String>,
    },
    Git {
        git: String,
        revision: Option<String>,
        subdirectory: Option<String>,
    },
    Tarball {
        tarball: String,
        name: Option<String>,
    },
}

impl PackageSpec {
    pub fn describe(&self) -> String {
        match self {
            PackageSpec::Local { path } => format!("local: {path}"),
            PackageSpec::Hub { package, versions } => {
                format!("{package} {}", versions.join(", "))
            }
            PackageSpec::Git {
                git,
                revision,
                subdirectory,
            } => {
                format!(
                    "git: {git}{}{}",
                    revision
                        .as_deref()
                        .map(|r| format!("@{r}"))
                        .unwrap_or_default(),
                    subdirectory
                        .as_deref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                )
            }
            PackageSpec::Tarball { tarball, .. } => format!("tarball: {tarball}"),
        }
    }
}

/// One `packages:` entry, or `None` when it names no kind of package.
pub fn spec_of(p: &Yaml) -> Option<PackageSpec> {
    let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
    if let Some(path) = s("local") {
        return Some(PackageSpec::Local { path });
    }
    if let Some(package) = s("package") {
        let versions = match p.get("version") {
            Some(Yaml::Sequence(v)) => v
                .iter()
                .filter_map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .or_else(|| x.as_f64().map(|f| f.to_string()))
                })
                .collect(),
            Some(Yaml::String(v)) => v
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            Some(Yaml::Number(n)) => vec![n.to_string()],
            _ => Vec::new(),
        };
        return Some(PackageSpec::Hub { package, versions });
    }
    if let Some(git) = s("git") {
        return Some(PackageSpec::Git {
            git,
            revision: s("revision").or_else(|| {
                p.get("revision")
                    .and_then(|v| v.as_f64())
                    .map(|f| f.to_string())
            }),
            subdirectory: s("subdirectory"),
        });
    }
    if let Some(tarball) = s("tarball") {
        return Some(PackageSpec::Tarball {
            tarball,
            name: s("name"),
        });
    }
    None
}

/// Reads `packages.yml` or `dependencies.yml` (the first that exists).
pub fn read_specs(project_dir: &Path) -> Result<Vec<PackageSpec>> {
    Ok(read_specs_with_text(project_dir)?.1)
}

/// `read_specs`, with the file's text (which package-lock.yml is keyed on).
pub fn read_specs_with_text(project_dir: &Path) -> Result<(String, Vec<PackageSpec>)> {
    for name in ["packages.yml", "dependencies.yml"] {
        let path = project_dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file: PackagesFile =
            crate::error::yaml_from_str::<Option<PackagesFile>>(name, &text)?.unwrap_or_default();
        let mut out = Vec::new();
        for (i, p) in file.packages.iter().enumerate() {
            let spec = spec_of(p).ok_or_else(|| {
                Diagnostic::new(
                    DiagKind::Package,
                    format!(
                        "package entry {} has none of local/package/git/tarball",
                        i + 1
                    ),
                )
                .file(name)
            })?;
            out.push(spec);
        }
        return Ok((text, out));
    }
    Ok((String::new(), vec![]))
}

/// Directories of installed packages (each holding a dbt_project.yml), sorted.
pub fn installed_package_dirs(install_dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(install_dir) else {
        return vec![];
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("dbt_project.yml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// What `deps` did for one package.
#[derive(Debug)]
pub struct Installed {
    pub name: String,
    pub spec: PackageSpec,
    pub action: &'static str,
}

/// The name in a local package's dbt_project.yml, if it can be read.
pub fn local_name(src: &Path) -> Option<String> {
    let text = std::fs::read_to_string(src.join("dbt_project.yml")).ok()?;
    super::ProjectSettings::parse("dbt_project.yml", &text)
        .ok()
        .map(|s| s.name)
}

/// Links (or copies) a local package into `install_dir` under its
/// dbt_project.yml name; its name and real directory.
pub fn install_local(
    src: &Path,
    label: &str,
    install_dir: &Path,
    declared_in: &str,
) -> Result<(String, PathBuf)> {
    let text = std::fs::read_to_string(src.join("dbt_project.yml")).map_err(|e| {
        Diagnostic::new(
            DiagKind::Package,
            format!("local package '{label}' has no readable dbt_project.yml: {e}"),
        )
        .file(declared_in)
    })?;
    let settings = super::ProjectSettings::parse(&format!("{label}/dbt_project.yml"), &text)?;
    let dest = install_dir.join(&settings.name);
    if dest.exists() || dest.symlink_metadata().is_ok() {
        remove_path(&dest);
    }
    let abs = src.canonicalize().unwrap_or(src.to_path_buf());
    link_or_copy(&abs, &dest).map_err(|source| crate::error::Error::Write {
        path: dest.clone(),
        source,
    })?;
    Ok((settings.name, abs))
}

/// Removes an installed package (a link or a directory).
pub fn remove_path(p: &Path) {
    if p.symlink_metadata()
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
    {
        let _ = std::fs::remove_file(p);
    } else {
        let _ = std::fs::remove_dir_all(p);
    }
}

fn link_or_copy(src: &Path, dest: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(src, dest).is_ok() {
            return Ok(());
        }
    }
    copy_dir(src, dest)
}

pub fn copy_dir(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dest.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), to)?;
        }
    }
    Ok(())
}
