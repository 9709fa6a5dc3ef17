//! A source table's `external:` block: where its files are, how to read them,
//! and how Strata loads them into the table (`strata load`). The location,
//! format and partition keys are dbt-external-tables'; Strata's own load
//! settings sit under `load:`.
//!
//! ```yaml
//! external:
//!   location: curated/transactions/      # s3://bucket/prefix/, file://, or relative to the project
//!   file_format: parquet                 # parquet | csv | json (JSON lines)
//!   pattern: '.*[.]parquet$'             # a regex on the path under the location
//!   partitions:                          # Hive-style `name=value/` path segments
//!     - {name: dt, data_type: date}
//!   options: {delimiter: ',', skip_header_rows: 1, compression: gzip}
//!   load:
//!     mode: append                       # append | replace
//!     on_new_columns: add                # add | ignore | fail
//!     on_changed_file: skip              # skip | reload | error
//!     metadata_columns: true             # _strata_source_file, _strata_loaded_at
//! ```

use serde_yaml::Value as Yaml;

/// Where a source's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory, relative to the project unless absolute.
    Local(String),
    /// `s3://bucket/prefix/`.
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(s: &str) -> Result<Location, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("location '{s}' names no bucket"));
            }
            let mut prefix = prefix.to_string();
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() {
            return Err("location is empty".into());
        }
        if path.contains("://") {
            return Err(format!(
                "location '{s}' is neither s3:// nor a local path (file:// or relative)"
            ));
        }
        Ok(Location::Local(path.to_string()))
    }
}

/// How a file's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// By the file's extension (`.gz`, `.zst`), else none.
    Auto,
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    /// Lines skipped at the top of each file (1 for a header).
    pub skip_header_rows: usize,
}

/// The files' format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv(CsvOptions),
    /// One JSON object per line.
    JsonLines,
}

impl FileFormat {
    pub fn name(&self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv(_) => "csv",
            FileFormat::JsonLines => "json",
        }
    }
}

/// A column filled from `name=value/` path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub data_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// New files add their rows.
    #[default]
    Append,
    /// Each load replaces the table's rows with the files' (all of them).
    Replace,
}

/// Columns in the files that the table does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NewColumns {
    /// Added to the table before the load.
    #[default]
    Add,
    /// Not loaded.
    Ignore,
    /// The load fails, naming them.
    Fail,
}

/// A file whose size or ETag changed under a key already loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangedFiles {
    /// Left alone: the rows loaded before stay (a warning says so).
    #[default]
    Skip,
    /// Its earlier rows are deleted and the new ones loaded, in one
    /// transaction (needs the metadata columns).
    Reload,
    /// The load of that table fails.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadSettings {
    pub mode: LoadMode,
    pub on_new_columns: NewColumns,
    pub on_changed_file: ChangedFiles,
    /// `_strata_source_file` and `_strata_loaded_at` columns on each row.
    pub metadata_columns: bool,
}

/// A source table's files and how they load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub location: Location,
    pub format: FileFormat,
    pub compression: Compression,
    /// A regex the path under the location must match.
    pub pattern: Option<String>,
    pub partitions: Vec<Partition>,
    pub load: LoadSettings,
}

/// The metadata column naming the file a row came from.
pub const FILE_COLUMN: &str = "_strata_source_file";
/// The metadata column with the time a row was loaded.
pub const LOADED_AT_COLUMN: &str = "_strata_loaded_at";

fn choice<T: Copy>(
    m: &serde_yaml::Mapping,
    key: &str,
    options: &[(&str, T)],
    default: T,
) -> Result<T, String> {
    match m.get(key) {
        None | Some(Yaml::Null) => Ok(default),
        Some(Yaml::String(s)) => options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                format!("{key} '{s}' is not one of {}", names.join(", "))
            }),
        Some(other) => Err(format!("{key} must be a string, not {other:?}")),
    }
}

fn string(m: &serde_yaml::Mapping, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Yaml::Null) => Ok(None),
        Some(Yaml::String(s)) => Ok(Some(s.clone())),
        Some(Yaml::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("{key} must be a string, not {other:?}")),
    }
}

impl External {
    /// Reads an `external:` block; `Ok(None)` when it says nothing Strata
    /// loads (no `location`, as for a table only declared for Spectrum).
    pub fn parse(y: &Yaml) -> Result<Option<External>, String> {
        let Yaml::Mapping(m) = y else {
            return Err("external must be a mapping".into());
        };
        let Some(location) = string(m, "location")? else {
            return Ok(None);
        };
        let location = Location::parse(&location)?;
        let empty = serde_yaml::Mapping::new();
        let options = match m.get("options") {
            Some(Yaml::Mapping(o)) => o,
            None | Some(Yaml::Null) => &empty,
            Some(_) => return Err("external.options must be a mapping".into()),
        };
        let delimiter = match string(options, "delimiter")?.or(string(options, "field_delimiter")?)
        {
            None => b',',
            Some(d) if d == "\\t" => b'\t',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => return Err(format!("options.delimiter '{d}' must be one character")),
        };
        let skip = match options
            .get("skip_header_rows")
            .or(options.get("skip_leading_rows"))
        {
            None | Some(Yaml::Null) => match options.get("header") {
                Some(Yaml::Bool(false)) => 0,
                _ => 1,
            },
            Some(Yaml::Number(n)) => n
                .as_u64()
                .ok_or("options.skip_header_rows must be a whole number")?
                as usize,
            Some(_) => return Err("options.skip_header_rows must be a whole number".into()),
        };
        let format_name = string(m, "file_format")?
            .ok_or("external needs a file_format (parquet, csv or json)")?;
        let format = match format_name.to_lowercase().as_str() {
            "parquet" => FileFormat::Parquet,
            "csv" | "text" => FileFormat::Csv(CsvOptions {
                delimiter,
                skip_header_rows: skip,
            }),
            "json" | "jsonl" | "ndjson" => FileFormat::JsonLines,
            other => {
                return Err(format!(
                    "file_format '{other}' is not one of parquet, csv, json"
                ))
            }
        };
        let compression = choice(
            options,
            "compression",
            &[
                ("auto", Compression::Auto),
                ("none", Compression::None),
                ("gzip", Compression::Gzip),
                ("zstd", Compression::Zstd),
            ],
            Compression::Auto,
        )
        .map_err(|e| format!("options.{e}"))?;
        let pattern = string(m, "pattern")?;
        if let Some(p) = &pattern {
            regex::Regex::new(p).map_err(|e| format!("pattern '{p}' is not a regex: {e}"))?;
        }
        let mut partitions = Vec::new();
        match m.get("partitions") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Sequence(items)) => {
                for p in items {
                    let Yaml::Mapping(pm) = p else {
                        return Err(
                            "each partition must be a mapping with name and data_type".into()
                        );
                    };
                    let name = string(pm, "name")?.ok_or("a partition needs a name")?;
                    let data_type = string(pm, "data_type")?
                        .ok_or_else(|| format!("partition '{name}' needs a data_type"))?;
                    partitions.push(Partition { name, data_type });
                }
            }
            Some(_) => return Err("partitions must be a list".into()),
        }
        let load = match m.get("load") {
            None | Some(Yaml::Null) => LoadSettings::default(),
            Some(Yaml::Mapping(l)) => {
                let known = [
                    "mode",
                    "on_new_columns",
                    "on_changed_file",
                    "metadata_columns",
                ];
                if let Some(k) = l
                    .keys()
                    .filter_map(Yaml::as_str)
                    .find(|k| !known.contains(k))
                {
                    return Err(format!(
                        "load.{k} is not a load setting (known: {})",
                        known.join(", ")
                    ));
                }
                let on_changed_file = choice(
                    l,
                    "on_changed_file",
                    &[
                        ("skip", ChangedFiles::Skip),
                        ("reload", ChangedFiles::Reload),
                        ("error", ChangedFiles::Error),
                    ],
                    ChangedFiles::Skip,
                )
                .map_err(|e| format!("load.{e}"))?;
                let metadata_columns = match l.get("metadata_columns") {
                    None | Some(Yaml::Null) => on_changed_file == ChangedFiles::Reload,
                    Some(Yaml::Bool(b)) => *b,
                    Some(_) => return Err("load.metadata_columns must be true or false".into()),
                };
                if on_changed_file == ChangedFiles::Reload && !metadata_columns {
                    return Err("load.on_changed_file 'reload' needs metadata_columns: true (rows are found by the file they came from)".into());
                }
                LoadSettings {
                    mode: choice(
                        l,
                        "mode",
                        &[("append", LoadMode::Append), ("replace", LoadMode::Replace)],
                        LoadMode::Append,
                    )
                    .map_err(|e| format!("load.{e}"))?,
                    on_new_columns: choice(
                        l,
                        "on_new_columns",
                        &[
                            ("add", NewColumns::Add),
                            ("ignore", NewColumns::Ignore),
                            ("fail", NewColumns::Fail),
                        ],
                        NewColumns::Add,
                    )
                    .map_err(|e| format!("load.{e}"))?,
                    on_changed_file,
                    metadata_columns,
                }
            }
            Some(_) => return Err("load must be a mapping".into()),
        };
        Ok(Some(External {
            location,
            format,
            compression,
            pattern,
            partitions,
            load,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Option<External>, String> {
        External::parse(&serde_yaml::from_str(y).unwrap())
    }

    #[test]
    fn reads_dbt_external_tables_keys_and_strata_load_settings() {
        let e = parse(
            "location: s3://curated/transactions\nfile_format: csv\noptions: {delimiter: '|', skip_header_rows: 0, compression: gzip}\npartitions: [{name: dt, data_type: date}]\nload: {mode: replace, on_changed_file: reload}\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            e.location,
            Location::S3 {
                bucket: "curated".into(),
                prefix: "transactions/".into()
            }
        );
        assert_eq!(
            e.format,
            FileFormat::Csv(CsvOptions {
                delimiter: b'|',
                skip_header_rows: 0
            })
        );
        assert_eq!(e.compression, Compression::Gzip);
        assert_eq!(e.partitions[0].name, "dt");
        assert_eq!(e.load.mode, LoadMode::Replace);
        assert!(
            e.load.metadata_columns,
            "reload implies the metadata columns"
        );
        let local = parse("location: file://data/x\nfile_format: json\n")
            .unwrap()
            .unwrap();
        assert_eq!(local.location, Location::Local("data/x".into()));
        assert_eq!(parse("file_format: csv\n").unwrap(), None);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |y: &str| parse(y).unwrap_err();
        assert!(err("location: x\nfile_format: avro\n").contains("avro"));
        assert!(err("location: x\n").contains("file_format"));
        assert!(err("location: x\nfile_format: csv\nload: {mode: upsert}\n").contains("upsert"));
        assert!(err("location: x\nfile_format: csv\nload: {moed: append}\n").contains("moed"));
        assert!(err("location: x\nfile_format: csv\npattern: '('\n").contains("regex"));
        assert!(err("location: gs://b/x\nfile_format: csv\n").contains("s3://"));
        assert!(err(
            "location: x\nfile_format: csv\nload: {on_changed_file: reload, metadata_columns: false}\n"
        )
        .contains("metadata_columns"));
    }
}
