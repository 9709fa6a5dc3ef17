//! SCD type 2 snapshots: each run compares the source with the current rows of
//! the snapshot table and, in one transaction serialized by an advisory lock,
//! closes changed or deleted versions and inserts new ones.

use super::{assemble, split_hooks, NodePlanInput, Plan};
use crate::adapter::dialect::TableOptions;
use crate::adapter::{Column, Dialect, RelationKind};

pub use crate::project::config::{HardDeletes, MetaColumns};

/// How a snapshot tells that a row changed (its `strategy`, resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeDetection {
    /// Rows changed when `updated_at` moved forward.
    Timestamp { updated_at: String },
    /// Rows changed when any of these columns differs (`None`: all columns).
    Check { columns: Option<Vec<String>> },
}

#[derive(Debug, Clone)]
pub struct SnapshotInput<'a> {
    /// Target, source SQL and hooks.
    pub node: NodePlanInput<'a>,
    pub unique_key: Vec<String>,
    pub detection: ChangeDetection,
    pub hard_deletes: HardDeletes,
    pub meta: MetaColumns,
    /// SQL for `dbt_valid_to` of current rows (`dbt_valid_to_current`); NULL by default.
    pub valid_to_current: Option<String>,
    /// Columns the source query produces.
    pub source_columns: Vec<Column>,
    /// Columns of the existing snapshot table; `None` on the first run.
    pub existing_columns: Option<Vec<Column>>,
}

impl SnapshotInput<'_> {
    fn key_expr(&self, d: &dyn Dialect, alias: &str) -> String {
        let parts: Vec<String> = self
            .unique_key
            .iter()
            .map(|k| format!("coalesce(cast({alias}.{k} as {}), '')", d.string_type()))
            .collect();
        parts.join(" || '|' || ")
    }

    fn updated_expr(&self, alias: &str) -> String {
        match &self.detection {
            ChangeDetection::Timestamp { updated_at } => format!("{alias}.{updated_at}"),
            ChangeDetection::Check { .. } => "snapshot_time.ts".into(),
        }
    }

    fn current_filter(&self, d: &dyn Dialect, alias: &str) -> String {
        let vt = format!("{alias}.{}", d.quote_ident(&self.meta.valid_to));
        match &self.valid_to_current {
            Some(c) => format!("({vt} is null or {vt} = {c})"),
            None => format!("{vt} is null"),
        }
    }

    fn keys_match(&self, d: &dyn Dialect, a: &str, b: &str) -> String {
        self.unique_key
            .iter()
            .map(|k| d.key_eq(&format!("{a}.{k}"), &format!("{b}.{k}")))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn changed(&self, d: &dyn Dialect, snap: &str, src: &str) -> String {
        let base = self.changed_values(d, snap, src);
        if self.hard_deletes == HardDeletes::NewRecord {
            // A key that comes back after its deletion record gets a new version.
            format!(
                "({base} or {snap}.{} = 'True')",
                d.quote_ident(&self.meta.is_deleted)
            )
        } else {
            base
        }
    }

    fn changed_values(&self, d: &dyn Dialect, snap: &str, src: &str) -> String {
        let q = |s: &str| d.quote_ident(s);
        match &self.detection {
            ChangeDetection::Timestamp { updated_at } => format!(
                "({snap}.{vf} < {src}.{updated_at})",
                vf = q(&self.meta.valid_from)
            ),
            ChangeDetection::Check { columns } => {
                let cols: Vec<String> = match columns {
                    Some(c) => c.clone(),
                    None => self
                        .source_columns
                        .iter()
                        .map(|c| q(&c.name))
                        .filter(|c| !self.unique_key.iter().any(|k| q(k) == *c || k == c))
                        .collect(),
                };
                let parts: Vec<String> = cols
                    .iter()
                    .map(|c| d.null_safe_ne(&format!("{snap}.{c}"), &format!("{src}.{c}")))
                    .collect();
                if parts.is_empty() {
                    "false".into()
                } else {
                    format!("({})", parts.join(" or "))
                }
            }
        }
    }
}

/// The statements of one snapshot run.
pub fn plan(d: &dyn Dialect, input: &SnapshotInput<'_>) -> Plan {
    let q = |s: &str| d.quote_ident(s);
    let t = &input.node.target;
    let rel = d.relation(t);
    let m = &input.meta;
    let ts_type = d.timestamp_type();
    let valid_to_new = input
        .valid_to_current
        .clone()
        .unwrap_or_else(|| "null".into());
    let deleted_cols = input.hard_deletes == HardDeletes::NewRecord;
    let mut tx: Vec<String> = Vec::new();
    let mut before: Vec<String> = Vec::new();
    let mut after: Vec<String> = Vec::new();
    split_hooks(&input.node.pre_hooks, &mut before, &mut tx);
    // Two runs of one snapshot must not interleave: both would see the same
    // current rows and insert duplicate versions.
    if input.existing_columns.is_some() || !d.lock_needs_relation() {
        tx.push(d.lock_for_update(&rel));
    }
    let snapshot_time = format!("(select {} as ts) as snapshot_time", d.current_timestamp());
    // The meta columns of a new version, over the source row `src`.
    let meta_columns = |valid_to: &str| -> Vec<String> {
        let upd = input.updated_expr("src");
        vec![
            format!(
                "{} as {}",
                d.md5(&format!(
                    "{} || '|' || coalesce(cast({upd} as {}), '')",
                    input.key_expr(d, "src"),
                    d.string_type()
                )),
                q(&m.scd_id)
            ),
            format!("{upd} as {}", q(&m.updated_at)),
            format!("{upd} as {}", q(&m.valid_from)),
            format!("{valid_to} as {}", q(&m.valid_to)),
        ]
    };
    let source_cols: Vec<String> = input.source_columns.iter().map(|c| q(&c.name)).collect();
    let Some(existing) = &input.existing_columns else {
        let main = tx.len();
        let mut cols = meta_columns(&format!("cast({valid_to_new} as {ts_type})"));
        if deleted_cols {
            cols.push(format!("'False' as {}", q(&m.is_deleted)));
        }
        let select = format!(
            "    select\n        src.*,\n        {}\n    from (\n{}\n    ) as src\n    cross join {snapshot_time}",
            cols.join(",\n        "),
            input.node.sql,
        );
        tx.push(d.create_as(RelationKind::Table, &rel, &select, &TableOptions::default()));
        split_hooks(&input.node.post_hooks, &mut after, &mut tx);
        return assemble(before, tx, main, after);
    };
    // New source columns are added to the snapshot table first.
    for c in &input.source_columns {
        if !existing.iter().any(|e| e.name == c.name) {
            tx.push(d.add_column(&rel, &c.name, &c.data_type));
        }
    }
    if deleted_cols && !existing.iter().any(|e| e.name == m.is_deleted) {
        tx.push(d.add_column(&rel, &m.is_deleted, "text default 'False'"));
    }
    let staging = format!("{}__dbt_snapshot_staging", t.identifier);
    let updates = format!("{staging}_updates");
    let deletes = format!("{staging}_deletes");
    let stg = d.temp_table_ref(&staging);
    tx.push(d.drop_temp_table(&staging));
    let src_select =
        |valid_to: &str| format!("select src.*, {}", meta_columns(valid_to).join(", "));
    let current = format!(
        "select * from {rel} as cur where {}",
        input.current_filter(d, "cur")
    );
    let mut parts = vec![
        // New keys and changed rows: a new current version.
        format!(
            "select 'insert' as dbt_change_type, ins.* from (\n        {}\n        from ({}) as src cross join {snapshot_time}\n    ) as ins\n    left join ({current}) as snap on {}\n    where snap.{scd} is null or {}",
            src_select(&format!("cast({valid_to_new} as {ts_type})")),
            input.node.sql,
            input.keys_match(d, "snap", "ins"),
            input.changed(d, "snap", "ins"),
            scd = q(&m.scd_id),
        ),
        // Changed rows: the current version closes where the new one starts.
        format!(
            "select 'update' as dbt_change_type, upd.* from (\n        {}\n        from ({}) as src cross join {snapshot_time}\n    ) as upd\n    join ({current}) as snap on {}\n    where {}",
            src_select(&input.updated_expr("src")),
            input.node.sql,
            input.keys_match(d, "snap", "upd"),
            input.changed(d, "snap", "upd"),
        ),
    ];
    if input.hard_deletes != HardDeletes::Ignore {
        // Current versions whose key left the source.
        parts.push(format!(
            "select 'delete' as dbt_change_type, snap.{scd} as {scd}, snapshot_time.ts as {vt}\n    from ({current}) as snap cross join {snapshot_time}\n    where not exists (select 1 from ({}) as src where {}){}",
            input.node.sql,
            input.keys_match(d, "src", "snap"),
            if deleted_cols {
                // Already recorded as deleted.
                format!(" and {}", d.null_safe_ne(&format!("snap.{}", q(&m.is_deleted)), "'True'"))
            } else {
                String::new()
            },
            scd = q(&m.scd_id),
            vt = q(&m.valid_to),
        ));
    }
    let (ins, upd) = (&parts[0], &parts[1]);
    tx.push(d.create_temp_table_as(&staging, &format!("    {ins}")));
    tx.push(d.create_temp_table_as(&updates, &format!("    {upd}")));
    // Close the versions that changed.
    tx.push(format!(
        "update {rel} as tgt set {vt} = u.{vt}\nfrom {} as u\nwhere {} and {}",
        d.temp_table_ref(&updates),
        input.keys_match(d, "tgt", "u"),
        input.current_filter(d, "tgt"),
        vt = q(&m.valid_to),
    ));
    if let Some(del) = parts.get(2) {
        let deletes_ref = d.temp_table_ref(&deletes);
        tx.push(d.create_temp_table_as(&deletes, &format!("    {del}")));
        tx.push(format!(
            "update {rel} as tgt set {vt} = d.{vt}\nfrom {deletes_ref} as d\nwhere tgt.{scd} = d.{scd} and {}",
            input.current_filter(d, "tgt"),
            vt = q(&m.valid_to),
            scd = q(&m.scd_id),
        ));
        if input.hard_deletes == HardDeletes::NewRecord {
            // A new version marks the deletion.
            let cols: Vec<String> = existing
                .iter()
                .map(|c| q(&c.name))
                .filter(|c| *c != q(&m.is_deleted))
                .collect();
            let values: Vec<String> = existing
                .iter()
                .filter(|c| c.name != m.is_deleted)
                .map(|c| {
                    let n = q(&c.name);
                    if c.name == m.valid_from || c.name == m.updated_at {
                        format!("d.{}", q(&m.valid_to))
                    } else if c.name == m.valid_to {
                        format!("cast({valid_to_new} as {ts_type})")
                    } else if c.name == m.scd_id {
                        d.md5(&format!(
                            "old.{n} || '|deleted|' || cast(d.{} as {})",
                            q(&m.valid_to),
                            d.string_type()
                        ))
                    } else {
                        format!("old.{n}")
                    }
                })
                .collect();
            tx.push(format!(
                "insert into {rel} ({}, {isdel})\nselect {}, 'True'\nfrom {deletes_ref} as d join {rel} as old on old.{scd} = d.{scd}",
                cols.join(", "),
                values.join(", "),
                isdel = q(&m.is_deleted),
                scd = q(&m.scd_id),
            ));
        }
    }
    let mut insert_cols: Vec<String> = source_cols.clone();
    for c in [&m.scd_id, &m.updated_at, &m.valid_from, &m.valid_to] {
        insert_cols.push(q(c));
    }
    let mut select_cols = insert_cols.clone();
    if deleted_cols {
        insert_cols.push(q(&m.is_deleted));
        select_cols.push("'False'".into());
    }
    let main = tx.len();
    tx.push(format!(
        "insert into {rel} ({})\nselect {}\nfrom {stg}",
        insert_cols.join(", "),
        select_cols.join(", ")
    ));
    tx.push(d.drop_temp_table(&staging));
    tx.push(d.drop_temp_table(&updates));
    if parts.len() > 2 {
        tx.push(d.drop_temp_table(&deletes));
    }
    split_hooks(&input.node.post_hooks, &mut after, &mut tx);
    assemble(before, tx, main, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::dialect;
    use crate::materialize::test_support::{column as col, statements_by_batch as show};
    use crate::materialize::{HookSql, RelationId};

    fn input(
        existing: Option<Vec<Column>>,
        detection: ChangeDetection,
        hard: HardDeletes,
    ) -> SnapshotInput<'static> {
        SnapshotInput {
            node: NodePlanInput::new(
                RelationId::new("db", "snapshots", "orders_snapshot"),
                "select * from \"db\".\"raw\".\"orders\"",
            ),
            unique_key: vec!["id".into()],
            detection,
            hard_deletes: hard,
            meta: MetaColumns::default(),
            valid_to_current: None,
            source_columns: vec![
                col("id", "integer"),
                col("status", "text"),
                col("updated_at", "timestamp without time zone"),
            ],
            existing_columns: existing,
        }
    }

    #[test]
    fn plans() {
        let ts = ChangeDetection::Timestamp {
            updated_at: "updated_at".into(),
        };
        for d in dialect::all() {
            insta::assert_snapshot!(
                format!("{}__snapshot_first_run", d.name()),
                show(&plan(d, &input(None, ts.clone(), HardDeletes::Ignore)))
            );
        }
        let existing = vec![
            col("id", "integer"),
            col("status", "text"),
            col("dbt_scd_id", "text"),
            col("dbt_updated_at", "timestamp without time zone"),
            col("dbt_valid_from", "timestamp without time zone"),
            col("dbt_valid_to", "timestamp without time zone"),
        ];
        for d in dialect::all() {
            insta::assert_snapshot!(
                format!("{}__snapshot_check_new_record", d.name()),
                show(&plan(
                    d,
                    &input(
                        Some(existing.clone()),
                        ChangeDetection::Check {
                            columns: Some(vec!["status".into()])
                        },
                        HardDeletes::NewRecord
                    )
                ))
            );
        }
    }

    #[test]
    fn hooks_run_in_the_snapshot_transaction_or_around_it() {
        let d = &dialect::PostgresDialect;
        let ts = ChangeDetection::Timestamp {
            updated_at: "updated_at".into(),
        };
        for existing in [None, Some(vec![col("id", "integer")])] {
            let mut i = input(existing, ts.clone(), HardDeletes::Ignore);
            i.node.pre_hooks = vec![
                HookSql::new("set a = 1", false),
                HookSql::new("set b = 2", true),
            ];
            i.node.post_hooks = vec![
                HookSql::new("analyze x", true),
                HookSql::new("vacuum x", false),
            ];
            let p = plan(d, &i);
            assert_eq!(p.batches.len(), 3);
            assert_eq!(p.batches[0].statements, vec!["set a = 1"]);
            assert!(!p.batches[0].atomic);
            assert!(p.batches[1].atomic);
            assert_eq!(p.batches[1].statements[0], "set b = 2");
            assert_eq!(
                p.batches[1].statements.last().map(String::as_str),
                Some("analyze x")
            );
            assert_eq!(p.batches[2].statements, vec!["vacuum x"]);
            assert_eq!(p.main.0, 1);
        }
    }
}
