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

/// The history record of one loaded file, in the load's transaction;
/// `rows` is an SQL expression (a count, or the warehouse's last COPY count).
pub fn history_insert(
    d: &dyn Dialect,
    history: &str,
    target: &str,
    file: &FileRecord,
    rows: &str,
    invocation_id: &str,
) -> String {
    history_insert_many(
        d,
        history,
        target,
        std::slice::from_ref(file),
        rows,
        invocation_id,
    )
}

/// A Redshift manifest listing exactly these objects (url, size). The size
/// is required for Parquet
/// (https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html).
pub fn manifest(objects: &[(String, u64)]) -> String {
    let entries: Vec<serde_json::Value> = objects
        .iter()
        .map(|(url, size)| {
            serde_json::json!({"url": url, "mandatory": true, "meta": {"content_length": size}})
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "entries": entries })).unwrap_or_default()
}

/// One COPY of a server-side load: the objects of one manifest, read with
/// the same columns, and the values the rows of all of them share
/// (partition values from the paths, the file key when it is recorded per
/// row), as (column, SQL literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCopy {
    pub source: LoadSource,
    /// The files' columns as the COPY reads them (name, type), in the files'
    /// order: COPY maps CSV fields and Parquet columns by position.
    pub columns: Vec<(String, String)>,
    /// Of those, the ones the table takes.
    pub load_columns: Vec<String>,
    pub constants: Vec<(String, String)>,
    /// The history records of its files; with one file, its row count is
    /// the COPY's.
    pub files: Vec<FileRecord>,
}

/// A server-side load of one table, as one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLoad {
    pub target: String,
    pub history: String,
    pub clear: Clear,
    /// Keys of files loaded before whose new version this load reloads; every
    /// other file is new to the history.
    pub reloaded: Vec<String>,
    pub copies: Vec<ServerCopy>,
    pub invocation_id: String,
}

/// The statements of a server-side load: the table's lock and the
/// history's (shared by the schema's tables: concurrent transactions
/// writing it would fail Redshift's serializable isolation); a guard that
/// fails when a file about to load is recorded already (a concurrent run
/// loaded it while this one waited for the lock: Redshift enforces no
/// keys); what is cleared; each COPY, through a temporary table when rows
/// need values the files lack or the files' columns are not the table's;
/// and each file's history record.
pub fn server_load(d: &dyn Dialect, load: &ServerLoad, file_column: &str) -> Vec<String> {
    let mut out = vec![
        d.lock_for_update(&load.target),
        d.lock_for_update(&load.history),
    ];
    let files: Vec<&FileRecord> = load.copies.iter().flat_map(|c| &c.files).collect();
    if load.clear != Clear::All && !files.is_empty() {
        // A new file must not be recorded at all; a reloaded one not with
        // the version about to load.
        let (reloads, new): (Vec<&&FileRecord>, Vec<&&FileRecord>) =
            files.iter().partition(|f| load.reloaded.contains(&f.key));
        let mut tests = Vec::new();
        if !new.is_empty() {
            let keys: Vec<String> = new.iter().map(|f| d.quote_literal(&f.key)).collect();
            tests.push(format!("file_key in ({})", keys.join(", ")));
        }
        if !reloads.is_empty() {
            let keys: Vec<String> = reloads
                .iter()
                .map(|f| d.quote_literal(&format!("{} {}", f.key, f.version)))
                .collect();
            tests.push(format!(
                "file_key || ' ' || coalesce(file_version, '') in ({})",
                keys.join(", ")
            ));
        }
        out.push(format!(
            "select cast('already loaded: ' || max(file_key) as integer) from {} where target_relation = {} and ({})",
            load.history,
            d.quote_literal(&load.target),
            tests.join(" or ")
        ));
    }
    out.extend(
        load_before(d, &load.target, &load.history, &load.clear, file_column)
            .into_iter()
            .skip(1),
    );
    let quoted =
        |cols: &[String]| -> Vec<String> { cols.iter().map(|c| d.quote_ident(c)).collect() };
    for (i, copy) in load.copies.iter().enumerate() {
        let names: Vec<String> = copy.columns.iter().map(|(n, _)| n.clone()).collect();
        let parquet = matches!(
            copy.source,
            LoadSource::S3Manifest {
                format: crate::adapter::dialect::ObjectFormat::Parquet,
                ..
            }
        );
        let direct = copy.constants.is_empty() && !parquet && names == copy.load_columns;
        if direct {
            out.push(d.copy_from(&load.target, &quoted(&copy.load_columns), &copy.source));
        } else {
            let stage = d.quote_ident(&format!("strata_load_stage_{i}"));
            let defs: Vec<String> = copy
                .columns
                .iter()
                .map(|(n, t)| format!("{} {t}", d.quote_ident(n)))
                .collect();
            out.push(format!("create temp table {stage} ({})", defs.join(", ")));
            out.push(d.copy_from(&stage, &quoted(&names), &copy.source));
            let mut cols = quoted(&copy.load_columns);
            let mut values = cols.clone();
            for (c, v) in &copy.constants {
                cols.push(d.quote_ident(c));
                values.push(v.clone());
            }
            out.push(format!(
                "insert into {} ({}) select {} from {stage}",
                load.target,
                cols.join(", "),
                values.join(", ")
            ));
            out.push(format!("drop table {stage}"));
        }
        if !copy.files.is_empty() {
            let rows = if copy.files.len() == 1 {
                "pg_last_copy_count()"
            } else {
                "null"
            };
            out.push(history_insert_many(
                d,
                &load.history,
                &load.target,
                &copy.files,
                rows,
                &load.invocation_id,
            ));
        }
    }
    out
}

/// The history records of several files in one statement.
pub fn history_insert_many(
    d: &dyn Dialect,
    history: &str,
    target: &str,
    files: &[FileRecord],
    rows: &str,
    invocation_id: &str,
) -> String {
    let values: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                "({}, {}, {}, {}, {rows}, {}, {})",
                d.quote_literal(target),
                d.quote_literal(&f.key),
                f.size,
                d.quote_literal(&f.version),
                d.current_timestamp(),
                d.quote_literal(invocation_id)
            )
        })
        .collect();
    format!(
        "insert into {history} (target_relation, file_key, file_size, file_version, row_count, loaded_at, invocation_id) values {}",
        values.join(", ")
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
                history_insert(d, &h, &rel, &f, "3", "inv-1"),
            ]
            .join(";\n\n");
            insta::assert_snapshot!(format!("{}__load", d.name()), text);
        }
    }

    /// Redshift's load: Parquet partitioned by date through a temporary
    /// table; CSV straight into the table; JSON lines with the file's key
    /// per row; each file recorded in the same transaction.
    #[test]
    fn server_load_statements() {
        use crate::adapter::dialect::{ObjectCompression, ObjectFormat, RedshiftDialect};
        let d = &RedshiftDialect::default() as &dyn Dialect;
        let t = RelationId::new("analytics", "raw", "transactions");
        let rec = |k: &str, size: u64| FileRecord {
            key: k.into(),
            size,
            version: format!("\"etag-{size}\""),
        };
        let source = |format: ObjectFormat, compression, n: usize| LoadSource::S3Manifest {
            url: format!(
                "s3://stage/strata/manifests/inv-1/raw.transactions-{n}-1f2e3d4c.manifest"
            ),
            iam_role: "arn:aws:iam::123456789012:role/strata-load".into(),
            format,
            compression,
        };
        let cols = |c: &[(&str, &str)]| -> Vec<(String, String)> {
            c.iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect()
        };
        let parquet = ServerLoad {
            target: d.relation(&t),
            history: history_relation(d, &t),
            clear: Clear::Nothing,
            reloaded: Vec::new(),
            copies: vec![ServerCopy {
                source: source(ObjectFormat::Parquet, ObjectCompression::None, 0),
                columns: cols(&[
                    ("transaction_id", "varchar(65535)"),
                    ("amount", "numeric(18,2)"),
                ]),
                load_columns: vec!["transaction_id".into(), "amount".into()],
                constants: vec![("dt".into(), "cast('2024-01-02' as date)".into())],
                files: vec![
                    rec("dt=2024-01-02/part-0.parquet", 2048),
                    rec("dt=2024-01-02/part-1.parquet", 1024),
                ],
            }],
            invocation_id: "inv-1".into(),
        };
        let m = RelationId::new("analytics", "raw", "merchants");
        let csv = ServerLoad {
            target: d.relation(&m),
            history: history_relation(d, &m),
            clear: Clear::Files(vec!["merchants-1.csv.gz".into()]),
            reloaded: vec!["merchants-1.csv.gz".into()],
            copies: vec![ServerCopy {
                source: source(
                    ObjectFormat::Csv {
                        delimiter: ',',
                        header_rows: 1,
                    },
                    ObjectCompression::Gzip,
                    0,
                ),
                columns: cols(&[
                    ("merchant_id", "varchar(65535)"),
                    ("name", "varchar(65535)"),
                ]),
                load_columns: vec!["merchant_id".into(), "name".into()],
                constants: Vec::new(),
                files: vec![rec("merchants-1.csv.gz", 300)],
            }],
            invocation_id: "inv-1".into(),
        };
        let c = RelationId::new("analytics", "raw", "customer_profiles");
        let json = ServerLoad {
            target: d.relation(&c),
            history: history_relation(d, &c),
            clear: Clear::All,
            reloaded: Vec::new(),
            copies: vec![ServerCopy {
                source: source(ObjectFormat::JsonLines, ObjectCompression::Zstd, 0),
                columns: cols(&[("customer_id", "varchar(65535)"), ("profile", "super")]),
                load_columns: vec!["customer_id".into(), "profile".into()],
                constants: vec![
                    (
                        "_strata_source_file".into(),
                        "'profiles-1.jsonl.zst'".into(),
                    ),
                    (
                        "_strata_loaded_at".into(),
                        "cast('2024-01-02 03:04:05.000000' as timestamp)".into(),
                    ),
                ],
                files: vec![rec("profiles-1.jsonl.zst", 512)],
            }],
            invocation_id: "inv-1".into(),
        };
        let text = [parquet, csv, json]
            .iter()
            .map(|l| server_load(d, l, "_strata_source_file").join(";\n"))
            .collect::<Vec<_>>()
            .join(";\n\n");
        insta::assert_snapshot!("redshift__server_load", text);
        insta::assert_snapshot!(
            "load_manifest_json",
            manifest(&[
                (
                    "s3://curated/transactions/dt=2024-01-02/part-0.parquet".into(),
                    2048
                ),
                (
                    "s3://curated/transactions/dt=2024-01-02/part-1.parquet".into(),
                    1024
                ),
            ])
        );
    }
}
