//! Generates transaction-shaped data for the load benchmark (`bench/load.sh`):
//! `ROWS` rows as Parquet files partitioned by day (`dt=YYYY-MM-DD/`, row
//! groups of 100,000) and the same rows as one CSV for `psql \copy`.
//!
//! Usage: cargo run --release --example gen_transactions -- OUT_DIR ROWS [FILES]

use std::io::Write;
use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

const GROUP: usize = 100_000;
const STATUSES: [&str; 4] = ["settled", "pending", "refunded", "failed"];
const CURRENCIES: [&str; 4] = ["USD", "EUR", "GBP", "JPY"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).ok_or("OUT_DIR")?);
    let rows: usize = args.get(2).ok_or("ROWS")?.parse()?;
    let files: usize = args.get(3).map(|f| f.parse()).transpose()?.unwrap_or(10);
    let schema = Arc::new(parquet::schema::parser::parse_message_type(
        "message transactions {
            REQUIRED BYTE_ARRAY transaction_id (UTF8);
            REQUIRED BYTE_ARRAY customer_id (UTF8);
            REQUIRED BYTE_ARRAY merchant_id (UTF8);
            REQUIRED INT64 amount_cents;
            REQUIRED BYTE_ARRAY currency (UTF8);
            REQUIRED BYTE_ARRAY status (UTF8);
            REQUIRED INT64 created_at (TIMESTAMP_MICROS);
        }",
    )?);
    std::fs::create_dir_all(&out)?;
    let mut csv = std::io::BufWriter::new(std::fs::File::create(out.join("transactions.csv"))?);
    writeln!(
        csv,
        "transaction_id,customer_id,merchant_id,amount_cents,currency,status,created_at"
    )?;
    let per_file = rows.div_ceil(files);
    let base = 1_709_251_200_000_000i64; // 2024-03-01 in microseconds
    let mut id = 0usize;
    for f in 0..files {
        let dir = out.join(format!("parquet/dt=2024-03-{:02}", f % 28 + 1));
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::File::create(dir.join(format!("part-{f:04}.parquet")))?;
        let props = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut w = SerializedFileWriter::new(file, schema.clone(), Arc::new(props))?;
        let end = (id + per_file).min(rows);
        while id < end {
            let n = GROUP.min(end - id);
            let ids: Vec<usize> = (id..id + n).collect();
            let text = |f: &dyn Fn(usize) -> String| -> Vec<ByteArray> {
                ids.iter()
                    .map(|i| ByteArray::from(f(*i).as_str()))
                    .collect()
            };
            let cols_text = [
                text(&|i| format!("t-{i:010}")),
                text(&|i| format!("c-{:06}", i % 50_000)),
                text(&|i| format!("m-{:04}", i % 2_000)),
            ];
            let amounts: Vec<i64> = ids.iter().map(|i| (i % 100_000) as i64 + 99).collect();
            let currency = text(&|i| CURRENCIES[i % 4].to_string());
            let status = text(&|i| STATUSES[i % 4].to_string());
            let created: Vec<i64> = ids.iter().map(|i| base + (*i as i64) * 1_000_000).collect();
            let mut rg = w.next_row_group()?;
            for c in &cols_text {
                let mut col = rg.next_column()?.ok_or("column")?;
                col.typed::<ByteArrayType>().write_batch(c, None, None)?;
                col.close()?;
            }
            let mut col = rg.next_column()?.ok_or("column")?;
            col.typed::<Int64Type>().write_batch(&amounts, None, None)?;
            col.close()?;
            for c in [&currency, &status] {
                let mut col = rg.next_column()?.ok_or("column")?;
                col.typed::<ByteArrayType>().write_batch(c, None, None)?;
                col.close()?;
            }
            let mut col = rg.next_column()?.ok_or("column")?;
            col.typed::<Int64Type>().write_batch(&created, None, None)?;
            col.close()?;
            rg.close()?;
            for (k, i) in ids.iter().enumerate() {
                let ts = chrono::DateTime::from_timestamp_micros(created[k]).ok_or("time")?;
                writeln!(
                    csv,
                    "t-{i:010},c-{:06},m-{:04},{},{},{},{}",
                    i % 50_000,
                    i % 2_000,
                    amounts[k],
                    CURRENCIES[i % 4],
                    STATUSES[i % 4],
                    ts.format("%Y-%m-%d %H:%M:%S")
                )?;
            }
            id += n;
        }
        w.close()?;
    }
    csv.flush()?;
    Ok(())
}
