//! `packages.yml`/`dependencies.yml` and installing local packages into `dbt_packages/`.

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
    Hub {
        package: String,
        version: String,
    },
    Git {
        git: String,
        revision: Option<String>,
    },
    Tarball {
        tarball: String,
    },
}

impl PackageSpec {
    pub fn describe(&self) -> String {
        match self {
            PackageSpec::Local { path } => format!("local: {path}"),
            PackageSpec::Hub { package, version } => format!("{package} {version}"),
            PackageSpec::Git { git, revision } => {
                format!(
                    "git: {git}{}",
                    revision
                        .as_deref()
                        .map(|r| format!("@{r}"))
                        .unwrap_or_default()
                )
            }
            PackageSpec::Tarball { tarball } => format!("tarball: {tarball}"),
        }
    }

    /// The folder name a remote package would be installed under, best guess.
    fn guessed_name(&self) -> String {
        let raw = match self {
            PackageSpec::Local { path } => path.as_str(),
            PackageSpec::Hub { package, .. } => package.as_str(),
            PackageSpec::Git { git, .. } => git.as_str(),
            PackageSpec::Tarball { tarball } => tarball.as_str(),
        };
        raw.trim_end_matches(".git")
            .rsplit(['/', ':'])
            .next()
            .unwrap_or(raw)
            .replace('-', "_")
    }
}

/// Reads `packages.yml` or `dependencies.yml` (the first that exists).
pub fn read_specs(project_dir: &Path) -> Result<Vec<PackageSpec>> {
    for name in ["packages.yml", "dependencies.yml"] {
        let path = project_dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file: PackagesFile =
            crate::error::yaml_from_str::<Option<PackagesFile>>(name, &text)?.unwrap_or_default();
        let mut out = Vec::new();
        for (i, p) in file.packages.iter().enumerate() {
            let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let spec = if let Some(path) = s("local") {
                PackageSpec::Local { path }
            } else if let Some(package) = s("package") {
                let version = match p.get("version") {
                    Some(Yaml::Sequence(v)) => v
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    Some(v) => v.as_str().map(str::to_string).unwrap_or_default(),
                    None => String::new(),
                };
                PackageSpec::Hub { package, version }
            } else if let Some(git) = s("git") {
                PackageSpec::Git {
                    git,
                    revision: s("revision"),
                }
            } else if let Some(tarball) = s("tarball") {
                PackageSpec::Tarball { tarball }
            } else {
                return Err(Diagnostic::new(
                    DiagKind::Package,
                    format!(
                        "package entry {} has none of local/package/git/tarball",
                        i + 1
                    ),
                )
                .file(name)
                .into());
            };
            out.push(spec);
        }
        return Ok(out);
    }
    Ok(vec![])
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

/// Installs the project's packages and, as dbt does, the packages those
/// declare in turn (each once, by name, the first declaration winning):
/// local ones are linked; remote ones must already be present.
pub fn install(project_dir: &Path, install_dir: &Path) -> Result<Vec<Installed>> {
    std::fs::create_dir_all(install_dir).map_err(|source| crate::error::Error::Write {
        path: install_dir.to_path_buf(),
        source,
    })?;
    // (directory whose packages.yml declared it, label of that file, spec)
    let mut queue: std::collections::VecDeque<(PathBuf, String, PackageSpec)> =
        read_specs(project_dir)?
            .into_iter()
            .map(|spec| (project_dir.to_path_buf(), "packages.yml".to_string(), spec))
            .collect();
    let mut out: Vec<Installed> = Vec::new();
    while let Some((base, declared_in, spec)) = queue.pop_front() {
        let installed_dir = match &spec {
            PackageSpec::Local { path } => {
                let src = base.join(path);
                let text = std::fs::read_to_string(src.join("dbt_project.yml")).map_err(|e| {
                    Diagnostic::new(
                        DiagKind::Package,
                        format!("local package '{path}' has no readable dbt_project.yml: {e}"),
                    )
                    .file(&declared_in)
                })?;
                let settings =
                    super::ProjectSettings::parse(&format!("{path}/dbt_project.yml"), &text)?;
                if out.iter().any(|i| i.name == settings.name) {
                    continue;
                }
                let dest = install_dir.join(&settings.name);
                if dest.exists() || dest.symlink_metadata().is_ok() {
                    remove_path(&dest);
                }
                let abs = src.canonicalize().unwrap_or(src.clone());
                link_or_copy(&abs, &dest).map_err(|source| crate::error::Error::Write {
                    path: dest.clone(),
                    source,
                })?;
                out.push(Installed {
                    name: settings.name,
                    spec,
                    action: "installed",
                });
                abs
            }
            remote => {
                let name = remote.guessed_name();
                if out.iter().any(|i| i.name == name) {
                    continue;
                }
                let dir = install_dir.join(&name);
                if !dir.join("dbt_project.yml").is_file() {
                    return Err(Diagnostic::new(
                        DiagKind::Package,
                        format!(
                            "package '{}' must be downloaded, and this machine has no network access to package hubs or git",
                            remote.describe()
                        ),
                    )
                    .file(&declared_in)
                    .hint(format!(
                        "copy the package into {}/{name}, or declare it as `local:`",
                        install_dir.display()
                    ))
                    .into());
                }
                out.push(Installed {
                    name,
                    spec,
                    action: "already installed",
                });
                dir
            }
        };
        // Its own dependencies, declared relative to it.
        let label = format!("{}/packages.yml", installed_dir.display());
        for dep in read_specs(&installed_dir)? {
            queue.push_back((installed_dir.clone(), label.clone(), dep));
        }
    }
    Ok(out)
}

fn remove_path(p: &Path) {
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

fn copy_dir(src: &Path, dest: &Path) -> std::io::Result<()> {
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
