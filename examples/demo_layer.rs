//! Writes the demo's curated transactions (`data/curated/transactions/`)
//! from raw CSV rows: Parquet partitioned by ingestion day, as the upstream
//! jobs of the payments platform deliver them.
//!
//! Usage: cargo run --example demo_layer -- RAW.csv data/curated/transactions [PART]

use std::io::Write;

#[allow(unreachable_pub)]
#[path = "../tests/common/curated.rs"]
mod curated;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let csv = std::fs::read_to_string(args.get(1).ok_or("RAW.csv")?)?;
    let out = std::path::PathBuf::from(args.get(2).ok_or("OUT_DIR")?);
    let part: usize = args.get(3).map(|p| p.parse()).transpose()?.unwrap_or(1);
    let mut stdout = std::io::stdout().lock();
    for f in curated::write_transactions(&csv, &out, part) {
        writeln!(stdout, "{}", f.display())?;
    }
    Ok(())
}
