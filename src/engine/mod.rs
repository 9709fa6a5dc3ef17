//! The execution engine: builds a selection of nodes in a warehouse in
//! dependency order. It compiles what it runs, runs project hooks, unit tests,
//! models, seeds, snapshots and data tests on the scheduler's worker threads,
//! and reports what happens as events; commands turn its output into artifacts.
//! It owns no process state: the adapter, the interrupt handle and the event
//! sink come from the caller, so runs in one process do not interfere.

pub mod decide;
pub mod error;
pub mod events;
pub mod interrupt;
mod nodes;
mod test;
pub mod unit_test;
pub mod warehouse;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use decide::Which;
pub use error::{NodeError, NodeErrorKind, RunError};
pub use events::{
    Event, EventSink, NoEvents, Problem, Progress, RunStatus, SkipReason, Subject, Summary,
};
pub use interrupt::Interrupt;

use crate::adapter::{Adapter, Batch, RelationKind};
use crate::artifacts::run_results::NodeResult;
use crate::compile::{compiled_path, write_compiled, CompiledNode, Compiler};
use crate::graph::Graph;
use crate::manifest::parser::Parsed;
use crate::manifest::{Node, ResourceType, UnitTest};
use crate::project::Project;
use crate::scheduler::{run_dag_last, JobStatus};
use events::NodeEnd;
use unit_test::UnitOutcome;

/// How to run, as the command line asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub which: Which,
    pub threads: usize,
    /// `--full-refresh` (a node's own `full_refresh` config wins over it).
    pub full_refresh: bool,
    /// `--fail-fast`: the first failure stops new work and cancels what runs.
    pub fail_fast: bool,
    /// `--dry-run`: the adapter records statements instead of running them;
    /// tests and unit tests are not run (there is nothing built to test).
    pub dry_run: bool,
}

/// The project a run works on.
#[derive(Clone, Copy)]
pub struct RunInputs<'a> {
    pub project: &'a Project,
    pub parsed: &'a Parsed,
    pub graph: &'a Graph,
    /// Where compiled SQL is written.
    pub target_dir: &'a Path,
    /// The target's name, for the opening line.
    pub target_name: &'a str,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Unit tests first, then nodes in the order they finished.
    pub results: Vec<NodeResult>,
    pub compiled: HashMap<String, CompiledNode>,
    pub summary: Summary,
    pub interrupted: bool,
    /// Nodes or tests failed (exit 1).
    pub failed: bool,
}

/// What one node's job needs, shared by the worker threads.
pub(crate) struct RunCtx<'a> {
    project: &'a Project,
    adapter: &'a dyn Adapter,
    compiler: &'a Compiler<'a>,
    existing: &'a HashMap<(String, String), RelationKind>,
    /// Existing relations with privileges granted to others (checked for
    /// stale grants when kept in place; the others need no query).
    granted: &'a HashSet<(String, String)>,
    full_refresh_flag: bool,
    dry_run: bool,
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// "3 models and 2 data tests": what a run runs.
fn describe_nodes(nodes: &[&Node]) -> String {
    let count = |rt: ResourceType| nodes.iter().filter(|n| n.resource_type == rt).count();
    let kinds: Vec<String> = [
        (count(ResourceType::Model), "model"),
        (count(ResourceType::Test), "data test"),
        (count(ResourceType::Snapshot), "snapshot"),
        (count(ResourceType::Seed), "seed"),
    ]
    .into_iter()
    .filter(|(c, _)| *c > 0)
    .map(|(c, w)| plural(c, w))
    .collect();
    if kinds.is_empty() {
        "0 models".to_string()
    } else {
        kinds.join(" and ")
    }
}

fn subject_of(n: &Node) -> Subject {
    let relation = format!("{}.{}", n.schema, n.alias);
    let unique_id = n.unique_id.clone();
    match n.resource_type {
        ResourceType::Seed => Subject::Seed {
            unique_id,
            relation,
        },
        ResourceType::Snapshot => Subject::Snapshot {
            unique_id,
            relation,
        },
        ResourceType::Test => Subject::Test {
            unique_id,
            name: n.name.clone(),
        },
        _ => Subject::Model {
            unique_id,
            materialized: n.config.materialized.as_str().to_string(),
            relation,
        },
    }
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n  ")
}

/// Runs `selected` (unique ids) for `options.which`.
pub fn execute(
    inputs: RunInputs<'_>,
    options: RunOptions,
    selected: &BTreeSet<String>,
    adapter: &Arc<dyn Adapter>,
    interrupt: &Interrupt,
    events: &dyn EventSink,
) -> Result<RunOutput, RunError> {
    let m = &inputs.parsed.manifest;
    let which = options.which;
    let nodes: Vec<&Node> = selected
        .iter()
        .filter_map(|id| m.nodes.get(id))
        .filter(|n| which.includes(n))
        .collect();
    let started = Instant::now();
    // Models may run introspective queries (run_query, adapter.get_relation …).
    let mut compiler = Compiler::new(
        inputs.parsed,
        Some(warehouse::AdapterWarehouse::shared(adapter)),
        crate::artifacts::manifest::graph_json,
    )
    .with_selected(selected);
    let what = describe_nodes(&nodes);
    events.event(&Event::Started {
        command: which.name(),
        threads: options.threads,
        target: inputs.target_name,
        what: &what,
    });
    // Ctrl-C: start nothing new and cancel what runs, server side; each node's
    // transaction rolls back, so no relation is left half built.
    let stop = Arc::new(AtomicBool::new(interrupt.is_set()));
    if !interrupt.is_set() {
        // A reused adapter (watch) accepts statements again.
        adapter.resume();
    }
    let _cancel_on_interrupt = {
        let stop = stop.clone();
        let adapter = adapter.clone();
        interrupt.on_trigger(move || {
            stop.store(true, Ordering::SeqCst);
            adapter.cancel_all();
        })
    };

    run_project_hooks(inputs, &compiler, adapter.as_ref(), ProjectHook::Start)?;
    let schemas: BTreeSet<&str> = nodes.iter().map(|n| n.schema.as_str()).collect();
    for schema in &schemas {
        adapter
            .execute(&Batch {
                statements: vec![adapter.dialect().create_schema(schema)],
                atomic: false,
            })
            .map_err(|source| RunError::Schema {
                schema: schema.to_string(),
                source,
            })?;
    }
    write_run_sql(
        inputs.target_dir,
        &format!("run/{}/on-run-start.sql", inputs.project.name()),
        &adapter.take_recorded(),
    );
    let list: Vec<String> = schemas.iter().map(|s| s.to_string()).collect();
    let mut granted: HashSet<(String, String)> = HashSet::new();
    let existing: HashMap<(String, String), RelationKind> = adapter
        .list_relations(&list)
        .map_err(RunError::Introspection)?
        .into_iter()
        .map(|r| {
            if r.granted {
                granted.insert((r.schema.clone(), r.identifier.clone()));
            }
            ((r.schema, r.identifier), r.kind)
        })
        .collect();

    let unit_tests: Vec<&UnitTest> = if which.runs_unit_tests() {
        m.unit_tests
            .values()
            .filter(|u| selected.contains(&u.unique_id) && model_of(inputs, u).is_some())
            .collect()
    } else {
        Vec::new()
    };
    let mut compile_ids: BTreeSet<String> = nodes.iter().map(|n| n.unique_id.clone()).collect();
    compile_ids.extend(
        unit_tests
            .iter()
            .filter_map(|u| model_of(inputs, u))
            .map(|n| n.unique_id.clone()),
    );
    let adapter_ref: &dyn Adapter = adapter.as_ref();
    // `is_incremental()` is true where the model merges into its table.
    compiler.incremental.extend(
        nodes
            .iter()
            .filter(|n| {
                n.resource_type == ResourceType::Model
                    && nodes::model_build_of(adapter.dialect(), n, &existing, options.full_refresh)
                        .ok()
                        == Some(decide::ModelBuild::Incremental)
            })
            .map(|n| n.unique_id.clone()),
    );
    // Nodes whose SQL depends on the run (their parse render read `execute`,
    // ran a query, looked at relations …) are rendered when their turn comes,
    // after their parents are built, as dbt renders every node. The others
    // are rendered now, in parallel; one that fails errors when its turn
    // comes (its descendants skip) and the rest runs, as in dbt.
    let later = |n: &Node| n.phase_sensitive && n.test.is_none() && !n.is_ephemeral();
    let crate::compile::CompileOutcome {
        nodes: mut compiled,
        failures: compile_failures,
    } = compiler.compile_each(inputs.graph, &compile_ids, &later);
    // A render that asked the warehouse is done again at its turn too: what
    // it saw before the run may not exist yet or be stale.
    let rerender: HashSet<String> = nodes
        .iter()
        .filter(|n| {
            later(n)
                || compiled.get(&n.unique_id).is_some_and(|c| c.introspected)
                || compile_failures
                    .get(&n.unique_id)
                    .is_some_and(|f| f.introspected)
        })
        .map(|n| n.unique_id.clone())
        .collect();
    let rendered_late: Mutex<HashMap<String, CompiledNode>> = Mutex::new(HashMap::new());
    std::fs::create_dir_all(inputs.target_dir).map_err(|e| {
        crate::error::Diagnostic::new(
            crate::error::DiagKind::Io,
            format!("cannot create {}: {e}", inputs.target_dir.display()),
        )
    })?;
    write_compiled(inputs.target_dir, &compiled)?;
    let ctx = RunCtx {
        project: inputs.project,
        adapter: adapter_ref,
        compiler: &compiler,
        existing: &existing,
        granted: &granted,
        full_refresh_flag: options.full_refresh,
        dry_run: options.dry_run,
    };

    let mut summary = Summary::default();
    // Unit tests are jobs too, after their model's parents and before the
    // model (dbt's order): a failing one skips the model and what is below it.
    let unit_models: Vec<&Node> = unit_tests
        .iter()
        .filter_map(|u| model_of(inputs, u))
        .collect();
    let jobs: Vec<decide::JobNode<'_>> = nodes
        .iter()
        .map(|n| decide::JobNode {
            unique_id: &n.unique_id,
            depends_on: &n.depends_on_nodes,
            is_test: n.resource_type == ResourceType::Test,
        })
        .chain(
            unit_tests
                .iter()
                .zip(&unit_models)
                .map(|(u, model)| decide::JobNode {
                    unique_id: &u.unique_id,
                    depends_on: &model.depends_on_nodes,
                    is_test: false,
                }),
        )
        .collect();
    let mut parents = decide::job_parents(&jobs, |id| {
        m.nodes
            .get(id)
            .filter(|p| p.is_ephemeral())
            .map(|p| p.depends_on_nodes.as_slice())
    });
    {
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.unique_id.as_str(), i))
            .collect();
        for (k, model) in unit_models.iter().enumerate() {
            if let Some(&mi) = index.get(model.unique_id.as_str()) {
                parents[mi].push(nodes.len() + k);
            }
        }
    }
    let total = nodes.len() + unit_tests.len();
    let counter = AtomicUsize::new(0);
    let warehouse_gone = AtomicBool::new(false);
    // Jobs that failed: a job skipped below one of them says "upstream failure",
    // any other skip happened because the run stopped.
    let failed_jobs: Mutex<HashSet<usize>> = Mutex::new(HashSet::new());
    let mark_failed = |i: usize| {
        failed_jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(i);
    };
    let results: Mutex<Vec<NodeResult>> = Mutex::new(Vec::new());
    let node_problems: Mutex<Vec<Problem>> = Mutex::new(Vec::new());
    let next = || Progress {
        index: counter.fetch_add(1, Ordering::SeqCst) + 1,
        total,
    };
    // A test that depends on nothing in the run (a singular test that only
    // calls macros) starts after everything else, so what it inspects is built.
    let mut has_children = vec![false; parents.len()];
    for ps in &parents {
        for &p in ps {
            has_children[p] = true;
        }
    }
    let last: Vec<bool> = (0..parents.len())
        .map(|i| {
            i < nodes.len()
                && nodes[i].resource_type == ResourceType::Test
                && parents[i].is_empty()
                && !has_children[i]
        })
        .collect();
    let statuses = run_dag_last(
        &parents,
        &last,
        options.threads,
        &stop,
        |i, thread| {
            if let Some(u) = i.checked_sub(nodes.len()).map(|k| unit_tests[k]) {
                if options.dry_run {
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(NodeResult {
                            message: Some("not run: dry run".into()),
                            ..NodeResult::ran(
                                &u.unique_id,
                                RunStatus::Success.as_str(),
                                thread,
                                (chrono::Utc::now(), chrono::Utc::now()),
                                0.0,
                            )
                        });
                    return JobStatus::Success;
                }
                let (result, problem) = run_unit_job(
                    m,
                    &compiler,
                    adapter_ref,
                    u,
                    &compiled,
                    next(),
                    thread,
                    events,
                );
                let failed = result.status != RunStatus::Pass.as_str();
                if let Some(p) = problem {
                    node_problems
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(p);
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(result);
                if failed {
                    mark_failed(i);
                    return JobStatus::Error;
                }
                return JobStatus::Success;
            }
            let n = nodes[i];
            let at = next();
            let subject = subject_of(n);
            events.event(&Event::NodeStarted {
                at,
                subject: &subject,
            });
            let t0 = chrono::Utc::now();
            let clock = Instant::now();
            // The node's SQL: rendered before the run, or now when its render
            // introspects; a render that failed makes the node's error.
            let fresh = rerender
                .contains(&n.unique_id)
                .then(|| compiler.compile_node(n, &compiled));
            let (ran, c) = match (&fresh, compile_failures.get(&n.unique_id)) {
                (Some(Ok(c)), _) => (run_node(&ctx, n, Some(c)), Some(c)),
                (Some(Err(f)), _) | (None, Some(f)) => {
                    (Ran::failed(compile_error(&f.diagnostic)), None)
                }
                (None, None) => {
                    let c = compiled.get(&n.unique_id);
                    (run_node(&ctx, n, c), c)
                }
            };
            let seconds = clock.elapsed().as_secs_f64();
            let t1 = chrono::Utc::now();
            // What the node sent (or would send), where dbt keeps it.
            let mut sent = adapter_ref.take_recorded();
            if options.dry_run && n.resource_type == ResourceType::Test {
                if let Some(c) = c {
                    sent.push(c.sql.clone());
                }
            }
            write_run_sql(inputs.target_dir, &run_path(n, c), &sent);
            events.event(&Event::NodeFinished(NodeEnd {
                at,
                subject: &subject,
                status: ran.status,
                code: ran.code,
                rows: ran.rows,
                failures: ran.failures,
                seconds,
            }));
            if let Some(p) = problem_of(n, &ran, inputs.target_dir) {
                node_problems
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(p);
            }
            if ran.status.is_failure() && options.fail_fast {
                stop.store(true, Ordering::SeqCst);
                adapter.cancel_all();
            }
            // A lost connection on a live server is this node's problem; a
            // warehouse that is gone stops the run (one probe tells them
            // apart), instead of every remaining node failing to connect.
            if ran.error.as_ref().is_some_and(|e| e.connection_lost)
                && !stop.load(Ordering::SeqCst)
                && adapter.server_version().is_err()
            {
                warehouse_gone.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
            results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(NodeResult {
                    code: ran.code.map(str::to_string),
                    rows_affected: ran.rows,
                    failures: ran.failures,
                    message: ran.message,
                    compiled_code: c.map(|c| c.sql.clone()),
                    relation_name: n.relation_name(&m.quoting),
                    ..NodeResult::ran(&n.unique_id, ran.status.as_str(), thread, (t0, t1), seconds)
                });
            if let Some(Ok(c)) = fresh {
                rendered_late
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(n.unique_id.clone(), c);
            }
            let job = ran.status.job();
            if job == JobStatus::Error {
                mark_failed(i);
            }
            job
        },
        |i, from| {
            let subject = match i.checked_sub(nodes.len()).map(|k| unit_tests[k]) {
                Some(u) => unit_subject(u),
                None => subject_of(nodes[i]),
            };
            let upstream_failed = from.is_some_and(|f| {
                failed_jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&f)
            });
            events.event(&Event::NodeSkipped {
                at: next(),
                subject: &subject,
                reason: if upstream_failed {
                    SkipReason::UpstreamFailed
                } else {
                    SkipReason::RunStopped
                },
            });
            results.lock().unwrap_or_else(|p| p.into_inner()).push(
                match i.checked_sub(nodes.len()).map(|k| unit_tests[k]) {
                    Some(u) => NodeResult::skipped(&u.unique_id, None),
                    None => {
                        NodeResult::skipped(&nodes[i].unique_id, nodes[i].relation_name(&m.quoting))
                    }
                },
            );
        },
    );
    let mut problems: Vec<Problem> = Vec::new();
    let interrupted = interrupt.is_set();
    let warehouse_gone = warehouse_gone.into_inner();
    if !interrupted && !warehouse_gone {
        // After fail-fast's cancel, the end hooks still run.
        adapter.resume();
        run_project_hooks(inputs, &compiler, adapter_ref, ProjectHook::End)?;
    }

    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    // What was rendered during the run replaces the earlier render, on disk too.
    let late = rendered_late
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if !late.is_empty() {
        write_compiled(inputs.target_dir, &late)?;
        compiled.extend(late);
    }
    let count = |st: JobStatus| statuses.iter().filter(|x| **x == st).count();
    summary.pass += count(JobStatus::Success);
    summary.warn += count(JobStatus::Warn);
    summary.error += count(JobStatus::Error);
    summary.skip += count(JobStatus::Skipped);
    summary.total = total;
    // Errors first, then warnings, each in the order they happened.
    let node_problems = node_problems
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let (errors, warnings): (Vec<Problem>, Vec<Problem>) =
        node_problems.into_iter().partition(|p| p.is_error);
    problems.extend(errors);
    problems.extend(warnings);
    if warehouse_gone {
        let skipped = count(JobStatus::Skipped);
        problems.insert(
            0,
            Problem {
                is_error: true,
                text: format!(
                    "The warehouse cannot be reached any more, so the run stopped: {skipped} node{} that had not started {} skipped (on-run-end hooks too). Run `strata retry` once it is back.",
                    if skipped == 1 { "" } else { "s" },
                    if skipped == 1 { "was" } else { "were" },
                ),
            },
        );
    }
    events.event(&Event::Finished {
        what: &what,
        seconds: started.elapsed().as_secs_f64(),
        problems: &problems,
        summary,
    });
    if interrupted {
        events.event(&Event::Interrupted);
    }
    Ok(RunOutput {
        results,
        compiled,
        summary,
        interrupted,
        failed: decide::run_failed(summary.error, summary.skip, options.fail_fast),
    })
}

fn unit_subject(u: &UnitTest) -> Subject {
    Subject::UnitTest {
        unique_id: u.unique_id.clone(),
        label: format!("{}::{}", u.model, u.name),
    }
}

/// Runs one unit test as a job: its result, and the problem to report when
/// it failed.
#[allow(clippy::too_many_arguments)]
fn run_unit_job(
    m: &crate::manifest::Manifest,
    compiler: &Compiler<'_>,
    adapter: &dyn Adapter,
    u: &UnitTest,
    compiled: &HashMap<String, CompiledNode>,
    at: Progress,
    thread: usize,
    events: &dyn EventSink,
) -> (NodeResult, Option<Problem>) {
    let subject = unit_subject(u);
    events.event(&Event::NodeStarted {
        at,
        subject: &subject,
    });
    let t0 = chrono::Utc::now();
    let clock = Instant::now();
    let out = unit_test::run(m, compiler, adapter, u, compiled);
    let seconds = clock.elapsed().as_secs_f64();
    let status = match &out {
        Ok(UnitOutcome::Pass) => RunStatus::Pass,
        Ok(UnitOutcome::Fail(_)) => RunStatus::Fail,
        Err(_) => RunStatus::Error,
    };
    events.event(&Event::NodeFinished(NodeEnd {
        at,
        subject: &subject,
        status,
        code: None,
        rows: None,
        failures: None,
        seconds,
    }));
    let message = match out {
        Ok(UnitOutcome::Pass) => None,
        Ok(UnitOutcome::Fail(diff)) => Some(diff),
        Err(e) => Some(e.message),
    };
    let problem = message.as_ref().map(|text| Problem {
        is_error: true,
        text: format!(
            "{} in unit test {}::{} ({})\n  {}",
            if status == RunStatus::Fail {
                "Failure"
            } else {
                "Error"
            },
            u.model,
            u.name,
            u.display_path,
            indent(text)
        ),
    });
    let result = NodeResult {
        message,
        failures: Some(u64::from(status == RunStatus::Fail)),
        ..NodeResult::ran(
            &u.unique_id,
            status.as_str(),
            thread,
            (t0, chrono::Utc::now()),
            seconds,
        )
    };
    (result, problem)
}

/// The model a unit test tests.
fn model_of<'a>(inputs: RunInputs<'a>, u: &UnitTest) -> Option<&'a Node> {
    inputs
        .parsed
        .manifest
        .nodes
        .values()
        .find(|n| n.name == u.model && n.resource_type == ResourceType::Model)
}

/// How one node's job went.
struct Ran {
    status: RunStatus,
    code: Option<&'static str>,
    rows: Option<u64>,
    failures: Option<u64>,
    message: Option<String>,
    error: Option<NodeError>,
}

impl Ran {
    fn failed(e: NodeError) -> Ran {
        Ran {
            status: RunStatus::Error,
            code: None,
            rows: None,
            failures: None,
            message: Some(e.message.clone()),
            error: Some(e),
        }
    }

    /// A test a dry run does not run: nothing it would test was built.
    fn dry_run() -> Ran {
        Ran {
            status: RunStatus::Success,
            code: Some(events::DRY_RUN),
            rows: None,
            failures: None,
            message: Some("not run: dry run".into()),
            error: None,
        }
    }
}

/// A render failure as the node's error: the diagnostic without its
/// `error[kind]:` prefix (the summary names the kind).
fn compile_error(d: &crate::error::Diagnostic) -> NodeError {
    let text = d.to_string();
    let text = match text.split_once("]: ") {
        Some((head, rest)) if head.starts_with("error[") => rest.to_string(),
        _ => text,
    };
    NodeError::new(NodeErrorKind::Compilation, text)
}

fn run_node(ctx: &RunCtx<'_>, n: &Node, c: Option<&CompiledNode>) -> Ran {
    let failed = Ran::failed;
    if n.resource_type == ResourceType::Test && ctx.dry_run {
        return Ran::dry_run();
    }
    if n.resource_type == ResourceType::Test {
        return match ctx.run_test(n, c) {
            Ok(t) => Ran {
                status: t.status,
                code: None,
                rows: None,
                failures: Some(t.failures),
                message: (t.status != RunStatus::Pass).then(|| {
                    let cfg = n.config.test();
                    format!(
                        "Got {f} result{}, configured to {} if {}",
                        if t.failures == 1 { "" } else { "s" },
                        if t.status == RunStatus::Fail {
                            "fail"
                        } else {
                            "warn"
                        },
                        if t.status == RunStatus::Fail {
                            &cfg.error_if
                        } else {
                            &cfg.warn_if
                        },
                        f = t.failures,
                    )
                }),
                error: None,
            },
            Err(e) => failed(e),
        };
    }
    let built = match n.resource_type {
        ResourceType::Seed => ctx.load_seed(n),
        ResourceType::Snapshot => ctx.run_snapshot(n, c),
        _ => ctx.build_model(n, c),
    };
    match built {
        Ok(b) => Ran {
            status: RunStatus::Success,
            code: Some(if ctx.dry_run { events::DRY_RUN } else { b.code }),
            rows: b.rows,
            failures: None,
            message: Some(b.code.to_string()),
            error: None,
        },
        Err(e) => failed(e),
    }
}

/// Where a node's executed SQL goes, relative to the target directory:
/// `run/<package>/<path>` as dbt lays it out (tests under their YAML file).
pub fn run_path(n: &Node, c: Option<&CompiledNode>) -> String {
    match c.and_then(|c| c.compiled_path.strip_prefix("compiled/")) {
        Some(rest) => format!("run/{rest}"),
        None => format!("run/{}/{}", n.package, n.original_file_path),
    }
}

/// Writes the statements a node sent; best effort, since the run's outcome
/// does not depend on it (a failure is reported in the file's place).
fn write_run_sql(target_dir: &Path, rel: &str, statements: &[String]) {
    if statements.is_empty() {
        return;
    }
    let path = target_dir.join(rel);
    let mut text = String::new();
    for s in statements {
        text.push_str(s.trim_end());
        text.push_str(";\n\n");
    }
    let text = crate::secrets::scrub(&text);
    let _ = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| std::fs::write(&path, text.as_bytes()));
}

/// The end-of-run explanation of a node that failed or warned.
fn problem_of(n: &Node, ran: &Ran, target_dir: &Path) -> Option<Problem> {
    let compiled_at = target_dir.join(compiled_path(n));
    match (n.resource_type, ran.status) {
        (_, RunStatus::Success | RunStatus::Pass | RunStatus::Skipped) => None,
        (ResourceType::Test, status) => {
            let kind = match status {
                RunStatus::Fail => "Failure",
                RunStatus::Warn => "Warning",
                _ => "Error",
            };
            Some(Problem {
                is_error: status != RunStatus::Warn,
                text: format!(
                    "{kind} in test {} ({})\n  {}\n  compiled code at {}",
                    n.name,
                    n.display_path,
                    indent(ran.message.as_deref().unwrap_or_default()),
                    compiled_at.display()
                ),
            })
        }
        (rt, _) => {
            let e = ran.error.as_ref()?;
            let mut text = format!(
                "{} in {} {} ({})\n  {}",
                e.kind.label(),
                rt.as_str(),
                n.name,
                n.display_path,
                indent(&e.message)
            );
            if rt != ResourceType::Seed && e.kind != NodeErrorKind::Compilation {
                text.push_str(&format!("\n  compiled code at {}", compiled_at.display()));
            }
            Some(Problem {
                is_error: true,
                text,
            })
        }
    }
}

/// `on-run-start` or `on-run-end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProjectHook {
    Start,
    End,
}

/// Runs every package's project hooks of one kind, rendered in the project context.
fn run_project_hooks(
    inputs: RunInputs<'_>,
    compiler: &Compiler<'_>,
    adapter: &dyn Adapter,
    which: ProjectHook,
) -> Result<(), RunError> {
    for pkg in &inputs.project.packages {
        let (name, list) = match which {
            ProjectHook::Start => ("on-run-start", &pkg.settings.on_run_start),
            ProjectHook::End => ("on-run-end", &pkg.settings.on_run_end),
        };
        for h in list {
            let sql = compiler.render_snippet(None, h)?;
            if sql.trim().is_empty() {
                continue;
            }
            adapter
                .execute(&Batch {
                    statements: vec![sql],
                    atomic: false,
                })
                .map_err(|source| RunError::Hook {
                    hook: name,
                    package: pkg.name().to_string(),
                    source,
                })?;
        }
    }
    Ok(())
}
