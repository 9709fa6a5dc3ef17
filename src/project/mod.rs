//! The loaded project: the root package, installed packages, their files, vars and target.

pub mod config;
pub mod dbt_project;
pub mod packages;
pub mod profiles;
pub mod schema;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use rayon::prelude::*;
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

pub use dbt_project::ProjectSettings;
pub use profiles::Target;

use crate::confmap::{yaml_key, yaml_to_json};
use crate::error::{DiagKind, Diagnostic, Error, Result};

/// One dbt project: the root or an installed package.
#[derive(Debug, Clone)]
pub struct Package {
    pub settings: ProjectSettings,
    pub root: PathBuf,
    pub is_root: bool,
    /// Vars as this package sees them (CLI > root scoped > root global > own).
    pub vars: IndexMap<String, Json>,
}

impl Package {
    pub fn name(&self) -> &str {
        &self.settings.name
    }
}

/// What a file under a resource path is, which decides how it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Model,
    Seed,
    Snapshot,
    Analysis,
    SingularTest,
    /// SQL with `{% macro %}`/`{% test %}`/`{% materialization %}` definitions.
    Macro,
    Properties,
    Docs,
}

/// A file's identity, stable across runs and edits: its package and its path
/// within the package (dbt's `original_file_path`, with `/` separators).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub package: String,
    pub path: String,
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.package, self.path)
    }
}

/// A file read from disk.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub id: FileId,
    pub kind: FileKind,
    /// Relative to the resource directory it was found in (dbt's `path`).
    pub path: String,
    /// Where messages say it is: relative to the working project.
    pub display: String,
    pub contents: String,
}

/// Everything loaded before parsing: packages, files, CLI vars and the target.
#[derive(Debug)]
pub struct Project {
    pub dir: PathBuf,
    pub packages: Vec<Package>,
    pub files: Vec<SourceFile>,
    pub cli_vars: IndexMap<String, Json>,
    pub target: Target,
    pub selectors_yml: Option<(String, String)>,
    pub warnings: Vec<String>,
    /// The subcommand (`flags.WHICH`) and `--full-refresh` (`flags.FULL_REFRESH`).
    pub which: String,
    pub full_refresh: bool,
}

/// Options of project loading that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub project_dir: PathBuf,
    pub profiles_dir: Option<PathBuf>,
    pub profile: Option<String>,
    pub target: Option<String>,
    pub vars: Option<String>,
    /// Use a placeholder target instead of reading profiles.yml.
    pub offline: bool,
    /// The subcommand and `--full-refresh`, as templates see them in `flags`.
    pub which: String,
    pub full_refresh: bool,
}

impl Project {
    pub fn root(&self) -> &Package {
        &self.packages[0]
    }

    pub fn name(&self) -> &str {
        self.root().name()
    }

    /// An installed package (or the root) by name.
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name() == name)
    }

    /// The text of a project file, for quoting it in messages.
    pub fn file_text(&self, package: &str, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.id.package == package && f.id.path == path)
            .map(|f| f.contents.as_str())
    }

    pub fn target_dir(&self, flag: Option<&Path>) -> PathBuf {
        match flag {
            Some(p) => p.to_path_buf(),
            None => self.dir.join(&self.root().settings.target_path),
        }
    }

    pub fn load(opts: &LoadOptions) -> Result<Project> {
        let dir = opts.project_dir.clone();
        let cli_vars = parse_cli_vars(opts.vars.as_deref())?;
        // dbt_project.yml is rendered with `target`, so the profile comes
        // first, named by the file's `profile:` (or `name:`) key as written.
        let profile_name = match &opts.profile {
            Some(p) => p.clone(),
            None => profile_key(&dir, &cli_vars)?,
        };
        let target = if opts.offline {
            Target::offline(&profile_name)
        } else {
            let pdir = profiles::profiles_dir(opts.profiles_dir.as_deref(), &dir);
            let vars_for_render = cli_vars.clone();
            let render = move |s: &str| {
                crate::jinja::render_config_string(
                    s,
                    &vars_for_render,
                    None,
                    crate::jinja::SecretEnv::Allowed,
                )
            };
            profiles::load_target(&pdir, &profile_name, opts.target.as_deref(), &render)?
        };
        let target_json = target.to_json();
        let root_settings = read_settings(&dir, &cli_vars, &target_json)?;
        let mut warnings = root_settings.warnings.clone();

        let mut packages = vec![Package {
            settings: root_settings,
            root: dir.clone(),
            is_root: true,
            vars: IndexMap::new(),
        }];
        let install = dir.join(&packages[0].settings.packages_install_path);
        for pkg_dir in packages::installed_package_dirs(&install) {
            let settings = read_settings(&pkg_dir, &cli_vars, &target_json)?;
            if packages.iter().any(|p| p.name() == settings.name) {
                continue;
            }
            warnings.extend(settings.warnings.iter().cloned());
            packages.push(Package {
                settings,
                root: pkg_dir,
                is_root: false,
                vars: IndexMap::new(),
            });
        }
        let names: BTreeSet<String> = packages.iter().map(|p| p.name().to_string()).collect();
        let root_vars = packages[0].settings.vars.clone();
        for pkg in packages.iter_mut() {
            pkg.vars = resolve_vars(pkg, &root_vars, &names, &cli_vars);
        }

        let files = discover_files(&dir, &packages)?;
        let selectors_path = dir.join("selectors.yml");
        let selectors_yml = std::fs::read_to_string(&selectors_path)
            .ok()
            .map(|t| ("selectors.yml".to_string(), t));
        Ok(Project {
            dir,
            packages,
            files,
            cli_vars,
            target,
            selectors_yml,
            warnings,
            which: opts.which.clone(),
            full_refresh: opts.full_refresh,
        })
    }
}

/// The text of a project's dbt_project.yml: missing, unreadable and not
/// UTF-8 are three different errors.
pub fn read_project_yml(dir: &Path) -> std::result::Result<String, Diagnostic> {
    let path = dir.join("dbt_project.yml");
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Diagnostic::new(
                DiagKind::Config,
                format!("no dbt_project.yml in {}", dir.display()),
            )
            .hint("run strata from a dbt project directory, pass --project-dir, or create one with `strata init NAME`")
        } else {
            Diagnostic::new(DiagKind::Io, format!("cannot read {}: {e}", path.display()))
        }
    })?;
    String::from_utf8(bytes)
        .map_err(|e| crate::error::utf8_diagnostic("dbt_project.yml", e.as_bytes(), e.utf8_error()))
}

fn project_file_label(dir: &Path) -> String {
    if dir.ends_with(".") || dir.as_os_str().is_empty() {
        "dbt_project.yml".to_string()
    } else {
        dir.join("dbt_project.yml").display().to_string()
    }
}

/// The profile a project names (`profile:`, else `name:`), read before the
/// rest of dbt_project.yml is rendered (that needs the profile's target).
fn profile_key(dir: &Path, cli_vars: &IndexMap<String, Json>) -> Result<String> {
    let file = project_file_label(dir);
    let text = read_project_yml(dir)?;
    let raw: Yaml = crate::error::yaml_from_str(&file, &text)?;
    let key = ["profile", "name"]
        .iter()
        .find_map(|k| raw.get(*k).and_then(Yaml::as_str).map(str::to_string))
        .unwrap_or_default();
    if !key.contains("{{") {
        return Ok(key);
    }
    crate::jinja::render_config_string(&key, cli_vars, None, crate::jinja::SecretEnv::Refused)
        .map_err(|e| {
            let line = crate::error::line_of(&text, "profile:");
            Error::from(Diagnostic::new(DiagKind::EnvVar, e).at(&file, Some(&text), line, 1))
        })
}

fn read_settings(
    dir: &Path,
    cli_vars: &IndexMap<String, Json>,
    target: &Json,
) -> Result<ProjectSettings> {
    let text = read_project_yml(dir)?;
    let file = project_file_label(dir);
    let text = render_project_text(&file, &text, cli_vars, target)?;
    ProjectSettings::parse(&file, &text)
}

/// dbt renders `env_var()`/`var()` in dbt_project.yml, except in hooks, which
/// are rendered when they run.
fn render_project_text(
    file: &str,
    text: &str,
    cli_vars: &IndexMap<String, Json>,
    target: &Json,
) -> Result<String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut in_hooks_indent: Option<usize> = None;
    // `vars:` stays as written: dbt renders a var where it is used.
    let mut in_vars = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if in_vars {
            if trimmed.is_empty() || trimmed.starts_with('#') || indent > 0 {
                out.push_str(line);
                continue;
            }
            in_vars = false;
        }
        if indent == 0 && trimmed.split(':').next() == Some("vars") {
            in_vars = true;
            out.push_str(line);
            continue;
        }
        if let Some(ind) = in_hooks_indent {
            if trimmed.is_empty() || indent > ind || trimmed.starts_with('-') && indent >= ind {
                out.push_str(line);
                continue;
            }
            in_hooks_indent = None;
        }
        let key = trimmed.split(':').next().unwrap_or("").trim();
        if matches!(
            key.trim_start_matches('+'),
            "on-run-start" | "on-run-end" | "pre-hook" | "post-hook" | "pre_hook" | "post_hook"
        ) {
            in_hooks_indent = Some(indent);
            out.push_str(line);
            continue;
        }
        if line.contains("{{") && !trimmed.starts_with('#') {
            let rendered = crate::jinja::render_config_string(
                line,
                cli_vars,
                Some(target),
                crate::jinja::SecretEnv::Refused,
            )
            .map_err(|e| Diagnostic::new(DiagKind::EnvVar, e).at(file, Some(text), i + 1, 1))?;
            out.push_str(&rendered);
            if line.ends_with('\n') && !rendered.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// `--vars` accepts YAML or JSON (JSON is YAML).
pub fn parse_cli_vars(s: Option<&str>) -> Result<IndexMap<String, Json>> {
    let Some(s) = s else {
        return Ok(IndexMap::new());
    };
    crate::yaml_depth::check(s).map_err(|e| {
        Diagnostic::new(
            DiagKind::Config,
            format!("--vars is not valid YAML or JSON: {e}"),
        )
    })?;
    let v: Yaml = serde_yaml::from_str(s).map_err(|e| {
        Diagnostic::new(
            DiagKind::Config,
            format!("--vars is not valid YAML or JSON: {e}"),
        )
        .hint("example: --vars '{start_date: 2024-01-01, region: eu}'")
    })?;
    match v {
        Yaml::Mapping(m) => Ok(m
            .iter()
            .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
            .collect()),
        Yaml::Null => Ok(IndexMap::new()),
        _ => Err(
            Diagnostic::new(DiagKind::Config, "--vars must be a mapping")
                .hint("example: --vars '{key: value}'")
                .into(),
        ),
    }
}

fn resolve_vars(
    pkg: &Package,
    root_vars: &Mapping,
    packages: &BTreeSet<String>,
    cli: &IndexMap<String, Json>,
) -> IndexMap<String, Json> {
    let mut out = IndexMap::new();
    let mut layer = |vars: &Mapping| {
        for (k, v) in vars {
            let key = yaml_key(k);
            if !(packages.contains(&key) && v.is_mapping()) {
                out.insert(key, yaml_to_json(v));
            }
        }
        if let Some(Yaml::Mapping(scoped)) = vars.get(pkg.name()) {
            for (k, v) in scoped {
                out.insert(yaml_key(k), yaml_to_json(v));
            }
        }
    };
    if !pkg.is_root {
        layer(&pkg.settings.vars);
    }
    layer(root_vars);
    for (k, v) in cli {
        out.insert(k.clone(), v.clone());
    }
    out
}

fn discover_files(project_dir: &Path, packages: &[Package]) -> Result<Vec<SourceFile>> {
    let mut wanted: Vec<(usize, FileKind, PathBuf, String, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (pi, pkg) in packages.iter().enumerate() {
        let s = &pkg.settings;
        let groups: [(&Vec<String>, FileKind); 6] = [
            (&s.model_paths, FileKind::Model),
            (&s.seed_paths, FileKind::Seed),
            (&s.snapshot_paths, FileKind::Snapshot),
            (&s.analysis_paths, FileKind::Analysis),
            (&s.test_paths, FileKind::SingularTest),
            (&s.macro_paths, FileKind::Macro),
        ];
        let docs_paths: Vec<String> = s
            .docs_paths
            .clone()
            .unwrap_or_else(|| groups.iter().flat_map(|(p, _)| p.iter().cloned()).collect());
        for (dirs, kind) in groups {
            for d in dirs {
                walk(&pkg.root, d, |rel_in_dir, orig, ext| {
                    let k = match (kind, ext) {
                        (_, "yml" | "yaml") => FileKind::Properties,
                        (FileKind::Seed, "csv") => FileKind::Seed,
                        (FileKind::Seed, _) => return,
                        (FileKind::SingularTest, "sql") if rel_in_dir.starts_with("generic/") => {
                            FileKind::Macro
                        }
                        // Unit tests' fixture files, read when a unit test names one.
                        (FileKind::SingularTest, _) if rel_in_dir.starts_with("fixtures/") => {
                            return
                        }
                        (k, "sql") => k,
                        _ => return,
                    };
                    if seen.insert((pi, orig.clone())) {
                        wanted.push((pi, k, pkg.root.join(&orig), orig, rel_in_dir));
                    }
                });
            }
        }
        for d in &docs_paths {
            walk(&pkg.root, d, |rel, orig, ext| {
                if ext == "md" && seen.insert((pi, orig.clone())) {
                    wanted.push((pi, FileKind::Docs, pkg.root.join(&orig), orig, rel));
                }
            });
        }
    }
    // Messages name package files by their path from the working project.
    let prefixes: Vec<String> = packages
        .iter()
        .map(|p| {
            if p.is_root {
                String::new()
            } else {
                let rel = p
                    .root
                    .strip_prefix(project_dir)
                    .map(|r| r.to_string_lossy().to_string())
                    .unwrap_or_else(|_| p.root.display().to_string());
                format!("{rel}/")
            }
        })
        .collect();
    wanted
        .into_par_iter()
        .map(|(package, kind, abs, original_path, path)| {
            let bytes = std::fs::read(&abs).map_err(|source| Error::Read {
                path: abs.clone(),
                source,
            })?;
            let contents = match String::from_utf8(bytes) {
                Ok(text) => text,
                // A seed is read again when it is loaded, and fails there alone
                // with its line; parsing needs only its checksum.
                Err(e) if kind == FileKind::Seed => {
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                }
                Err(e) => {
                    return Err(Error::from(crate::error::utf8_diagnostic(
                        &original_path,
                        e.as_bytes(),
                        e.utf8_error(),
                    )))
                }
            };
            Ok(SourceFile {
                display: format!("{}{original_path}", prefixes[package]),
                id: FileId {
                    package: packages[package].name().to_string(),
                    path: original_path,
                },
                kind,
                path,
                contents,
            })
        })
        .collect()
}

/// Visits files under `root/dir` in sorted order: (path within dir, path within root, extension).
fn walk(root: &Path, dir: &str, mut f: impl FnMut(String, String, &str)) {
    let base = root.join(dir);
    if !base.is_dir() {
        return;
    }
    // A nested dbt project (a fixture, an unlinked package) is not part of this one.
    for entry in walkdir::WalkDir::new(&base)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir() && e.path().join("dbt_project.yml").is_file())
        })
        .filter_map(|e| e.ok())
    {
        if !entry.file_type().is_file() {
            continue;
        }
        let p = entry.path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let Ok(rel) = p.strip_prefix(&base) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        if rel.split('/').any(|seg| seg.starts_with('.')) {
            continue;
        }
        let orig = if dir == "." || dir.is_empty() {
            rel.clone()
        } else {
            format!("{}/{}", dir.trim_end_matches('/'), rel)
        };
        f(rel, orig, ext);
    }
}
