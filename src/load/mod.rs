//! `strata load`: a source table's files (its `external:` block) loaded
//! into the table exactly once. A load holds the table's lock throughout
//! (Postgres: on a connection of its own, while the files stream through
//! `COPY ... FROM STDIN` in parallel, one transaction each; Redshift: in the
//! one transaction that COPYs the new files from S3 through a manifest), and
//! records each file in the load-history table in the transaction that
//! loads it. A crash at any point leaves every file either loaded and
//! recorded or neither, and the next load takes exactly the rest.

pub mod files;
pub mod rows;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Connections one table's files load on at once (Postgres).
    pub file_threads: usize,
    /// Counters a progress bar reads, if one is shown.
    pub progress: Option<&'a LoadProgress>,
}

/// What all loads of a command have done so far, for a progress bar.
#[derive(Debug, Default)]
pub struct LoadProgress {
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    /// Bytes read so far (also counted in `bytes_done`).
    pub bytes_read: Arc<AtomicU64>,
    /// Rows sent, counted as they stream.
    pub rows: Arc<AtomicU64>,
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
    /// The load found files recorded meanwhile and loaded nothing: listing
    /// and reading the history again gives what is left.
    look_again: bool,
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
        // Remote: only the footer is read (ranged GETs from the end).
        None => {
            let tail = src
                .read_tail(&first.key, first.size, 64 * 1024)
                .map_err(|e| bad(e.to_string()))?;
            let footer_len = |t: &[u8]| -> Option<usize> {
                let n = t.len();
                (n >= 8 && &t[n - 4..] == b"PAR1")
                    .then(|| u32::from_le_bytes([t[n - 8], t[n - 7], t[n - 6], t[n - 5]]) as usize)
            };
            let len = footer_len(&tail).ok_or_else(|| bad("no Parquet footer".into()))?;
            let tail = if len + 8 > tail.len() {
                src.read_tail(&first.key, first.size, len as u64 + 8)
                    .map_err(|e| bad(e.to_string()))?
            } else {
                tail
            };
            let end = tail.len() - 8;
            let start = end
                .checked_sub(len)
                .ok_or_else(|| bad("the footer is longer than the file".into()))?;
            parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&tail[start..end])
                .map_err(|e| bad(e.to_string()))?
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
    let mut out = load_table_once(adapter, source, options)?;
    // A concurrent run won the table's lock first (Redshift): after it, the
    // files it did not load are still new.
    for _ in 0..3 {
        if !out.look_again {
            break;
        }
        let concurrent = std::mem::take(&mut out.concurrent);
        out = load_table_once(adapter, source, options)?;
        if !out.look_again {
            out.concurrent = concurrent
                .into_iter()
                .filter(|f| !out.loaded.contains(f))
                .collect();
        }
    }
    out.seconds = clock.elapsed().as_secs_f64();
    Ok(out)
}

fn load_table_once(
    adapter: &dyn Adapter,
    source: &Source,
    options: &LoadOptions<'_>,
) -> Result<TableOutcome, LoadError> {
    let clock = Instant::now();
    let Some(ext) = &source.external else {
        return Err(LoadError::new("the source table has no external location"));
    };
    let d = adapter.dialect();
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

    // The table's lock, held for the whole load on a connection of its own:
    // a concurrent load of the same table waits here, then finds the files
    // this one loaded in the history. Where no connection can hold it, each
    // transaction takes it instead.
    let held = if options.dry_run || !d.copy_from_client() {
        None
    } else {
        adapter
            .hold_lock(&d.lock_for_update(&target))
            .map_err(|e| LoadError::warehouse(e, None))?
    };

    // A server-side load reads the files itself: they must be in S3.
    if !d.copy_from_client() && objects.warehouse_url("").is_none() {
        return Err(LoadError::new(format!(
            "{} reads the files of a load itself, from S3: the location must be s3://... (it is {})",
            d.name(),
            objects.describe()
        )));
    }

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

    // `replace` reloads the table when any file is new, changed or gone.
    let mut out = TableOutcome::default();
    let replace_all = options.full_refresh
        || (ext.load.mode == LoadMode::Replace
            && (!exists
                || loaded.len() != found.len()
                || found.iter().any(|f| {
                    loaded.get(&f.meta.key) != Some(&(f.meta.size, f.meta.version.clone()))
                })));
    if ext.load.mode == LoadMode::Replace && !replace_all {
        out.seconds = clock.elapsed().as_secs_f64();
        return Ok(out);
    }
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
    if let Some(p) = options.progress {
        p.files_total
            .fetch_add(todo.len() as u64, Ordering::Relaxed);
        p.bytes_total.fetch_add(
            todo.iter().map(|f| f.meta.size).sum::<u64>(),
            Ordering::Relaxed,
        );
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
        // An empty file names nothing.
        for f in named.into_iter().filter(|f| f.meta.size > 0) {
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
    let batch = Batch {
        statements: setup.clone(),
        atomic: false,
    };
    // Loads of several tables start at once and all create the schema's
    // history table: one that lost that race finds it there the second time.
    adapter
        .execute(&batch)
        .or_else(|e| {
            if e.is_concurrent_create() {
                adapter.execute(&batch)
            } else {
                Err(e)
            }
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

    // One transaction for everything when the table is replaced; else one
    // per file, so that a bad file keeps the others.
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
    let job = Job {
        adapter,
        options,
        ext,
        objects: objects.as_ref(),
        target: &target,
        history: &history,
        load_columns,
        lock_each: held.is_none(),
    };
    let result = if d.copy_from_client() {
        job.stream_from_client(&batches, &mut out)
    } else {
        job.copy_on_server(&file_columns, &batches, &reload, &mut out)
    };
    drop(held);
    result?;
    out.seconds = clock.elapsed().as_secs_f64();
    Ok(out)
}

/// One table's load, once what to load is known.
struct Job<'a> {
    adapter: &'a dyn Adapter,
    options: &'a LoadOptions<'a>,
    ext: &'a External,
    objects: &'a dyn ObjectSource,
    target: &'a str,
    history: &'a str,
    /// The file columns loaded (new ones the table lacks left out when ignored).
    load_columns: Vec<String>,
    /// Each transaction takes the table's lock (none is held across the load).
    lock_each: bool,
}

impl Job<'_> {
    /// The table's columns a load writes: the file columns, partition
    /// values, and the metadata columns.
    fn copy_columns(&self) -> Vec<String> {
        let mut cols = self.load_columns.clone();
        cols.extend(self.ext.partitions.iter().map(|p| p.name.clone()));
        if self.ext.load.metadata_columns {
            cols.push(external::FILE_COLUMN.into());
            cols.push(external::LOADED_AT_COLUMN.into());
        }
        cols
    }

    fn loaded_at(&self) -> String {
        self.options
            .started_at
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string()
    }

    fn record(&self, f: &Found, rows: u64) -> String {
        plan::history_insert(
            self.adapter.dialect(),
            self.history,
            self.target,
            &FileRecord {
                key: f.meta.key.clone(),
                size: f.meta.size,
                version: f.meta.version.clone(),
            },
            &rows.to_string(),
            self.options.invocation_id,
        )
    }

    /// Counts loaded files; `counted` bytes of them were counted already
    /// as they were read.
    fn done(&self, files: &[&Found], rows: u64, counted: u64, out: &Mutex<&mut TableOutcome>) {
        let bytes = files.iter().map(|f| f.meta.size).sum::<u64>();
        if let Some(p) = self.options.progress {
            p.files_done
                .fetch_add(files.len() as u64, Ordering::Relaxed);
            p.bytes_done
                .fetch_add(bytes.saturating_sub(counted), Ordering::Relaxed);
        }
        let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
        out.files += files.len();
        out.rows += rows;
        out.bytes += bytes;
        out.loaded
            .extend(files.iter().map(|f| self.objects.display(&f.meta.key)));
    }

    /// The columns of one file as a server-side COPY reads it, by position
    /// (name, type): a CSV file's header (or the declared columns when it
    /// has none), a Parquet file's schema; JSON is matched by name.
    fn server_columns(
        &self,
        declared: &[(String, String)],
        f: &Found,
    ) -> Result<Vec<(String, String)>, LoadError> {
        let d = self.adapter.dialect();
        let text = d.declared_type("text");
        let typed = |n: String, fallback: String| {
            let t = declared
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(&n))
                .map(|(_, t)| t.clone())
                .unwrap_or(fallback);
            (n, t)
        };
        Ok(match &self.ext.format {
            FileFormat::Parquet => parquet_columns(self.objects, &f.meta, &text)?
                .into_iter()
                .map(|(n, t)| typed(n, t))
                .collect(),
            FileFormat::Csv(o) if o.skip_header_rows > 0 => {
                inferred_columns(self.objects, self.ext, &f.meta)?
                    .into_iter()
                    .map(|n| typed(n, text.clone()))
                    .collect()
            }
            _ => self
                .load_columns
                .iter()
                .map(|n| typed(n.clone(), text.clone()))
                .collect(),
        })
    }

    /// Redshift: one transaction COPYs the new files from S3, one manifest
    /// per group of files read alike (same columns, partition values and
    /// compression).
    fn copy_on_server(
        &self,
        file_columns: &[(String, String)],
        batches: &[(Vec<&Found>, Clear)],
        reload: &[String],
        out: &mut TableOutcome,
    ) -> Result<(), LoadError> {
        use crate::adapter::dialect::{LoadSource, ObjectCompression, ObjectFormat};
        let d = self.adapter.dialect();
        let files: Vec<&Found> = batches
            .iter()
            .flat_map(|(f, _)| f.iter().copied())
            .collect();
        let mut clear = Clear::Nothing;
        for (_, c) in batches {
            clear = match (clear, c) {
                (Clear::All, _) | (_, Clear::All) => Clear::All,
                (Clear::Files(mut a), Clear::Files(b)) => {
                    a.extend(b.iter().cloned());
                    Clear::Files(a)
                }
                (Clear::Nothing, c) => c.clone(),
                (c, Clear::Nothing) => c,
            };
        }
        if files.is_empty() && clear != Clear::All {
            return Ok(());
        }
        let Some(stage) = self.adapter.seed_stage() else {
            return Err(LoadError::new(format!(
                "{} loads files with a manifest Strata writes to S3: set s3_staging_dir and iam_role in the profile",
                d.name()
            )));
        };
        let format = match &self.ext.format {
            FileFormat::Csv(o) => ObjectFormat::Csv {
                delimiter: o.delimiter as char,
                header_rows: o.skip_header_rows as u64,
            },
            FileFormat::JsonLines => ObjectFormat::JsonLines,
            FileFormat::Parquet => ObjectFormat::Parquet,
        };
        let compression_of = |key: &str| match (&self.ext.format, self.ext.compression) {
            (FileFormat::Parquet, _) => ObjectCompression::None,
            (_, external::Compression::Gzip) => ObjectCompression::Gzip,
            (_, external::Compression::Zstd) => ObjectCompression::Zstd,
            (_, external::Compression::Auto) if key.ends_with(".gz") => ObjectCompression::Gzip,
            (_, external::Compression::Auto) if key.ends_with(".zst") || key.ends_with(".zstd") => {
                ObjectCompression::Zstd
            }
            _ => ObjectCompression::None,
        };
        /// What the files of one COPY share.
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        struct GroupKey {
            partitions: Vec<String>,
            /// The file key, when each row records it.
            file: String,
            compression: u8,
            columns: Vec<(String, String)>,
        }
        let loaded_at = self.loaded_at();
        let mut groups: std::collections::BTreeMap<GroupKey, Vec<&Found>> = Default::default();
        // Empty files have no rows (and no Parquet footer): recorded, not copied.
        let mut empty: Vec<&Found> = Vec::new();
        for f in &files {
            if f.meta.size == 0 {
                empty.push(f);
                continue;
            }
            let key = GroupKey {
                partitions: f.partitions.clone(),
                file: if self.ext.load.metadata_columns {
                    f.meta.key.clone()
                } else {
                    String::new()
                },
                compression: compression_of(&f.meta.key) as u8,
                columns: self.server_columns(file_columns, f)?,
            };
            groups.entry(key).or_default().push(f);
        }
        let table = self.target.replace(['"', '`'], "");
        let record = |f: &Found| FileRecord {
            key: f.meta.key.clone(),
            size: f.meta.size,
            version: f.meta.version.clone(),
        };
        let mut staged = Vec::new();
        let mut copies = Vec::new();
        let result = (|| -> Result<Vec<String>, LoadError> {
            for (i, (key, group)) in groups.iter().enumerate() {
                let objects: Vec<(String, u64)> = group
                    .iter()
                    .map(|f| {
                        (
                            self.objects
                                .warehouse_url(&f.meta.key)
                                .unwrap_or_else(|| self.objects.display(&f.meta.key)),
                            f.meta.size,
                        )
                    })
                    .collect();
                let object = stage
                    .put(
                        &format!(
                            "manifests/{}/{table}-{i}.manifest",
                            self.options.invocation_id
                        ),
                        plan::manifest(&objects).as_bytes(),
                    )
                    .map_err(|e| {
                        LoadError::new(format!("writing the load's manifest: {}", e.message))
                    })?;
                staged.push(object.clone());
                let mut constants: Vec<(String, String)> = self
                    .ext
                    .partitions
                    .iter()
                    .zip(&key.partitions)
                    .map(|(p, v)| {
                        (
                            p.name.clone(),
                            format!("cast({} as {})", d.quote_literal(v), p.data_type),
                        )
                    })
                    .collect();
                if self.ext.load.metadata_columns {
                    constants.push((external::FILE_COLUMN.into(), d.quote_literal(&key.file)));
                    constants.push((
                        external::LOADED_AT_COLUMN.into(),
                        format!(
                            "cast({} as {})",
                            d.quote_literal(&loaded_at),
                            d.timestamp_type()
                        ),
                    ));
                }
                // The table's columns among the files' (new ones ignored
                // when the table lacks them).
                let load_columns: Vec<String> = key
                    .columns
                    .iter()
                    .filter(|(n, _)| self.load_columns.iter().any(|c| c.eq_ignore_ascii_case(n)))
                    .map(|(n, _)| n.clone())
                    .collect();
                copies.push(plan::ServerCopy {
                    source: LoadSource::S3Manifest {
                        url: object.url.clone(),
                        iam_role: stage.iam_role().to_string(),
                        format: format.clone(),
                        compression: compression_of(&group[0].meta.key),
                    },
                    columns: key.columns.clone(),
                    load_columns,
                    constants,
                    files: group.iter().map(|f| record(f)).collect(),
                });
            }
            let mut statements = plan::server_load(
                d,
                &plan::ServerLoad {
                    target: self.target.to_string(),
                    history: self.history.to_string(),
                    clear: clear.clone(),
                    reloaded: reload.to_vec(),
                    copies: copies.clone(),
                    invocation_id: self.options.invocation_id.to_string(),
                },
                external::FILE_COLUMN,
            );
            if !empty.is_empty() {
                let records: Vec<FileRecord> = empty.iter().map(|f| record(f)).collect();
                statements.push(plan::history_insert_many(
                    d,
                    self.history,
                    self.target,
                    &records,
                    "0",
                    self.options.invocation_id,
                ));
            }
            Ok(statements)
        })();
        let statements = match result {
            Ok(s) => s,
            Err(e) => {
                for o in &staged {
                    stage.remove(o);
                }
                return Err(e);
            }
        };
        let result = self.adapter.execute(&Batch::atomic(statements.clone()));
        let urls: Vec<String> = files
            .iter()
            .filter_map(|f| self.objects.warehouse_url(&f.meta.key))
            .collect();
        // Why a COPY failed, from the warehouse's load errors.
        let detail = match &result {
            Err(e)
                if e.statement
                    .and_then(|i| statements.get(i))
                    .is_some_and(|s| s.starts_with("copy ")) =>
            {
                let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
                d.load_errors_sql(&refs)
                    .and_then(|sql| self.adapter.query(&sql).ok())
                    .map(|t| {
                        t.rows
                            .iter()
                            .map(|r| {
                                let at = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                                format!("{}:{}: column {}: {}", at(0), at(1), at(2), at(3))
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        for o in &staged {
            // The manifests have served (or failed); either way they go.
            stage.remove(o);
        }
        match result {
            Ok(r) => {
                let rows = statements
                    .iter()
                    .zip(&r.rows_affected)
                    .filter(|(s, _)| s.starts_with("copy "))
                    .filter_map(|(_, n)| *n)
                    .sum();
                if let Some(p) = self.options.progress {
                    p.rows.fetch_add(rows, Ordering::Relaxed);
                }
                self.done(&files, rows, 0, &Mutex::new(out));
                Ok(())
            }
            Err(e) => {
                let at = e.statement.and_then(|i| statements.get(i));
                if at.is_some_and(|s| s.starts_with("select cast('already loaded: '")) {
                    // Another run loaded some of these files while this one
                    // waited: nothing was loaded; the caller looks again.
                    out.concurrent
                        .extend(files.iter().map(|f| self.objects.display(&f.meta.key)));
                    out.look_again = true;
                    return Ok(());
                }
                let mut message = e.message.clone();
                if !detail.is_empty() {
                    message = format!("{message}\n{}", detail.join("\n"));
                }
                Err(LoadError {
                    message: format!("{message}\n  (nothing of this table's load was committed)"),
                    statement: at.cloned(),
                })
            }
        }
    }

    /// Postgres: the rows stream through `COPY ... FROM STDIN`, each batch in
    /// a transaction of its own, several batches at once on their own
    /// connections.
    fn stream_from_client(
        &self,
        batches: &[(Vec<&Found>, Clear)],
        out: &mut TableOutcome,
    ) -> Result<(), LoadError> {
        let d = self.adapter.dialect();
        let copy_columns = self.copy_columns();
        let copy = plan::load_copy(d, self.target, &copy_columns);
        let shape = rows::Shape {
            format: self.ext.format.clone(),
            compression: self.ext.compression,
            columns: self.load_columns.clone(),
        };
        let loaded_at = self.loaded_at();
        let skip_lines = match &self.ext.format {
            FileFormat::Csv(o) => o.skip_header_rows as u64,
            _ => 0,
        };
        let out = Mutex::new(out);
        let failure: Mutex<Option<LoadError>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        let next = AtomicUsize::new(0);
        // Without a lock held across the load, transactions of one table
        // take turns anyway: one at a time.
        let workers = if self.lock_each {
            1
        } else {
            self.options.file_threads.clamp(1, batches.len().max(1))
        };
        let one = |files: &[&Found], clear: &Clear| -> Result<(), LoadError> {
            let mut before =
                plan::load_before(d, self.target, self.history, clear, external::FILE_COLUMN);
            if !self.lock_each {
                before.remove(0);
            }
            let list: Vec<(String, rows::FileInfo)> = files
                .iter()
                .map(|f| {
                    let mut extra = f.partitions.clone();
                    if self.ext.load.metadata_columns {
                        extra.push(f.meta.key.clone());
                        extra.push(loaded_at.clone());
                    }
                    let info = rows::FileInfo {
                        display: self.objects.display(&f.meta.key),
                        extra,
                    };
                    (f.meta.key.clone(), info)
                })
                .collect();
            let src = files::source_for(self.options.project_dir, &self.ext.location)
                .map_err(LoadError::new)?;
            // Bytes read, for the progress bar (a local Parquet file is read
            // in place and counted when it is done).
            let read = Arc::new(AtomicU64::new(0));
            let counters: Vec<Arc<AtomicU64>> = match self.options.progress {
                Some(p) => vec![read.clone(), p.bytes_read.clone()],
                None => Vec::new(),
            };
            let open: rows::Opener = Box::new(move |k: &str| {
                let reader = src.open(k)?;
                let reader: Box<dyn std::io::Read + Send> = if counters.is_empty() {
                    reader
                } else {
                    Box::new(rows::Counting::new(reader, counters.clone()))
                };
                Ok(rows::Opened {
                    reader,
                    path: src.local_path(k),
                })
            });
            let mut stream = rows::RowStream::new(shape.clone(), list, open);
            if let Some(p) = self.options.progress {
                stream = stream.counting(p.rows.clone());
            }
            let counts = stream.counts.clone();
            let mut stream = rows::Prefetch::new(stream, 4);
            let after = || {
                files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let n = counts
                            .get(i)
                            .map(|c| c.load(Ordering::Relaxed))
                            .unwrap_or(0);
                        self.record(f, n)
                    })
                    .collect::<Vec<_>>()
            };
            match self
                .adapter
                .load_stream(&before, &copy, &mut stream, &after)
            {
                Ok(rows) => {
                    self.done(files, rows, read.load(Ordering::Relaxed), &out);
                    Ok(())
                }
                // Another run recorded the file first: its rows are there once.
                Err(e) if e.sqlstate.as_deref() == Some("23505") && files.len() == 1 => {
                    if let Some(p) = self.options.progress {
                        p.files_done.fetch_add(1, Ordering::Relaxed);
                        p.bytes_done
                            .fetch_add(files[0].meta.size, Ordering::Relaxed);
                    }
                    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                    out.concurrent
                        .extend(files.iter().map(|f| self.objects.display(&f.meta.key)));
                    Ok(())
                }
                Err(e) => {
                    let copy_at = before.len();
                    let mut message = e.message.clone();
                    // COPY names the line of its stream: with one file, the file's line.
                    if e.statement == Some(copy_at) && files.len() == 1 {
                        if let Some(line) = crate::sql::copy_error_line(&message) {
                            message = format!(
                                "{}:{}: {message}",
                                self.objects.display(&files[0].meta.key),
                                line + skip_lines
                            );
                        }
                    }
                    let statement = e.statement.map(|i| match i.cmp(&copy_at) {
                        std::cmp::Ordering::Less => before.get(i).cloned().unwrap_or_default(),
                        std::cmp::Ordering::Equal => copy.clone(),
                        std::cmp::Ordering::Greater => String::new(),
                    });
                    Err(LoadError {
                        message,
                        statement: statement.filter(|s| !s.is_empty()),
                    })
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((files, clear)) = batches.get(i) else {
                        break;
                    };
                    if let Err(e) = one(files, clear) {
                        stop.store(true, Ordering::SeqCst);
                        let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                        f.get_or_insert(e);
                        break;
                    }
                });
            }
        });
        let out = out.into_inner().unwrap_or_else(|p| p.into_inner());
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(mut e) => {
                let n = out.files;
                e.message = format!(
                    "{}\n  (nothing of this file's batch was loaded; {n} other file{} loaded stay{})",
                    e.message,
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "s" } else { "" }
                );
                Err(e)
            }
        }
    }
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
