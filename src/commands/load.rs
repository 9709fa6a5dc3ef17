//! `strata load`: loads the new files of the selected sources' `external:`
//! locations into their tables, exactly once; writes run_results.json.

use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use super::{Outcome, Session};
use crate::adapter;
use crate::artifacts::run_results::{self, NodeResult};
use crate::cli::LoadArgs;
use crate::load::{self, LoadOptions};
use crate::manifest::Source;

/// `1.2 MB`, `340 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn run(args: &LoadArgs, interrupt: &crate::engine::Interrupt) -> Result<Outcome> {
    let s = Session::open(&args.common)?;
    let m = &s.parsed.manifest;
    let selected = s.select()?;
    let sources: Vec<&Source> = selected
        .iter()
        .filter_map(|id| m.sources.get(id))
        .filter(|src| src.external.is_some())
        .collect();
    if sources.is_empty() {
        s.reporter
            .warn("Nothing to load: no selected source table has an external location");
        return Ok(Outcome::Success);
    }
    let threads = args
        .common
        .threads
        .unwrap_or(s.project.target.threads)
        .max(1);
    let adapter: std::sync::Arc<dyn adapter::Adapter> =
        adapter::connect(&s.project.dir, &s.project.target, Some(threads))?;
    // Ctrl-C cancels the statements in flight: each file's transaction
    // rolls back, and what was committed stays.
    let _cancel = {
        let adapter = adapter.clone();
        interrupt.on_trigger(move || adapter.cancel_all())
    };
    if interrupt.is_set() {
        return Ok(Outcome::Interrupted);
    }
    let done = load_sources(&s, &sources, adapter.as_ref(), threads, args.dry_run);
    if !args.dry_run {
        std::fs::create_dir_all(&s.target_dir)?;
        run_results::write(
            &s.target_dir.join("run_results.json"),
            &done.results,
            &s.parsed.jinja.shared.invocation_id,
            s.started_at,
            s.started.elapsed().as_secs_f64(),
            json!({"which": "load", "select": args.common.select, "full_refresh": args.common.full_refresh}),
        )?;
    }
    Ok(if interrupt.is_set() {
        Outcome::Interrupted
    } else if done.failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// Draws the loads' progress on the terminal once they have run a second,
/// until `finished`.
fn progress_bar(
    rep: &crate::report::Reporter,
    p: &load::LoadProgress,
    finished: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let start = Instant::now();
    let mut shown = false;
    while !finished.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if start.elapsed().as_secs_f64() < 1.0 {
            continue;
        }
        let (files, done) = (p.files_total.load(Relaxed), p.files_done.load(Relaxed));
        let total = p.bytes_total.load(Relaxed);
        let sent = (p.bytes_done.load(Relaxed) + p.bytes_read.load(Relaxed)).min(total);
        let width = 30usize;
        let filled = if total == 0 {
            0
        } else {
            ((sent as f64 / total as f64) * width as f64) as usize
        }
        .min(width);
        rep.progress_bar(&format!(
            "[{}{}] {done}/{files} files, {} rows, {} of {}, {:.0}s",
            "#".repeat(filled),
            "-".repeat(width - filled),
            p.rows.load(Relaxed),
            bytes(sent),
            bytes(total),
            start.elapsed().as_secs_f64()
        ));
        shown = true;
    }
    if shown {
        rep.progress_bar("");
    }
}

/// What loading a set of sources did.
pub(super) struct Loaded {
    pub results: Vec<NodeResult>,
    /// Unique ids of the sources that did not load.
    pub failed: Vec<String>,
}

/// Loads `sources` on `threads` connections, reporting each table.
pub(super) fn load_sources(
    s: &Session,
    sources: &[&Source],
    adapter: &dyn adapter::Adapter,
    threads: usize,
    dry_run: bool,
) -> Loaded {
    let rep = &s.reporter;
    let progress = load::LoadProgress::default();
    let options = LoadOptions {
        project_dir: &s.project.dir,
        invocation_id: &s.parsed.jinja.shared.invocation_id,
        started_at: s.started_at,
        full_refresh: s.args.full_refresh,
        dry_run,
        // Tables load `threads` at a time; their files share the rest of
        // the connections, so no more readers start than can be sent.
        file_threads: (threads / threads.min(sources.len()).max(1)).max(1),
        progress: Some(&progress),
    };
    let total = sources.len();
    rep.info(
        "load_start",
        &format!(
            "Loading {total} source table{}{}",
            if total == 1 { "" } else { "s" },
            if dry_run {
                " (dry run: nothing changes)"
            } else {
                ""
            }
        ),
    );
    let results: Mutex<Vec<NodeResult>> = Mutex::new(Vec::new());
    let failed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let finished = std::sync::atomic::AtomicBool::new(false);
    // Tables load in parallel; the files of one table too, each in its own
    // transaction, on as many connections as there are threads.
    std::thread::scope(|scope| {
        if rep.shows_progress() && !dry_run {
            let (progress, finished) = (&progress, &finished);
            scope.spawn(move || progress_bar(rep, progress, finished));
        }
        let mut workers = Vec::new();
        for thread in 0..threads.min(total) {
            let (sources, results, failed, next, options) =
                (&sources, &results, &failed, &next, &options);
            workers.push(scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(src) = sources.get(i) else { break };
                let label = format!("{}.{}", src.source_name, src.name);
                let t0 = chrono::Utc::now();
                let clock = Instant::now();
                let out = load::load_table(adapter, src, options);
                let secs = clock.elapsed().as_secs_f64();
                let span = (t0, chrono::Utc::now());
                let at = format!("{} of {total}", i + 1);
                let result = match out {
                    Ok(o) => {
                        for f in &o.changed_skipped {
                            rep.warn(&format!(
                                "{label}: {f} changed since it was loaded and was left alone (on_changed_file: skip)"
                            ));
                        }
                        for f in &o.concurrent {
                            rep.info("load_concurrent", &format!("{label}: {f} was loaded by another run meanwhile"));
                        }
                        let what = format!(
                            "{} file{}, {} rows, {}",
                            o.files,
                            if o.files == 1 { "" } else { "s" },
                            o.rows,
                            bytes(o.bytes)
                        );
                        if options.dry_run {
                            rep.info(
                                "load_planned",
                                &format!("{at} WOULD LOAD source {label}: {} file{} ({})", o.files, if o.files == 1 { "" } else { "s" }, bytes(o.bytes)),
                            );
                            for f in &o.loaded {
                                crate::outln!("  {f}");
                            }
                        } else {
                            rep.info(
                                "load_ok",
                                &format!("{at} OK loaded source {label}: {what} in {secs:.2}s"),
                            );
                        }
                        NodeResult {
                            code: Some("LOAD".into()),
                            rows_affected: Some(o.rows),
                            message: Some(what),
                            ..NodeResult::ran(&src.unique_id, "success", thread, span, secs)
                        }
                    }
                    Err(e) => {
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(src.unique_id.clone());
                        let statement = e
                            .statement
                            .as_deref()
                            .map(|s| format!("\n  in: {}", s.lines().next().unwrap_or_default()))
                            .unwrap_or_default();
                        rep.error(&format!(
                            "{at} ERROR loading source {label}: {}{statement}",
                            e.message
                        ));
                        NodeResult {
                            message: Some(e.message),
                            ..NodeResult::ran(&src.unique_id, "error", thread, span, secs)
                        }
                    }
                };
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(result);
            }));
        }
        let mut panicked = None;
        for w in workers {
            if let Err(p) = w.join() {
                panicked.get_or_insert(p);
            }
        }
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        // A bug, not a load error: it must not end as a success.
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
    });
    Loaded {
        results: results.into_inner().unwrap_or_else(|p| p.into_inner()),
        failed: failed.into_inner().unwrap_or_else(|p| p.into_inner()),
    }
}
