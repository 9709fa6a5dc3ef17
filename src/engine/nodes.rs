//! Building one model, seed or snapshot: its typed config and what exists in
//! the warehouse become a `NodePlanInput` (hooks rendered), a plan, and the
//! plan's batches run on the adapter.

use std::collections::HashMap;

use super::decide::{self, ModelBuild};
use super::error::{NodeError, NodeErrorKind};
use super::RunCtx;
use crate::adapter::dialect::{Constraint, ConstraintKind, IndexSpec};
use crate::adapter::{Adapter, Grant, RelationKind};
use crate::compile::CompiledNode;
use crate::manifest::Node;
use crate::materialize::contract::{self, Declared};
use crate::materialize::incremental::{self, IncrementalInput};
use crate::materialize::snapshot::{self, ChangeDetection, SnapshotInput};
use crate::materialize::{self, HookSql, NodePlanInput, Plan, RelationId, RelationSettings};
use crate::project::config::{CheckCols, Hook, SnapshotStrategy};

/// What building a node did, for its progress line and run_results.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Built {
    /// The warehouse's response code (`CREATE VIEW`, `SELECT`, `INSERT`, ...).
    pub(crate) code: &'static str,
    pub(crate) rows: Option<u64>,
}

fn not_compiled(n: &Node) -> NodeError {
    NodeError::new(
        NodeErrorKind::Compilation,
        format!("{} was not compiled", n.unique_id),
    )
}

/// Runs a plan's batches in order; the rows of its main statement.
fn execute_plan(adapter: &dyn Adapter, plan: &Plan) -> Result<Option<u64>, NodeError> {
    let mut rows = None;
    for (i, b) in plan.batches.iter().enumerate() {
        let r = adapter
            .execute(b)
            .map_err(|e| NodeError::database(e, Some(b)))?;
        if i == plan.main.0 {
            rows = r.rows_affected.get(plan.main.1).copied().flatten();
        }
    }
    Ok(rows)
}

/// `select * from (<sql>) as dbt_sbq`: the output columns of a query.
fn describe(adapter: &dyn Adapter, sql: &str) -> Result<Vec<crate::adapter::Column>, NodeError> {
    let wrapped = format!("select * from (\n{sql}\n) as dbt_sbq");
    adapter
        .describe(&wrapped)
        .map_err(|e| NodeError::in_statement(e, &wrapped))
}

/// A model's output columns, asked of the warehouse once however many
/// settings need them (persisted column docs, contract, incremental merge).
struct Output<'a> {
    adapter: &'a dyn Adapter,
    sql: &'a str,
    columns: std::cell::OnceCell<Vec<crate::adapter::Column>>,
}

impl<'a> Output<'a> {
    fn new(adapter: &'a dyn Adapter, sql: &'a str) -> Output<'a> {
        Output {
            adapter,
            sql,
            columns: std::cell::OnceCell::new(),
        }
    }

    fn columns(&self) -> Result<&[crate::adapter::Column], NodeError> {
        if let Some(c) = self.columns.get() {
            return Ok(c);
        }
        let described = describe(self.adapter, self.sql)?;
        Ok(self.columns.get_or_init(|| described))
    }
}

impl RunCtx<'_> {
    fn existing(&self, n: &Node) -> Option<RelationKind> {
        existing_of(self.adapter.dialect(), self.existing, n)
    }

    fn render_hooks(&self, n: &Node, hooks: &[Hook]) -> Result<Vec<HookSql>, NodeError> {
        let mut out = Vec::with_capacity(hooks.len());
        for h in hooks {
            // Statements the hook ran while rendering come first, in its place.
            let (ran, sql) = self.compiler.render_hook(n, &h.sql)?;
            for s in ran {
                out.push(HookSql::new(s, h.transaction));
            }
            out.push(HookSql::new(sql, h.transaction));
        }
        Ok(out)
    }

    /// What every plan needs: target, SQL, existing relation and rendered hooks.
    fn plan_input<'s>(&self, n: &Node, sql: &'s str) -> Result<NodePlanInput<'s>, NodeError> {
        Ok(NodePlanInput {
            existing: self.existing(n),
            pre_hooks: self.render_hooks(n, &n.config.pre_hook)?,
            post_hooks: self.render_hooks(n, &n.config.post_hook)?,
            ..NodePlanInput::new(RelationId::new(&n.database, &n.schema, &n.alias), sql)
        })
    }

    /// The node's full-refresh decision: its own `full_refresh` wins over the flag.
    pub(super) fn full_refresh(&self, n: &Node) -> bool {
        n.config.full_refresh_under(self.full_refresh_flag)
    }

    /// How a model is built this run (also decides `is_incremental()` at compile).
    pub(super) fn model_build(&self, n: &Node) -> Result<ModelBuild, NodeError> {
        model_build_of(
            self.adapter.dialect(),
            n,
            self.existing,
            self.full_refresh_flag,
        )
    }

    pub(super) fn build_model(
        &self,
        n: &Node,
        c: Option<&CompiledNode>,
    ) -> Result<Built, NodeError> {
        let c = c.ok_or_else(|| not_compiled(n))?;
        let build = self.model_build(n)?;
        let d = self.adapter.dialect();
        let mut input = self.plan_input(n, &c.sql)?;
        let output = Output::new(self.adapter, &c.sql);
        input.settings = self.relation_settings(n, &output)?;
        // An existing view is replaced in place, so the views built on it
        // stay as they are (swapped only when its columns changed shape).
        let in_place = build == ModelBuild::View
            && input.existing == Some(RelationKind::View)
            && input.contract.is_none();
        if build.keeps_relation() || in_place {
            // Relations kept in place keep their grants: revoke what the
            // config no longer lists, so grants match it.
            input.settings.revokes = self.stale_grants(n, &input.settings.grants)?;
        }
        input.contract = self.enforced_contract(n, &output)?;
        let plan = match build {
            ModelBuild::Incremental => incremental::plan(
                d,
                &IncrementalInput {
                    strategy: n.config.incremental_strategy.clone(),
                    unique_key: n.config.unique_key.clone(),
                    predicates: n.config.incremental_predicates.clone(),
                    on_schema_change: n.config.on_schema_change,
                    source_columns: output.columns()?.to_vec(),
                    target_columns: self.adapter.columns_of(&n.schema, &n.alias)?,
                    node: input,
                },
            )?,
            ModelBuild::RefreshMaterializedView => {
                let current = match d.auto_refresh_sql(&n.schema, &n.alias) {
                    Some(sql) => self
                        .adapter
                        .query(&sql)
                        .map_err(|e| NodeError::in_statement(e, &sql))?
                        .rows
                        .first()
                        .and_then(|r| r.first().cloned().flatten())
                        .map(|v| v == "t"),
                    None => None,
                };
                materialize::refresh_materialized_view(
                    d,
                    &input,
                    n.config.on_configuration_change,
                    current,
                )?
            }
            ModelBuild::View if in_place => {
                let plan = materialize::replace_view(d, &input);
                return match execute_plan(self.adapter, &plan) {
                    Ok(_) => Ok(Built {
                        code: build.code(None),
                        rows: None,
                    }),
                    Err(e)
                        if e.source
                            .as_ref()
                            .is_some_and(|s| d.view_change_needs_swap(s)) =>
                    {
                        // Hooks outside the transaction ran already; the
                        // others rolled back with it and run again.
                        input.pre_hooks.retain(|h| h.in_transaction);
                        input.settings.revokes.clear();
                        execute_plan(
                            self.adapter,
                            &materialize::view_or_table(d, &input, build.kind()),
                        )?;
                        Ok(Built {
                            code: build.code(None),
                            rows: None,
                        })
                    }
                    Err(e) => Err(e),
                };
            }
            ModelBuild::View | ModelBuild::Table | ModelBuild::MaterializedView => {
                materialize::view_or_table(d, &input, build.kind())
            }
        };
        let rows = execute_plan(self.adapter, &plan)?;
        Ok(Built {
            code: build.code(n.config.incremental_strategy.as_ref()),
            rows: if build == ModelBuild::View {
                None
            } else {
                rows
            },
        })
    }

    /// Indexes, grants, unlogged and persisted docs from a model's config.
    fn relation_settings(
        &self,
        n: &Node,
        output: &Output<'_>,
    ) -> Result<RelationSettings, NodeError> {
        let cfg = &n.config;
        let mut out = RelationSettings {
            unlogged: cfg.unlogged,
            layout: layout_of(&cfg.layout),
            indexes: cfg
                .indexes
                .iter()
                .map(|i| IndexSpec {
                    columns: i.columns.clone(),
                    unique: i.unique,
                    method: i.method.clone(),
                })
                .collect(),
            grants: cfg
                .grants
                .iter()
                .map(|g| (g.privilege.clone(), g.grantees.clone()))
                .collect(),
            ..Default::default()
        };
        if cfg.persist_docs.relation && !n.description.is_empty() {
            out.relation_comment = Some(n.description.clone());
        }
        if cfg.persist_docs.columns && n.columns.values().any(|c| !c.description.is_empty()) {
            let produced = output.columns()?;
            for c in n.columns.values() {
                if !c.description.is_empty() && produced.iter().any(|p| p.name == c.name) {
                    out.column_comments
                        .push((c.name.clone(), c.description.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Grants on an existing relation that its config does not list (the
    /// owner's own privileges are left alone).
    fn stale_grants(
        &self,
        n: &Node,
        wanted: &[(String, Vec<String>)],
    ) -> Result<Vec<Grant>, NodeError> {
        let d = self.adapter.dialect();
        if !self
            .granted
            .contains(&(d.fold_identifier(&n.schema), d.fold_identifier(&n.alias)))
        {
            // Nothing is granted to anyone else: nothing to revoke.
            return Ok(Vec::new());
        }
        let held = self.adapter.grants_on(&n.schema, &n.alias)?;
        Ok(held
            .into_iter()
            .filter(|g| {
                !wanted.iter().any(|(wp, who)| {
                    wp.eq_ignore_ascii_case(&g.privilege) && who.contains(&g.grantee)
                })
            })
            .collect())
    }

    /// With `contract: {enforced: true}`, checks the model's output against
    /// its YAML columns before anything is built, and returns the declared
    /// columns with their types normalized by the warehouse.
    fn enforced_contract(
        &self,
        n: &Node,
        output: &Output<'_>,
    ) -> Result<Option<Vec<Declared>>, NodeError> {
        if !n.config.contract_enforced {
            return Ok(None);
        }
        let contract_error = |m: String| NodeError::new(NodeErrorKind::Contract, m);
        let mut typed = Vec::new();
        for c in n.columns.values() {
            let Some(t) = &c.data_type else {
                return Err(contract_error(format!(
                    "model '{}' enforces a contract, but column '{}' has no data_type in its YAML",
                    n.name, c.name
                )));
            };
            typed.push((c, t));
        }
        let names: Vec<&str> = typed.iter().map(|(_, t)| t.as_str()).collect();
        let canon = self.adapter.canonical_types(&names)?;
        let mut declared = Vec::new();
        for ((c, t), base) in typed.into_iter().zip(canon) {
            let Some(base) = base else {
                return Err(contract_error(format!(
                    "column '{}': data_type '{t}' is not a type the warehouse knows",
                    c.name
                )));
            };
            declared.push(Declared {
                name: c.name.clone(),
                data_type: base,
                ddl_type: t.clone(),
                constraints: c.constraints.iter().filter_map(constraint_of).collect(),
            });
        }
        let produced = output.columns()?;
        contract::check(&declared, produced).map_err(|e| contract_error(e.0))?;
        Ok(Some(declared))
    }

    /// Loads one seed with the dialect's bulk load; a malformed file fails
    /// before the table is touched.
    pub(super) fn load_seed(&self, n: &Node) -> Result<Built, NodeError> {
        use crate::materialize::seed;
        let data_error = |m: String| NodeError::new(NodeErrorKind::Data, m);
        let pkg = self
            .project
            .package(&n.package)
            .ok_or_else(|| data_error(format!("unknown package '{}'", n.package)))?;
        let path = pkg.root.join(&n.original_file_path);
        let bytes = std::fs::read(&path)
            .map_err(|e| data_error(format!("cannot read {}: {e}", path.display())))?;
        let cfg = n.config.seed();
        let d = self.adapter.dialect();
        let data = seed::read_csv(d, &n.display_path, &bytes, cfg.delimiter, &|c| {
            cfg.column_types
                .iter()
                .find(|(name, _)| name == c)
                .map(|(_, t)| t.clone())
        })
        .map_err(|diag| data_error(diag.to_string()))?;
        let input = self.plan_input(n, "")?;
        // A header that no longer matches the table's columns also means a new
        // table (dbt would fail the truncate-and-reload and ask for --full-refresh).
        let columns_changed = input.existing == Some(RelationKind::Table)
            && self
                .adapter
                .columns_of(&n.schema, &n.alias)
                .map(|cols| {
                    cols.iter()
                        .map(|c| c.name.as_str())
                        .ne(data.columns.iter().map(String::as_str))
                })
                .unwrap_or(false);
        let recreate =
            decide::seed_recreates(input.existing, self.full_refresh(n), columns_changed);
        // Streamed from the client where the warehouse can; else copied server
        // side from an S3 staging location, or inserted in bounded batches.
        let mut staged = None;
        let source = if d.copy_from_client() {
            seed::SeedSource::ClientCsv
        } else if let Some(stage) = self.adapter.seed_stage() {
            let object = stage
                .put(&format!("{}.{}.csv", n.schema, n.alias), &data.copy_data)
                .map_err(|e| {
                    NodeError::new(
                        NodeErrorKind::Data,
                        format!("cannot stage the seed in S3: {e}"),
                    )
                })?;
            let source = seed::SeedSource::S3 {
                url: object.url.clone(),
                iam_role: stage.iam_role().to_string(),
            };
            staged = Some((stage, object));
            source
        } else {
            seed::SeedSource::Inserts {
                max_bytes: self.adapter.max_statement_bytes(),
            }
        };
        let plan = seed::plan(d, &input, &data, cfg.quote_columns, recreate, &source);
        self.run_outside(&plan.outside_before)?;
        let data_error = |e: crate::adapter::AdapterError, sql: &str| {
            // COPY reports "line N" of the data; the file has a header line first.
            let mut err = NodeError::in_statement(e, sql);
            err.kind = NodeErrorKind::Data;
            if let Some(line) = crate::sql::copy_error_line(&err.message) {
                err.message = format!("{}:{}: {}", n.display_path, line + 1, err.message);
            }
            err
        };
        let rows = match &plan.load {
            seed::SeedLoad::ClientCopy(copy) => self
                .adapter
                .load(&plan.before, copy, &data.copy_data, &plan.after)
                .map_err(|e| data_error(e, copy))?,
            seed::SeedLoad::Statements(load) => {
                // One transaction: a failed load keeps the old rows.
                let statements: Vec<String> = plan
                    .before
                    .iter()
                    .chain(load)
                    .chain(&plan.after)
                    .cloned()
                    .collect();
                let result = self
                    .adapter
                    .execute(&crate::adapter::Batch::atomic(statements.clone()));
                // Why a server-side load failed, from the warehouse's load
                // errors: the line (the file has a header first) and column.
                let detail = match (&result, &staged) {
                    (Err(_), Some((_, object))) => d
                        .load_errors_sql(&[object.url.as_str()])
                        .and_then(|sql| self.adapter.query(&sql).ok())
                        .map(|t| {
                            t.rows
                                .iter()
                                .map(|r| {
                                    let at =
                                        |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                                    let line = at(1).parse::<u64>().map(|l| l + 1).unwrap_or(0);
                                    format!(
                                        "{}:{line}: column {}: {}",
                                        n.display_path,
                                        at(2),
                                        at(3)
                                    )
                                })
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                if let Some((stage, object)) = staged {
                    // The staged copy has served (or failed); either way it goes.
                    stage.remove(&object);
                }
                result.map_err(|e| {
                    let sql = e
                        .statement
                        .and_then(|i| statements.get(i))
                        .cloned()
                        .unwrap_or_default();
                    let mut err = data_error(e, &sql);
                    if !detail.is_empty() {
                        err.message = format!("{}\n{}", err.message, detail.join("\n"));
                    }
                    err
                })?;
                data.rows as u64
            }
        };
        self.run_outside(&plan.outside_after)?;
        Ok(Built {
            code: "INSERT",
            rows: Some(rows),
        })
    }

    /// Hooks that run outside the node's transaction, one autocommit batch.
    fn run_outside(&self, statements: &[String]) -> Result<(), NodeError> {
        if statements.is_empty() {
            return Ok(());
        }
        let batch = crate::adapter::Batch {
            statements: statements.to_vec(),
            atomic: false,
        };
        self.adapter
            .execute(&batch)
            .map_err(|e| NodeError::database(e, Some(&batch)))?;
        Ok(())
    }

    /// One snapshot run: the SCD2 plan for this node's config, hooks included.
    pub(super) fn run_snapshot(
        &self,
        n: &Node,
        c: Option<&CompiledNode>,
    ) -> Result<Built, NodeError> {
        let c = c.ok_or_else(|| not_compiled(n))?;
        let cfg = n.config.snapshot();
        let config_error = |m: String| NodeError::new(NodeErrorKind::Config, m);
        if n.config.unique_key.is_empty() {
            return Err(config_error(format!(
                "snapshot '{}' needs a unique_key",
                n.name
            )));
        }
        let detection = match &cfg.strategy {
            Some(SnapshotStrategy::Timestamp) => ChangeDetection::Timestamp {
                updated_at: cfg.updated_at.clone().ok_or_else(|| {
                    config_error(format!(
                        "snapshot '{}' uses the timestamp strategy but sets no updated_at",
                        n.name
                    ))
                })?,
            },
            Some(SnapshotStrategy::Check) => ChangeDetection::Check {
                columns: match &cfg.check_cols {
                    CheckCols::All => None,
                    CheckCols::Columns(c) => Some(c.clone()),
                },
            },
            Some(SnapshotStrategy::Custom(s)) => {
                return Err(config_error(format!(
                    "snapshot '{}' uses the custom strategy '{s}', which Strata cannot run yet",
                    n.name
                )))
            }
            None => {
                return Err(config_error(format!(
                    "snapshot '{}' sets no strategy; use timestamp or check",
                    n.name
                )))
            }
        };
        let input = self.plan_input(n, &c.sql)?;
        let existing_columns = match input.existing {
            Some(RelationKind::Table) => Some(self.adapter.columns_of(&n.schema, &n.alias)?),
            Some(_) => {
                return Err(config_error(format!(
                    "{} exists but is not a table; a snapshot needs a table",
                    n.alias
                )))
            }
            None => None,
        };
        let plan = snapshot::plan(
            self.adapter.dialect(),
            &SnapshotInput {
                unique_key: n.config.unique_key.clone(),
                detection,
                hard_deletes: cfg.hard_deletes,
                meta: cfg.meta_columns.clone(),
                valid_to_current: cfg.valid_to_current.clone(),
                // A first run selects `src.*`: the columns matter only to
                // compare with an existing table.
                source_columns: if existing_columns.is_some() {
                    describe(self.adapter, &c.sql)?
                } else {
                    Vec::new()
                },
                existing_columns,
                node: input,
            },
        );
        let rows = execute_plan(self.adapter, &plan)?;
        Ok(Built {
            code: "INSERT",
            rows,
        })
    }
}

/// What exists in the warehouse where a node goes.
/// dbt-redshift's `dist`/`sort`/`sort_type`/`backup`/`bind` as the
/// dialect's table layout (dialects without one ignore it).
pub(crate) fn layout_of(
    l: &crate::project::config::Layout,
) -> crate::adapter::dialect::TableLayout {
    use crate::adapter::dialect::DistStyle;
    use crate::project::config::{Dist, SortType};
    crate::adapter::dialect::TableLayout {
        dist: l.dist.as_ref().map(|d| match d {
            Dist::All => DistStyle::All,
            Dist::Even => DistStyle::Even,
            Dist::Auto => DistStyle::Auto,
            Dist::Key(c) => DistStyle::Key(c.clone()),
        }),
        sort: l.sort.clone(),
        interleaved: l.sort_type == SortType::Interleaved,
        backup: l.backup,
        late_binding: !l.bind,
        auto_refresh: l.auto_refresh,
    }
}

/// What exists under a node's name. The catalog holds names as the
/// warehouse stores them (folded to lower case on Redshift).
fn existing_of(
    d: &dyn crate::adapter::Dialect,
    existing: &HashMap<(String, String), RelationKind>,
    n: &Node,
) -> Option<RelationKind> {
    existing
        .get(&(d.fold_identifier(&n.schema), d.fold_identifier(&n.alias)))
        .copied()
}

/// How a model is built over what exists, under the `--full-refresh` flag
/// (the model's own `full_refresh` wins). Before compiling it decides
/// `is_incremental()`; while running, the plan.
pub(super) fn model_build_of(
    d: &dyn crate::adapter::Dialect,
    n: &Node,
    existing: &HashMap<(String, String), RelationKind>,
    full_refresh_flag: bool,
) -> Result<ModelBuild, NodeError> {
    decide::model_build(
        &n.config.materialized,
        existing_of(d, existing, n),
        n.config.full_refresh_under(full_refresh_flag),
    )
}

/// A contract constraint from its YAML.
fn constraint_of(c: &serde_json::Value) -> Option<Constraint> {
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

#[cfg(test)]
mod tests {

    #[test]
    fn copy_errors_name_their_data_line() {
        assert_eq!(
            crate::sql::copy_error_line("invalid input syntax for type integer: \"x\"\nCONTEXT: COPY people, line 2, column id: \"x\""),
            Some(2)
        );
        assert_eq!(crate::sql::copy_error_line("division by zero"), None);
    }
}
