//! `strata run`, `seed`, `snapshot`, `test`, `build` and `retry`: arguments
//! become a selection and run options, the engine runs them, and the results
//! become run_results.json and manifest.json.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::{Outcome, Session};
use crate::adapter;
use crate::adapter::recording::{self, Recording as Recorder};
use crate::artifacts::manifest::{self as manifest_json, ManifestMeta};
use crate::artifacts::run_results;
use crate::cli::RunArgs;
use crate::engine::{self, Event, EventSink, Interrupt, RunInputs, RunOptions, RunStatus, Which};
use crate::report::Reporter;

pub fn run(args: &RunArgs, interrupt: &Interrupt) -> Result<Outcome> {
    execute(args, Which::Run, None, interrupt)
}

pub fn seed(args: &RunArgs, interrupt: &Interrupt) -> Result<Outcome> {
    execute(args, Which::Seed, None, interrupt)
}

pub fn build(args: &RunArgs, interrupt: &Interrupt) -> Result<Outcome> {
    execute(args, Which::Build, None, interrupt)
}

pub fn snapshot(args: &RunArgs, interrupt: &Interrupt) -> Result<Outcome> {
    execute(args, Which::Snapshot, None, interrupt)
}

pub fn test(args: &RunArgs, interrupt: &Interrupt) -> Result<Outcome> {
    execute(args, Which::Test, None, interrupt)
}

/// Re-runs the nodes that failed or were skipped in the last run_results.json,
/// with the command that produced it.
pub fn retry(args: &RunArgs, interrupt: &Interrupt) -> Result<Outcome> {
    let settings_text = crate::project::read_project_yml(&args.common.project_dir)?;
    let settings = crate::project::ProjectSettings::parse("dbt_project.yml", &settings_text)?;
    let target = match &args.common.target_path {
        Some(p) => p.clone(),
        None => args.common.project_dir.join(&settings.target_path),
    };
    let path = target.join("run_results.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no previous run to retry: cannot read {}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let which = doc["args"]["which"]
        .as_str()
        .and_then(Which::parse)
        .unwrap_or(Which::Run);
    let ids: BTreeSet<String> = doc["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            matches!(
                r["status"].as_str(),
                Some("error" | "skipped" | "fail" | "runtime error")
            )
        })
        .filter_map(|r| r["unique_id"].as_str().map(str::to_string))
        .collect();
    if doc["args"]["in_progress"] == serde_json::Value::Bool(true) {
        Reporter::new(args.common.report_settings()).info(
            "retry",
            &format!(
                "The last run did not finish (killed or crashed); retrying the {} node{} it had not completed",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" }
            ),
        );
    }
    if ids.is_empty() {
        Reporter::new(args.common.report_settings()).info(
            "retry",
            "Nothing to retry: the last run had no failures or skips",
        );
        return Ok(Outcome::Success);
    }
    execute(args, which, Some(ids), interrupt)
}

pub fn execute(
    args: &RunArgs,
    which: Which,
    only: Option<BTreeSet<String>>,
    interrupt: &Interrupt,
) -> Result<Outcome> {
    let s = Session::open(&args.common)?;
    let outcome = execute_in(&s, args, which, only, interrupt);
    super::drop_in_background(s);
    outcome
}

/// [`execute`] on a session already open (watch parses before it knows
/// what to build).
pub fn execute_in(
    s: &Session,
    args: &RunArgs,
    which: Which,
    only: Option<BTreeSet<String>>,
    interrupt: &Interrupt,
) -> Result<Outcome> {
    let mut selected = match only {
        Some(ids) => ids,
        None => s.select()?,
    };
    // Every statement is recorded for target/run/; a dry run only records.
    let adapter: Arc<dyn adapter::Adapter> = if args.offline {
        Arc::new(Recorder::offline(adapter::dialect_for(&s.project.target)))
    } else {
        let inner = adapter::connect(&s.project.dir, &s.project.target, args.common.threads)?;
        let mode = if args.dry_run {
            recording::Mode::DryRun
        } else {
            recording::Mode::Execute
        };
        Arc::new(Recorder::around(inner, mode))
    };
    // `build` loads the files of the sources its nodes read first; what
    // reads a source that failed to load is not built.
    let mut loaded = super::load::Loaded {
        results: Vec::new(),
        failed: Vec::new(),
    };
    if which == Which::Build && !args.offline {
        let m = &s.parsed.manifest;
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        for id in &selected {
            for p in s.graph.parents(id) {
                if let Some((k, _)) = m.sources.get_key_value(&p) {
                    if m.sources[k].external.is_some() {
                        ids.insert(k.as_str());
                    }
                }
            }
        }
        let sources: Vec<&crate::manifest::Source> =
            ids.iter().filter_map(|id| m.sources.get(*id)).collect();
        if !sources.is_empty() {
            let threads = args
                .common
                .threads
                .unwrap_or(s.project.target.threads)
                .max(1);
            // Ctrl-C during the loads cancels them (each file's transaction
            // rolls back); the engine then starts nothing.
            let _cancel = {
                let adapter = adapter.clone();
                interrupt.on_trigger(move || adapter.cancel_all())
            };
            loaded =
                super::load::load_sources(s, &sources, adapter.as_ref(), threads, args.dry_run);
            for id in &loaded.failed {
                let below = s.graph.walk(id, petgraph::Direction::Outgoing, None);
                for b in below.iter().filter(|b| selected.contains(*b)) {
                    s.reporter.warn(&format!(
                        "SKIP {b}: its source {} did not load",
                        id.trim_start_matches("source.")
                    ));
                }
                selected.retain(|x| !below.contains(x));
            }
        }
    }
    let options = RunOptions {
        which,
        threads: args
            .common
            .threads
            .unwrap_or(s.project.target.threads)
            .max(1),
        full_refresh: args.common.full_refresh,
        fail_fast: args.fail_fast,
        dry_run: args.dry_run,
    };
    let inputs = RunInputs {
        project: &s.project,
        parsed: &s.parsed,
        graph: &s.graph,
        target_dir: &s.target_dir,
        target_name: &s.project.target.name,
    };
    let args_json = json!({"which": which.name(), "select": args.common.select, "exclude": args.common.exclude, "threads": options.threads});
    // A dry run must not stand in for the last run (`retry` reads that one).
    let results_path = s.target_dir.join(if args.dry_run {
        "dry_run_results.json"
    } else {
        "run_results.json"
    });
    let recording = Recording {
        reporter: &s.reporter,
        path: &results_path,
        selected: &selected,
        invocation: &s.parsed.jinja.shared.invocation_id,
        started_at: s.started_at,
        args: &args_json,
        finished: Mutex::new(HashMap::new()),
        dirty: AtomicBool::new(false),
        started: AtomicBool::new(false),
    };
    let out = std::thread::scope(|scope| {
        // Writes what finished every 300 ms while the run goes.
        let (stop_writer, stopped) = std::sync::mpsc::channel::<()>();
        let rec = &recording;
        scope.spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(300))
            {
                if rec.dirty.swap(false, Ordering::SeqCst) {
                    // Best effort: the final write reports a failure.
                    let _ = rec.write();
                }
            }
        });
        let out = engine::execute(inputs, options, &selected, &adapter, interrupt, rec);
        drop(stop_writer);
        out
    })?;

    let invocation = &s.parsed.jinja.shared.invocation_id;
    let all_results: Vec<_> = loaded
        .results
        .iter()
        .cloned()
        .chain(out.results.iter().cloned())
        .collect();
    run_results::write(
        &results_path,
        &all_results,
        invocation,
        s.started_at,
        s.started.elapsed().as_secs_f64(),
        args_json.clone(),
    )?;
    manifest_json::write(
        &s.target_dir.join("manifest.json"),
        &s.parsed.manifest,
        &out.compiled,
        &ManifestMeta {
            invocation_id: invocation,
            started_at: s.started_at,
            target_path: &s.target_path_label(),
        },
    )?;
    if args.dry_run {
        if args.show_sql {
            for r in &out.results {
                let Some(n) = s.parsed.manifest.nodes.get(&r.unique_id) else {
                    continue;
                };
                let path = s
                    .target_dir
                    .join(engine::run_path(n, out.compiled.get(&n.unique_id)));
                if let Ok(text) = std::fs::read_to_string(&path) {
                    crate::outln!("-- {}\n{}", n.unique_id, text.trim_end());
                }
            }
        }
        s.reporter.info(
            "dry_run",
            &format!(
                "Dry run: nothing was executed; each node's statements are under {}",
                s.target_dir.join("run").display()
            ),
        );
    }
    let outcome = if out.interrupted {
        Outcome::Interrupted
    } else if out.failed || !loaded.failed.is_empty() {
        Outcome::Failed
    } else {
        Outcome::Success
    };
    super::drop_in_background(out);
    Ok(outcome)
}

/// Passes events to the reporter and remembers what finished, so that
/// run_results.json stays current while the run goes: a run killed with -9
/// leaves the nodes it had not finished as skipped, and `retry` runs those.
struct Recording<'a> {
    reporter: &'a Reporter,
    path: &'a Path,
    selected: &'a BTreeSet<String>,
    invocation: &'a str,
    started_at: chrono::DateTime<chrono::Utc>,
    args: &'a serde_json::Value,
    finished: Mutex<HashMap<String, RunStatus>>,
    /// Something finished since the file was last written.
    dirty: AtomicBool,
    /// The first node started (a run that fails to compile never gets here
    /// and leaves the previous file, as dbt does).
    started: AtomicBool,
}

impl Recording<'_> {
    fn write(&self) -> Result<()> {
        let now = chrono::Utc::now();
        let results: Vec<run_results::NodeResult> = {
            let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
            self.selected
                .iter()
                .map(|id| match finished.get(id) {
                    Some(status) => {
                        run_results::NodeResult::ran(id, status.as_str(), 0, (now, now), 0.0)
                    }
                    None => run_results::NodeResult {
                        message: Some(run_results::NOT_FINISHED.to_string()),
                        ..run_results::NodeResult::skipped(id, None)
                    },
                })
                .collect()
        };
        let mut args = self.args.clone();
        args["in_progress"] = serde_json::Value::Bool(true);
        run_results::write(
            self.path,
            &results,
            self.invocation,
            self.started_at,
            0.0,
            args,
        )?;
        Ok(())
    }
}

impl EventSink for Recording<'_> {
    fn event(&self, event: &Event<'_>) {
        self.reporter.event(event);
        if matches!(event, Event::NodeStarted { .. } | Event::NodeBlocked { .. })
            && !self.started.swap(true, Ordering::SeqCst)
        {
            // From now on a killed run leaves its unfinished nodes on record.
            let _ = self.write();
        }
        if let Event::NodeFinished(end) = event {
            self.finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(end.subject.unique_id().to_string(), end.status);
            self.dirty.store(true, Ordering::SeqCst);
        }
    }
}
