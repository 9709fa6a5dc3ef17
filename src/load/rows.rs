//! Files as the rows COPY reads: each file's records (CSV, or JSON lines)
//! re-encoded as CSV in the table's column order, with the partition values
//! from the file's path and the metadata columns appended, produced a chunk
//! at a time so memory stays flat whatever the file's size. A record that
//! cannot be read stops the stream with an error naming the file and line.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::manifest::external::{Compression, FileFormat};

/// What a file holds, for the error that names where a problem is.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// As the user knows it: `curated/merchants/part-1.csv`, `s3://b/k`.
    pub display: String,
    /// Values appended to each row (partition values, then metadata).
    pub extra: Vec<String>,
}

/// How the stream maps each file's fields onto the table's columns.
#[derive(Debug, Clone)]
pub struct Shape {
    pub format: FileFormat,
    pub compression: Compression,
    /// The file columns loaded, in COPY order (before `extra`).
    pub columns: Vec<String>,
}

/// A file opened for reading: its bytes, and its path when it is local
/// (Parquet reads a local file by seeking, without holding it in memory).
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    pub path: Option<std::path::PathBuf>,
}

/// Opens a file.
pub type Opener = Box<dyn FnMut(&str) -> std::io::Result<Opened> + Send>;

/// Decompresses by the configured compression, or by the file's extension.
pub fn decompress(
    name: &str,
    compression: Compression,
    raw: Box<dyn Read + Send>,
) -> std::io::Result<Box<dyn Read + Send>> {
    let c = match compression {
        Compression::Auto if name.ends_with(".gz") => Compression::Gzip,
        Compression::Auto if name.ends_with(".zst") || name.ends_with(".zstd") => Compression::Zstd,
        Compression::Auto => Compression::None,
        c => c,
    };
    Ok(match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
        _ => raw,
    })
}

use crate::sql::copy_csv_field as push_field;

/// Whether [`batch_cell`] writes values of this type.
fn batch_supported(t: &arrow_schema::DataType) -> bool {
    use arrow_schema::DataType as T;
    matches!(
        t,
        T::Utf8
            | T::LargeUtf8
            | T::Boolean
            | T::Int8
            | T::Int16
            | T::Int32
            | T::Int64
            | T::UInt8
            | T::UInt16
            | T::UInt32
            | T::UInt64
            | T::Float32
            | T::Float64
            | T::Date32
            | T::Timestamp(_, _)
            | T::Decimal128(_, _)
    )
}

/// One value of a record batch column as COPY's CSV reads it (nothing: NULL).
fn batch_cell(col: &dyn arrow_array::Array, i: usize, out: &mut Vec<u8>) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::{DataType as T, TimeUnit};
    use std::io::Write;
    if col.is_null(i) {
        return;
    }
    let epoch = chrono::DateTime::UNIX_EPOCH.naive_utc();
    let _ = match col.data_type() {
        T::Utf8 => {
            push_field(out, Some(col.as_string::<i32>().value(i)));
            Ok(())
        }
        T::LargeUtf8 => {
            push_field(out, Some(col.as_string::<i64>().value(i)));
            Ok(())
        }
        T::Boolean => out.write_all(if col.as_boolean().value(i) {
            b"true"
        } else {
            b"false"
        }),
        T::Int8 => write!(out, "{}", col.as_primitive::<Int8Type>().value(i)),
        T::Int16 => write!(out, "{}", col.as_primitive::<Int16Type>().value(i)),
        T::Int32 => write!(out, "{}", col.as_primitive::<Int32Type>().value(i)),
        T::Int64 => write!(out, "{}", col.as_primitive::<Int64Type>().value(i)),
        T::UInt8 => write!(out, "{}", col.as_primitive::<UInt8Type>().value(i)),
        T::UInt16 => write!(out, "{}", col.as_primitive::<UInt16Type>().value(i)),
        T::UInt32 => write!(out, "{}", col.as_primitive::<UInt32Type>().value(i)),
        T::UInt64 => write!(out, "{}", col.as_primitive::<UInt64Type>().value(i)),
        T::Float32 => write!(out, "{}", col.as_primitive::<Float32Type>().value(i)),
        T::Float64 => write!(out, "{}", col.as_primitive::<Float64Type>().value(i)),
        T::Date32 => {
            use chrono::Datelike;
            let d = epoch.date()
                + chrono::Duration::days(i64::from(col.as_primitive::<Date32Type>().value(i)));
            // Written by hand: chrono's format() parses its pattern per call.
            write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
        }
        T::Timestamp(unit, _) => {
            let (v, per_sec) = match unit {
                TimeUnit::Second => (col.as_primitive::<TimestampSecondType>().value(i), 1),
                TimeUnit::Millisecond => (
                    col.as_primitive::<TimestampMillisecondType>().value(i),
                    1_000,
                ),
                TimeUnit::Microsecond => (
                    col.as_primitive::<TimestampMicrosecondType>().value(i),
                    1_000_000,
                ),
                TimeUnit::Nanosecond => (
                    col.as_primitive::<TimestampNanosecondType>().value(i),
                    1_000_000_000,
                ),
            };
            let secs = v.div_euclid(per_sec);
            let frac = v.rem_euclid(per_sec);
            let nanos = (frac as i128 * 1_000_000_000 / per_sec as i128) as u32;
            match chrono::DateTime::from_timestamp(secs, nanos) {
                Some(t) => {
                    use chrono::{Datelike, Timelike};
                    let t = t.naive_utc();
                    let r = write!(
                        out,
                        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                        t.year(),
                        t.month(),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second()
                    );
                    if nanos > 0 {
                        write!(out, ".{:09}", nanos)
                    } else {
                        r
                    }
                }
                None => Ok(()),
            }
        }
        T::Decimal128(_, scale) => {
            let v = col.as_primitive::<Decimal128Type>().value(i);
            let scale = *scale as u32;
            if scale == 0 {
                write!(out, "{v}")
            } else {
                let p = 10i128.pow(scale);
                let sign = if v < 0 { "-" } else { "" };
                let a = v.unsigned_abs();
                write!(
                    out,
                    "{sign}{}.{:0width$}",
                    a / p as u128,
                    a % p as u128,
                    width = scale as usize
                )
            }
        }
        _ => Ok(()),
    };
}

/// The rows of a Parquet file, a row group at a time: a local file is read
/// in place, any other is held in memory while it loads.
fn parquet_rows(file: std::fs::File) -> Result<parquet::record::reader::RowIter<'static>, String> {
    use parquet::file::reader::SerializedFileReader;
    let reader: Box<dyn parquet::file::reader::FileReader> =
        Box::new(SerializedFileReader::new(file).map_err(|e| e.to_string())?);
    Ok(parquet::record::reader::RowIter::from_file_into(reader))
}

/// A Parquet file to read by seeking (its footer first): the local file
/// itself, or a remote object spooled to an unlinked temporary file, so
/// memory stays flat however large the object is.
pub fn parquet_file(opened: Opened) -> std::io::Result<std::fs::File> {
    use std::io::Seek;
    if let Some(p) = opened.path {
        return std::fs::File::open(p);
    }
    static SPOOLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SPOOLED.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("strata-load-{}-{n}.parquet", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Unlinked at once: the space is freed when the file closes, even on a crash.
    let _ = std::fs::remove_file(&path);
    let mut reader = opened.reader;
    std::io::copy(&mut reader, &mut file)?;
    file.rewind()?;
    Ok(file)
}

/// A record batch reader over the file, when every loaded column has a
/// type [`batch_cell`] writes; else the file back, for the row reader.
#[allow(clippy::type_complexity)]
fn parquet_batches(
    file: std::fs::File,
    columns: &[String],
) -> Result<
    Result<
        (
            parquet::arrow::arrow_reader::ParquetRecordBatchReader,
            Vec<Option<usize>>,
        ),
        std::fs::File,
    >,
    String,
> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let index_of = |schema: &arrow_schema::Schema| -> Option<Vec<Option<usize>>> {
        let index: Vec<Option<usize>> = columns
            .iter()
            .map(|c| {
                schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(c))
            })
            .collect();
        index
            .iter()
            .flatten()
            .all(|i| batch_supported(schema.field(*i).data_type()))
            .then_some(index)
    };
    let again = file.try_clone().map_err(|e| e.to_string())?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    match index_of(b.schema()) {
        Some(index) => Ok(Ok((
            b.with_batch_size(8192).build().map_err(|e| e.to_string())?,
            index,
        ))),
        None => Ok(Err(again)),
    }
}

/// Record readers over one decompressed file.
enum Records {
    Csv {
        reader: csv::Reader<Box<dyn Read + Send>>,
        /// File column index of each loaded column (`None`: not in the file).
        index: Vec<Option<usize>>,
        record: csv::StringRecord,
        width: usize,
    },
    Json {
        lines: BufReader<Box<dyn Read + Send>>,
        line: usize,
        buf: String,
    },
    /// Record batches, column by column: the fast path, for files whose
    /// columns all have types [`batch_cell`] writes.
    Batches {
        reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
        batch: Option<arrow_array::RecordBatch>,
        /// The next row of `batch`.
        at: usize,
        /// Batch column of each loaded column.
        index: Vec<Option<usize>>,
        rows: u64,
    },
    Parquet {
        rows: parquet::record::reader::RowIter<'static>,
        /// Row field index of each loaded column, from the first row.
        index: Option<Vec<Option<usize>>>,
        row: u64,
    },
}

/// A Parquet value as text COPY reads (`None`: NULL). Dates and timestamps
/// in ISO form (timestamps as UTC), decimals at their scale, nested values
/// as JSON.
fn parquet_text(f: &parquet::record::Field) -> Option<String> {
    use parquet::record::Field as F;
    let epoch = chrono::DateTime::UNIX_EPOCH.naive_utc();
    Some(match f {
        F::Null => return None,
        F::Bool(b) => b.to_string(),
        F::Str(s) => s.clone(),
        F::Bytes(b) => match b.as_utf8() {
            Ok(s) => s.to_string(),
            Err(_) => format!(
                "\\x{}",
                b.data()
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<String>()
            ),
        },
        F::Date(days) => (epoch.date() + chrono::Duration::days(i64::from(*days)))
            .format("%Y-%m-%d")
            .to_string(),
        F::TimestampMillis(ms) => (epoch + chrono::Duration::milliseconds(*ms))
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
        F::TimestampMicros(us) => (epoch + chrono::Duration::microseconds(*us))
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        F::TimeMillis(ms) => (chrono::NaiveTime::MIN
            + chrono::Duration::milliseconds(i64::from(*ms)))
        .format("%H:%M:%S%.3f")
        .to_string(),
        F::TimeMicros(us) => (chrono::NaiveTime::MIN + chrono::Duration::microseconds(*us))
            .format("%H:%M:%S%.6f")
            .to_string(),
        F::Group(_) | F::ListInternal(_) | F::MapInternal(_) => f.to_json_value().to_string(),
        // Numbers and decimals print as Parquet's own display does.
        other => other.to_string(),
    })
}

/// A reader that adds the bytes it reads to counters.
pub struct Counting {
    inner: Box<dyn Read + Send>,
    counters: Vec<Arc<AtomicU64>>,
}

impl Counting {
    pub fn new(inner: Box<dyn Read + Send>, counters: Vec<Arc<AtomicU64>>) -> Counting {
        Counting { inner, counters }
    }
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for c in &self.counters {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// The COPY stream over a list of files.
pub struct RowStream {
    shape: Shape,
    files: std::vec::IntoIter<(String, FileInfo)>,
    open: Opener,
    current: Option<(FileInfo, Records)>,
    out: Vec<u8>,
    pos: usize,
    /// Rows written per file, in order, shared with whoever records them.
    pub counts: Arc<Vec<AtomicU64>>,
    file_index: usize,
    /// Rows written by every stream of the command (a progress bar's count).
    live: Option<Arc<AtomicU64>>,
}

impl RowStream {
    /// Streams `files` (key, info) through `open`.
    pub fn new(shape: Shape, files: Vec<(String, FileInfo)>, open: Opener) -> RowStream {
        let counts = Arc::new((0..files.len()).map(|_| AtomicU64::new(0)).collect());
        RowStream {
            shape,
            files: files.into_iter(),
            open,
            current: None,
            out: Vec::with_capacity(1 << 16),
            pos: 0,
            counts,
            file_index: 0,
            live: None,
        }
    }

    /// Also counts the rows written in `rows`.
    pub fn counting(mut self, rows: Arc<AtomicU64>) -> RowStream {
        self.live = Some(rows);
        self
    }

    fn bad(info: &FileInfo, line: Option<u64>, msg: impl std::fmt::Display) -> std::io::Error {
        let at = match line {
            Some(l) => format!("{}:{l}", info.display),
            None => info.display.clone(),
        };
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{at}: {msg}"))
    }

    fn open_next(&mut self) -> std::io::Result<bool> {
        let Some((key, info)) = self.files.next() else {
            return Ok(false);
        };
        let opened =
            (self.open)(&key).map_err(|e| Self::bad(&info, None, format!("cannot read: {e}")))?;
        if self.shape.format == FileFormat::Parquet {
            let bad =
                |e: String| Self::bad(&info, None, format!("not a readable Parquet file: {e}"));
            let file = parquet_file(opened)
                .map_err(|e| Self::bad(&info, None, format!("cannot read: {e}")))?;
            // An empty file has no rows (and no footer to read).
            if file.metadata().map(|m| m.len()).unwrap_or(1) == 0 {
                self.file_index += 1;
                return Ok(true);
            }
            let file = match parquet_batches(file, &self.shape.columns).map_err(bad)? {
                Ok((reader, index)) => {
                    self.current = Some((
                        info,
                        Records::Batches {
                            reader,
                            batch: None,
                            at: 0,
                            index,
                            rows: 0,
                        },
                    ));
                    return Ok(true);
                }
                // Types the batch path does not write: row by row.
                Err(file) => file,
            };
            let rows = parquet_rows(file)
                .map_err(|e| Self::bad(&info, None, format!("not a readable Parquet file: {e}")))?;
            self.current = Some((
                info,
                Records::Parquet {
                    rows,
                    index: None,
                    row: 0,
                },
            ));
            return Ok(true);
        }
        let data = decompress(&key, self.shape.compression, opened.reader)
            .map_err(|e| Self::bad(&info, None, format!("cannot decompress: {e}")))?;
        let records = match &self.shape.format {
            FileFormat::Csv(o) => {
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(o.delimiter)
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(data);
                // The header names the columns; the table's order wins.
                let mut index: Vec<Option<usize>> =
                    (0..self.shape.columns.len()).map(Some).collect();
                let mut width = self.shape.columns.len();
                let mut record = csv::StringRecord::new();
                for skipped in 0..o.skip_header_rows {
                    if !reader
                        .read_record(&mut record)
                        .map_err(|e| Self::bad(&info, Some(skipped as u64 + 1), e))?
                    {
                        break;
                    }
                    if skipped == 0 {
                        let header: Vec<String> =
                            record.iter().map(|h| h.trim().to_string()).collect();
                        width = header.len();
                        index = self
                            .shape
                            .columns
                            .iter()
                            .map(|c| header.iter().position(|h| h.eq_ignore_ascii_case(c)))
                            .collect();
                    }
                }
                Records::Csv {
                    reader,
                    index,
                    record,
                    width,
                }
            }
            FileFormat::JsonLines => Records::Json {
                lines: BufReader::with_capacity(1 << 16, data),
                line: 0,
                buf: String::new(),
            },
            FileFormat::Parquet => unreachable!("Parquet files are opened above"),
        };
        self.current = Some((info, records));
        Ok(true)
    }

    /// Appends rows to `out` until it holds about 64 KB; false at the end.
    fn fill(&mut self) -> std::io::Result<bool> {
        while self.out.len() < 1 << 16 {
            if self.current.is_none() && !self.open_next()? {
                return Ok(!self.out.is_empty());
            }
            let Some((info, records)) = self.current.as_mut() else {
                continue;
            };
            let wrote = match records {
                Records::Csv {
                    reader,
                    index,
                    record,
                    width,
                } => {
                    let line = reader.position().line();
                    if !reader
                        .read_record(record)
                        .map_err(|e| Self::bad(info, Some(line), e))?
                    {
                        false
                    } else {
                        // A blank line is nothing, as in dbt's seeds.
                        if record.len() == 1 && record.get(0) == Some("") && *width > 1 {
                            continue;
                        }
                        if record.len() != *width {
                            return Err(Self::bad(
                                info,
                                Some(record.position().map(|p| p.line()).unwrap_or(line)),
                                format!(
                                    "the row has {} fields but the header has {}",
                                    record.len(),
                                    width
                                ),
                            ));
                        }
                        for (i, ix) in index.iter().enumerate() {
                            if i > 0 {
                                self.out.push(b',');
                            }
                            // An empty CSV field is NULL, as Redshift's COPY reads it.
                            let v = ix.and_then(|ix| record.get(ix)).filter(|v| !v.is_empty());
                            push_field(&mut self.out, v);
                        }
                        true
                    }
                }
                Records::Batches {
                    reader,
                    batch,
                    at,
                    index,
                    rows,
                } => {
                    if batch.as_ref().is_none_or(|b| *at >= b.num_rows()) {
                        match reader.next() {
                            None => {
                                *batch = None;
                                self.current = None;
                                self.file_index += 1;
                                continue;
                            }
                            Some(b) => {
                                let b = b.map_err(|e| {
                                    Self::bad(info, None, format!("after row {}: {e}", *rows))
                                })?;
                                *batch = Some(b);
                                *at = 0;
                            }
                        }
                    }
                    let Some(b) = batch.as_ref() else { continue };
                    // The whole batch, or until the chunk is full.
                    let mut written = 0u64;
                    while *at < b.num_rows() && self.out.len() < 1 << 16 {
                        for (k, ix) in index.iter().enumerate() {
                            if k > 0 {
                                self.out.push(b',');
                            }
                            if let Some(ix) = ix {
                                batch_cell(b.column(*ix).as_ref(), *at, &mut self.out);
                            }
                        }
                        for v in &info.extra {
                            self.out.push(b',');
                            push_field(&mut self.out, Some(v));
                        }
                        self.out.push(b'\n');
                        *at += 1;
                        written += 1;
                    }
                    *rows += written;
                    if let Some(c) = self.counts.get(self.file_index) {
                        c.fetch_add(written, Ordering::Relaxed);
                    }
                    if let Some(l) = &self.live {
                        l.fetch_add(written, Ordering::Relaxed);
                    }
                    continue;
                }
                Records::Parquet { rows, index, row } => match rows.next() {
                    None => false,
                    Some(r) => {
                        *row += 1;
                        let r =
                            r.map_err(|e| Self::bad(info, None, format!("row {}: {e}", *row)))?;
                        let names: Vec<&String> = r.get_column_iter().map(|(n, _)| n).collect();
                        let ix = index.get_or_insert_with(|| {
                            self.shape
                                .columns
                                .iter()
                                .map(|c| names.iter().position(|n| n.eq_ignore_ascii_case(c)))
                                .collect()
                        });
                        let fields: Vec<&parquet::record::Field> =
                            r.get_column_iter().map(|(_, f)| f).collect();
                        for (i, at) in ix.iter().enumerate() {
                            if i > 0 {
                                self.out.push(b',');
                            }
                            let v = at
                                .and_then(|at| fields.get(at))
                                .and_then(|f| parquet_text(f));
                            push_field(&mut self.out, v.as_deref());
                        }
                        true
                    }
                },
                Records::Json { lines, line, buf } => {
                    buf.clear();
                    let n = lines
                        .read_line(buf)
                        .map_err(|e| Self::bad(info, Some(*line as u64 + 1), e))?;
                    if n == 0 {
                        false
                    } else {
                        *line += 1;
                        if buf.trim().is_empty() {
                            continue;
                        }
                        let value: serde_json::Value = serde_json::from_str(buf).map_err(|e| {
                            Self::bad(info, Some(*line as u64), format!("not a JSON object: {e}"))
                        })?;
                        let serde_json::Value::Object(obj) = value else {
                            return Err(Self::bad(
                                info,
                                Some(*line as u64),
                                "each line must hold one JSON object",
                            ));
                        };
                        for (i, c) in self.shape.columns.iter().enumerate() {
                            if i > 0 {
                                self.out.push(b',');
                            }
                            let v = obj.get(c).or_else(|| {
                                obj.iter()
                                    .find(|(k, _)| k.eq_ignore_ascii_case(c))
                                    .map(|(_, v)| v)
                            });
                            match v {
                                None | Some(serde_json::Value::Null) => {}
                                Some(serde_json::Value::String(s)) => {
                                    push_field(&mut self.out, Some(s))
                                }
                                // Nested values keep their JSON text.
                                Some(other) => push_field(&mut self.out, Some(&other.to_string())),
                            }
                        }
                        true
                    }
                }
            };
            if !wrote {
                self.current = None;
                self.file_index += 1;
                continue;
            }
            let info = &self.current.as_ref().map(|c| &c.0);
            if let Some(info) = info {
                for v in &info.extra {
                    self.out.push(b',');
                    push_field(&mut self.out, Some(v));
                }
            }
            self.out.push(b'\n');
            if let Some(c) = self.counts.get(self.file_index) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(l) = &self.live {
                l.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(true)
    }
}

impl Read for RowStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.out.len() {
            self.out.clear();
            self.pos = 0;
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads ahead on a thread of its own, so decoding the files overlaps with
/// sending the rows; at most `depth` chunks wait, so memory stays bounded.
pub struct Prefetch {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    at: usize,
    done: bool,
}

impl Prefetch {
    pub fn new(mut inner: impl Read + Send + 'static, depth: usize) -> Prefetch {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth);
        std::thread::spawn(move || loop {
            let mut chunk = vec![0u8; 1 << 20];
            let mut filled = 0;
            // Fill a whole chunk (or reach the end) before handing it over.
            let end = loop {
                match inner.read(&mut chunk[filled..]) {
                    Ok(0) => break true,
                    Ok(n) => {
                        filled += n;
                        if filled == chunk.len() {
                            break false;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            };
            chunk.truncate(filled);
            if !chunk.is_empty() && tx.send(Ok(chunk)).is_err() {
                return;
            }
            if end {
                let _ = tx.send(Ok(Vec::new()));
                return;
            }
        });
        Prefetch {
            rx,
            buf: Vec::new(),
            at: 0,
            done: false,
        }
    }
}

impl Read for Prefetch {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(Ok(chunk)) => {
                    self.buf = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::Error::other("the reader stopped")),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::external::CsvOptions;

    fn stream(
        format: FileFormat,
        columns: &[&str],
        files: &[(&str, &str)],
    ) -> std::io::Result<String> {
        let contents: std::collections::HashMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let list = files
            .iter()
            .map(|(k, _)| {
                (
                    k.to_string(),
                    FileInfo {
                        display: format!("data/{k}"),
                        extra: vec![k.to_string()],
                    },
                )
            })
            .collect();
        let open: Opener = Box::new(move |k: &str| {
            Ok(Opened {
                reader: Box::new(std::io::Cursor::new(contents[k].clone().into_bytes())),
                path: None,
            })
        });
        let mut s = RowStream::new(
            Shape {
                format,
                compression: Compression::None,
                columns: columns.iter().map(|c| c.to_string()).collect(),
            },
            list,
            open,
        );
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn csv_rows_follow_the_table_order_with_extras() {
        let csv = FileFormat::Csv(CsvOptions {
            delimiter: b',',
            skip_header_rows: 1,
        });
        let out = stream(
            csv.clone(),
            &["id", "name", "missing"],
            &[
                ("a.csv", "name,id\n\"x, y\",1\n,2\n"),
                ("b.csv", "id,name\n3,z\n"),
            ],
        )
        .unwrap();
        assert_eq!(out, "1,\"x, y\",,a.csv\n2,,,a.csv\n3,z,,b.csv\n");
        let err = stream(csv, &["id"], &[("a.csv", "id,name\n1,a\n2\n")]).unwrap_err();
        assert!(err.to_string().contains("data/a.csv:3"), "{err}");
    }

    #[test]
    fn json_lines_by_key_nested_values_as_json() {
        let out = stream(
            FileFormat::JsonLines,
            &["id", "profile", "note"],
            &[(
                "p.jsonl",
                "{\"id\": 1, \"profile\": {\"tier\": \"gold\"}}\n\n{\"ID\": 2, \"note\": \"\"}\n",
            )],
        )
        .unwrap();
        assert_eq!(
            out,
            "1,\"{\"\"tier\"\":\"\"gold\"\"}\",,p.jsonl\n2,,\"\",p.jsonl\n"
        );
        let err = stream(
            FileFormat::JsonLines,
            &["id"],
            &[("p.jsonl", "{\"id\": 1}\n[1]\n")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("data/p.jsonl:2"), "{err}");
    }

    #[test]
    fn batch_cells_print_as_postgres_reads_them() {
        use arrow_array::{
            Array, Date32Array, Decimal128Array, StringArray, TimestampMicrosecondArray,
        };
        let cell = |a: &dyn Array, i: usize| {
            let mut out = Vec::new();
            batch_cell(a, i, &mut out);
            String::from_utf8(out).unwrap()
        };
        let ts = TimestampMicrosecondArray::from(vec![
            Some(1_709_251_200_000_000),
            Some(1_709_251_200_250_000),
            None,
        ]);
        assert_eq!(cell(&ts, 0), "2024-03-01 00:00:00");
        assert_eq!(cell(&ts, 1), "2024-03-01 00:00:00.250000000");
        assert_eq!(cell(&ts, 2), "");
        let d = Date32Array::from(vec![19723]);
        assert_eq!(cell(&d, 0), "2024-01-01");
        let dec = Decimal128Array::from(vec![-1234, 5])
            .with_precision_and_scale(10, 2)
            .unwrap();
        assert_eq!(
            (cell(&dec, 0), cell(&dec, 1)),
            ("-12.34".into(), "0.05".into())
        );
        let s = StringArray::from(vec![Some("a,b"), Some("")]);
        assert_eq!(
            (cell(&s, 0), cell(&s, 1)),
            ("\"a,b\"".into(), "\"\"".into())
        );
    }
}
