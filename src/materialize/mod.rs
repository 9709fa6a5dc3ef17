//! Materializations as statement plans: what SQL turns a compiled node into a
//! relation. Plans are pure data, snapshot-tested, and executed by an adapter.

pub mod contract;
pub mod incremental;
pub mod seed;
pub mod snapshot;

use crate::adapter::Batch;
use crate::jinja::relation::quote_ident;

/// What exists in the warehouse under a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
    MaterializedView,
}

impl RelationKind {
    fn ddl_word(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
        }
    }
}

/// A relation's schema-qualified, quoted parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub database: String,
    pub schema: String,
    pub identifier: String,
}

impl Target {
    pub fn named(&self, identifier: &str) -> String {
        format!(
            "{}.{}.{}",
            quote_ident(&self.database),
            quote_ident(&self.schema),
            quote_ident(identifier)
        )
    }

    pub fn rendered(&self) -> String {
        self.named(&self.identifier)
    }
}

/// Everything a plan needs about one model.
#[derive(Debug, Clone)]
pub struct ModelPlanInput<'a> {
    pub target: Target,
    pub sql: &'a str,
    pub existing: Option<RelationKind>,
    pub pre_hooks: Vec<(String, bool)>,
    pub post_hooks: Vec<(String, bool)>,
    /// Relation settings applied inside the transaction, after the swap.
    pub settings: RelationSettings,
    /// Enforced contract: tables are created with these columns, then filled.
    pub contract: Option<Vec<contract::Declared>>,
}

/// Postgres-specific table options and the things dbt applies to a built relation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationSettings {
    pub unlogged: bool,
    /// (columns, unique, method) of each configured index.
    pub indexes: Vec<(Vec<String>, bool, Option<String>)>,
    /// privilege → grantees.
    pub grants: Vec<(String, Vec<String>)>,
    /// (privilege, grantee) pairs to revoke: granted on a relation that is kept
    /// in place but no longer in the config.
    pub revokes: Vec<(String, String)>,
    pub relation_comment: Option<String>,
    pub column_comments: Vec<(String, String)>,
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Statements applying indexes, grants and comments to `rel`.
pub fn settings_sql(
    rel: &str,
    identifier: &str,
    kind: RelationKind,
    s: &RelationSettings,
) -> Vec<String> {
    let mut out = Vec::new();
    if kind != RelationKind::View {
        for (cols, unique, method) in &s.indexes {
            let mut h: u32 = 2166136261;
            for b in format!("{identifier}{}{unique}", cols.join(",")).bytes() {
                h = (h ^ b as u32).wrapping_mul(16777619);
            }
            let name = format!(
                "{}_idx_{h:08x}",
                identifier.chars().take(40).collect::<String>()
            );
            out.push(format!(
                "create {}index if not exists {} on {rel} {}({})",
                if *unique { "unique " } else { "" },
                quote_ident(&name),
                method
                    .as_deref()
                    .map(|m| format!("using {m} "))
                    .unwrap_or_default(),
                cols.join(", ")
            ));
        }
    }
    for (privilege, grantee) in &s.revokes {
        out.push(format!("revoke {privilege} on {rel} from {grantee}"));
    }
    for (privilege, grantees) in &s.grants {
        if !grantees.is_empty() {
            out.push(format!(
                "grant {privilege} on {rel} to {}",
                grantees.join(", ")
            ));
        }
    }
    if let Some(c) = &s.relation_comment {
        let word = if kind == RelationKind::View {
            "view"
        } else {
            "table"
        };
        out.push(format!("comment on {word} {rel} is {}", quote_literal(c)));
    }
    for (col, c) in &s.column_comments {
        out.push(format!(
            "comment on column {rel}.{} is {}",
            quote_ident(col),
            quote_literal(c)
        ));
    }
    out
}

/// The batches of a plan, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub batches: Vec<Batch>,
    /// The statement whose rows-affected count is reported.
    pub main: (usize, usize),
}

fn suffixed(id: &str, suffix: &str) -> String {
    // Postgres truncates identifiers at 63 bytes; keep the suffix intact.
    let max = 63 - suffix.len();
    let mut base = id.to_string();
    while base.len() > max {
        base.pop();
    }
    format!("{base}{suffix}")
}

/// A view or table, built under a temporary name and swapped in within one
/// transaction, so a failing model leaves the previous relation intact.
pub fn view_or_table(input: &ModelPlanInput<'_>, kind: RelationKind) -> Plan {
    let t = &input.target;
    let tmp = suffixed(&t.identifier, "__dbt_tmp");
    let backup = suffixed(&t.identifier, "__dbt_backup");
    let mut outside_before: Vec<String> = Vec::new();
    let mut outside_after: Vec<String> = Vec::new();
    let mut tx: Vec<String> = Vec::new();
    for (sql, in_tx) in &input.pre_hooks {
        if *in_tx {
            tx.push(sql.clone());
        } else {
            outside_before.push(sql.clone());
        }
    }
    // Leftovers of an interrupted earlier run.
    tx.push(format!(
        "drop {} if exists {} cascade",
        kind.ddl_word(),
        t.named(&tmp)
    ));
    let unlogged = if kind == RelationKind::Table && input.settings.unlogged {
        "unlogged "
    } else {
        ""
    };
    let main_index = match (&input.contract, kind) {
        (Some(declared), RelationKind::Table) => {
            // The insert that fills the contract's table reports the rows.
            tx.extend(contract::create_and_fill(
                t,
                &tmp,
                input.settings.unlogged,
                declared,
                input.sql,
            ));
            tx.len() - 1
        }
        _ => {
            tx.push(format!(
                "create {unlogged}{} {} as (\n{}\n)",
                kind.ddl_word(),
                t.named(&tmp),
                input.sql
            ));
            tx.len() - 1
        }
    };
    if let Some(old) = input.existing {
        // `if exists`: replacing an upstream view in this run may have dropped
        // this one already (dependent views go with `drop ... cascade`).
        tx.push(format!(
            "alter {} if exists {} rename to {}",
            old.ddl_word(),
            t.rendered(),
            quote_ident(&backup)
        ));
    }
    tx.push(format!(
        "alter {} {} rename to {}",
        kind.ddl_word(),
        t.named(&tmp),
        quote_ident(&t.identifier)
    ));
    // The old relation goes first: its indexes' names must be free again.
    if let Some(old) = input.existing {
        tx.push(format!(
            "drop {} if exists {} cascade",
            old.ddl_word(),
            t.named(&backup)
        ));
    }
    tx.extend(settings_sql(
        &t.rendered(),
        &t.identifier,
        kind,
        &input.settings,
    ));
    for (sql, in_tx) in &input.post_hooks {
        if *in_tx {
            tx.push(sql.clone());
        } else {
            outside_after.push(sql.clone());
        }
    }
    assemble(outside_before, tx, main_index, outside_after)
}

/// An existing materialized view: refreshed in place. `on_configuration_change`
/// `apply` (the default) also creates configured indexes that are missing;
/// `continue` only refreshes; `fail` refuses to run when indexes are configured,
/// as their state cannot be compared without rebuilding.
pub fn refresh_materialized_view(
    input: &ModelPlanInput<'_>,
    on_change: Option<&str>,
) -> Result<Plan, String> {
    let rel = input.target.rendered();
    let mut tx: Vec<String> = Vec::new();
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (sql, in_tx) in &input.pre_hooks {
        if *in_tx {
            tx.push(sql.clone())
        } else {
            before.push(sql.clone())
        }
    }
    let mut settings = input.settings.clone();
    match on_change.unwrap_or("apply") {
        "apply" => {}
        "continue" => settings.indexes.clear(),
        "fail" if !settings.indexes.is_empty() => {
            return Err(format!(
                "materialized view {rel} has configuration (indexes) and on_configuration_change is 'fail'; run with --full-refresh to rebuild it"
            ))
        }
        "fail" => {}
        other => return Err(format!("on_configuration_change '{other}' is not one of apply, continue, fail")),
    }
    let main_index = tx.len();
    tx.push(format!("refresh materialized view {rel}"));
    tx.extend(settings_sql(
        &rel,
        &input.target.identifier,
        RelationKind::MaterializedView,
        &settings,
    ));
    for (sql, in_tx) in &input.post_hooks {
        if *in_tx {
            tx.push(sql.clone())
        } else {
            after.push(sql.clone())
        }
    }
    Ok(assemble(before, tx, main_index, after))
}

/// Autocommit statements before, the transaction, autocommit statements after.
pub fn assemble(
    before: Vec<String>,
    tx: Vec<String>,
    main_index: usize,
    after: Vec<String>,
) -> Plan {
    let mut batches = Vec::new();
    if !before.is_empty() {
        batches.push(Batch {
            statements: before,
            atomic: false,
        });
    }
    let main = (batches.len(), main_index);
    batches.push(Batch::atomic(tx));
    if !after.is_empty() {
        batches.push(Batch {
            statements: after,
            atomic: false,
        });
    }
    Plan { batches, main }
}

/// Fixtures shared by the plan snapshot tests of each materialization.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Plan;
    use crate::adapter::Column;

    pub fn column(name: &str, data_type: &str) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
        }
    }

    /// A plan's statements, batch by batch, as its snapshot shows them.
    pub fn statements_by_batch(p: &Plan) -> String {
        p.batches
            .iter()
            .map(|b| b.statements.join(";\n"))
            .collect::<Vec<_>>()
            .join("\n-- next batch\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(existing: Option<RelationKind>) -> ModelPlanInput<'static> {
        ModelPlanInput {
            target: Target {
                database: "db".into(),
                schema: "analytics".into(),
                identifier: "orders".into(),
            },
            sql: "select 1 as id",
            existing,
            pre_hooks: vec![("set statement_timeout = 0".into(), false)],
            post_hooks: vec![("analyze \"db\".\"analytics\".\"orders\"".into(), true)],
            settings: RelationSettings::default(),
            contract: None,
        }
    }

    fn show(p: &Plan) -> String {
        p.batches
            .iter()
            .map(|b| {
                format!(
                    "-- batch ({})\n{}",
                    if b.atomic {
                        "one transaction"
                    } else {
                        "autocommit"
                    },
                    b.statements.join(";\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    #[test]
    fn view_first_run_and_replacing_a_table() {
        insta::assert_snapshot!(
            "view_first_run",
            show(&view_or_table(&input(None), RelationKind::View))
        );
        insta::assert_snapshot!(
            "view_replacing_table",
            show(&view_or_table(
                &input(Some(RelationKind::Table)),
                RelationKind::View
            ))
        );
    }

    #[test]
    fn table_rerun() {
        insta::assert_snapshot!(
            "table_rerun",
            show(&view_or_table(
                &input(Some(RelationKind::Table)),
                RelationKind::Table
            ))
        );
    }

    #[test]
    fn table_with_settings() {
        let mut i = input(None);
        i.settings = RelationSettings {
            unlogged: true,
            indexes: vec![
                (vec!["id".into()], true, None),
                (vec!["a".into(), "b".into()], false, Some("btree".into())),
            ],
            grants: vec![("select".into(), vec!["reporter".into(), "bi".into()])],
            revokes: vec![("insert".into(), "\"old_writer\"".into())],
            relation_comment: Some("Orders, one per row's".into()),
            column_comments: vec![("id".into(), "The key".into())],
        };
        insta::assert_snapshot!(
            "table_with_settings",
            show(&view_or_table(&i, RelationKind::Table))
        );
    }

    #[test]
    fn materialized_view_refresh_and_contract_table() {
        let mut i = input(Some(RelationKind::MaterializedView));
        i.settings.indexes = vec![(vec!["id".into()], false, None)];
        insta::assert_snapshot!(
            "matview_refresh",
            show(&refresh_materialized_view(&i, None).unwrap())
        );
        assert!(refresh_materialized_view(&i, Some("fail")).is_err());
        let mut c = input(Some(RelationKind::Table));
        c.contract = Some(vec![contract::Declared {
            name: "id".into(),
            data_type: "integer".into(),
            ddl_type: "int".into(),
            constraints: vec![
                serde_json::json!({"type": "not_null"}),
                serde_json::json!({"type": "check", "expression": "id > 0"}),
            ],
        }]);
        insta::assert_snapshot!(
            "contract_table",
            show(&view_or_table(&c, RelationKind::Table))
        );
    }

    #[test]
    fn long_names_keep_their_suffix() {
        let long = "x".repeat(70);
        assert_eq!(suffixed(&long, "__dbt_tmp").len(), 63);
        assert!(suffixed(&long, "__dbt_tmp").ends_with("__dbt_tmp"));
    }
}
