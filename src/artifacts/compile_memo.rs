//! An unchanged `strata compile` reuses its outputs: when every input of the
//! last compile is unchanged (Strata's build, the command line, the target,
//! every package's settings and vars, every file the project read, the env
//! vars its renders read) and nothing it wrote has been touched since, the
//! compiled files and manifest.json already hold what a compile would write.
//! Only the manifest's invocation metadata is new, and it is rewritten in
//! place. A compile that read the clock, the warehouse or logged is never
//! reused (see `jinja::CompileEffects`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::manifest::cache::{build_id, env_hash, hash_parts, Hash};
use crate::project::Project;

pub const FILE_NAME: &str = "strata_compile_memo.json";
/// Bumped whenever what the memo holds changes meaning.
const FORMAT: u32 = 1;
/// manifest.json starts with this, then the metadata object.
const MANIFEST_HEAD: &str = "{\"metadata\":";

/// What the last compile was computed from and what it left behind.
#[derive(Debug, Serialize, Deserialize)]
pub struct CompileMemo {
    format: u32,
    key: Hash,
    /// The env vars its parse and compile read, with a hash of each value.
    env_vars: Vec<(String, Option<Hash>)>,
    /// manifest.json, the compiled files' index and their directories, as
    /// the compile left them: a file added, removed or rewritten since
    /// changes one of them.
    stamps: Vec<Stamp>,
    /// The manifest's `metadata` object exactly as written.
    metadata: String,
    /// "N nodes (…)", as the compile reported them.
    pub nodes: String,
    /// The SQL printed for a single selected node.
    pub preview: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    path: PathBuf,
    len: u64,
    mtime_ns: u128,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        let mtime = meta.modified().ok()?;
        Some(Stamp {
            path: path.to_path_buf(),
            len: meta.len(),
            mtime_ns: mtime.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos(),
        })
    }

    fn unchanged(&self) -> bool {
        Stamp::of(&self.path).as_ref() == Some(self)
    }
}

/// Everything a compile's outputs are a function of, apart from env vars
/// (recorded by name as they are read) and the warehouse (never reused).
/// `None` when Strata's own build can't be identified.
pub fn key(project: &Project, command_line: &str) -> Option<Hash> {
    let files: Vec<Hash> = project
        .files
        .par_iter()
        .map(|f| {
            hash_parts(&[
                format!("{:?}", f.kind).as_bytes(),
                f.id.package.as_bytes(),
                f.id.path.as_bytes(),
                f.path.as_bytes(),
                f.display.as_bytes(),
                f.contents.as_bytes(),
            ])
        })
        .collect();
    let mut parts: Vec<String> = vec![
        build_id()?,
        command_line.to_string(),
        project.dir.display().to_string(),
        project.target.to_json().to_string(),
        format!("{:?}", project.selectors_yml),
        format!("{:?}", project.cli_vars),
        format!("{} {}", project.which, project.full_refresh),
    ];
    // Env vars read outside the renders it records (source and config
    // properties rendered while linking): every name any file passes to
    // `env_var` as a literal, with its value; a name that is not a literal
    // can't be known, and then nothing is reused.
    for f in &project.files {
        for name in env_var_names(&f.contents)? {
            parts.push(format!("env {name} {:?}", env_hash(name)));
        }
    }
    // Read besides `project.files`: each package's dbt_project.yml as written
    // (hook nodes' checksums) and unit tests' fixture files.
    for p in &project.packages {
        parts.push(std::fs::read_to_string(p.root.join("dbt_project.yml")).unwrap_or_default());
        for t in &p.settings.test_paths {
            let dir = p.root.join(t).join("fixtures");
            let mut files: Vec<_> = walkdir::WalkDir::new(&dir)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read(&f).unwrap_or_default();
                parts.push(format!(
                    "{} {:?}",
                    f.display(),
                    hash_parts(&[text.as_slice()])
                ));
            }
        }
    }
    // Outputs are scrubbed of every secret in the environment, read or not.
    let mut secrets: Vec<String> = std::env::vars_os()
        .filter(|(k, _)| k.as_encoded_bytes().starts_with(b"DBT_ENV_SECRET"))
        .map(|(k, _)| {
            let k = k.to_string_lossy();
            format!("{k} {:?}", env_hash(&k))
        })
        .collect();
    secrets.sort();
    parts.extend(secrets);
    for p in &project.packages {
        parts.push(format!(
            "{} {} {:?} {:?}",
            p.root.display(),
            p.is_root,
            p.settings,
            p.vars
        ));
    }
    let mut refs: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
    refs.extend(files.iter().map(|h| h.as_slice()));
    Some(hash_parts(&refs))
}

/// The names a text passes to `env_var(...)`; `None` when one is not a
/// string literal.
fn env_var_names(text: &str) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices("env_var(") {
        let rest = text[at + "env_var(".len()..].trim_start();
        let quote = rest.chars().next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let end = rest[1..].find(quote)?;
        names.push(&rest[1..1 + end]);
    }
    Some(names)
}

/// What a successful compile hands over to be remembered.
pub struct Outputs<'a> {
    pub key: Hash,
    pub env_vars: BTreeSet<String>,
    pub manifest: &'a Path,
    /// The manifest's metadata object as written.
    pub metadata: String,
    /// The compiled files, relative to the target directory.
    pub compiled: Vec<&'a str>,
    pub nodes: String,
    pub preview: Option<String>,
}

fn memo_path(target_dir: &Path) -> PathBuf {
    target_dir.join(FILE_NAME)
}

/// Remembers a compile. Failing to costs the next compile time, nothing else.
pub fn record(target_dir: &Path, out: Outputs<'_>) {
    let compiled_root = target_dir.join("compiled");
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    dirs.insert(compiled_root.clone());
    for rel in &out.compiled {
        let mut p = target_dir.join(rel);
        while p.pop() && p.starts_with(&compiled_root) && dirs.insert(p.clone()) {}
    }
    let mut paths = vec![
        out.manifest.to_path_buf(),
        compiled_root.join(crate::compile::WRITE_INDEX),
    ];
    paths.extend(dirs);
    let Some(stamps) = paths
        .iter()
        .map(|p| Stamp::of(p))
        .collect::<Option<Vec<_>>>()
    else {
        forget(target_dir);
        return;
    };
    let memo = CompileMemo {
        format: FORMAT,
        key: out.key,
        env_vars: out
            .env_vars
            .into_iter()
            .map(|n| {
                let h = env_hash(&n);
                (n, h)
            })
            .collect(),
        stamps,
        metadata: out.metadata,
        nodes: out.nodes,
        preview: out.preview,
    };
    memo.save(target_dir);
}

/// A compile that can't be remembered also invalidates the last memo.
pub fn forget(target_dir: &Path) {
    let _ = std::fs::remove_file(memo_path(target_dir));
}

impl CompileMemo {
    fn save(&self, target_dir: &Path) {
        let path = memo_path(target_dir);
        let tmp = path.with_extension("json.tmp");
        let ok = serde_json::to_vec(self)
            .ok()
            .is_some_and(|bytes| std::fs::write(&tmp, bytes).is_ok());
        if !ok || std::fs::rename(&tmp, &path).is_err() {
            forget(target_dir);
        }
    }

    /// The memo of the last compile, if it was computed from `key` and its
    /// outputs are untouched.
    pub fn valid(target_dir: &Path, key: &Hash) -> Option<CompileMemo> {
        let bytes = std::fs::read(memo_path(target_dir)).ok()?;
        let memo: CompileMemo = serde_json::from_slice(&bytes).ok()?;
        let fresh = memo.format == FORMAT
            && memo.key == *key
            && memo.env_vars.iter().all(|(name, h)| env_hash(name) == *h)
            && memo.stamps.par_iter().all(Stamp::unchanged);
        fresh.then_some(memo)
    }

    /// Rewrites the manifest's invocation metadata in place (its fields
    /// keep their widths), so manifest.json is this invocation's.
    /// `false` when it could not: then the caller compiles.
    pub fn reuse(&mut self, target_dir: &Path, fresh: &[(&str, String)]) -> bool {
        use std::io::{Read, Seek, SeekFrom, Write};
        let Ok(mut metadata) = serde_json::from_str::<Json>(&self.metadata) else {
            return false;
        };
        for (k, v) in fresh {
            if metadata.get(*k).is_none() {
                return false;
            }
            metadata[*k] = Json::String(v.clone());
        }
        let new = metadata.to_string();
        let Some(manifest) = self.stamps.first().map(|s| s.path.clone()) else {
            return false;
        };
        if new.len() != self.metadata.len() {
            return false;
        }
        let patched = (|| -> std::io::Result<bool> {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&manifest)?;
            let mut head = vec![0u8; MANIFEST_HEAD.len() + self.metadata.len()];
            f.read_exact(&mut head)?;
            if head[..MANIFEST_HEAD.len()] != *MANIFEST_HEAD.as_bytes()
                || head[MANIFEST_HEAD.len()..] != *self.metadata.as_bytes()
            {
                return Ok(false);
            }
            f.seek(SeekFrom::Start(MANIFEST_HEAD.len() as u64))?;
            f.write_all(new.as_bytes())?;
            Ok(true)
        })()
        .unwrap_or(false);
        if !patched {
            return false;
        }
        match Stamp::of(&manifest) {
            Some(s) => {
                self.stamps[0] = s;
                self.metadata = new;
                self.save(target_dir);
            }
            None => forget(target_dir),
        }
        true
    }
}
