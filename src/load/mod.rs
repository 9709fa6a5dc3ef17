//! `strata load`: a source table's files (its `external:` block) loaded
//! into the table exactly once. Each load transaction takes the table's lock,
//! streams the new files' rows and records each file in the load-history
//! table; the history's key makes a concurrent loader's second record of a
//! file fail and roll back. A crash at any point leaves every file either
//! loaded and recorded or neither, and the next load takes exactly the rest.

pub mod files;
pub mod rows;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use crate::adapter::{Adapter, AdapterError, Batch, RelationId};
use crate::manifest::external::{self, ChangedFiles, External, FileFormat, LoadMode, NewColumns};
use crate::manifest::Source;
use crate::materialize::load::{self as plan, Clear, FileRecord};
use files::{ObjectMeta, ObjectSource};

/// How to load, as the command line asked.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions<'a> {
    pub project_dir: &'a Path,
    pub invocation_id: &'a str,
    /// The time written to `_strata_loaded_at`.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Reload every file.
    pub full_refresh: bool,
    /// List what would load; change nothing.
    pub dry_run: bool,
}

/// What loading one table did.
#[derive(Debug, Clone, Default)]
pub struct TableOutcome {
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Files that would load (dry run) or loaded.
    pub loaded: Vec<String>,
    /// Files that changed under a key already loaded and were left alone.
    pub changed_skipped: Vec<String>,
    /// Files another run loaded meanwhile.
    pub concurrent: Vec<String>,
    pub seconds: f64,
}

/// Why a table did not load.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub message: String,
    /// The statement, when the warehouse refused one.
    pub statement: Option<String>,
}

impl LoadError {
    fn new(message: impl Into<String>) -> LoadError {
        LoadError {
            message: message.into(),
            statement: None,
        }
    }

    fn warehouse(e: AdapterError, statement: Option<&str>) -> LoadError {
        LoadError {
            message: e.message,
            statement: statement.map(str::to_string),
        }
    }
}

/// A file found under the location, with its partition values.
#[derive(Debug, Clone)]
struct Found {
    meta: ObjectMeta,
    partitions: Vec<String>,
}

/// `name=value` path segments for each partition, in order.
fn partition_values(key: &str, partitions: &[external::Partition]) -> Result<Vec<String>, String> {
    partitions
        .iter()
        .map(|p| {
            key.split('/')
                .find_map(|seg| {
                    seg.split_once('=')
                        .filter(|(n, _)| n.eq_ignore_ascii_case(&p.name))
                        .map(|(_, v)| v.to_string())
                })
                .ok_or_else(|| format!("{key}: no '{}=' segment in the path", p.name))
        })
        .collect()
}

/// The file columns of the first file, when the source declares none:
/// the CSV header, or the keys of the first JSON object.
fn inferred_columns(
    src: &dyn ObjectSource,
    ext: &External,
    first: &ObjectMeta,
) -> Result<Vec<String>, LoadError> {
    use std::io::BufRead;
    let raw = src
        .open(&first.key)
        .map_err(|e| LoadError::new(format!("{}: cannot read: {e}", src.display(&first.key))))?;
    let data = rows::decompress(&first.key, ext.compression, raw)
        .map_err(|e| LoadError::new(format!("{}: {e}", src.display(&first.key))))?;
    let mut lines = std::io::BufReader::new(data);
    let mut line = String::new();
    match &ext.format {
        FileFormat::Csv(o) => {
            let mut r = csv::ReaderBuilder::new()
                .delimiter(o.delimiter)
                .has_headers(false)
                .from_reader(lines);
            let mut rec = csv::StringRecord::new();
            if o.skip_header_rows == 0 || !r.read_record(&mut rec).unwrap_or(false) {
                return Err(LoadError::new(format!(
                    "{}: no header to name the columns; declare them under the source table's columns:",
                    src.display(&first.key)
                )));
            }
            Ok(rec.iter().map(|h| h.trim().to_string()).collect())
        }
        FileFormat::JsonLines => loop {
            line.clear();
            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                return Err(LoadError::new(format!(
                    "{}: no JSON object to name the columns",
                    src.display(&first.key)
                )));
            }
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                LoadError::new(format!(
                    "{}:1: not a JSON object: {e}",
                    src.display(&first.key)
                ))
            })?;
            return Ok(v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default());
        },
        FileFormat::Parquet => unreachable!("Parquet columns come from the file's schema"),
    }
}

/// A Parquet file's top-level columns with the SQL types of their Parquet
/// types (text for what has no closer type).
fn parquet_columns(
    src: &dyn ObjectSource,
    first: &ObjectMeta,
    text: &str,
) -> Result<Vec<(String, String)>, LoadError> {
    use parquet::basic::{ConvertedType, LogicalType, Type as Physical};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad = |e: String| {
        LoadError::new(format!(
            "{}: not a readable Parquet file: {e}",
            src.display(&first.key)
        ))
    };
    let metadata = match src.local_path(&first.key) {
        Some(p) => {
            let f = std::fs::File::open(&p).map_err(|e| bad(e.to_string()))?;
            SerializedFileReader::new(f)
                .map_err(|e| bad(e.to_string()))?
                .metadata()
                .clone()
        }
        None => {
            let mut buf = Vec::new();
            src.open(&first.key)
                .and_then(|mut r| r.read_to_end(&mut buf))
                .map_err(|e| bad(e.to_string()))?;
            SerializedFileReader::new(bytes::Bytes::from(buf))
                .map_err(|e| bad(e.to_string()))?
                .metadata()
                .clone()
        }
    };
    let schema = metadata.file_metadata().schema_descr();
    Ok(schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| {
            let info = f.get_basic_info();
            let t = if !f.is_primitive() {
                text.to_string()
            } else {
                match (
                    info.logical_type_ref(),
                    info.converted_type(),
                    f.get_physical_type(),
                ) {
                    (Some(LogicalType::Decimal(_)), _, _) | (_, ConvertedType::DECIMAL, _) => {
                        format!("numeric({},{})", f.get_precision(), f.get_scale())
                    }
                    (Some(LogicalType::Date), _, _) | (_, ConvertedType::DATE, _) => "date".into(),
                    (Some(LogicalType::Timestamp { .. }), _, _)
                    | (_, ConvertedType::TIMESTAMP_MILLIS | ConvertedType::TIMESTAMP_MICROS, _) => {
                        "timestamp".into()
                    }
                    (Some(LogicalType::String), _, _) | (_, ConvertedType::UTF8, _) => {
                        text.to_string()
                    }
                    (_, _, Physical::BOOLEAN) => "boolean".into(),
                    (_, _, Physical::INT32) => "integer".into(),
                    (_, _, Physical::INT64) => "bigint".into(),
                    (_, _, Physical::FLOAT) => "real".into(),
                    (_, _, Physical::DOUBLE) => "double precision".into(),
                    _ => text.to_string(),
                }
            };
            (info.name().to_string(), t)
        })
        .collect())
}

/// Loads one source table's new files.
pub fn load_table(
    adapter: &dyn Adapter,
    source: &Source,
    options: &LoadOptions<'_>,
) -> Result<TableOutcome, LoadError> {
    let clock = Instant::now();
    let Some(ext) = &source.external else {
        return Err(LoadError::new("the source table has no external location"));
    };
    let d = adapter.dialect();
    if !d.copy_from_client() {
        return Err(LoadError::new(format!(
            "loading files on {} (a server-side COPY from S3 with a manifest) is not available yet; Postgres targets load them",
            d.name()
        )));
    }
    let objects = files::source_for(options.project_dir, &ext.location).map_err(LoadError::new)?;
    let pattern = match &ext.pattern {
        Some(p) => Some(regex::Regex::new(p).map_err(|e| LoadError::new(e.to_string()))?),
        None => None,
    };
    let mut found = Vec::new();
    for meta in objects.list().map_err(LoadError::new)? {
        if pattern.as_ref().is_some_and(|p| !p.is_match(&meta.key)) {
            continue;
        }
        let partitions = partition_values(&meta.key, &ext.partitions)
            .map_err(|e| LoadError::new(format!("{}: {e}", objects.describe())))?;
        found.push(Found { meta, partitions });
    }
    found.sort_by(|a, b| a.meta.key.cmp(&b.meta.key));

    let target_id = RelationId::new(&source.database, &source.schema, &source.identifier);
    let target = source.relation_name.clone();
    let history = plan::history_relation(d, &target_id);

    // What is loaded already.
    let exists = adapter
        .relation_type(&source.schema, &source.identifier)
        .map_err(|e| LoadError::warehouse(e, None))?
        .is_some();
    let history_exists = adapter
        .relation_type(&source.schema, plan::HISTORY_TABLE)
        .map_err(|e| LoadError::warehouse(e, None))?
        .is_some();
    let mut loaded: HashMap<String, (u64, String)> = HashMap::new();
    if history_exists {
        let sql = plan::history_query(d, &history, &target);
        let t = adapter
            .query(&sql)
            .map_err(|e| LoadError::warehouse(e, Some(&sql)))?;
        for r in t.rows {
            let at = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            loaded.insert(at(0), (at(1).parse().unwrap_or(0), at(2)));
        }
    }

    let replace_all = options.full_refresh || ext.load.mode == LoadMode::Replace;
    let mut out = TableOutcome::default();
    let mut todo: Vec<&Found> = Vec::new();
    let mut reload: Vec<String> = Vec::new();
    for f in &found {
        match loaded.get(&f.meta.key) {
            _ if replace_all => todo.push(f),
            None => todo.push(f),
            Some((size, version)) if *size == f.meta.size && *version == f.meta.version => {}
            Some(_) => match ext.load.on_changed_file {
                ChangedFiles::Skip => out.changed_skipped.push(objects.display(&f.meta.key)),
                ChangedFiles::Error => {
                    return Err(LoadError::new(format!(
                        "{} changed since it was loaded (size or version differs); on_changed_file is 'error'",
                        objects.display(&f.meta.key)
                    )))
                }
                ChangedFiles::Reload => {
                    reload.push(f.meta.key.clone());
                    todo.push(f);
                }
            },
        }
    }
    // The file columns: declared, or named by the files.
    let declared: Vec<(String, String)> = source
        .columns
        .iter()
        .filter(|(name, _)| {
            !ext.partitions
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(name))
                && name.as_str() != external::FILE_COLUMN
                && name.as_str() != external::LOADED_AT_COLUMN
        })
        .map(|(name, c)| {
            (
                name.clone(),
                c.data_type
                    .clone()
                    .unwrap_or_else(|| d.declared_type("text")),
            )
        })
        .collect();
    let file_columns: Vec<(String, String)> = if !declared.is_empty() {
        declared
    } else {
        // Named by the files about to load (each may bring new columns), or
        // by the first file when none is new.
        let named: Vec<&Found> = if todo.is_empty() {
            found.iter().take(1).collect()
        } else {
            todo.clone()
        };
        let mut cols: Vec<(String, String)> = Vec::new();
        for f in named {
            let these = if ext.format == FileFormat::Parquet {
                parquet_columns(objects.as_ref(), &f.meta, &d.declared_type("text"))?
            } else {
                inferred_columns(objects.as_ref(), ext, &f.meta)?
                    .into_iter()
                    .map(|c| (c, d.declared_type("text")))
                    .collect()
            };
            for c in these {
                if !cols.iter().any(|(n, _)| n.eq_ignore_ascii_case(&c.0)) {
                    cols.push(c);
                }
            }
        }
        cols
    };
    let mut table_columns = file_columns.clone();
    for p in &ext.partitions {
        table_columns.push((p.name.clone(), p.data_type.clone()));
    }
    if ext.load.metadata_columns {
        table_columns.push((external::FILE_COLUMN.into(), d.declared_type("text")));
        table_columns.push((external::LOADED_AT_COLUMN.into(), d.timestamp_type().into()));
    }

    if options.dry_run {
        out.loaded = todo.iter().map(|f| objects.display(&f.meta.key)).collect();
        out.files = todo.len();
        out.bytes = todo.iter().map(|f| f.meta.size).sum();
        out.seconds = clock.elapsed().as_secs_f64();
        return Ok(out);
    }

    // The schema, history and table, and columns the table lacks.
    let mut setup = vec![
        d.create_schema(&source.schema),
        plan::history_ddl(d, &history),
    ];
    if !exists {
        if table_columns.is_empty() {
            return Err(LoadError::new(format!(
                "no files under {} and no declared columns: nothing to create the table from",
                objects.describe()
            )));
        }
        setup.push(plan::target_ddl(d, &target, &table_columns));
    }
    adapter
        .execute(&Batch {
            statements: setup.clone(),
            atomic: false,
        })
        .map_err(|e| {
            let s = e.statement.and_then(|i| setup.get(i)).cloned();
            LoadError::warehouse(e, s.as_deref())
        })?;
    let mut load_columns: Vec<String> = file_columns.iter().map(|(n, _)| n.clone()).collect();
    if exists {
        let have: Vec<String> = adapter
            .columns_of(&source.schema, &source.identifier)
            .map_err(|e| LoadError::warehouse(e, None))?
            .into_iter()
            .map(|c| d.fold_identifier(&c.name))
            .collect();
        let missing: Vec<&(String, String)> = table_columns
            .iter()
            .filter(|(n, _)| !have.contains(&d.fold_identifier(n)))
            .collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|(n, _)| n.as_str()).collect();
            match ext.load.on_new_columns {
                NewColumns::Fail => {
                    return Err(LoadError::new(format!(
                        "the files have columns the table lacks ({}); on_new_columns is 'fail'",
                        names.join(", ")
                    )))
                }
                NewColumns::Ignore => {
                    load_columns.retain(|c| !names.contains(&c.as_str()));
                }
                NewColumns::Add => {
                    let adds: Vec<String> = missing
                        .iter()
                        .map(|(n, t)| d.add_column(&target, n, t))
                        .collect();
                    adapter
                        .execute(&Batch::atomic(adds))
                        .map_err(|e| LoadError::warehouse(e, None))?;
                }
            }
        }
    }
    let mut copy_columns = load_columns.clone();
    copy_columns.extend(ext.partitions.iter().map(|p| p.name.clone()));
    if ext.load.metadata_columns {
        copy_columns.push(external::FILE_COLUMN.into());
        copy_columns.push(external::LOADED_AT_COLUMN.into());
    }
    let shape = rows::Shape {
        format: ext.format.clone(),
        compression: ext.compression,
        columns: load_columns,
    };
    let loaded_at = options
        .started_at
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let file_info = |f: &Found| {
        let mut extra = f.partitions.clone();
        if ext.load.metadata_columns {
            extra.push(f.meta.key.clone());
            extra.push(loaded_at.clone());
        }
        rows::FileInfo {
            display: objects.display(&f.meta.key),
            extra,
        }
    };
    let skip_lines = match &ext.format {
        FileFormat::Csv(o) => o.skip_header_rows as u64,
        _ => 0,
    };

    // One transaction for everything when the table is replaced; else one
    // per file, so that a bad file keeps the ones before it.
    let batches: Vec<(Vec<&Found>, Clear)> = if replace_all {
        if todo.is_empty() && found.is_empty() && !options.full_refresh {
            Vec::new()
        } else {
            vec![(todo.clone(), Clear::All)]
        }
    } else {
        todo.iter()
            .map(|f| {
                let clear = if reload.contains(&f.meta.key) {
                    Clear::Files(vec![f.meta.key.clone()])
                } else {
                    Clear::Nothing
                };
                (vec![*f], clear)
            })
            .collect()
    };
    let copy = plan::load_copy(d, &target, &copy_columns);
    for (files, clear) in batches {
        let before = plan::load_before(d, &target, &history, &clear, external::FILE_COLUMN);
        let list: Vec<(String, rows::FileInfo)> = files
            .iter()
            .map(|f| (f.meta.key.clone(), file_info(f)))
            .collect();
        let src = files::source_for(options.project_dir, &ext.location).map_err(LoadError::new)?;
        let open: rows::Opener = Box::new(move |k: &str| {
            Ok(rows::Opened {
                reader: src.open(k)?,
                path: src.local_path(k),
            })
        });
        let stream = rows::RowStream::new(shape.clone(), list, open);
        let counts = stream.counts.clone();
        let mut stream = rows::Prefetch::new(stream, 4);
        let after = || {
            files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let n = counts
                        .get(i)
                        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                        .unwrap_or(0);
                    plan::history_insert(
                        d,
                        &history,
                        &target,
                        &FileRecord {
                            key: f.meta.key.clone(),
                            size: f.meta.size,
                            version: f.meta.version.clone(),
                        },
                        n,
                        options.invocation_id,
                    )
                })
                .collect::<Vec<_>>()
        };
        match adapter.load_stream(&before, &copy, &mut stream, &after) {
            Ok(rows) => {
                out.files += files.len();
                out.rows += rows;
                out.bytes += files.iter().map(|f| f.meta.size).sum::<u64>();
                out.loaded
                    .extend(files.iter().map(|f| objects.display(&f.meta.key)));
            }
            // Another run recorded the file first: its rows are there once.
            Err(e) if e.sqlstate.as_deref() == Some("23505") && files.len() == 1 => {
                out.concurrent
                    .extend(files.iter().map(|f| objects.display(&f.meta.key)));
            }
            Err(e) => {
                let copy_at = before.len();
                let mut message = e.message.clone();
                // COPY names the line of its stream: with one file, the file's line.
                if e.statement == Some(copy_at) && files.len() == 1 {
                    if let Some(line) = crate::sql::copy_error_line(&message) {
                        message = format!(
                            "{}:{}: {message}",
                            objects.display(&files[0].meta.key),
                            line + skip_lines
                        );
                    }
                }
                let statement = e.statement.map(|i| match i.cmp(&copy_at) {
                    std::cmp::Ordering::Less => before.get(i).cloned().unwrap_or_default(),
                    std::cmp::Ordering::Equal => copy.clone(),
                    std::cmp::Ordering::Greater => String::new(),
                });
                return Err(LoadError {
                    message: format!(
                        "{message}\n  (nothing of this batch was loaded; {} file{} loaded before it stay{})",
                        out.files,
                        if out.files == 1 { "" } else { "s" },
                        if out.files == 1 { "s" } else { "" }
                    ),
                    statement: statement.filter(|s| !s.is_empty()),
                });
            }
        }
    }
    out.seconds = clock.elapsed().as_secs_f64();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_come_from_hive_style_segments() {
        let p = vec![
            external::Partition {
                name: "dt".into(),
                data_type: "date".into(),
            },
            external::Partition {
                name: "region".into(),
                data_type: "text".into(),
            },
        ];
        assert_eq!(
            partition_values("region=eu/dt=2024-01-02/part-0.parquet", &p).unwrap(),
            vec!["2024-01-02", "eu"]
        );
        assert!(partition_values("2024-01-02/part-0.parquet", &p)
            .unwrap_err()
            .contains("dt="));
        assert_eq!(
            crate::sql::copy_error_line("ERROR: x\nCONTEXT: COPY t, line 12, column a"),
            Some(12)
        );
    }
}
