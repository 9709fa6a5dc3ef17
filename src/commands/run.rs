//! `strata run`: builds the selected models in dependency order on `threads`
//! worker sessions and writes run_results.json.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use super::{Outcome, Session};
use crate::adapter::{self, Adapter, Batch};
use crate::artifacts::manifest::{self as manifest_json, ManifestMeta};
use crate::artifacts::run_results::{self, NodeResult};
use crate::cli::RunArgs;
use crate::compile::{write_compiled, CompiledNode, Compiler};
use crate::manifest::{Node, ResourceType};
use crate::materialize::{self, HookSql, ModelPlanInput, RelationId, RelationKind};
use crate::report::Reporter;
use crate::scheduler::{run_dag, JobStatus};

/// `1 of 5 START sql view model schema.name ..... [RUN]`, dbt's layout.
fn progress(idx: usize, total: usize, text: &str, status: &str) -> String {
    let head = format!("{idx} of {total} {text} ");
    let dots = 72usize.saturating_sub(head.chars().count());
    format!("{head}{} [{status}]", ".".repeat(dots.max(3)))
}

fn hooks(n: &Node, key: &str) -> Vec<HookSql> {
    n.config
        .get(key)
        .and_then(|h| h.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    let sql = h.get("sql")?.as_str()?.to_string();
                    let tx = h
                        .get("transaction")
                        .and_then(|t| t.as_bool())
                        .unwrap_or(true);
                    Some(HookSql::new(sql, tx))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The outcome of one data test.
enum TestResult {
    Pass,
    Warn(u64),
    Fail(u64),
}

/// Runs a data test: counts failing rows with `fail_calc`, compares with
/// `warn_if`/`error_if` under the test's `severity`, and stores failures when
/// asked (`store_failures`, `store_failures_as`).
fn run_test(
    n: &Node,
    adapter: &dyn Adapter,
    c: Option<&CompiledNode>,
) -> std::result::Result<TestResult, String> {
    let c = c.ok_or("not compiled")?;
    let cfg = |k: &str, d: &str| {
        n.config
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or(d)
            .to_string()
    };
    let fail_calc = cfg("fail_calc", "count(*)");
    let warn_if = cfg("warn_if", "!= 0");
    let error_if = cfg("error_if", "!= 0");
    let limit = n
        .config
        .get("limit")
        .and_then(|v| v.as_u64())
        .map(|l| format!("\nlimit {l}"))
        .unwrap_or_default();
    let store_as = n
        .config
        .get("store_failures_as")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let store = store_as.is_some()
        || n.config
            .get("store_failures")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    if store {
        let d = adapter.dialect();
        let rel = d.relation(&RelationId::new(&n.database, &n.schema, &n.alias));
        let kind = if store_as.as_deref() == Some("view") {
            RelationKind::View
        } else {
            RelationKind::Table
        };
        adapter
            .execute(&Batch::atomic(vec![
                d.create_schema(&n.schema),
                d.drop_relation(RelationKind::View, &rel),
                d.drop_relation(RelationKind::Table, &rel),
                d.create_as(
                    kind,
                    &rel,
                    &format!("{}{limit}", c.sql),
                    &Default::default(),
                ),
            ]))
            .map_err(|e| format!("cannot store failures in {rel}: {}", e.message))?;
    }
    let sql = format!(
        "select {fail_calc} as failures, ({fail_calc}) {warn_if} as should_warn, ({fail_calc}) {error_if} as should_error\nfrom (\n{}{limit}\n) dbt_internal_test",
        c.sql
    );
    let t = adapter.query(&sql).map_err(|e| e.message)?;
    let row = t.rows.first().ok_or("the test query returned no row")?;
    let failures: u64 = row
        .first()
        .cloned()
        .flatten()
        .and_then(|f| f.parse::<f64>().ok())
        .map(|f| f as u64)
        .unwrap_or(0);
    let truthy = |i: usize| row.get(i).cloned().flatten().as_deref() == Some("t");
    let severity = cfg("severity", "error").to_ascii_lowercase();
    Ok(if severity == "error" && truthy(2) {
        TestResult::Fail(failures)
    } else if truthy(1) {
        TestResult::Warn(failures)
    } else {
        TestResult::Pass
    })
}

/// One snapshot run: the SCD2 plan for this node's config, executed atomically.
fn run_snapshot(
    n: &Node,
    adapter: &dyn Adapter,
    c: Option<&CompiledNode>,
    existing: Option<RelationKind>,
) -> std::result::Result<(String, Option<u64>), String> {
    use crate::materialize::snapshot::{self, HardDeletes, MetaColumns, SnapshotInput, Strategy};
    let c = c.ok_or("not compiled")?;
    let cfg = |k: &str| n.config.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let unique_key = string_list(n.config.get("unique_key"));
    if unique_key.is_empty() {
        return Err(format!("snapshot '{}' needs a unique_key", n.name));
    }
    let strategy = match cfg("strategy").as_deref() {
        Some("timestamp") => Strategy::Timestamp {
            updated_at: cfg("updated_at").ok_or_else(|| {
                format!(
                    "snapshot '{}' uses the timestamp strategy but sets no updated_at",
                    n.name
                )
            })?,
        },
        Some("check") => Strategy::Check {
            columns: match n.config.get("check_cols") {
                Some(serde_json::Value::String(s)) if s == "all" => None,
                other => Some(string_list(other)),
            },
        },
        other => {
            return Err(format!(
                "snapshot '{}' has strategy {other:?}; use timestamp or check",
                n.name
            ))
        }
    };
    let legacy = n
        .config
        .get("invalidate_hard_deletes")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let hard_deletes = HardDeletes::parse(cfg("hard_deletes").as_deref(), legacy)?;
    let mut meta = MetaColumns::default();
    if let Some(names) = n
        .config
        .get("snapshot_meta_column_names")
        .and_then(|v| v.as_object())
    {
        let get = |k: &str| names.get(k).and_then(|v| v.as_str()).map(str::to_string);
        meta.scd_id = get("dbt_scd_id").unwrap_or(meta.scd_id);
        meta.updated_at = get("dbt_updated_at").unwrap_or(meta.updated_at);
        meta.valid_from = get("dbt_valid_from").unwrap_or(meta.valid_from);
        meta.valid_to = get("dbt_valid_to").unwrap_or(meta.valid_to);
        meta.is_deleted = get("dbt_is_deleted").unwrap_or(meta.is_deleted);
    }
    let source_columns = adapter
        .describe(&format!("select * from (\n{}\n) as dbt_sbq", c.sql))
        .map_err(|e| e.message)?;
    let existing_columns = match existing {
        Some(RelationKind::Table) => Some(
            adapter
                .columns_of(&n.schema, &n.alias)
                .map_err(|e| e.message)?,
        ),
        Some(_) => {
            return Err(format!(
                "{} exists but is not a table; a snapshot needs a table",
                n.alias
            ))
        }
        None => None,
    };
    let plan = snapshot::plan(
        adapter.dialect(),
        &SnapshotInput {
            target: RelationId::new(&n.database, &n.schema, &n.alias),
            sql: &c.sql,
            unique_key,
            strategy,
            hard_deletes,
            meta,
            valid_to_current: cfg("dbt_valid_to_current"),
            source_columns,
            existing_columns,
        },
    );
    let mut rows = None;
    for (bi, b) in plan.batches.iter().enumerate() {
        let r = adapter.execute(b).map_err(|e| e.message)?;
        if bi == plan.main.0 {
            rows = r.rows_affected.get(plan.main.1).copied().flatten();
        }
    }
    Ok(("INSERT".into(), rows))
}

/// With `contract: {enforced: true}`, checks the model's output against its
/// YAML columns before anything is built, and returns the declared columns
/// with their types normalized by the warehouse.
fn enforced_contract(
    n: &Node,
    adapter: &dyn Adapter,
    sql: &str,
) -> std::result::Result<Option<Vec<materialize::contract::Declared>>, String> {
    use materialize::contract::{check, Declared};
    let enforced = n
        .config
        .get("contract")
        .and_then(|c| c.get("enforced"))
        .and_then(|e| e.as_bool())
        .unwrap_or(false);
    if !enforced {
        return Ok(None);
    }
    let mut typed = Vec::new();
    for c in n.columns.values() {
        let Some(t) = &c.data_type else {
            return Err(format!(
                "model '{}' enforces a contract, but column '{}' has no data_type in its YAML",
                n.name, c.name
            ));
        };
        typed.push((c, t));
    }
    let names: Vec<&str> = typed.iter().map(|(_, t)| t.as_str()).collect();
    let canon = adapter.canonical_types(&names).map_err(|e| e.message)?;
    let mut declared = Vec::new();
    for ((c, t), base) in typed.into_iter().zip(canon) {
        let Some(base) = base else {
            return Err(format!(
                "column '{}': data_type '{t}' is not a type the warehouse knows",
                c.name
            ));
        };
        declared.push(Declared {
            name: c.name.clone(),
            data_type: base,
            ddl_type: t.clone(),
            constraints: c.constraints.iter().filter_map(constraint_of).collect(),
        });
    }
    let produced = adapter
        .describe(&format!("select * from (\n{sql}\n) as dbt_sbq"))
        .map_err(|e| e.message)?;
    check(&declared, &produced).map_err(|e| e.0)?;
    Ok(Some(declared))
}

/// Grants on an existing relation that its config does not list (the owner's
/// own privileges are left alone).
fn stale_grants(
    adapter: &dyn Adapter,
    n: &Node,
    wanted: &[(String, Vec<String>)],
) -> std::result::Result<Vec<crate::adapter::Grant>, String> {
    let held = adapter
        .grants_on(&n.schema, &n.alias)
        .map_err(|e| e.message)?;
    Ok(held
        .into_iter()
        .filter(|g| {
            !wanted
                .iter()
                .any(|(wp, who)| wp.eq_ignore_ascii_case(&g.privilege) && who.contains(&g.grantee))
        })
        .collect())
}

/// A contract constraint from its YAML.
fn constraint_of(c: &serde_json::Value) -> Option<crate::adapter::dialect::Constraint> {
    use crate::adapter::dialect::{Constraint, ConstraintKind};
    let kind = match c.get("type")?.as_str()? {
        "not_null" => ConstraintKind::NotNull,
        "unique" => ConstraintKind::Unique,
        "primary_key" => ConstraintKind::PrimaryKey,
        "check" => ConstraintKind::Check,
        "foreign_key" => ConstraintKind::ForeignKey,
        "custom" => ConstraintKind::Custom,
        _ => return None,
    };
    Some(Constraint {
        kind,
        name: c.get("name").and_then(|v| v.as_str()).map(str::to_string),
        expression: c
            .get("expression")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

/// Indexes, grants, unlogged and persisted docs from a model's config.
fn relation_settings(
    n: &Node,
    adapter: &dyn Adapter,
    sql: &str,
) -> std::result::Result<materialize::RelationSettings, String> {
    use serde_json::Value as J;
    let mut out = materialize::RelationSettings {
        unlogged: n
            .config
            .get("unlogged")
            .and_then(J::as_bool)
            .unwrap_or(false),
        ..Default::default()
    };
    if let Some(J::Array(idx)) = n.config.get("indexes") {
        for i in idx {
            let cols = string_list(i.get("columns"));
            if cols.is_empty() {
                return Err(format!("an index of model '{}' has no columns", n.name));
            }
            out.indexes.push(crate::adapter::dialect::IndexSpec {
                columns: cols,
                unique: i.get("unique").and_then(J::as_bool).unwrap_or(false),
                method: i.get("type").and_then(J::as_str).map(str::to_string),
            });
        }
    }
    if let Some(J::Object(g)) = n.config.get("grants") {
        for (privilege, who) in g {
            out.grants.push((privilege.clone(), string_list(Some(who))));
        }
    }
    let pd = n.config.get("persist_docs");
    let flag = |k: &str| {
        pd.and_then(|p| p.get(k))
            .and_then(J::as_bool)
            .unwrap_or(false)
    };
    if flag("relation") && !n.description.is_empty() {
        out.relation_comment = Some(n.description.clone());
    }
    if flag("columns") && n.columns.values().any(|c| !c.description.is_empty()) {
        let produced = adapter
            .describe(&format!("select * from (\n{sql}\n) as dbt_sbq"))
            .map_err(|e| e.message)?;
        for c in n.columns.values() {
            if !c.description.is_empty() && produced.iter().any(|p| p.name == c.name) {
                out.column_comments
                    .push((c.name.clone(), c.description.clone()));
            }
        }
    }
    Ok(out)
}

/// dbt's rule: a model's `full_refresh` config, when set, wins over the flag.
fn full_refresh_of(n: &Node, flag: bool) -> bool {
    n.config
        .get("full_refresh")
        .and_then(|f| f.as_bool())
        .unwrap_or(flag)
}

fn string_list(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// Loads one seed with COPY; a malformed file fails before touching the table.
fn load_seed(
    s: &Session,
    n: &Node,
    adapter: &dyn Adapter,
    existing: Option<RelationKind>,
    full_refresh: bool,
) -> std::result::Result<(String, Option<u64>), String> {
    use crate::materialize::seed;
    let pkg = s
        .project
        .packages
        .iter()
        .find(|p| p.name() == n.package)
        .ok_or("unknown package")?;
    let path = pkg.root.join(&n.original_file_path);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let column_types = n
        .config
        .get("column_types")
        .and_then(|c| c.as_object())
        .cloned()
        .unwrap_or_default();
    let delimiter = n
        .config
        .get("delimiter")
        .and_then(|d| d.as_str())
        .and_then(|d| d.bytes().next())
        .unwrap_or(b',');
    let d = adapter.dialect();
    if !d.copy_from_client() {
        return Err(format!(
            "seeds cannot be loaded from the client on {}; they load through S3 there",
            d.name()
        ));
    }
    let data = seed::read_csv(d, &n.display_path, &bytes, delimiter, &|c| {
        column_types
            .get(c)
            .and_then(|t| t.as_str())
            .map(str::to_string)
    })
    .map_err(|d| d.to_string())?;
    let quote = n
        .config
        .get("quote_columns")
        .and_then(|q| q.as_bool())
        .unwrap_or(true);
    let full_refresh = full_refresh
        || n.config
            .get("full_refresh")
            .and_then(|f| f.as_bool())
            .unwrap_or(false);
    // A header that no longer matches the table's columns also means a new table
    // (dbt would fail the truncate-and-reload and ask for --full-refresh).
    let columns_changed = existing == Some(RelationKind::Table)
        && adapter
            .columns_of(&n.schema, &n.alias)
            .map(|cols| {
                cols.iter()
                    .map(|c| c.name.as_str())
                    .ne(data.columns.iter().map(String::as_str))
            })
            .unwrap_or(false);
    let recreate = full_refresh || columns_changed || existing != Some(RelationKind::Table);
    let plan = seed::plan(
        d,
        &RelationId::new(&n.database, &n.schema, &n.alias),
        &data,
        quote,
        recreate,
    );
    let rows = adapter
        .load(&plan.before, &plan.copy, &data.copy_data, &plan.after)
        .map_err(|e| {
            // COPY reports "line N" of the data; the file has a header line first.
            let m = e.message.clone();
            match regex::Regex::new(r"COPY [^,]+, line (\d+)")
                .ok()
                .and_then(|r| r.captures(&m))
                .and_then(|c| c[1].parse::<usize>().ok())
            {
                Some(l) => format!("{}:{}: {m}", n.display_path, l + 1),
                None => m,
            }
        })?;
    Ok(("INSERT".into(), Some(rows)))
}

fn existing_relations(
    a: &dyn Adapter,
    schemas: &BTreeSet<String>,
) -> Result<HashMap<(String, String), RelationKind>> {
    let list: Vec<String> = schemas.iter().cloned().collect();
    let found = a
        .list_relations(&list)
        .map_err(|e| anyhow::anyhow!("cannot list existing relations: {e}"))?;
    Ok(found
        .into_iter()
        .map(|r| ((r.schema, r.identifier), r.kind))
        .collect())
}

/// Which resources a command builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Run,
    Seed,
    Build,
    Snapshot,
    Test,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Run => "run",
            Which::Seed => "seed",
            Which::Build => "build",
            Which::Snapshot => "snapshot",
            Which::Test => "test",
        }
    }

    fn includes(self, n: &Node) -> bool {
        match n.resource_type {
            ResourceType::Model => matches!(self, Which::Run | Which::Build) && !n.is_ephemeral(),
            ResourceType::Seed => matches!(self, Which::Seed | Which::Build),
            ResourceType::Snapshot => matches!(self, Which::Snapshot | Which::Build),
            ResourceType::Test => matches!(self, Which::Test | Which::Build),
            _ => false,
        }
    }
}

pub fn run(args: &RunArgs) -> Result<Outcome> {
    execute(args, Which::Run, None)
}

pub fn seed(args: &RunArgs) -> Result<Outcome> {
    execute(args, Which::Seed, None)
}

pub fn build(args: &RunArgs) -> Result<Outcome> {
    execute(args, Which::Build, None)
}

pub fn snapshot(args: &RunArgs) -> Result<Outcome> {
    execute(args, Which::Snapshot, None)
}

pub fn test(args: &RunArgs) -> Result<Outcome> {
    execute(args, Which::Test, None)
}

/// Re-runs the nodes that failed or were skipped in the last run_results.json,
/// with the command that produced it.
pub fn retry(args: &RunArgs) -> Result<Outcome> {
    let settings_text = std::fs::read_to_string(args.common.project_dir.join("dbt_project.yml"))
        .with_context(|| {
            format!(
                "no dbt_project.yml in {}",
                args.common.project_dir.display()
            )
        })?;
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
    let which = match doc["args"]["which"].as_str() {
        Some("seed") => Which::Seed,
        Some("build") => Which::Build,
        Some("snapshot") => Which::Snapshot,
        Some("test") => Which::Test,
        _ => Which::Run,
    };
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
    if ids.is_empty() {
        Reporter::new(args.common.report_settings()).info(
            "retry",
            "Nothing to retry: the last run had no failures or skips",
        );
        return Ok(Outcome::Success);
    }
    execute(args, which, Some(ids))
}

/// Set when Ctrl-C arrives during a run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

pub fn execute(args: &RunArgs, which: Which, only: Option<BTreeSet<String>>) -> Result<Outcome> {
    let s = Session::open(&args.common)?;
    let m = &s.parsed.manifest;
    let selected = match only {
        Some(ids) => ids,
        None => s.select()?,
    };
    let models: Vec<&Node> = selected
        .iter()
        .filter_map(|id| m.nodes.get(id))
        .filter(|n| which.includes(n))
        .collect();
    let ids: BTreeSet<String> = models.iter().map(|n| n.unique_id.clone()).collect();
    let rep = s.reporter;
    let started = Instant::now();
    let adapter = adapter::connect(&s.project.dir, &s.project.target, args.common.threads)?;
    // Models may run introspective queries (run_query, adapter.get_relation …).
    let mut compiler = Compiler::new(
        &s.parsed,
        Some(crate::engine::warehouse::AdapterWarehouse::shared(&adapter)),
    );
    let threads = args
        .common
        .threads
        .unwrap_or(s.project.target.threads)
        .max(1);
    let n_seeds = models
        .iter()
        .filter(|n| n.resource_type == ResourceType::Seed)
        .count();
    let n_snapshots = models
        .iter()
        .filter(|n| n.resource_type == ResourceType::Snapshot)
        .count();
    let mut kinds = Vec::new();
    let n_tests = models
        .iter()
        .filter(|n| n.resource_type == ResourceType::Test)
        .count();
    for (count, word) in [
        (models.len() - n_seeds - n_snapshots - n_tests, "model"),
        (n_tests, "data test"),
        (n_snapshots, "snapshot"),
        (n_seeds, "seed"),
    ] {
        if count > 0 {
            kinds.push(plural(count, word));
        }
    }
    let what_runs = if kinds.is_empty() {
        "0 models".to_string()
    } else {
        kinds.join(" and ")
    };
    rep.info(
        which.name(),
        &format!(
            "Concurrency: {threads} threads (target='{}'); running {what_runs}",
            s.project.target.name
        ),
    );

    // Project hooks and schemas.
    // Takes the compiler as an argument (not a capture) so the one compiler can be
    // configured for this run between the start and end hooks.
    let run_hooks = |compiler: &Compiler, kind: &str| -> Result<()> {
        for pkg in &s.project.packages {
            let list = if kind == "on-run-start" {
                &pkg.settings.on_run_start
            } else {
                &pkg.settings.on_run_end
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
                    .map_err(|e| {
                        anyhow::anyhow!("{kind} hook of package '{}' failed: {e}", pkg.name())
                    })?;
            }
        }
        Ok(())
    };
    run_hooks(&compiler, "on-run-start")?;
    let schemas: BTreeSet<(String, String)> = models
        .iter()
        .map(|n| (n.database.clone(), n.schema.clone()))
        .collect();
    for (_, schema) in &schemas {
        adapter
            .execute(&Batch {
                statements: vec![adapter.dialect().create_schema(schema)],
                atomic: false,
            })
            .map_err(|e| anyhow::anyhow!("cannot create schema {schema}: {e}"))?;
    }
    let existing = existing_relations(
        adapter.as_ref(),
        &schemas.iter().map(|(_, s)| s.clone()).collect(),
    )?;
    // `is_incremental()` is true for incremental models whose table exists and
    // that are not being fully refreshed.
    for n in &models {
        if n.config.materialized == crate::project::config::Materialized::Incremental
            && existing.get(&(n.schema.clone(), n.alias.clone())) == Some(&RelationKind::Table)
            && !full_refresh_of(n, args.common.full_refresh)
        {
            compiler.incremental.insert(n.unique_id.clone());
        }
    }
    // Unit tests of the selected models run first (in `test` and `build`).
    let unit_tests: Vec<&crate::manifest::UnitTest> = if matches!(which, Which::Test | Which::Build)
    {
        m.unit_tests
            .values()
            .filter(|u| {
                m.nodes.values().any(|n| {
                    n.name == u.model
                        && n.resource_type == ResourceType::Model
                        && selected.contains(&n.unique_id)
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut compile_ids = ids.clone();
    for u in &unit_tests {
        if let Some(n) = m
            .nodes
            .values()
            .find(|n| n.name == u.model && n.resource_type == ResourceType::Model)
        {
            compile_ids.insert(n.unique_id.clone());
        }
    }
    let compiled: HashMap<String, CompiledNode> = compiler.compile(&s.graph, &compile_ids)?;
    std::fs::create_dir_all(&s.target_dir)
        .with_context(|| format!("cannot create {}", s.target_dir.display()))?;
    write_compiled(&s.target_dir, &compiled)?;
    let compiler = compiler;

    // Dependencies among the models being run, looking through ephemeral models.
    let index: HashMap<&str, usize> = models
        .iter()
        .enumerate()
        .map(|(i, n)| (n.unique_id.as_str(), i))
        .collect();
    let parents: Vec<Vec<usize>> = models
        .iter()
        .map(|n| {
            let mut out = BTreeSet::new();
            let mut stack: Vec<&str> = n.depends_on_nodes.iter().map(String::as_str).collect();
            let mut seen = BTreeSet::new();
            while let Some(d) = stack.pop() {
                if !seen.insert(d) {
                    continue;
                }
                if let Some(&i) = index.get(d) {
                    out.insert(i);
                } else if let Some(p) = m.nodes.get(d).filter(|p| p.is_ephemeral()) {
                    stack.extend(p.depends_on_nodes.iter().map(String::as_str));
                }
            }
            out.into_iter().collect()
        })
        .collect();
    // In `build`, a node's children wait for its tests, so an error-severity
    // failure skips them. Only single-parent tests gate (a relationships test
    // between a node and its descendant would otherwise wait on itself).
    let mut parents = parents;
    let mut tests_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (t, n) in models.iter().enumerate() {
        if n.resource_type == ResourceType::Test && parents[t].len() == 1 {
            tests_of.entry(parents[t][0]).or_default().push(t);
        }
    }
    if !tests_of.is_empty() {
        for c in 0..models.len() {
            if models[c].resource_type == ResourceType::Test {
                continue;
            }
            let extra: Vec<usize> = parents[c]
                .iter()
                .filter_map(|p| tests_of.get(p))
                .flatten()
                .copied()
                .collect();
            parents[c].extend(extra);
            parents[c].sort_unstable();
            parents[c].dedup();
        }
    }

    // Unit tests: a failure blocks its model (and so its descendants) in `build`.
    let mut blocked: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut unit_pass = 0usize;
    let mut unit_fail = 0usize;
    let mut unit_errors: Vec<String> = Vec::new();
    let mut unit_results: Vec<NodeResult> = Vec::new();
    for (i, u) in unit_tests.iter().enumerate() {
        let label = format!("{}::{}", u.model, u.name);
        rep.info(
            "unit_start",
            &progress(
                i + 1,
                unit_tests.len(),
                &format!("START unit_test {label}"),
                "RUN",
            ),
        );
        let t0 = chrono::Utc::now();
        let clock = Instant::now();
        let out = crate::unit_test::run(m, &compiler, adapter.as_ref(), u, &compiled);
        let secs = clock.elapsed().as_secs_f64();
        let (status, word) = match &out {
            Ok(crate::unit_test::Outcome::Pass) => ("pass", "PASS"),
            Ok(crate::unit_test::Outcome::Fail(_)) => ("fail", "FAIL"),
            Err(_) => ("error", "ERROR"),
        };
        let line = progress(
            i + 1,
            unit_tests.len(),
            &format!("{word} {label}"),
            &format!("{word} in {secs:.2}s"),
        );
        let message = match out {
            Ok(crate::unit_test::Outcome::Pass) => {
                unit_pass += 1;
                rep.info("unit_ok", &line);
                None
            }
            Ok(crate::unit_test::Outcome::Fail(diff)) | Err(diff) => {
                unit_fail += 1;
                rep.error(&line);
                unit_errors.push(format!(
                    "{} in unit test {label} ({})\n  {}",
                    if status == "fail" { "Failure" } else { "Error" },
                    u.display_path,
                    diff.replace('\n', "\n  ")
                ));
                if let Some(n) = m
                    .nodes
                    .values()
                    .find(|n| n.name == u.model && n.resource_type == ResourceType::Model)
                {
                    blocked.insert(n.unique_id.clone());
                }
                Some(diff)
            }
        };
        unit_results.push(NodeResult {
            message,
            failures: if status == "fail" { Some(1) } else { Some(0) },
            ..NodeResult::ran(&u.unique_id, status, 0, (t0, chrono::Utc::now()), secs)
        });
    }

    let total = models.len();
    let counter = AtomicUsize::new(0);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    {
        // Ctrl-C: start nothing new and cancel what runs, server side; each model's
        // transaction rolls back, so no relation is left half built.
        let stop = stop.clone();
        let adapter = adapter.clone();
        let _ = ctrlc::set_handler(move || {
            INTERRUPTED.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
            adapter.cancel_all();
        });
    }
    let results: Mutex<Vec<NodeResult>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let warnings: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let label = |n: &Node| format!("{}.{}", n.schema, n.alias);

    let statuses = run_dag(
        &parents,
        threads,
        &stop,
        |i, thread| {
            let n = models[i];
            let idx = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if blocked.contains(&n.unique_id) {
                rep.error(&progress(
                    idx,
                    total,
                    &format!("ERROR {} (its unit tests failed)", label(n)),
                    "ERROR",
                ));
                return JobStatus::Error;
            }
            if n.resource_type == ResourceType::Test {
                rep.info(
                    "node_start",
                    &progress(idx, total, &format!("START test {}", n.name), "RUN"),
                );
                let t0 = chrono::Utc::now();
                let clock = Instant::now();
                let c = compiled.get(&n.unique_id);
                let out = run_test(n, adapter.as_ref(), c);
                let secs = clock.elapsed().as_secs_f64();
                let (status, word, job) = match &out {
                    Ok(TestResult::Pass) => ("pass", "PASS".to_string(), JobStatus::Success),
                    Ok(TestResult::Warn(f)) => ("warn", format!("WARN {f}"), JobStatus::Warn),
                    Ok(TestResult::Fail(f)) => ("fail", format!("FAIL {f}"), JobStatus::Error),
                    Err(_) => ("error", "ERROR".to_string(), JobStatus::Error),
                };
                let line = progress(
                    idx,
                    total,
                    &format!("{word} {}", n.name),
                    &format!("{word} in {secs:.2}s"),
                );
                match job {
                    JobStatus::Success => rep.info("node_ok", &line),
                    JobStatus::Warn => rep.warn(&line),
                    _ => rep.error(&line),
                }
                let path = s.target_dir.join(crate::compile::compiled_path(n));
                let failures = match &out {
                    Ok(TestResult::Warn(f)) | Ok(TestResult::Fail(f)) => Some(*f),
                    Ok(TestResult::Pass) => Some(0),
                    Err(_) => None,
                };
                let message = match &out {
                    Ok(TestResult::Pass) => None,
                    Ok(TestResult::Warn(f)) | Ok(TestResult::Fail(f)) => Some(format!(
                        "Got {f} result{}, configured to {} if {}",
                        if *f == 1 { "" } else { "s" },
                        if status == "fail" { "fail" } else { "warn" },
                        n.config
                            .get(if status == "fail" {
                                "error_if"
                            } else {
                                "warn_if"
                            })
                            .and_then(|v| v.as_str())
                            .unwrap_or("!= 0")
                    )),
                    Err(e) => Some(e.clone()),
                };
                if job == JobStatus::Error || job == JobStatus::Warn {
                    let kind = match status {
                        "fail" => "Failure",
                        "warn" => "Warning",
                        _ => "Error",
                    };
                    let text = format!(
                        "{kind} in test {} ({})\n  {}\n  compiled code at {}",
                        n.name,
                        n.display_path,
                        message.clone().unwrap_or_default().replace('\n', "\n  "),
                        path.display()
                    );
                    if job == JobStatus::Error {
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push(text);
                    } else {
                        warnings
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(text);
                    }
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(NodeResult {
                        message,
                        failures,
                        compiled_code: c.map(|c| c.sql.clone()),
                        relation_name: n.relation_name(&m.quoting),
                        ..NodeResult::ran(
                            &n.unique_id,
                            status,
                            thread,
                            (t0, chrono::Utc::now()),
                            secs,
                        )
                    });
                if job == JobStatus::Error && args.fail_fast {
                    stop.store(true, Ordering::SeqCst);
                    adapter.cancel_all();
                }
                return job;
            }
            let mat = n.config.materialized.as_str();
            let what = if n.resource_type == ResourceType::Seed {
                format!("seed file {}", label(n))
            } else if n.resource_type == ResourceType::Snapshot {
                format!("snapshot {}", label(n))
            } else {
                format!("sql {mat} model {}", label(n))
            };
            rep.info(
                "node_start",
                &progress(idx, total, &format!("START {what}"), "RUN"),
            );
            let t0 = chrono::Utc::now();
            let clock = Instant::now();
            let c = compiled.get(&n.unique_id);
            let existing_kind = existing.get(&(n.schema.clone(), n.alias.clone())).copied();
            let outcome: std::result::Result<(String, Option<u64>), String> = if n.resource_type
                == ResourceType::Snapshot
            {
                run_snapshot(n, adapter.as_ref(), c, existing_kind)
            } else if n.resource_type == ResourceType::Seed {
                load_seed(
                    &s,
                    n,
                    adapter.as_ref(),
                    existing_kind,
                    args.common.full_refresh,
                )
            } else {
                (|| {
                    let c = c.ok_or("not compiled")?;
                    let incremental_run = compiler.incremental.contains(&n.unique_id);
                    let kind = match mat {
                        "view" => RelationKind::View,
                        "table" | "incremental" => RelationKind::Table,
                        "materialized_view" => RelationKind::MaterializedView,
                        other => {
                            return Err(format!(
                                "materialization '{other}' is not supported by Strata yet"
                            ))
                        }
                    };
                    let render = |v: Vec<HookSql>| -> std::result::Result<Vec<HookSql>, String> {
                        v.into_iter()
                            .map(|h| {
                                compiler
                                    .render_snippet(Some(n), &h.sql)
                                    .map(|s| HookSql::new(s, h.in_transaction))
                                    .map_err(|d| d.to_string())
                            })
                            .collect()
                    };
                    let d = adapter.dialect();
                    let input = ModelPlanInput {
                        target: RelationId::new(&n.database, &n.schema, &n.alias),
                        sql: &c.sql,
                        existing: existing_kind,
                        pre_hooks: render(hooks(n, "pre-hook"))?,
                        post_hooks: render(hooks(n, "post-hook"))?,
                        settings: {
                            let mut st = relation_settings(n, adapter.as_ref(), &c.sql)?;
                            // Relations kept in place keep their grants: revoke what the
                            // config no longer lists, so grants match it.
                            let kept = incremental_run
                                || kind == RelationKind::MaterializedView
                                    && existing_kind == Some(RelationKind::MaterializedView)
                                    && !full_refresh_of(n, args.common.full_refresh);
                            if kept {
                                st.revokes = stale_grants(adapter.as_ref(), n, &st.grants)?;
                            }
                            st
                        },
                        contract: enforced_contract(n, adapter.as_ref(), &c.sql)?,
                    };
                    let plan = if incremental_run {
                        use crate::materialize::incremental::{
                            self, IncrementalInput, OnSchemaChange, Strategy,
                        };
                        let unique_key = string_list(n.config.get("unique_key"));
                        let strategy = Strategy::parse(
                            n.config
                                .get("incremental_strategy")
                                .and_then(|v| v.as_str()),
                            !unique_key.is_empty(),
                        )?;
                        let on_schema_change = OnSchemaChange::parse(
                            n.config.get("on_schema_change").and_then(|v| v.as_str()),
                        )?;
                        let source_columns = adapter
                            .describe(&format!("select * from (\n{}\n) as dbt_sbq", c.sql))
                            .map_err(|e| e.message)?;
                        let target_columns = adapter
                            .columns_of(&n.schema, &n.alias)
                            .map_err(|e| e.message)?;
                        incremental::plan(
                            d,
                            &IncrementalInput {
                                target: input.target.clone(),
                                sql: &c.sql,
                                strategy,
                                unique_key,
                                predicates: string_list(n.config.get("incremental_predicates")),
                                on_schema_change,
                                source_columns,
                                target_columns,
                                pre_hooks: input.pre_hooks.clone(),
                                post_hooks: {
                                    let mut p = input.post_hooks.clone();
                                    p.extend(
                                        materialize::settings_sql(
                                            d,
                                            &d.relation(&input.target),
                                            &n.alias,
                                            kind,
                                            &input.settings,
                                        )
                                        .into_iter()
                                        .map(|sql| HookSql::new(sql, true)),
                                    );
                                    p
                                },
                            },
                        )
                        .map_err(|e| e.0)?
                    } else {
                        if kind == RelationKind::MaterializedView
                            && existing_kind == Some(RelationKind::MaterializedView)
                            && !full_refresh_of(n, args.common.full_refresh)
                        {
                            let change = match n
                                .config
                                .get("on_configuration_change")
                                .and_then(|v| v.as_str())
                            {
                                None | Some("apply") => materialize::OnConfigurationChange::Apply,
                                Some("continue") => materialize::OnConfigurationChange::Continue,
                                Some("fail") => materialize::OnConfigurationChange::Fail,
                                Some(other) => return Err(format!("on_configuration_change '{other}' is not one of apply, continue, fail")),
                            };
                            materialize::refresh_materialized_view(d, &input, change)
                                .map_err(|e| e.0)?
                        } else {
                            materialize::view_or_table(d, &input, kind)
                        }
                    };
                    let mut rows = None;
                    for (bi, b) in plan.batches.iter().enumerate() {
                        let r = adapter.execute(b).map_err(|e| e.message)?;
                        if bi == plan.main.0 {
                            rows = r.rows_affected.get(plan.main.1).copied().flatten();
                        }
                    }
                    let code = if kind == RelationKind::View {
                        "CREATE VIEW"
                    } else if kind == RelationKind::MaterializedView {
                        if existing_kind == Some(RelationKind::MaterializedView)
                            && !full_refresh_of(n, args.common.full_refresh)
                        {
                            "REFRESH MATERIALIZED VIEW"
                        } else {
                            "SELECT"
                        }
                    } else if incremental_run {
                        if n.config
                            .get("incremental_strategy")
                            .and_then(|v| v.as_str())
                            == Some("merge")
                        {
                            "MERGE"
                        } else {
                            "INSERT"
                        }
                    } else {
                        "SELECT"
                    };
                    Ok((
                        code.to_string(),
                        if kind == RelationKind::View {
                            None
                        } else {
                            rows
                        },
                    ))
                })()
            };
            let t1 = chrono::Utc::now();
            let secs = clock.elapsed().as_secs_f64();
            let (status, code, rows, message) = match outcome {
                Ok((code, rows)) => {
                    let shown = match rows {
                        Some(r) => format!("{code} {r} in {secs:.2}s"),
                        None => format!("{code} in {secs:.2}s"),
                    };
                    let verb = match n.resource_type {
                        ResourceType::Seed => "loaded",
                        ResourceType::Snapshot => "snapshotted",
                        _ => "created",
                    };
                    rep.info(
                        "node_ok",
                        &progress(idx, total, &format!("OK {verb} {what}"), &shown),
                    );
                    (JobStatus::Success, Some(code.clone()), rows, Some(code))
                }
                Err(e) => {
                    rep.error(&progress(
                        idx,
                        total,
                        &format!(
                            "ERROR {} {what}",
                            if n.resource_type == ResourceType::Seed {
                                "loading"
                            } else {
                                "creating"
                            }
                        ),
                        &format!("ERROR in {secs:.2}s"),
                    ));
                    let text = if n.resource_type == ResourceType::Seed {
                        format!(
                            "Error in seed {} ({})\n  {}",
                            n.name,
                            n.display_path,
                            e.replace('\n', "\n  ")
                        )
                    } else {
                        format!(
                            "Database Error in model {} ({})\n  {}\n  compiled code at {}",
                            n.name,
                            n.display_path,
                            e.replace('\n', "\n  "),
                            s.target_dir
                                .join(crate::compile::compiled_path(n))
                                .display()
                        )
                    };
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(text);
                    if args.fail_fast {
                        stop.store(true, Ordering::SeqCst);
                        adapter.cancel_all();
                    }
                    (JobStatus::Error, None, None, Some(e))
                }
            };
            results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(NodeResult {
                    code,
                    rows_affected: rows,
                    message,
                    compiled_code: c.map(|c| c.sql.clone()),
                    relation_name: n.relation_name(&m.quoting),
                    ..NodeResult::ran(
                        &n.unique_id,
                        if status == JobStatus::Success {
                            "success"
                        } else {
                            "error"
                        },
                        thread,
                        (t0, t1),
                        secs,
                    )
                });
            status
        },
        |i, _| {
            let n = models[i];
            let idx = counter.fetch_add(1, Ordering::SeqCst) + 1;
            rep.info(
                "node_skip",
                &progress(
                    idx,
                    total,
                    &format!("SKIP relation {} due to an upstream failure", label(n)),
                    "SKIP",
                ),
            );
            results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(NodeResult::skipped(
                    &n.unique_id,
                    n.relation_name(&m.quoting),
                ));
        },
    );
    if !INTERRUPTED.load(Ordering::SeqCst) {
        run_hooks(&compiler, "on-run-end")?;
    }

    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.splice(0..0, unit_results);
    let invocation = s.parsed.jinja.shared.invocation_id.clone();
    let elapsed = started.elapsed().as_secs_f64();
    run_results::write(
        &s.target_dir.join("run_results.json"),
        &results,
        &invocation,
        s.started_at,
        elapsed,
        json!({"which": which.name(), "select": args.common.select, "exclude": args.common.exclude, "threads": threads}),
    )?;
    let label_path = s.target_path_label();
    manifest_json::write(
        &s.target_dir.join("manifest.json"),
        m,
        &compiled,
        &ManifestMeta {
            invocation_id: &invocation,
            started_at: s.started_at,
            target_path: &label_path,
        },
    )?;
    let count = |st: JobStatus| statuses.iter().filter(|x| **x == st).count();
    let (pass, err, skip) = (
        count(JobStatus::Success) + unit_pass,
        count(JobStatus::Error) + unit_fail,
        count(JobStatus::Skipped),
    );
    let total = total + unit_tests.len();
    rep.info(
        "run_done",
        &format!("Finished running {what_runs} in {elapsed:.2}s."),
    );
    let mut errs = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errs.splice(0..0, unit_errors);
    if errs.is_empty() {
        rep.info("run_done", "Completed successfully");
    } else {
        rep.error(&format!(
            "Completed with {} error{}:",
            errs.len(),
            if errs.len() == 1 { "" } else { "s" }
        ));
        for e in &errs {
            rep.error(e);
        }
    }
    for w in warnings.into_inner().unwrap_or_else(|p| p.into_inner()) {
        rep.warn(&w);
    }
    let warn = count(JobStatus::Warn);
    rep.info(
        "run_done",
        &format!("Done. PASS={pass} WARN={warn} ERROR={err} SKIP={skip} TOTAL={total}"),
    );
    std::mem::forget(compiled);
    if INTERRUPTED.load(Ordering::SeqCst) {
        rep.error("Interrupted: statements in flight were cancelled and rolled back");
        s.finish();
        return Ok(Outcome::Interrupted);
    }
    let failed = err > 0 || skip > 0 && args.fail_fast;
    s.finish();
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
