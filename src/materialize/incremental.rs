//! Incremental models: the new rows are staged in a temporary table, the target
//! is reconciled with `on_schema_change`, then merged by the strategy, all in
//! one transaction. Keys match NULL with NULL (`Dialect::key_eq`), so rows whose
//! key is NULL replace each other instead of piling up as duplicates, in a
//! form the planner hashes or merges rather than a nested loop.

use super::{split_hooks, NodePlanInput, Plan, PlanError, RelationKind};
use crate::adapter::{Column, Dialect};

pub use crate::project::config::{IncrementalStrategy, OnSchemaChange};

/// The strategies this plan knows how to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Append,
    Merge,
    DeleteInsert,
}

impl Method {
    /// dbt-postgres's default: append without a unique key, else delete+insert.
    fn of(
        d: &dyn Dialect,
        s: Option<&IncrementalStrategy>,
        has_key: bool,
    ) -> Result<Method, PlanError> {
        match s {
            None if has_key => Ok(Method::DeleteInsert),
            None => Ok(Method::Append),
            Some(IncrementalStrategy::Append) => Ok(Method::Append),
            Some(IncrementalStrategy::Merge) => Ok(Method::Merge),
            Some(IncrementalStrategy::DeleteInsert) => Ok(Method::DeleteInsert),
            Some(other) => Err(PlanError(format!(
                "incremental_strategy '{}' is not supported on {} (use append, merge or delete+insert)",
                other.as_str(),
                d.name()
            ))),
        }
    }
}

/// An incremental run against an existing table.
#[derive(Debug, Clone)]
pub struct IncrementalInput<'a> {
    /// Target, SQL, hooks and the settings applied after the merge.
    pub node: NodePlanInput<'a>,
    /// `None`: dbt's default for the dialect.
    pub strategy: Option<IncrementalStrategy>,
    pub unique_key: Vec<String>,
    pub predicates: Vec<String>,
    pub on_schema_change: OnSchemaChange,
    pub source_columns: Vec<Column>,
    pub target_columns: Vec<Column>,
}

fn same_type(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub fn plan(d: &dyn Dialect, input: &IncrementalInput<'_>) -> Result<Plan, PlanError> {
    let t = &input.node.target;
    let method = Method::of(d, input.strategy.as_ref(), !input.unique_key.is_empty())?;
    let target = d.relation(t);
    let tmp_name = d.suffixed(&t.identifier, "__dbt_tmp");
    let tmp = d.temp_table_ref(&tmp_name);
    let find = |cols: &[Column], name: &str| cols.iter().find(|c| c.name == name).cloned();
    let added: Vec<&Column> = input
        .source_columns
        .iter()
        .filter(|c| find(&input.target_columns, &c.name).is_none())
        .collect();
    let removed: Vec<&Column> = input
        .target_columns
        .iter()
        .filter(|c| find(&input.source_columns, &c.name).is_none())
        .collect();
    let retyped: Vec<&Column> = input
        .source_columns
        .iter()
        .filter(|c| {
            find(&input.target_columns, &c.name)
                .is_some_and(|d| !same_type(&d.data_type, &c.data_type))
        })
        .collect();
    let changed = !added.is_empty() || !removed.is_empty() || !retyped.is_empty();

    let mut tx: Vec<String> = Vec::new();
    let mut before: Vec<String> = Vec::new();
    let mut after: Vec<String> = Vec::new();
    split_hooks(&input.node.pre_hooks, &mut before, &mut tx);
    tx.push(d.drop_temp_table(&tmp_name));
    tx.push(d.create_temp_table_as(&tmp_name, input.node.sql));
    let dest: Vec<String> = match input.on_schema_change {
        OnSchemaChange::Ignore => input
            .target_columns
            .iter()
            .map(|c| c.name.clone())
            .collect(),
        OnSchemaChange::Fail if changed => {
            let names = |v: &[&Column]| {
                v.iter()
                    .map(|c| format!("{} {}", c.name, c.data_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(PlanError(format!(
                "The source and target schemas on this incremental model are out of sync.\n\
                 Source columns not in target: [{}]\nTarget columns not in source: [{}]\nNew column types: [{}]\n\
                 Set on_schema_change to append_new_columns or sync_all_columns, or run with --full-refresh.",
                names(&added),
                names(&removed),
                names(&retyped)
            )));
        }
        _ => {
            if matches!(
                input.on_schema_change,
                OnSchemaChange::AppendNewColumns | OnSchemaChange::SyncAllColumns
            ) {
                for c in &added {
                    tx.push(d.add_column(&target, &c.name, &c.data_type));
                }
            }
            if input.on_schema_change == OnSchemaChange::SyncAllColumns {
                for c in &removed {
                    tx.push(d.drop_column(&target, &c.name));
                }
                for c in &retyped {
                    tx.extend(d.alter_column_type(&target, &c.name, &c.data_type));
                }
            }
            if input.on_schema_change == OnSchemaChange::AppendNewColumns {
                // Columns the model no longer produces stay, filled with NULL.
                input
                    .source_columns
                    .iter()
                    .filter(|c| {
                        find(&input.target_columns, &c.name).is_some()
                            || added.iter().any(|a| a.name == c.name)
                    })
                    .map(|c| c.name.clone())
                    .collect()
            } else {
                input
                    .source_columns
                    .iter()
                    .map(|c| c.name.clone())
                    .collect()
            }
        }
    };
    let cols = dest
        .iter()
        .map(|c| d.quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let key_match = |dest_alias: &str, src_alias: &str| {
        input
            .unique_key
            .iter()
            .map(|k| d.key_eq(&format!("{dest_alias}.{k}"), &format!("{src_alias}.{k}")))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let preds: String = input
        .predicates
        .iter()
        .map(|p| format!(" and {p}"))
        .collect();
    let main_index;
    match (method, input.unique_key.is_empty()) {
        (Method::Append, _) | (_, true) => {
            main_index = tx.len();
            tx.push(format!(
                "insert into {target} ({cols})\n(\n    select {cols}\n    from {tmp}\n)"
            ));
        }
        (Method::DeleteInsert, false) => {
            tx.push(format!(
                "delete from {target} as DBT_INTERNAL_DEST\nwhere exists (\n    select 1 from {tmp} as DBT_INTERNAL_SOURCE\n    where {}\n){preds}",
                key_match("DBT_INTERNAL_DEST", "DBT_INTERNAL_SOURCE")
            ));
            main_index = tx.len();
            tx.push(format!(
                "insert into {target} ({cols})\n(\n    select {cols}\n    from {tmp}\n)"
            ));
        }
        (Method::Merge, false) => {
            let updates: Vec<String> = dest
                .iter()
                .filter(|c| !input.unique_key.contains(c))
                .map(|c| format!("{q} = DBT_INTERNAL_SOURCE.{q}", q = d.quote_ident(c)))
                .collect();
            let src_cols = dest
                .iter()
                .map(|c| format!("DBT_INTERNAL_SOURCE.{}", d.quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            main_index = tx.len();
            let mut merge = format!(
                "merge into {target} as DBT_INTERNAL_DEST\nusing {tmp} as DBT_INTERNAL_SOURCE\non ({}){preds}\n",
                key_match("DBT_INTERNAL_DEST", "DBT_INTERNAL_SOURCE")
            );
            if !updates.is_empty() {
                merge.push_str(&format!(
                    "when matched then update set\n    {}\n",
                    updates.join(",\n    ")
                ));
            }
            merge.push_str(&format!(
                "when not matched then insert ({cols})\nvalues ({src_cols})"
            ));
            tx.push(merge);
        }
    }
    split_hooks(&input.node.post_hooks, &mut after, &mut tx);
    tx.extend(super::settings_sql(
        d,
        &target,
        &t.identifier,
        RelationKind::Table,
        &input.node.settings,
    ));
    tx.push(d.drop_temp_table(&tmp_name));
    Ok(super::assemble(before, tx, main_index, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::dialect;
    use crate::materialize::test_support::{column as col, statements_by_batch as show};
    use crate::materialize::RelationId;

    fn input(strategy: IncrementalStrategy, osc: OnSchemaChange) -> IncrementalInput<'static> {
        IncrementalInput {
            node: NodePlanInput::new(
                RelationId::new("db", "s", "events"),
                "select * from src where ts > (select max(ts) from \"db\".\"s\".\"events\")",
            ),
            strategy: Some(strategy),
            unique_key: vec!["id".into(), "region".into()],
            predicates: vec!["DBT_INTERNAL_DEST.ts > now() - interval '7 days'".into()],
            on_schema_change: osc,
            source_columns: vec![
                col("id", "integer"),
                col("region", "text"),
                col("ts", "timestamp"),
                col("extra", "text"),
            ],
            target_columns: vec![
                col("id", "integer"),
                col("region", "text"),
                col("ts", "date"),
                col("gone", "text"),
            ],
        }
    }

    #[test]
    fn strategies_and_schema_changes() {
        for d in dialect::all() {
            let name = |n: &str| format!("{}__{n}", d.name());
            insta::assert_snapshot!(
                name("merge_sync"),
                show(
                    &plan(
                        d,
                        &input(IncrementalStrategy::Merge, OnSchemaChange::SyncAllColumns)
                    )
                    .unwrap()
                )
            );
            insta::assert_snapshot!(
                name("delete_insert_append_new"),
                show(
                    &plan(
                        d,
                        &input(
                            IncrementalStrategy::DeleteInsert,
                            OnSchemaChange::AppendNewColumns
                        )
                    )
                    .unwrap()
                )
            );
            insta::assert_snapshot!(
                name("append_ignore"),
                show(
                    &plan(
                        d,
                        &input(IncrementalStrategy::Append, OnSchemaChange::Ignore)
                    )
                    .unwrap()
                )
            );
            let err = plan(d, &input(IncrementalStrategy::Merge, OnSchemaChange::Fail))
                .unwrap_err()
                .0;
            assert!(
                err.contains("Source columns not in target: [extra text]"),
                "{err}"
            );
        }
    }
}
