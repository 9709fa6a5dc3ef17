//! The incremental parse cache: each file's parse result, kept under the
//! target path and reused for as long as the file and everything its parse
//! read are unchanged.
//!
//! A file's result depends on its content, on the macros it can call, on the
//! vars and env vars its renders read, and on settings every file shares
//! (Strata's build, the target, each package's dbt_project.yml apart from its
//! vars). The shared settings are one key for the whole cache; the rest is
//! checked per file:
//! - macros: a file can call any macro whose name appears in it (as written,
//!   as `test_<name>` for a generic test, or dispatched as
//!   `<prefix>__<name>`), and those macros any macro named in theirs. The
//!   entry keeps a hash over the bodies of all of them, so editing a macro
//!   re-parses exactly the files that can reach it, and adding one the files
//!   that name it.
//! - vars and env vars: recorded while rendering, with a hash of each value.
//!
//! Renders that read the clock, `invocation_id` or `flags` are never cached,
//! nor files with problems (their messages are worth seeing every time). A
//! cache written by another build of Strata, or one that does not decode, is
//! ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::parse_file::{parse_file, FileCtx, FileItems, FileParse};
use crate::jinja::{JinjaEnv, RenderInputs};
use crate::project::config::NodeConfig;
use crate::project::{FileKind, Project, SourceFile};

/// The cache file's name under the target path (dbt's is
/// `partial_parse.msgpack`; a different name keeps the two from overwriting
/// each other's).
pub const FILE_NAME: &str = "strata_parse_cache.msgpack";

/// Bumped whenever what a cached file holds changes meaning.
const FORMAT: u32 = 2;

pub type Hash = [u8; 16];

pub(crate) fn hash_parts(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        // Lengths first, so that ("ab", "c") and ("a", "bc") differ.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// What was reused and what was parsed again, for timings and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub reused: usize,
    pub parsed: usize,
    /// Parsed, and not cacheable: they read the clock or had diagnostics.
    pub uncacheable: usize,
}

/// The parse cache of one project.
#[derive(Debug, Default)]
pub struct ParseCache {
    /// Where it is read from and saved to; `None` keeps it in memory only.
    path: Option<PathBuf>,
    global: Option<Hash>,
    entries: HashMap<(String, String), Entry>,
    changed: bool,
    pub stats: CacheStats,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    build: String,
    global: Hash,
    entries: Vec<Entry>,
}

/// One file's cached result and what it was computed from.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    package: String,
    path: String,
    display: String,
    content: Hash,
    macros: Hash,
    /// (package the lookup was made from, var name, hash of its value).
    vars: Vec<(String, String, Option<Hash>)>,
    env_vars: Vec<(String, Option<Hash>)>,
    items: Blob,
}

/// A file's `FileItems`, MessagePack encoded; a large properties file in
/// chunks, so that reading it back uses every core.
#[derive(Debug, Serialize, Deserialize)]
enum Blob {
    Whole(serde_bytes::ByteBuf),
    Split {
        /// The properties without their model entries and tests.
        head: serde_bytes::ByteBuf,
        models: Vec<serde_bytes::ByteBuf>,
        tests: Vec<serde_bytes::ByteBuf>,
    },
}

/// Entries per chunk of a split properties file.
const CHUNK: usize = 512;

fn encode(items: &FileItems) -> Option<Blob> {
    fn bytes<T: Serialize + ?Sized>(v: &T) -> Option<serde_bytes::ByteBuf> {
        rmp_serde::to_vec(v).ok().map(serde_bytes::ByteBuf::from)
    }
    match items {
        FileItems::Properties(p) if p.schema.models.len() + p.tests.len() > 2 * CHUNK => {
            let models = p
                .schema
                .models
                .chunks(CHUNK)
                .map(bytes)
                .collect::<Option<_>>()?;
            let tests = p.tests.chunks(CHUNK).map(bytes).collect::<Option<_>>()?;
            let sc = &p.schema;
            let head = super::parse_file::Properties {
                schema: crate::project::schema::SchemaFile {
                    version: sc.version.clone(),
                    models: Vec::new(),
                    seeds: sc.seeds.clone(),
                    snapshots: sc.snapshots.clone(),
                    analyses: sc.analyses.clone(),
                    sources: sc.sources.clone(),
                    macros: sc.macros.clone(),
                    exposures: sc.exposures.clone(),
                    unit_tests: sc.unit_tests.clone(),
                    semantic_models: sc.semantic_models.clone(),
                    metrics: sc.metrics.clone(),
                    saved_queries: sc.saved_queries.clone(),
                },
                tests: Vec::new(),
                snapshots: p.snapshots.clone(),
                unit_tests: p.unit_tests.clone(),
            };
            Some(Blob::Split {
                head: bytes(&head)?,
                models,
                tests,
            })
        }
        _ => Some(Blob::Whole(bytes(items)?)),
    }
}

/// Which build of Strata wrote a cache: the version, and the executable's size
/// and modification time, so a rebuilt binary never trusts an older cache.
/// `None` when the executable can't be examined: then nothing is cached.
pub(crate) fn build_id() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(exe).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{} {FORMAT} {} {}",
        env!("CARGO_PKG_VERSION"),
        meta.len(),
        mtime.as_nanos()
    ))
}

impl ParseCache {
    /// A cache kept in memory only (watch keeps one across rebuilds).
    pub fn in_memory() -> ParseCache {
        ParseCache::default()
    }

    /// Reads the cache saved under `target_dir`; a missing, corrupt or foreign
    /// one gives an empty cache that will be saved there.
    pub fn load(target_dir: &Path) -> ParseCache {
        let path = target_dir.join(FILE_NAME);
        let mut cache = ParseCache {
            path: Some(path.clone()),
            ..Default::default()
        };
        let Some(build) = build_id() else {
            cache.path = None;
            return cache;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            return cache;
        };
        match rmp_serde::from_slice::<Stored>(&bytes) {
            Ok(s) if s.format == FORMAT && s.build == build => {
                cache.global = Some(s.global);
                cache.entries = s
                    .entries
                    .into_iter()
                    .map(|e| ((e.package.clone(), e.path.clone()), e))
                    .collect();
            }
            _ => cache.changed = true,
        }
        cache
    }

    /// Writes the cache back if anything changed (atomically: a crash
    /// leaves the old file or the new one).
    pub fn save(&mut self) -> std::io::Result<()> {
        let (Some(path), Some(global), true) = (&self.path, self.global, self.changed) else {
            return Ok(());
        };
        let Some(build) = build_id() else {
            return Ok(());
        };
        let mut entries: Vec<Entry> = std::mem::take(&mut self.entries).into_values().collect();
        entries.sort_by(|a, b| (&a.package, &a.path).cmp(&(&b.package, &b.path)));
        let stored = Stored {
            format: FORMAT,
            build,
            global,
            entries,
        };
        let bytes = rmp_serde::to_vec(&stored).map_err(std::io::Error::other);
        self.entries = stored
            .entries
            .into_iter()
            .map(|e| ((e.package.clone(), e.path.clone()), e))
            .collect();
        let bytes = bytes?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        self.changed = false;
        Ok(())
    }

    /// Parses every file of `project`, reusing what the cache holds for files
    /// whose inputs are unchanged, and remembers the new results.
    /// The env vars that the cached files' parses read.
    pub fn env_vars_read(&self) -> std::collections::BTreeSet<String> {
        self.entries
            .values()
            .flat_map(|e| e.env_vars.iter().map(|(name, _)| name.clone()))
            .collect()
    }

    pub fn parse_all(&mut self, ctx: &FileCtx<'_>, project: &Project) -> Vec<FileParse> {
        use rayon::prelude::*;
        let t0 = std::time::Instant::now();
        let global = global_key(project, ctx.jinja);
        super::parser::timing("cache: global key", t0);
        if self.global != Some(global) {
            self.entries.clear();
            self.global = Some(global);
            self.changed = true;
        }
        let macros = MacroKeys::new(ctx.jinja);
        super::parser::timing("cache: macro keys", t0);
        let old = std::mem::take(&mut self.entries);
        let results: Vec<(FileParse, Outcome)> = project
            .files
            .par_iter()
            .map(|f| parse_one(ctx, f, &macros, &old))
            .collect();
        super::parser::timing("cache: files", t0);
        let mut old = old;
        let mut stats = CacheStats::default();
        let mut out = Vec::with_capacity(results.len());
        for (fp, outcome) in results {
            match outcome {
                Outcome::Reused(key) => {
                    stats.reused += 1;
                    if let Some(e) = old.remove(&key) {
                        self.entries.insert(key, e);
                    }
                }
                Outcome::Parsed(entry) => {
                    stats.parsed += 1;
                    stats.uncacheable += usize::from(entry.is_none());
                    self.changed = true;
                    if let Some(e) = entry {
                        self.entries.insert((e.package.clone(), e.path.clone()), *e);
                    }
                }
                Outcome::Uncached => {}
            }
            out.push(fp);
        }
        // Entries of deleted files (or of files that can no longer be cached).
        if !old.is_empty() {
            self.changed = true;
        }
        self.stats = stats;
        out
    }
}

enum Outcome {
    Reused((String, String)),
    /// Parsed again; the new entry when the result may be cached.
    Parsed(Option<Box<Entry>>),
    /// Never cached (macros, seeds, docs: cheaper to read than to look up).
    Uncached,
}

fn parse_one(
    ctx: &FileCtx<'_>,
    f: &SourceFile,
    macros: &MacroKeys,
    old: &HashMap<(String, String), Entry>,
) -> (FileParse, Outcome) {
    if matches!(f.kind, FileKind::Macro | FileKind::Seed | FileKind::Docs) {
        return (parse_file(ctx, f), Outcome::Uncached);
    }
    let content = hash_parts(&[format!("{:?}", f.kind).as_bytes(), f.contents.as_bytes()]);
    let macro_key = macros.key_of(&f.contents);
    let key = (f.id.package.clone(), f.id.path.clone());
    if let Some(e) = old.get(&key) {
        let fresh = e.display == f.display
            && e.content == content
            && e.macros == macro_key
            && e.vars
                .iter()
                .all(|(pkg, name, h)| var_hash(ctx.jinja, pkg, name) == *h)
            && e.env_vars.iter().all(|(name, h)| env_hash(name) == *h);
        if fresh {
            if let Some(items) = decode(&e.items) {
                let fp = FileParse {
                    file: f.id.clone(),
                    items,
                    diagnostics: vec![],
                    inputs: RenderInputs::default(),
                };
                return (fp, Outcome::Reused(key));
            }
        }
    }
    let fp = parse_file(ctx, f);
    let entry = (fp.diagnostics.is_empty() && !fp.inputs.volatile)
        .then(|| encode(&fp.items))
        .flatten()
        .map(|items| {
            Box::new(Entry {
                package: key.0,
                path: key.1,
                display: f.display.clone(),
                content,
                macros: macro_key,
                vars: fp
                    .inputs
                    .vars
                    .iter()
                    .map(|(pkg, name)| (pkg.clone(), name.clone(), var_hash(ctx.jinja, pkg, name)))
                    .collect(),
                env_vars: fp
                    .inputs
                    .env_vars
                    .iter()
                    .map(|name| (name.clone(), env_hash(name)))
                    .collect(),
                items,
            })
        });
    (fp, Outcome::Parsed(entry))
}

/// A cached file's items, with the configs the cache leaves out.
fn decode(blob: &Blob) -> Option<FileItems> {
    use rayon::prelude::*;
    let mut items: FileItems = match blob {
        Blob::Whole(b) => rmp_serde::from_slice(b).ok()?,
        Blob::Split {
            head,
            models,
            tests,
        } => {
            let mut p: super::parse_file::Properties = rmp_serde::from_slice(head).ok()?;
            let (models, tests) = rayon::join(
                || {
                    models
                        .par_iter()
                        .map(|b| {
                            rmp_serde::from_slice::<Vec<crate::project::schema::NodePatch>>(b).ok()
                        })
                        .collect::<Option<Vec<_>>>()
                },
                || {
                    tests
                        .par_iter()
                        .map(|b| {
                            rmp_serde::from_slice::<Vec<(super::Node, crate::confmap::ConfigMap)>>(
                                b,
                            )
                            .ok()
                        })
                        .collect::<Option<Vec<_>>>()
                },
            );
            p.schema.models = models?.into_iter().flatten().collect();
            p.tests = tests?.into_iter().flatten().collect();
            FileItems::Properties(Box::new(p))
        }
    };
    // One empty config per scope, cloned: cheaper than resolving each.
    let mut empty: Vec<(crate::project::config::ConfigScope, NodeConfig)> = Vec::new();
    let mut fix = |n: &mut super::Node| {
        let scope = n.resource_type.config_scope();
        *n.config = match empty.iter().find(|(s, _)| *s == scope) {
            Some((_, c)) => c.clone(),
            None => {
                let c = NodeConfig::empty(scope);
                empty.push((scope, c.clone()));
                c
            }
        };
    };
    match &mut items {
        FileItems::Nodes(nodes) => nodes.iter_mut().for_each(&mut fix),
        FileItems::Properties(p) => {
            p.tests.iter_mut().for_each(|(n, _)| fix(n));
            p.snapshots.iter_mut().for_each(&mut fix);
        }
        FileItems::Docs(_) | FileItems::Macros => {}
    }
    Some(items)
}

fn var_hash(jinja: &JinjaEnv, package: &str, name: &str) -> Option<Hash> {
    let v = jinja.shared.var(package, name)?;
    Some(hash_parts(&[serde_json::to_string(v).ok()?.as_bytes()]))
}

pub(crate) fn env_hash(name: &str) -> Option<Hash> {
    std::env::var_os(name).map(|v| hash_parts(&[v.as_encoded_bytes()]))
}

/// What every file's parse shares: Strata's build, the target, and each
/// package's settings apart from its vars (folder configs, quoting,
/// dispatch, paths).
fn global_key(project: &Project, jinja: &JinjaEnv) -> Hash {
    let mut parts = vec![
        build_id().unwrap_or_default(),
        project.target.to_json().to_string(),
        jinja.shared.target_database.clone(),
        jinja.shared.target_schema.clone(),
        project.dir.display().to_string(),
    ];
    for p in &project.packages {
        let mut settings = p.settings.clone();
        settings.vars = Default::default();
        parts.push(format!("{} {settings:?}", p.root.display()));
    }
    let refs: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
    hash_parts(&refs)
}

/// For each name a file may mention, the macros that name can reach, and
/// for each macro a hash over its body and every macro it can call.
struct MacroKeys {
    /// A mentioned name → the macros it may stand for (indexes into `deep`).
    by_name: FxHashMap<String, Vec<usize>>,
    deep: Vec<Hash>,
}

impl MacroKeys {
    fn new(jinja: &JinjaEnv) -> MacroKeys {
        let defs = &jinja.macros().defs;
        let mut by_name: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        for (i, d) in defs.iter().enumerate() {
            for alias in aliases(&d.name) {
                by_name.entry(alias.to_string()).or_default().push(i);
            }
        }
        // Edges: macro → macros its body names; deep hashes over the
        // strongly connected components, children before parents.
        let mut graph = petgraph::graph::DiGraph::<usize, ()>::new();
        let nodes: Vec<_> = (0..defs.len()).map(|i| graph.add_node(i)).collect();
        for (i, d) in defs.iter().enumerate() {
            for j in mentioned(&by_name, &d.sql) {
                if j != i {
                    graph.add_edge(nodes[i], nodes[j], ());
                }
            }
        }
        let mut deep = vec![[0u8; 16]; defs.len()];
        // Tarjan yields components in reverse topological order: every
        // component comes after those it points to.
        for scc in petgraph::algo::tarjan_scc(&graph) {
            let members: FxHashSet<usize> = scc.iter().map(|n| graph[*n]).collect();
            let mut own: Vec<(&str, &str)> = members
                .iter()
                .map(|&i| (defs[i].unique_id.as_str(), defs[i].sql.as_str()))
                .collect();
            own.sort_unstable();
            let mut children: Vec<Hash> = scc
                .iter()
                .flat_map(|n| graph.neighbors(*n))
                .map(|n| graph[n])
                .filter(|j| !members.contains(j))
                .map(|j| deep[j])
                .collect();
            children.sort_unstable();
            children.dedup();
            let mut parts: Vec<&[u8]> = Vec::new();
            for (id, sql) in &own {
                parts.push(id.as_bytes());
                parts.push(sql.as_bytes());
            }
            for c in &children {
                parts.push(c);
            }
            let h = hash_parts(&parts);
            for i in members {
                deep[i] = h;
            }
        }
        MacroKeys { by_name, deep }
    }

    /// A hash over every macro `text` can reach.
    fn key_of(&self, text: &str) -> Hash {
        let mut reached: Vec<usize> = mentioned(&self.by_name, text).collect();
        reached.sort_unstable();
        reached.dedup();
        let mut deep: Vec<Hash> = reached.iter().map(|&i| self.deep[i]).collect();
        deep.sort_unstable();
        deep.dedup();
        let parts: Vec<&[u8]> = deep.iter().map(|h| h.as_slice()).collect();
        hash_parts(&parts)
    }
}

/// The names under which a macro may be called: its own, without `test_`
/// for generic tests, and without the `<adapter>__` prefix of a dispatch
/// implementation.
fn aliases(name: &str) -> Vec<&str> {
    let mut out = vec![name];
    if let Some((_, rest)) = name.split_once("__") {
        if !rest.is_empty() {
            out.push(rest);
        }
    }
    let more: Vec<&str> = out.iter().filter_map(|n| n.strip_prefix("test_")).collect();
    out.extend(more);
    out
}

/// The macros the identifiers in `text` may stand for.
fn mentioned<'a>(
    by_name: &'a FxHashMap<String, Vec<usize>>,
    text: &'a str,
) -> impl Iterator<Item = usize> + 'a {
    identifiers(text)
        .filter_map(|id| by_name.get(id))
        .flatten()
        .copied()
}

fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_alphabetic() || c == b'_' {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                return Some(&text[start..i]);
            }
            // Skip the rest of a token that starts with a digit.
            if c.is_ascii_digit() {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                continue;
            }
            i += 1;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_split_on_anything_but_word_characters() {
        let ids: Vec<&str> = identifiers("{{ dbt_utils.star(ref('a_1')) }} 1abc x__y").collect();
        assert_eq!(ids, ["dbt_utils", "star", "ref", "a_1", "x__y"]);
    }

    #[test]
    fn macros_answer_to_their_call_names() {
        assert_eq!(aliases("cents"), ["cents"]);
        assert_eq!(
            aliases("default__test_unique"),
            ["default__test_unique", "test_unique", "unique"]
        );
        assert_eq!(aliases("test_positive"), ["test_positive", "positive"]);
    }
}
