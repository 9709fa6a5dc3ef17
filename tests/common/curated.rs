//! The demo's curated layer of transactions: raw CSV rows (as the card
//! processor exports them) written as Parquet partitioned by ingestion day,
//! `ingest_date=YYYY-MM-DD/part-NNNN.parquet`. Shared by the tests (a second
//! drop of files) and `examples/demo_layer.rs` (which wrote the demo's files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The raw columns, all text but the ingestion time.
const TEXT_COLUMNS: [&str; 7] = [
    "transaction_id",
    "customer_id",
    "merchant_id",
    "amount",
    "currency",
    "status",
    "created_at",
];

/// Writes the rows of `csv` (a header, then the columns above and
/// `ingested_at`) under `out`, one file `part-{part:04}.parquet` per day;
/// returns the files written.
pub fn write_transactions(csv: &str, out: &Path, part: usize) -> Vec<PathBuf> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message transactions {
                OPTIONAL BYTE_ARRAY transaction_id (UTF8);
                OPTIONAL BYTE_ARRAY customer_id (UTF8);
                OPTIONAL BYTE_ARRAY merchant_id (UTF8);
                OPTIONAL BYTE_ARRAY amount (UTF8);
                OPTIONAL BYTE_ARRAY currency (UTF8);
                OPTIONAL BYTE_ARRAY status (UTF8);
                OPTIONAL BYTE_ARRAY created_at (UTF8);
                OPTIONAL INT64 ingested_at (TIMESTAMP_MICROS);
            }",
        )
        .expect("schema"),
    );
    let mut days: BTreeMap<String, Vec<csv::StringRecord>> = BTreeMap::new();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    for rec in r.records() {
        let rec = rec.expect("a CSV record");
        let day = rec
            .get(7)
            .unwrap_or_default()
            .get(..10)
            .unwrap_or_default()
            .to_string();
        days.entry(day).or_default().push(rec);
    }
    let mut written = Vec::new();
    for (day, rows) in days {
        let dir = out.join(format!("ingest_date={day}"));
        std::fs::create_dir_all(&dir).expect("create the partition");
        let path = dir.join(format!("part-{part:04}.parquet"));
        let file = std::fs::File::create(&path).expect("create the file");
        let mut w = SerializedFileWriter::new(
            file,
            schema.clone(),
            Arc::new(WriterProperties::builder().build()),
        )
        .expect("a writer");
        let mut rg = w.next_row_group().expect("a row group");
        for i in 0..TEXT_COLUMNS.len() {
            let defs: Vec<i16> = rows
                .iter()
                .map(|r| i16::from(!r.get(i).unwrap_or_default().is_empty()))
                .collect();
            let vals: Vec<ByteArray> = rows
                .iter()
                .filter_map(|r| r.get(i).filter(|v| !v.is_empty()))
                .map(ByteArray::from)
                .collect();
            let mut c = rg.next_column().expect("column").expect("a column");
            c.typed::<ByteArrayType>()
                .write_batch(&vals, Some(&defs), None)
                .expect("write");
            c.close().expect("close");
        }
        let times: Vec<Option<i64>> = rows
            .iter()
            .map(|r| {
                chrono::NaiveDateTime::parse_from_str(
                    r.get(7).unwrap_or_default(),
                    "%Y-%m-%d %H:%M:%S",
                )
                .ok()
                .map(|t| t.and_utc().timestamp_micros())
            })
            .collect();
        let defs: Vec<i16> = times.iter().map(|t| i16::from(t.is_some())).collect();
        let vals: Vec<i64> = times.iter().flatten().copied().collect();
        let mut c = rg.next_column().expect("column").expect("a column");
        c.typed::<Int64Type>()
            .write_batch(&vals, Some(&defs), None)
            .expect("write");
        c.close().expect("close");
        rg.close().expect("close the row group");
        w.close().expect("close the file");
        written.push(path);
    }
    written
}
