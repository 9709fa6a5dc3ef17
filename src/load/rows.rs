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

/// One CSV field as COPY's CSV format reads it back exactly (empty = NULL).
fn push_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else { return };
    if value.is_empty() {
        // An empty string, distinct from NULL.
        out.extend_from_slice(b"\"\"");
        return;
    }
    let needs_quotes = value == "\\."
        || value
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r' | b'\\'));
    if needs_quotes {
        out.push(b'"');
        for b in value.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

/// The rows of a Parquet file, a row group at a time: a local file is read
/// in place, any other is held in memory while it loads.
fn parquet_rows(opened: Opened) -> Result<parquet::record::reader::RowIter<'static>, String> {
    use parquet::file::reader::SerializedFileReader;
    let reader: Box<dyn parquet::file::reader::FileReader> = match opened.path {
        Some(p) => {
            let f = std::fs::File::open(&p).map_err(|e| e.to_string())?;
            Box::new(SerializedFileReader::new(f).map_err(|e| e.to_string())?)
        }
        None => {
            let mut buf = Vec::new();
            let mut r = opened.reader;
            r.read_to_end(&mut buf).map_err(|e| e.to_string())?;
            Box::new(SerializedFileReader::new(bytes::Bytes::from(buf)).map_err(|e| e.to_string())?)
        }
    };
    Ok(parquet::record::reader::RowIter::from_file_into(reader))
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
        }
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
            let rows = parquet_rows(opened)
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
}
