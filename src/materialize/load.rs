//! The statements of `strata load`: the load-history table, the target table,
//! and the transaction that loads files and records them together, so a file
//! is either loaded and recorded or neither.

use crate::adapter::dialect::{LoadSource, TableOptions};
use crate::adapter::{Dialect, RelationId, RelationKind};

/// The table recording every loaded file, one per schema.
pub const HISTORY_TABLE: &str = "_strata_load_history";

/// One file as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub key: String,
    pub size: u64,
    /// ETag, object version or local modification stamp.
    pub version: String,
}

/// The history table of the schema `target` lives in.
pub fn history_relation(d: &dyn Dialect, target: &RelationId) -> String {
    d.relation(&target.sibling(HISTORY_TABLE))
}

/// Creates the history table if it is missing. The key makes a second
/// record of one file fail, which a concurrent loader's transaction hits
/// (and rolls back) instead of loading the file twice.
pub fn history_ddl(d: &dyn Dialect, history: &str) -> String {
    format!(
        "create table if not exists {history} (\n    target_relation varchar(1024) not null,\n    file_key varchar(1024) not null,\n    file_size bigint,\n    file_version varchar(1024),\n    row_count bigint,\n    loaded_at {},\n    invocation_id varchar(64),\n    primary key (target_relation, file_key)\n)",
        d.timestamp_type()
    )
}

/// Rows of (key, size, version) already loaded into `target`.
pub fn history_query(d: &dyn Dialect, history: &str, target: &str) -> String {
    format!(
        "select file_key, file_size::varchar, file_version from {history} where target_relation = {}",
        d.quote_literal(target)
    )
}

/// Creates the target table from its columns (name, type) if it is missing.
pub fn target_ddl(d: &dyn Dialect, target: &str, columns: &[(String, String)]) -> String {
    let defs: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{} {t}", d.quote_ident(n)))
        .collect();
    d.create_table(target, &defs, &TableOptions::default())
        .replacen("create table ", "create table if not exists ", 1)
}

/// What the load transaction removes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clear {
    /// Nothing: new files add their rows.
    Nothing,
    /// The rows and records of these files (changed files reloaded).
    Files(Vec<String>),
    /// Everything (`replace` mode, `--full-refresh`).
    All,
}

/// The statements before the COPY of one load transaction: the per-table
/// lock (a concurrent load of the same table waits), then what is cleared.
pub fn load_before(
    d: &dyn Dialect,
    target: &str,
    history: &str,
    clear: &Clear,
    file_column: &str,
) -> Vec<String> {
    let mut out = vec![d.lock_for_update(target)];
    let in_target = format!("target_relation = {}", d.quote_literal(target));
    match clear {
        Clear::Nothing => {}
        Clear::Files(keys) => {
            let list: Vec<String> = keys.iter().map(|k| d.quote_literal(k)).collect();
            out.push(format!(
                "delete from {target} where {} in ({})",
                d.quote_ident(file_column),
                list.join(", ")
            ));
            out.push(format!(
                "delete from {history} where {in_target} and file_key in ({})",
                list.join(", ")
            ));
        }
        Clear::All => {
            // DELETE, not TRUNCATE: the old rows must come back on failure.
            out.push(d.delete_all(target));
            out.push(format!("delete from {history} where {in_target}"));
        }
    }
    out
}

/// The COPY of the streamed rows into `columns` of `target`.
pub fn load_copy(d: &dyn Dialect, target: &str, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| d.quote_ident(c)).collect();
    d.copy_from(target, &cols, &LoadSource::ClientCsv)
}

/// The history record of one loaded file, in the load's transaction.
pub fn history_insert(
    d: &dyn Dialect,
    history: &str,
    target: &str,
    file: &FileRecord,
    rows: u64,
    invocation_id: &str,
) -> String {
    format!(
        "insert into {history} (target_relation, file_key, file_size, file_version, row_count, loaded_at, invocation_id) values ({}, {}, {}, {}, {rows}, {}, {})",
        d.quote_literal(target),
        d.quote_literal(&file.key),
        file.size,
        d.quote_literal(&file.version),
        d.current_timestamp(),
        d.quote_literal(invocation_id)
    )
}

/// Whether a relation kind can take loaded rows.
pub fn is_loadable(kind: RelationKind) -> bool {
    kind == RelationKind::Table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::dialect;

    #[test]
    fn load_statements() {
        for d in dialect::all() {
            let t = RelationId::new("db", "raw", "merchants");
            let rel = d.relation(&t);
            let h = history_relation(d, &t);
            let f = FileRecord {
                key: "dt=2024-01-01/part-0.csv".into(),
                size: 120,
                version: "\"9b2cf535f27731c974343645a3985328\"".into(),
            };
            let text = [
                history_ddl(d, &h),
                history_query(d, &h, &rel),
                target_ddl(
                    d,
                    &rel,
                    &[
                        ("id".into(), "integer".into()),
                        ("dt".into(), "date".into()),
                    ],
                ),
                load_before(
                    d,
                    &rel,
                    &h,
                    &Clear::Files(vec![f.key.clone()]),
                    "_strata_source_file",
                )
                .join(";\n"),
                load_before(d, &rel, &h, &Clear::All, "_strata_source_file").join(";\n"),
                load_copy(d, &rel, &["id".into(), "dt".into()]),
                history_insert(d, &h, &rel, &f, 3, "inv-1"),
            ]
            .join(";\n\n");
            insta::assert_snapshot!(format!("{}__load", d.name()), text);
        }
    }
}
