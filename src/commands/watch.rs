//! `strata watch`: after each save, reparses the project, rebuilds the nodes
//! whose definition changed (with the views and ephemeral models below them)
//! and their tests against the development target, and previews the edited
//! model, until Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use notify::Watcher;
use serde_json::json;

use super::{resource_type_of, run, Outcome, Session};
use crate::adapter::{self, RelationId};
use crate::cli::{Downstream, RunArgs, WatchArgs};
use crate::engine::{Interrupt, Which};
use crate::manifest::parser::{self, BodyEdit};
use crate::manifest::ResourceType;
use crate::project::config::Materialized;
use crate::report::Reporter;

/// What each node's definition was at the last parse: a hash of everything
/// that shapes what it builds (its SQL, rendered output, config, columns,
/// and the macros it calls).
type Fingerprints = BTreeMap<String, u64>;

fn fingerprints(s: &Session) -> Fingerprints {
    let m = &s.parsed.manifest;
    let mut out: Fingerprints = m
        .nodes
        .keys()
        .filter_map(|id| Some((id.clone(), fingerprint(s, id)?)))
        .collect();
    for (id, u) in &m.unit_tests {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{u:?}").hash(&mut h);
        out.insert(id.clone(), h.finish());
    }
    out
}

fn fingerprint(s: &Session, id: &str) -> Option<u64> {
    let m = &s.parsed.manifest;
    let n = m.nodes.get(id)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{n:?}").hash(&mut h);
    for mac in &n.depends_on_macros {
        if let Some(e) = m.macros.get(mac) {
            e.macro_sql.hash(&mut h);
        }
    }
    Some(h.finish())
}

/// The saved files as edits of the session's project files (index, new
/// contents), or `None` when one is not a file the project has read (new,
/// deleted, or outside every package).
fn edits_of(s: &Session, paths: &BTreeSet<PathBuf>) -> Option<Vec<(usize, String)>> {
    let roots: Vec<(&str, PathBuf)> = s
        .project
        .packages
        .iter()
        .filter_map(|p| Some((p.name(), std::fs::canonicalize(&p.root).ok()?)))
        .collect();
    let mut edits = Vec::new();
    for path in paths {
        let (pkg, rel) = roots
            .iter()
            // The deepest root first: packages live under the project.
            .filter_map(|(pkg, root)| Some((*pkg, path.strip_prefix(root).ok()?)))
            .min_by_key(|(_, rel)| rel.components().count())?;
        let rel = rel.to_string_lossy().replace('\\', "/");
        let idx = s
            .project
            .files
            .iter()
            .position(|f| f.id.package == pkg && f.id.path == rel)?;
        let contents = std::fs::read_to_string(path).ok()?;
        if contents != s.project.files[idx].contents {
            edits.push((idx, contents));
        }
    }
    Some(edits)
}

/// Saved files not yet acted on, and the rebuild a newer save cancels.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    paths: BTreeSet<PathBuf>,
    last: Option<Instant>,
    /// The rebuild in progress, if any.
    rebuilding: Option<Interrupt>,
    /// Directories whose changes are Strata's own output (the target path).
    ignored: Vec<PathBuf>,
    /// The project directory: only what is hidden under it is ignored.
    root: PathBuf,
    /// Files read from outside the project (profiles.yml in ~/.dbt or
    /// --profiles-dir).
    outside: Vec<PathBuf>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, paths: Vec<PathBuf>) {
        let mut st = self.lock();
        let relevant: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| {
                st.outside.contains(p)
                    || (p.starts_with(&st.root)
                        && !st.ignored.iter().any(|i| p.starts_with(i))
                        && is_project_file(p.strip_prefix(&st.root).unwrap_or(p)))
            })
            .collect();
        if relevant.is_empty() {
            return;
        }
        st.paths.extend(relevant);
        st.last = Some(Instant::now());
        // A newer save makes the rebuild in progress moot: cancel it.
        if let Some(i) = &st.rebuilding {
            i.trigger();
        }
        self.changed.notify_all();
    }

    fn wake(&self) {
        self.changed.notify_all();
    }

    /// The files saved once `quiet` has passed without another save; `None`
    /// when interrupted.
    fn wait(&self, interrupt: &Interrupt, quiet: Duration) -> Option<BTreeSet<PathBuf>> {
        let mut st = self.lock();
        loop {
            if interrupt.is_set() {
                return None;
            }
            if let Some(last) = st.last {
                if !st.paths.is_empty() && last.elapsed() >= quiet {
                    st.last = None;
                    return Some(std::mem::take(&mut st.paths));
                }
            }
            st = self
                .changed
                .wait_timeout(st, Duration::from_millis(20))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn set_rebuilding(&self, i: Option<Interrupt>) {
        self.lock().rebuilding = i;
    }
}

/// Whether a path is one the project reads (not an editor's swap or backup
/// file, nor anything under a hidden directory such as `.git` or `.strata`).
fn is_project_file(p: &Path) -> bool {
    if p.components().any(|c| {
        let s = c.as_os_str().to_string_lossy();
        s.starts_with('.') && s != "." && s != ".."
    }) {
        return false;
    }
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    !(name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".swx") || name == "4913")
}

/// What a change rebuilds: the changed nodes inside the selection, below
/// them the views and ephemeral models (or everything, with `--downstream
/// all`), and the data and unit tests of all of those.
fn to_build(
    s: &Session,
    changed: &BTreeSet<String>,
    downstream: Downstream,
) -> Result<BTreeSet<String>> {
    let m = &s.parsed.manifest;
    let allowed = s.select()?;
    let buildable = |id: &str| {
        matches!(
            resource_type_of(id),
            Some(ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot)
        )
    };
    let mut out: BTreeSet<String> = changed
        .iter()
        .filter(|id| allowed.contains(*id))
        .filter(|id| {
            buildable(id)
                || resource_type_of(id) == Some(ResourceType::Test)
                || m.unit_tests.contains_key(*id)
        })
        .cloned()
        .collect();
    // Down from each changed node, through what is rebuilt: a view below
    // a table that is not rebuilt reads the same rows as before.
    let mut frontier: Vec<String> = out.iter().filter(|id| buildable(id)).cloned().collect();
    while let Some(id) = frontier.pop() {
        for d in s.graph.children(&id) {
            let Some(n) = m.nodes.get(&d) else { continue };
            let below = match downstream {
                Downstream::All => buildable(&d),
                Downstream::Views => {
                    n.resource_type == ResourceType::Model
                        && matches!(
                            n.config.materialized,
                            Materialized::View | Materialized::Ephemeral
                        )
                }
            };
            if below && allowed.contains(&d) && out.insert(d.clone()) {
                frontier.push(d);
            }
        }
    }
    let built: Vec<String> = out.iter().filter(|id| buildable(id)).cloned().collect();
    for b in &built {
        for c in s.graph.children(b) {
            if resource_type_of(&c) == Some(ResourceType::Test) && allowed.contains(&c) {
                out.insert(c);
            }
        }
    }
    let built_models: BTreeSet<&str> = built
        .iter()
        .filter_map(|id| m.nodes.get(id))
        .filter(|n| n.resource_type == ResourceType::Model)
        .map(|n| n.name.as_str())
        .collect();
    for (uid, u) in &m.unit_tests {
        if built_models.contains(u.model.as_str()) && allowed.contains(uid) {
            out.insert(uid.clone());
        }
    }
    Ok(out)
}

/// The first rows of a model's relation, after its rebuild.
fn preview(s_target: &crate::project::Target, dir: &Path, relation: &RelationId, rep: &Reporter) {
    let shown = adapter::connect(dir, s_target, Some(1)).and_then(|a| {
        let d = a.dialect();
        let sql = d.limit_rows(&format!("select * from {}", d.relation(relation)), 5);
        a.query(&sql).map_err(|e| {
            crate::error::Diagnostic::new(crate::error::DiagKind::Io, e.message).into()
        })
    });
    match shown {
        Ok(t) => {
            rep.info(
                "watch_preview",
                &format!("First rows of {}:", relation.identifier),
            );
            crate::outln!("{}", crate::table::format_table(&t));
        }
        Err(e) => rep.warn(&format!("no preview of {}: {e}", relation.identifier)),
    }
}

/// The outcome of watch's fast path (see `parser::reparse_bodies`).
enum Fast {
    /// The session with the edited nodes replaced, and their ids.
    Applied(Session, Vec<String>),
    /// An edited file no longer renders: the last good session, unchanged.
    Failed(Session, crate::error::Error),
    NotApplicable,
}

fn body_edits(last: Option<Session>, paths: &BTreeSet<PathBuf>) -> Fast {
    let Some(mut s) = last else {
        return Fast::NotApplicable;
    };
    let Some(edits) = edits_of(&s, paths) else {
        super::drop_in_background(s);
        return Fast::NotApplicable;
    };
    match parser::reparse_bodies(&mut s.project, &mut s.parsed, edits) {
        Ok(BodyEdit::Applied(ids)) => {
            // A new invocation: its own id, start time and results.
            s.started = Instant::now();
            s.started_at = chrono::Utc::now();
            Fast::Applied(s, ids)
        }
        Ok(BodyEdit::NeedsFullParse) => {
            super::drop_in_background(s);
            Fast::NotApplicable
        }
        Err(e) => Fast::Failed(s, e),
    }
}

pub fn run(args: &WatchArgs, interrupt: &Interrupt) -> Result<Outcome> {
    let rep = Reporter::new(args.common.report_settings());
    let root = std::fs::canonicalize(&args.common.project_dir)?;
    let queue = Arc::new(Queue::default());
    queue.lock().root = root.clone();
    let mut watcher = {
        let q = queue.clone();
        notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    q.push(ev.paths);
                }
            }
        })?
    };
    watcher.watch(&root, notify::RecursiveMode::Recursive)?;
    // profiles.yml outside the project: its directory, for that file only.
    let profiles =
        crate::project::profiles::profiles_dir(args.common.profiles_dir.as_deref(), &root);
    if let Ok(dir) = std::fs::canonicalize(&profiles) {
        if !dir.starts_with(&root)
            && watcher
                .watch(&dir, notify::RecursiveMode::NonRecursive)
                .is_ok()
        {
            queue.lock().outside = vec![dir.join("profiles.yml")];
        }
    }
    // Ctrl-C wakes the wait at once.
    let _wake = {
        let q = queue.clone();
        interrupt.on_trigger(move || q.wake())
    };
    let ignore = |s: &Session, q: &Queue| {
        let target = std::fs::canonicalize(&s.target_dir).unwrap_or_else(|_| s.target_dir.clone());
        let mut st = q.lock();
        st.ignored = vec![target, root.join("logs"), root.join("target")];
    };
    let mut known: Option<Fingerprints> = None;
    // The last good parse, kept so that a save which only changes SQL
    // bodies is applied without parsing and linking the whole project.
    let mut last: Option<Session> = None;
    match Session::open(&args.common) {
        Ok(s) => {
            ignore(&s, &queue);
            known = Some(fingerprints(&s));
            last = Some(s);
        }
        Err(e) => rep.error_data("watch_error", &e.to_string(), json!({})),
    }
    rep.info_data(
        "watch_ready",
        &format!("Watching {} for changes (Ctrl-C to stop)", root.display()),
        json!({"project_dir": root}),
    );
    // Nodes of a rebuild a newer save cancelled: built with the next one.
    let mut pending: BTreeSet<String> = BTreeSet::new();
    loop {
        let Some(paths) = queue.wait(interrupt, Duration::from_millis(args.debounce_ms)) else {
            return Ok(Outcome::Interrupted);
        };
        let clock = Instant::now();
        let files: Vec<String> = paths
            .iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .to_string()
            })
            .collect();
        rep.info_data(
            "watch_change",
            &format!("Changed: {}", files.join(", ")),
            json!({"files": files}),
        );
        // A mistake is shown; the last good state stays, here and in the
        // warehouse, until the file is fixed.
        let (s, mut changed, removed) = match body_edits(last.take(), &paths) {
            Fast::Applied(s, ids) => {
                let k = known.get_or_insert_with(Default::default);
                let mut changed = BTreeSet::new();
                for id in ids {
                    let fp = fingerprint(&s, &id);
                    if fp.is_some() && k.get(&id) != fp.as_ref() {
                        k.insert(id.clone(), fp.unwrap_or_default());
                        changed.insert(id);
                    }
                }
                (s, changed, Vec::new())
            }
            Fast::Failed(s, e) => {
                rep.error_data("watch_error", &e.to_string(), json!({"files": files}));
                last = Some(s);
                continue;
            }
            Fast::NotApplicable => {
                let s = match Session::open(&args.common) {
                    Ok(s) => s,
                    Err(e) => {
                        rep.error_data("watch_error", &e.to_string(), json!({"files": files}));
                        continue;
                    }
                };
                ignore(&s, &queue);
                let now = fingerprints(&s);
                let changed: BTreeSet<String> = now
                    .iter()
                    .filter(|(id, fp)| known.as_ref().and_then(|k| k.get(*id)) != Some(*fp))
                    .map(|(id, _)| id.clone())
                    .collect();
                let removed: Vec<String> = known
                    .as_ref()
                    .map(|k| {
                        k.keys()
                            .filter(|id| !now.contains_key(*id))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                known = Some(now);
                (s, changed, removed)
            }
        };
        changed.extend(
            std::mem::take(&mut pending)
                .into_iter()
                .filter(|id| s.parsed.manifest.nodes.contains_key(id)),
        );
        if !removed.is_empty() {
            rep.info_data(
                "watch_removed",
                &format!("Removed: {}", removed.join(", ")),
                json!({"nodes": removed}),
            );
        }
        let targets = match to_build(&s, &changed, args.downstream) {
            Ok(t) => t,
            Err(e) => {
                rep.error_data("watch_error", &e.to_string(), json!({"files": files}));
                last = Some(s);
                continue;
            }
        };
        if targets.is_empty() {
            rep.info_data(
                "watch_idle",
                "Nothing to rebuild",
                json!({"changed": changed}),
            );
            last = Some(s);
            continue;
        }
        if args.compile_only {
            let compiler = crate::compile::Compiler::new(
                &s.parsed,
                None,
                crate::artifacts::manifest::graph_json,
            );
            match compiler.compile(&s.graph, &targets) {
                Ok(_) => rep.info_data(
                    "watch_compiled",
                    &format!(
                        "Compiled {} node{} in {} ms",
                        targets.len(),
                        if targets.len() == 1 { "" } else { "s" },
                        clock.elapsed().as_millis()
                    ),
                    json!({"nodes": targets, "ms": clock.elapsed().as_millis() as u64}),
                ),
                Err(e) => rep.error_data("watch_error", &e.to_string(), json!({"files": files})),
            }
            last = Some(s);
            continue;
        }
        // The edited model, to preview once rebuilt.
        let shown = changed
            .iter()
            .filter(|id| targets.contains(*id))
            .filter_map(|id| s.parsed.manifest.nodes.get(id))
            .find(|n| {
                n.resource_type == ResourceType::Model
                    && n.config.materialized != Materialized::Ephemeral
            })
            .map(|n| RelationId::new(&n.database, &n.schema, &n.alias));
        let target = s.project.target.clone();
        let dir = s.project.dir.clone();
        // A newer save, or Ctrl-C, cancels this rebuild server side.
        let this_run = Interrupt::new();
        let _link = {
            let r = this_run.clone();
            interrupt.on_trigger(move || r.trigger())
        };
        queue.set_rebuilding(Some(this_run.clone()));
        let run_args = RunArgs {
            common: args.common.clone(),
            fail_fast: false,
            dry_run: false,
            offline: false,
            show_sql: false,
        };
        let outcome = run::execute_in(
            &s,
            &run_args,
            Which::Build,
            Some(targets.clone()),
            &this_run,
        );
        queue.set_rebuilding(None);
        last = Some(s);
        if interrupt.is_set() {
            return Ok(Outcome::Interrupted);
        }
        let ms = clock.elapsed().as_millis() as u64;
        match outcome {
            Ok(Outcome::Interrupted) => {
                pending.extend(targets.iter().cloned());
                rep.info_data(
                    "watch_superseded",
                    "A newer save arrived: the rebuild was cancelled",
                    json!({"nodes": targets}),
                );
            }
            Ok(o) => {
                let ok = o == Outcome::Success;
                rep.info_data(
                    "watch_rebuilt",
                    &format!(
                        "Rebuilt {} node{} in {ms} ms{}",
                        targets.len(),
                        if targets.len() == 1 { "" } else { "s" },
                        if ok { "" } else { " (with failures)" }
                    ),
                    json!({"nodes": targets, "ms": ms, "success": ok}),
                );
                if let (true, false, Some(rel)) = (ok, args.no_preview, &shown) {
                    preview(&target, &dir, rel, &rep);
                }
            }
            Err(e) => rep.error_data("watch_error", &format!("{e:#}"), json!({"files": files})),
        }
    }
}
