//! `strata deps` as dbt does it: hub packages (version ranges resolved against
//! the hub's index, tarballs downloaded), `git:` packages (`revision`,
//! `subdirectory`), `tarball:` and `local:` packages, their dependencies in
//! turn, version conflicts reported with who asked for what, and a
//! `package-lock.yml` that pins what was installed and is honoured while
//! packages.yml is unchanged. The hub is `DBT_PACKAGE_HUB_URL` (as in dbt),
//! by default <https://hub.getdbt.com/>.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

use crate::error::{DiagKind, Diagnostic, Error, Result};
use crate::project::packages::{self, Installed, PackageSpec};

const DEFAULT_HUB: &str = "https://hub.getdbt.com/";
const LOCK_FILE: &str = "package-lock.yml";

fn package_err(message: impl Into<String>) -> Diagnostic {
    Diagnostic::new(DiagKind::Package, message)
}

/// Where packages come from: the hub's base URL.
#[derive(Debug, Clone)]
pub struct Sources {
    pub hub_url: String,
}

impl Sources {
    pub fn from_env() -> Sources {
        let mut hub_url =
            std::env::var("DBT_PACKAGE_HUB_URL").unwrap_or_else(|_| DEFAULT_HUB.to_string());
        if !hub_url.ends_with('/') {
            hub_url.push('/');
        }
        Sources { hub_url }
    }
}

/// An HTTP GET with errors that name the host that could not be reached.
fn http_get(url: &str) -> std::result::Result<Vec<u8>, Diagnostic> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_string();
    let resp = ureq::get(url)
        .timeout(std::time::Duration::from_secs(60))
        .call()
        .map_err(|e| match e {
            ureq::Error::Status(code, _) => package_err(format!("{url} answered HTTP {code}")),
            ureq::Error::Transport(t) => package_err(format!(
                "cannot reach {host} to download {url}: {t}"
            ))
            .hint("check the network, or set DBT_PACKAGE_HUB_URL to a reachable package hub"),
        })?;
    let mut out = Vec::new();
    resp.into_reader()
        .take(512 * 1024 * 1024)
        .read_to_end(&mut out)
        .map_err(|e| package_err(format!("reading {url} from {host} failed: {e}")))?;
    Ok(out)
}

/// A hub package's index: its versions, each with its tarball and the
/// packages it depends on.
#[derive(Debug, Clone)]
struct HubIndex {
    versions: BTreeMap<semver::Version, HubVersion>,
}

#[derive(Debug, Clone)]
struct HubVersion {
    /// The version as the hub writes it.
    label: String,
    tarball: String,
    depends: Vec<PackageSpec>,
}

fn hub_index(sources: &Sources, package: &str) -> std::result::Result<HubIndex, Diagnostic> {
    let url = format!("{}api/v1/{package}.json", sources.hub_url);
    let body = http_get(&url)?;
    let j: Json = serde_json::from_slice(&body)
        .map_err(|e| package_err(format!("{url} is not a package index: {e}")))?;
    let mut versions = BTreeMap::new();
    for (label, v) in j
        .get("versions")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
    {
        let Some(version) = parse_version(label) else {
            continue;
        };
        let tarball = v
            .pointer("/downloads/tarball")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let depends = v
            .get("packages")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let yaml: serde_yaml::Value = serde_json::from_value(p.clone()).ok()?;
                packages::spec_of(&yaml)
            })
            .collect();
        versions.insert(
            version,
            HubVersion {
                label: label.clone(),
                tarball,
                depends,
            },
        );
    }
    if versions.is_empty() {
        return Err(package_err(format!(
            "the package hub lists no versions of '{package}' ({url})"
        )));
    }
    Ok(HubIndex { versions })
}

/// `1.2` and `v1.2.3` read as semantic versions.
fn parse_version(s: &str) -> Option<semver::Version> {
    let s = s.trim().trim_start_matches('v');
    semver::Version::parse(s).ok().or_else(|| {
        let parts = s.split('.').count();
        match parts {
            1 => semver::Version::parse(&format!("{s}.0.0")).ok(),
            2 => semver::Version::parse(&format!("{s}.0")).ok(),
            _ => None,
        }
    })
}

/// One of dbt's version constraints (`1.2.3`, `>=1.0.0`, `<2.0.0`).
fn parse_req(s: &str) -> std::result::Result<semver::VersionReq, String> {
    let s = s.trim();
    let starts_with_op = s.starts_with(['<', '>', '=', '~', '^']);
    let text = if starts_with_op {
        s.to_string()
    } else {
        format!("={}", s.trim_start_matches('v'))
    };
    semver::VersionReq::parse(&text).map_err(|e| format!("bad version '{s}': {e}"))
}

/// A constraint on a hub package and who declared it.
#[derive(Debug, Clone)]
struct Want {
    reqs: Vec<String>,
    by: String,
}

/// Installs the project's packages (see the module docs) into `install_dir`.
pub fn install(
    project_dir: &Path,
    install_dir: &Path,
    sources: &Sources,
) -> Result<Vec<Installed>> {
    std::fs::create_dir_all(install_dir).map_err(|source| Error::Write {
        path: install_dir.to_path_buf(),
        source,
    })?;
    let (specs_text, root_specs) = packages::read_specs_with_text(project_dir)?;
    let hash = lock_hash(&specs_text);
    if let Some(locked) = read_lock(project_dir, &hash)? {
        return install_exact(project_dir, install_dir, sources, &locked);
    }
    let mut hub_wants: BTreeMap<String, Vec<Want>> = BTreeMap::new();
    let mut indexes: HashMap<String, HubIndex> = HashMap::new();
    // Git, tarball and local packages fetched: (description, spec, directory).
    let mut others: Vec<(String, PackageSpec, PathBuf)> = Vec::new();
    // Every declaration: (declared in, base directory for local paths, spec).
    let mut queue: VecDeque<(String, PathBuf, PackageSpec)> = root_specs
        .into_iter()
        .map(|s| ("packages.yml".to_string(), project_dir.to_path_buf(), s))
        .collect();
    let mut installed: Vec<Installed> = Vec::new();
    let mut hub_done: HashMap<String, semver::Version> = HashMap::new();
    // Hub packages the hub could not be asked about but that are installed
    // already: kept as they are (working offline).
    let mut kept: std::collections::BTreeSet<String> = Default::default();
    loop {
        while let Some((by, base, spec)) = queue.pop_front() {
            match &spec {
                PackageSpec::Hub { package, versions } => {
                    hub_wants.entry(package.clone()).or_default().push(Want {
                        reqs: versions.clone(),
                        by,
                    });
                }
                other => {
                    let key = other.describe();
                    if others.iter().any(|(k, _, _)| *k == key) {
                        continue;
                    }
                    // A local package already installed under its name (by
                    // another path to it) is installed once.
                    if let PackageSpec::Local { path } = other {
                        if let Some(name) = packages::local_name(&base.join(path)) {
                            if installed.iter().any(|i| i.name == name) {
                                continue;
                            }
                        }
                    }
                    // Fetched now: their dependencies come from their own packages.yml.
                    let (name, dir, done) = fetch_other(other, &base, install_dir, &by)?;
                    for dep in packages::read_specs(&dir)? {
                        queue.push_back((format!("{name}/packages.yml"), dir.clone(), dep));
                    }
                    installed.push(done);
                    others.push((key, other.clone(), dir));
                }
            }
        }
        // Hub packages: the highest version every declaration accepts.
        let mut changed = false;
        for (package, wants) in &hub_wants {
            if kept.contains(package) {
                continue;
            }
            if !indexes.contains_key(package) {
                match hub_index(sources, package) {
                    Ok(index) => {
                        indexes.insert(package.clone(), index);
                    }
                    Err(e) => {
                        let name = package.rsplit('/').next().unwrap_or(package);
                        if install_dir.join(name).join("dbt_project.yml").is_file() {
                            kept.insert(package.clone());
                            installed.push(Installed {
                                name: name.to_string(),
                                spec: PackageSpec::Hub {
                                    package: package.clone(),
                                    versions: wants.iter().flat_map(|w| w.reqs.clone()).collect(),
                                },
                                action: "already installed (the hub could not be asked)",
                            });
                            continue;
                        }
                        let mut e = e;
                        e.message = format!("package '{package}': {}", e.message);
                        return Err(e
                            .hint(format!(
                                "check the network or DBT_PACKAGE_HUB_URL, or copy the package into {}",
                                install_dir.join(name).display()
                            ))
                            .into());
                    }
                }
            }
            let index = &indexes[package];
            let version = choose(package, wants, index)?;
            if hub_done.get(package) == Some(&version) {
                continue;
            }
            changed = true;
            hub_done.insert(package.clone(), version.clone());
            let by = format!("{package}@{}", index.versions[&version].label);
            for dep in &index.versions[&version].depends {
                queue.push_back((by.clone(), project_dir.to_path_buf(), dep.clone()));
            }
        }
        if !changed && queue.is_empty() {
            break;
        }
    }
    let mut lock_entries: Vec<Json> = Vec::new();
    for (package, version) in &hub_done {
        let v = &indexes[package].versions[version];
        let name = download_tarball(&v.tarball, install_dir, None)?;
        installed.push(Installed {
            name,
            spec: PackageSpec::Hub {
                package: package.clone(),
                versions: vec![v.label.clone()],
            },
            action: "installed",
        });
        lock_entries.push(serde_json::json!({"package": package, "version": v.label}));
    }
    for (_, spec, _) in &others {
        lock_entries.push(lock_entry(spec));
    }
    // A lock must list everything; with packages kept unresolved it would not.
    if kept.is_empty() {
        write_lock(project_dir, &lock_entries, &hash)?;
    }
    Ok(installed)
}

/// The highest version of `package` that satisfies every declaration, or an
/// error naming who asked for what.
fn choose(
    package: &str,
    wants: &[Want],
    index: &HubIndex,
) -> std::result::Result<semver::Version, Diagnostic> {
    let mut reqs: Vec<(semver::VersionReq, &Want)> = Vec::new();
    for w in wants {
        for r in &w.reqs {
            let req = parse_req(r)
                .map_err(|e| package_err(format!("{package} (declared in {}): {e}", w.by)))?;
            reqs.push((req, w));
        }
    }
    index
        .versions
        .keys()
        .rev()
        .filter(|v| v.pre.is_empty())
        .find(|v| reqs.iter().all(|(r, _)| r.matches(v)))
        .cloned()
        .ok_or_else(|| {
            let asked: Vec<String> = wants
                .iter()
                .map(|w| format!("{} wants {}", w.by, w.reqs.join(", ")))
                .collect();
            let available: Vec<String> = index.versions.values().map(|v| v.label.clone()).collect();
            package_err(format!(
                "version conflict for {package}: {}; no version satisfies all of them (the hub has {})",
                asked.join("; "),
                available.join(", ")
            ))
        })
}

/// Installs a git, tarball or local package; its name, directory and report.
fn fetch_other(
    spec: &PackageSpec,
    base: &Path,
    install_dir: &Path,
    declared_in: &str,
) -> std::result::Result<(String, PathBuf, Installed), Error> {
    let (name, dir) = match spec {
        PackageSpec::Local { path } => {
            let (name, dir) = packages::install_local(&base.join(path), path, install_dir, declared_in)?;
            (name, dir)
        }
        PackageSpec::Git {
            git,
            revision,
            subdirectory,
        } => {
            let name = clone_git(git, revision.as_deref(), subdirectory.as_deref(), install_dir)?;
            let dir = install_dir.join(&name);
            (name, dir)
        }
        PackageSpec::Tarball { tarball, name } => {
            let name = download_tarball(tarball, install_dir, name.as_deref())?;
            let dir = install_dir.join(&name);
            (name, dir)
        }
        PackageSpec::Hub { package, .. } => {
            return Err(package_err(format!(
                "{package} is a hub package; hub packages are resolved together (declared in {declared_in})"
            ))
            .into())
        }
    };
    Ok((
        name.clone(),
        dir,
        Installed {
            name,
            spec: spec.clone(),
            action: "installed",
        },
    ))
}

/// Downloads a `.tar.gz` and installs the package inside it under its
/// `dbt_project.yml` name; returns that name.
fn download_tarball(
    url: &str,
    install_dir: &Path,
    name: Option<&str>,
) -> std::result::Result<String, Error> {
    let bytes = http_get(url)?;
    let tmp = tempdir_in(install_dir)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    archive
        .unpack(&tmp)
        .map_err(|e| package_err(format!("{url} is not a readable .tar.gz: {e}")))?;
    let root = package_root(&tmp)
        .ok_or_else(|| package_err(format!("the archive {url} holds no dbt_project.yml")))?;
    let result = place(&root, install_dir, name, url);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Clones a git repository at `revision` (branch, tag or commit) and installs
/// the package at its root or `subdirectory`; returns its name.
fn clone_git(
    url: &str,
    revision: Option<&str>,
    subdirectory: Option<&str>,
    install_dir: &Path,
) -> std::result::Result<String, Error> {
    let tmp = tempdir_in(install_dir)?;
    let repo = tmp.join("repo");
    let run = |args: &[&str], what: &str| -> std::result::Result<String, Diagnostic> {
        let out = Command::new("git")
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| {
                package_err(format!("cannot run git to {what}: {e}")).hint("install git")
            })?;
        if !out.status.success() {
            return Err(package_err(format!(
                "git could not {what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let repo_s = repo.to_string_lossy().to_string();
    run(&["clone", "--quiet", url, &repo_s], &format!("clone {url}"))?;
    if let Some(rev) = revision {
        run(
            &["-C", &repo_s, "checkout", "--quiet", rev],
            &format!("check out revision '{rev}' of {url}"),
        )?;
    }
    let root = match subdirectory {
        Some(sub) => repo.join(sub),
        None => repo.clone(),
    };
    if !root.join("dbt_project.yml").is_file() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(package_err(format!(
            "{url}{} has no dbt_project.yml",
            subdirectory
                .map(|s| format!(" (subdirectory {s})"))
                .unwrap_or_default()
        ))
        .into());
    }
    let _ = std::fs::remove_dir_all(root.join(".git"));
    let result = place(&root, install_dir, None, url);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Moves a fetched package into `install_dir/<name>`, replacing what was there.
fn place(
    root: &Path,
    install_dir: &Path,
    name: Option<&str>,
    from: &str,
) -> std::result::Result<String, Error> {
    let text = std::fs::read_to_string(root.join("dbt_project.yml"))
        .map_err(|e| package_err(format!("{from}: cannot read its dbt_project.yml: {e}")))?;
    let settings =
        crate::project::ProjectSettings::parse(&format!("{from}/dbt_project.yml"), &text)?;
    let name = name.map(str::to_string).unwrap_or(settings.name);
    let dest = install_dir.join(&name);
    packages::remove_path(&dest);
    std::fs::rename(root, &dest)
        .or_else(|_| packages::copy_dir(root, &dest))
        .map_err(|source| Error::Write {
            path: dest.clone(),
            source,
        })?;
    Ok(name)
}

/// The directory holding dbt_project.yml: the top, or its single folder.
fn package_root(dir: &Path) -> Option<PathBuf> {
    if dir.join("dbt_project.yml").is_file() {
        return Some(dir.to_path_buf());
    }
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs
        .into_iter()
        .find(|p| p.join("dbt_project.yml").is_file())
}

fn tempdir_in(dir: &Path) -> std::result::Result<PathBuf, Error> {
    let p = dir.join(format!(".strata-fetch-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&p).map_err(|source| Error::Write {
        path: p.clone(),
        source,
    })?;
    Ok(p)
}

fn lock_hash(packages_text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(packages_text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock_entry(spec: &PackageSpec) -> Json {
    match spec {
        PackageSpec::Local { path } => serde_json::json!({"local": path}),
        PackageSpec::Git {
            git,
            revision,
            subdirectory,
        } => {
            let mut e = serde_json::json!({"git": git, "revision": revision.clone().unwrap_or_else(|| "HEAD".into())});
            if let Some(s) = subdirectory {
                e["subdirectory"] = Json::from(s.as_str());
            }
            e
        }
        PackageSpec::Tarball { tarball, name } => {
            serde_json::json!({"tarball": tarball, "name": name})
        }
        PackageSpec::Hub { package, versions } => {
            serde_json::json!({"package": package, "version": versions.join(", ")})
        }
    }
}

fn write_lock(project_dir: &Path, entries: &[Json], hash: &str) -> Result<()> {
    let doc = serde_json::json!({"packages": entries, "sha1_hash": hash});
    let text = serde_yaml::to_string(&doc)
        .map_err(|e| package_err(format!("cannot write {LOCK_FILE}: {e}")))?;
    let path = project_dir.join(LOCK_FILE);
    std::fs::write(&path, text).map_err(|source| Error::Write { path, source })?;
    Ok(())
}

/// The locked packages, when package-lock.yml exists and was written for
/// this packages.yml.
fn read_lock(project_dir: &Path, hash: &str) -> Result<Option<Vec<PackageSpec>>> {
    let Ok(text) = std::fs::read_to_string(project_dir.join(LOCK_FILE)) else {
        return Ok(None);
    };
    let doc: serde_yaml::Value = crate::error::yaml_from_str(LOCK_FILE, &text)?;
    if doc.get("sha1_hash").and_then(serde_yaml::Value::as_str) != Some(hash) {
        return Ok(None);
    }
    Ok(Some(
        doc.get("packages")
            .and_then(serde_yaml::Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(packages::spec_of)
            .collect(),
    ))
}

/// Installs exactly what the lock file lists (no resolution).
fn install_exact(
    project_dir: &Path,
    install_dir: &Path,
    sources: &Sources,
    locked: &[PackageSpec],
) -> Result<Vec<Installed>> {
    let mut out = Vec::new();
    for spec in locked {
        match spec {
            PackageSpec::Hub { package, versions } => {
                let index = hub_index(sources, package)?;
                let want = versions.first().cloned().unwrap_or_default();
                let v = index
                    .versions
                    .values()
                    .find(|v| v.label == want)
                    .ok_or_else(|| {
                        package_err(format!(
                            "{LOCK_FILE} pins {package} {want}, which the hub does not list"
                        ))
                        .hint("delete package-lock.yml to resolve versions again")
                    })?;
                let name = download_tarball(&v.tarball, install_dir, None)?;
                out.push(Installed {
                    name,
                    spec: spec.clone(),
                    action: "installed (locked)",
                });
            }
            other => {
                let (_, _, mut done) = fetch_other(other, project_dir, install_dir, LOCK_FILE)?;
                done.action = "installed (locked)";
                out.push(done);
            }
        }
    }
    Ok(out)
}
