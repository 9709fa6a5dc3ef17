//! Incremental models: the new rows are staged in a temporary table, the target
//! is reconciled with `on_schema_change`, then merged by the strategy, all in
//! one transaction. Key matching uses `is not distinct from`, so rows whose key
//! is NULL replace each other instead of piling up as duplicates.

use super::{Plan, Target};
use crate::adapter::Column;
use crate::jinja::relation::quote_ident;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Append,
    Merge,
    DeleteInsert,
}

impl Strategy {
    /// dbt-postgres's default: append without a unique key, else delete+insert.
    pub fn parse(s: Option<&str>, has_key: bool) -> Result<Strategy, String> {
        match s {
            None | Some("default") => Ok(if has_key { Strategy::DeleteInsert } else { Strategy::Append }),
            Some("append") => Ok(Strategy::Append),
            Some("merge") => Ok(Strategy::Merge),
            Some("delete+insert") => Ok(Strategy::DeleteInsert),
            Some(other) => Err(format!(
                "incremental_strategy '{other}' is not supported on postgres (use append, merge or delete+insert)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSchemaChange {
    Ignore,
    Fail,
    AppendNewColumns,
    SyncAllColumns,
}

impl OnSchemaChange {
    pub fn parse(s: Option<&str>) -> Result<OnSchemaChange, String> {
        match s {
            None | Some("ignore") => Ok(OnSchemaChange::Ignore),
            Some("fail") => Ok(OnSchemaChange::Fail),
            Some("append_new_columns") => Ok(OnSchemaChange::AppendNewColumns),
            Some("sync_all_columns") => Ok(OnSchemaChange::SyncAllColumns),
            Some(other) => Err(format!(
                "on_schema_change '{other}' is not one of ignore, fail, append_new_columns, sync_all_columns"
            )),
        }
    }
}

/// An incremental run against an existing table.
#[derive(Debug, Clone)]
pub struct IncrementalInput<'a> {
    pub target: Target,
    pub sql: &'a str,
    pub strategy: Strategy,
    pub unique_key: Vec<String>,
    pub predicates: Vec<String>,
    pub on_schema_change: OnSchemaChange,
    pub source_columns: Vec<Column>,
    pub target_columns: Vec<Column>,
    pub pre_hooks: Vec<(String, bool)>,
    pub post_hooks: Vec<(String, bool)>,
}

fn same_type(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub fn plan(input: &IncrementalInput<'_>) -> Result<Plan, String> {
    let t = &input.target;
    let target = t.rendered();
    let tmp = quote_ident(&format!("{}__dbt_tmp", t.identifier));
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
    for (sql, in_tx) in &input.pre_hooks {
        if *in_tx {
            tx.push(sql.clone())
        } else {
            before.push(sql.clone())
        }
    }
    tx.push(format!("drop table if exists pg_temp.{tmp}"));
    tx.push(format!(
        "create temporary table {tmp} as (\n{}\n)",
        input.sql
    ));
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
            return Err(format!(
                "The source and target schemas on this incremental model are out of sync.\n\
                 Source columns not in target: [{}]\nTarget columns not in source: [{}]\nNew column types: [{}]\n\
                 Set on_schema_change to append_new_columns or sync_all_columns, or run with --full-refresh.",
                names(&added),
                names(&removed),
                names(&retyped)
            ));
        }
        _ => {
            if matches!(
                input.on_schema_change,
                OnSchemaChange::AppendNewColumns | OnSchemaChange::SyncAllColumns
            ) {
                for c in &added {
                    tx.push(format!(
                        "alter table {target} add column {} {}",
                        quote_ident(&c.name),
                        c.data_type
                    ));
                }
            }
            if input.on_schema_change == OnSchemaChange::SyncAllColumns {
                for c in &removed {
                    tx.push(format!(
                        "alter table {target} drop column {}",
                        quote_ident(&c.name)
                    ));
                }
                for c in &retyped {
                    tx.push(format!(
                        "alter table {target} alter column {q} type {ty} using {q}::{ty}",
                        q = quote_ident(&c.name),
                        ty = c.data_type
                    ));
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
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let key_match = |dest_alias: &str, src_alias: &str| {
        input
            .unique_key
            .iter()
            .map(|k| format!("{dest_alias}.{k} is not distinct from {src_alias}.{k}"))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let preds: String = input
        .predicates
        .iter()
        .map(|p| format!(" and {p}"))
        .collect();
    let main_index;
    match (input.strategy, input.unique_key.is_empty()) {
        (Strategy::Append, _) | (_, true) => {
            main_index = tx.len();
            tx.push(format!(
                "insert into {target} ({cols})\n(\n    select {cols}\n    from {tmp}\n)"
            ));
        }
        (Strategy::DeleteInsert, false) => {
            tx.push(format!(
                "delete from {target} as DBT_INTERNAL_DEST\nwhere exists (\n    select 1 from {tmp} as DBT_INTERNAL_SOURCE\n    where {}\n){preds}",
                key_match("DBT_INTERNAL_DEST", "DBT_INTERNAL_SOURCE")
            ));
            main_index = tx.len();
            tx.push(format!(
                "insert into {target} ({cols})\n(\n    select {cols}\n    from {tmp}\n)"
            ));
        }
        (Strategy::Merge, false) => {
            let updates: Vec<String> = dest
                .iter()
                .filter(|c| !input.unique_key.contains(c))
                .map(|c| format!("{q} = DBT_INTERNAL_SOURCE.{q}", q = quote_ident(c)))
                .collect();
            let src_cols = dest
                .iter()
                .map(|c| format!("DBT_INTERNAL_SOURCE.{}", quote_ident(c)))
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
    for (sql, in_tx) in &input.post_hooks {
        if *in_tx {
            tx.push(sql.clone())
        } else {
            after.push(sql.clone())
        }
    }
    tx.push(format!("drop table if exists pg_temp.{tmp}"));
    Ok(super::assemble(before, tx, main_index, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::materialize::test_support::{column as col, statements_by_batch as show};

    fn input(strategy: Strategy, osc: OnSchemaChange) -> IncrementalInput<'static> {
        IncrementalInput {
            target: Target {
                database: "db".into(),
                schema: "s".into(),
                identifier: "events".into(),
            },
            sql: "select * from src where ts > (select max(ts) from \"db\".\"s\".\"events\")",
            strategy,
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
            pre_hooks: vec![],
            post_hooks: vec![],
        }
    }

    #[test]
    fn strategies_and_schema_changes() {
        insta::assert_snapshot!(
            "merge_sync",
            show(&plan(&input(Strategy::Merge, OnSchemaChange::SyncAllColumns)).unwrap())
        );
        insta::assert_snapshot!(
            "delete_insert_append_new",
            show(
                &plan(&input(
                    Strategy::DeleteInsert,
                    OnSchemaChange::AppendNewColumns
                ))
                .unwrap()
            )
        );
        insta::assert_snapshot!(
            "append_ignore",
            show(&plan(&input(Strategy::Append, OnSchemaChange::Ignore)).unwrap())
        );
        let err = plan(&input(Strategy::Merge, OnSchemaChange::Fail)).unwrap_err();
        assert!(
            err.contains("Source columns not in target: [extra text]"),
            "{err}"
        );
    }
}
