//! `strata load` against a real PostgreSQL: files under a source's
//! `external:` location loaded exactly once (history in the same
//! transaction as the rows), new and changed files, bad files named with
//! their line, two loaders at once and a loader killed mid-file.

mod common;

use std::io::Write;

use common::pg::psql;
use common::*;

fn load_project(db: &str, sources_yml: &str) -> tempfile::TempDir {
    let profile = pg::profile(db);
    project(&[
        ("profiles.yml", &profile),
        ("dbt_project.yml", "name: proj\nprofile: proj\n"),
        ("models/sources.yml", sources_yml),
    ])
}

fn write(dir: &std::path::Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

const SOURCES: &str = r#"
version: 2
sources:
  - name: curated
    schema: raw
    tables:
      - name: merchants
        external:
          location: curated/merchants/
          file_format: csv
        columns:
          - name: merchant_id
            data_type: integer
          - name: merchant_name
            data_type: text
      - name: profiles
        external:
          location: curated/profiles
          file_format: json
          load: {metadata_columns: true}
      - name: transactions
        external:
          location: curated/transactions
          file_format: csv
          pattern: '.*[.]csv([.]gz)?$'
          partitions:
            - {name: dt, data_type: date}
        columns:
          - {name: id, data_type: integer}
          - {name: amount, data_type: 'numeric(12,2)'}
"#;

#[test]
fn new_files_load_once_and_changed_ones_are_left_alone() {
    let db = pg::database("load_basic");
    let dir = load_project(&db, SOURCES);
    let p = dir.path();
    write(
        p,
        "curated/merchants/m1.csv",
        "merchant_name,merchant_id\n\"Acme, Inc\",1\nGlobex,2\n",
    );
    write(
        p,
        "curated/profiles/p1.jsonl",
        "{\"id\": 1, \"tier\": \"gold\", \"prefs\": {\"sms\": true}}\n{\"id\": 2}\n",
    );
    write(
        p,
        "curated/transactions/dt=2024-01-01/part-0.csv",
        "id,amount\n1,10.50\n2,3\n",
    );
    std::fs::write(
        p.join("curated/transactions/dt=2024-01-02/part-0.csv.gz"),
        gzip("id,amount\n3,7.25\n"),
    )
    .ok()
    .or_else(|| {
        std::fs::create_dir_all(p.join("curated/transactions/dt=2024-01-02")).unwrap();
        std::fs::write(
            p.join("curated/transactions/dt=2024-01-02/part-0.csv.gz"),
            gzip("id,amount\n3,7.25\n"),
        )
        .ok()
    });
    write(
        p,
        "curated/transactions/dt=2024-01-02/README.txt",
        "not data\n",
    );

    let r = strata(p, &["load"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("OK loaded source curated.merchants: 1 file, 2 rows"),
        "{}",
        r.stderr
    );
    assert_eq!(
        psql(
            &db,
            "select merchant_name from raw.merchants where merchant_id = 1"
        ),
        "Acme, Inc"
    );
    assert_eq!(
        psql(&db, "select string_agg(id || ':' || amount || ':' || dt, ' ' order by id) from raw.transactions"),
        "1:10.50:2024-01-01 2:3.00:2024-01-01 3:7.25:2024-01-02"
    );
    // No declared columns: named by the file, nested values kept as JSON.
    assert_eq!(
        psql(
            &db,
            "select prefs || '|' || _strata_source_file from raw.profiles where id = '1'"
        ),
        "{\"sms\":true}|p1.jsonl"
    );
    assert_eq!(
        psql(&db, "select count(*) from raw._strata_load_history"),
        "4"
    );

    // Nothing new: nothing loads.
    let r = strata(p, &["load"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("curated.merchants: 0 files, 0 rows"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "2");

    // A new file, and a changed one (left alone, with a warning).
    write(
        p,
        "curated/merchants/m2.csv",
        "merchant_id,merchant_name\n3,Initech\n",
    );
    write(
        p,
        "curated/merchants/m1.csv",
        "merchant_id,merchant_name\n1,Acme\n2,Globex\n9,Extra\n",
    );
    let r = strata(p, &["load", "--dry-run", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("WOULD LOAD source curated.merchants: 1 file"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("curated/merchants/m2.csv"),
        "{}",
        r.stdout
    );
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "2");
    let r = strata(p, &["load", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("m1.csv changed since it was loaded"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "3");

    // --full-refresh reloads every file, in one transaction.
    let r = strata(
        p,
        &["load", "--full-refresh", "-s", "source:curated.merchants"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "4");
    assert_eq!(
        psql(&db, "select count(*) from raw._strata_load_history where target_relation like '%merchants%'"),
        "2"
    );
    let results = std::fs::read_to_string(p.join("target/run_results.json")).unwrap();
    assert!(
        results.contains("source.proj.curated.merchants"),
        "{results}"
    );
}

#[test]
fn a_bad_file_loads_none_of_its_rows_and_is_named() {
    let db = pg::database("load_bad");
    let dir = load_project(&db, SOURCES);
    let p = dir.path();
    write(
        p,
        "curated/merchants/a.csv",
        "merchant_id,merchant_name\n1,A\n",
    );
    write(
        p,
        "curated/merchants/b.csv",
        "merchant_id,merchant_name\n2,B\n3\n",
    );
    let r = strata(p, &["load", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("curated/merchants/b.csv:3"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("fields"), "{}", r.stderr);
    // a.csv loaded in its own transaction; nothing of b.csv.
    assert_eq!(
        psql(
            &db,
            "select string_agg(merchant_id::text, ',') from raw.merchants"
        ),
        "1"
    );

    // A value the column's type rejects: the file's line, from COPY's.
    write(
        p,
        "curated/merchants/b.csv",
        "merchant_id,merchant_name\n2,B\nthree,C\n",
    );
    let r = strata(p, &["load", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("curated/merchants/b.csv:3"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("integer"), "{}", r.stderr);
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "1");

    // Fixed: it loads, and only it.
    write(
        p,
        "curated/merchants/b.csv",
        "merchant_id,merchant_name\n2,B\n3,C\n",
    );
    let r = strata(p, &["load", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "3");
}

#[test]
fn changed_files_reload_or_fail_as_configured() {
    let db = pg::database("load_changed");
    let yml = SOURCES.replace(
        "          location: curated/merchants/\n          file_format: csv\n",
        "          location: curated/merchants/\n          file_format: csv\n          load: {on_changed_file: reload}\n",
    );
    let dir = load_project(&db, &yml);
    let p = dir.path();
    write(
        p,
        "curated/merchants/a.csv",
        "merchant_id,merchant_name\n1,A\n2,B\n",
    );
    write(
        p,
        "curated/merchants/b.csv",
        "merchant_id,merchant_name\n5,E\n",
    );
    assert_eq!(
        strata(p, &["load", "-s", "source:curated.merchants"]).code,
        0
    );
    write(
        p,
        "curated/merchants/a.csv",
        "merchant_id,merchant_name\n1,A2\n",
    );
    let r = strata(p, &["load", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        psql(&db, "select string_agg(merchant_id || merchant_name, ',' order by merchant_id) from raw.merchants"),
        "1A2,5E"
    );
    std::fs::write(
        p.join("models/sources.yml"),
        SOURCES.replace(
            "          location: curated/merchants/\n          file_format: csv\n",
            "          location: curated/merchants/\n          file_format: csv\n          load: {on_changed_file: error, metadata_columns: true}\n",
        ),
    )
    .unwrap();
    write(
        p,
        "curated/merchants/a.csv",
        "merchant_id,merchant_name\n1,A3\n",
    );
    let r = strata(p, &["load", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("a.csv changed since it was loaded"),
        "{}",
        r.stderr
    );
}

/// Two loaders started together over the same files, and a loader killed
/// mid-file: every row is there exactly once afterwards.
#[test]
fn concurrent_and_killed_loaders_load_every_row_once() {
    let db = pg::database("load_concurrent");
    let dir = load_project(&db, SOURCES);
    let p = dir.path();
    for f in 0..12 {
        let mut text = String::from("merchant_id,merchant_name\n");
        for i in 0..500 {
            text.push_str(&format!("{},m{f}_{i}\n", f * 1000 + i));
        }
        write(p, &format!("curated/merchants/f{f:02}.csv"), &text);
    }
    // Create the tables first so both loaders start from the same state.
    write(
        p,
        "curated/merchants/f00.csv",
        "merchant_id,merchant_name\n0,m0_0\n",
    );
    assert_eq!(
        strata(p, &["load", "-s", "source:curated.merchants"]).code,
        0
    );
    psql(
        &db,
        "delete from raw.merchants; delete from raw._strata_load_history",
    );
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["load", "-s", "source:curated.merchants"])
            .current_dir(p)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert_eq!(
        b.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    let expected = 1 + 11 * 500;
    assert_eq!(
        psql(&db, "select count(*) from raw.merchants"),
        expected.to_string()
    );
    assert_eq!(
        psql(&db, "select count(distinct merchant_id) from raw.merchants"),
        expected.to_string()
    );
    assert_eq!(
        psql(&db, "select count(*) from raw._strata_load_history"),
        "12"
    );

    // A big file, and the loader killed while it streams.
    let mut big = String::from("merchant_id,merchant_name\n");
    for i in 0..400_000 {
        big.push_str(&format!("{},big_{i}\n", 100_000 + i));
    }
    write(p, "curated/merchants/zz_big.csv", &big);
    let mut child = spawn();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let _ = child.kill();
    let _ = child.wait();
    let after_kill: i64 = psql(&db, "select count(*) from raw.merchants")
        .parse()
        .unwrap();
    assert!(
        after_kill == expected || after_kill == expected + 400_000,
        "a killed load is all or nothing: {after_kill}"
    );
    let r = strata(p, &["load", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        psql(
            &db,
            "select count(*) || ',' || count(distinct merchant_id) from raw.merchants"
        ),
        format!("{n},{n}", n = expected + 400_000)
    );

    // Ctrl-C while a big file streams: the load stops (exit 130), its
    // transaction rolls back, and the next load takes the file whole.
    let mut big = String::from("merchant_id,merchant_name\n");
    for i in 0..400_000 {
        big.push_str(&format!("{},int_{i}\n", 600_000 + i));
    }
    write(p, "curated/merchants/zz_int.csv", &big);
    let child = spawn();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let before = expected + 400_000;
    let after_int: i64 = psql(&db, "select count(*) from raw.merchants")
        .parse()
        .unwrap();
    if after_int == before {
        assert_eq!(
            out.status.code(),
            Some(130),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        // The signal came after the commit.
        assert_eq!(after_int, before + 400_000, "all or nothing");
    }
    let r = strata(p, &["load", "-s", "source:curated.merchants"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        psql(
            &db,
            "select count(*) || ',' || count(distinct merchant_id) from raw.merchants"
        ),
        format!("{n},{n}", n = before + 400_000)
    );
}

#[test]
fn external_mistakes_name_the_file() {
    let db = pg::database("load_mistake");
    let dir = load_project(
        &db,
        "version: 2\nsources:\n  - name: curated\n    tables:\n      - name: m\n        external:\n          location: curated/m\n          file_format: avro\n",
    );
    let r = strata(dir.path(), &["load"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("models/sources.yml"), "{}", r.stderr);
    assert!(r.stderr.contains("avro"), "{}", r.stderr);
}

#[test]
fn build_loads_the_sources_its_models_read_first() {
    let db = pg::database("load_build");
    let dir = load_project(&db, SOURCES);
    let p = dir.path();
    write(p, "models/stg_merchants.sql", "select merchant_id, upper(merchant_name) as name from {{ source('curated', 'merchants') }}");
    write(
        p,
        "models/stg_profiles.sql",
        "select * from {{ source('curated', 'profiles') }}",
    );
    write(
        p,
        "curated/merchants/a.csv",
        "merchant_id,merchant_name\n1,acme\n",
    );
    write(p, "curated/profiles/p.jsonl", "{\"id\": 1}\n[2]\n");
    let r = strata(p, &["build"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("OK loaded source curated.merchants"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select name from main.stg_merchants"), "ACME");
    // The profiles did not load: the model reading them was not built.
    assert!(
        r.stderr.contains("curated/profiles/p.jsonl:2"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("SKIP model.proj.stg_profiles"),
        "{}",
        r.stderr
    );
    assert_eq!(
        psql(
            &db,
            "select count(*) from pg_views where viewname = 'stg_profiles'"
        ),
        "0"
    );
    let results = std::fs::read_to_string(p.join("target/run_results.json")).unwrap();
    assert!(
        results.contains("source.proj.curated.merchants")
            && results.contains("model.proj.stg_merchants"),
        "{results}"
    );
    // Transactions were read by no model: not loaded.
    assert_eq!(
        psql(
            &db,
            "select count(*) from pg_tables where tablename = 'transactions'"
        ),
        "0"
    );
}

#[test]
fn freshness_of_a_loaded_source_comes_from_its_load_history() {
    let db = pg::database("load_fresh");
    let yml = SOURCES.replace(
        "    tables:\n      - name: merchants\n",
        "    freshness:\n      error_after: {count: 1, period: hour}\n    tables:\n      - name: merchants\n",
    );
    let dir = load_project(&db, &yml);
    let p = dir.path();
    write(
        p,
        "curated/merchants/a.csv",
        "merchant_id,merchant_name\n1,A\n",
    );
    assert_eq!(
        strata(p, &["load", "-s", "source:curated.merchants"]).code,
        0
    );
    let r = strata(
        p,
        &["source", "freshness", "-s", "source:curated.merchants"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("PASS freshness of curated.merchants"),
        "{}",
        r.stderr
    );
    psql(
        &db,
        "update raw._strata_load_history set loaded_at = loaded_at - interval '2 hours'",
    );
    let r = strata(
        p,
        &["source", "freshness", "-s", "source:curated.merchants"],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
}

#[test]
fn parquet_files_load_with_their_types() {
    let db = pg::database("load_parquet");
    let dir = load_project(
        &db,
        "version: 2\nsources:\n  - name: curated\n    schema: raw\n    tables:\n      - name: tx\n        external:\n          location: curated/tx\n          file_format: parquet\n          partitions: [{name: dt, data_type: date}]\n",
    );
    let p = dir.path();
    write_parquet(&p.join("curated/tx/dt=2024-01-01/part-0.parquet"), 1, 5);
    write_parquet(&p.join("curated/tx/dt=2024-01-02/part-0.parquet"), 100, 1);
    let r = strata(p, &["load"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("2 files, 6 rows"), "{}", r.stderr);
    // Types from the Parquet schema, values as written, NULLs kept.
    assert_eq!(
        psql(&db, "select string_agg(column_name || ':' || data_type, ',' order by ordinal_position) from information_schema.columns where table_name = 'tx'"),
        "id:integer,currency:text,amount_cents:bigint,booked:date,dt:date"
    );
    assert_eq!(
        psql(&db, "select string_agg(id || '|' || coalesce(currency, 'null') || '|' || amount_cents || '|' || booked || '|' || dt, ' ' order by id) from raw.tx where id in (1, 2, 100)"),
        "1|EUR|105|2024-01-01|2024-01-01 2|null|205|2024-01-01|2024-01-01 100|null|10005|2024-01-01|2024-01-02"
    );
    // An empty file has no rows: recorded, nothing read.
    write(p, "curated/tx/dt=2024-01-04/part-0.parquet", "");
    let r = strata(p, &["load"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 file, 0 rows"), "{}", r.stderr);
    // A corrupt file is named, and nothing of it loads.
    write(
        p,
        "curated/tx/dt=2024-01-03/part-0.parquet",
        "PAR1 not really",
    );
    let r = strata(p, &["load"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("curated/tx/dt=2024-01-03/part-0.parquet"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Parquet"), "{}", r.stderr);
    assert_eq!(psql(&db, "select count(*) from raw.tx"), "6");
}

#[test]
fn new_columns_in_new_files_are_added_ignored_or_refused() {
    let db = pg::database("load_newcols");
    let dir = load_project(&db, SOURCES);
    let p = dir.path();
    write(
        p,
        "curated/profiles/p1.jsonl",
        "{\"id\": 1, \"tier\": \"gold\"}\n",
    );
    assert_eq!(
        strata(p, &["load", "-s", "source:curated.profiles"]).code,
        0
    );
    write(
        p,
        "curated/profiles/p2.jsonl",
        "{\"id\": 2, \"tier\": \"silver\", \"email\": \"b@x\"}\n",
    );
    let r = strata(p, &["load", "-s", "source:curated.profiles"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        psql(&db, "select string_agg(id || ':' || coalesce(email, '-'), ',' order by id) from raw.profiles"),
        "1:-,2:b@x"
    );
    for (policy, code, rows) in [("fail", 1, "2"), ("ignore", 0, "3")] {
        std::fs::write(
            p.join("models/sources.yml"),
            SOURCES.replace(
                "load: {metadata_columns: true}",
                &format!("load: {{metadata_columns: true, on_new_columns: {policy}}}"),
            ),
        )
        .unwrap();
        write(
            p,
            "curated/profiles/p3.jsonl",
            "{\"id\": 3, \"phone\": \"555\"}\n",
        );
        let r = strata(p, &["load", "-s", "source:curated.profiles"]);
        assert_eq!(r.code, code, "{policy}: {}{}", r.stdout, r.stderr);
        if policy == "fail" {
            assert!(r.stderr.contains("phone"), "{}", r.stderr);
        }
        assert_eq!(psql(&db, "select count(*) from raw.profiles"), rows);
    }
    assert_eq!(psql(&db, "select count(*) from information_schema.columns where table_name = 'profiles' and column_name = 'phone'"), "0");
}

/// Nested Parquet columns (a struct, a list) have no record-batch writer:
/// such files go through the `parquet` crate's row API, and the nested
/// values arrive as JSON text.
#[test]
fn nested_parquet_columns_load_through_the_row_reader() {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field};
    use std::sync::Arc;
    let db = pg::database("load_nested");
    let dir = load_project(
        &db,
        "version: 2\nsources:\n  - name: curated\n    schema: raw\n    tables:\n      - name: profiles\n        external:\n          location: curated/profiles\n          file_format: parquet\n",
    );
    let p = dir.path();
    let address = StructArray::from(vec![
        (
            Arc::new(Field::new("city", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("London"), None])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("country", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("GB"), Some("US")])) as ArrayRef,
        ),
    ]);
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.values().append_value("gold");
    tags.values().append_value("early");
    tags.append(true);
    tags.append(true);
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ("address", Arc::new(address) as ArrayRef),
        ("tags", Arc::new(tags.finish()) as ArrayRef),
    ])
    .unwrap();
    std::fs::create_dir_all(p.join("curated/profiles")).unwrap();
    let file = std::fs::File::create(p.join("curated/profiles/part-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let r = strata(p, &["load"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 file, 2 rows"), "{}", r.stderr);
    assert_eq!(
        psql(&db, "select string_agg(column_name || ':' || data_type, ',' order by ordinal_position) from information_schema.columns where table_name = 'profiles'"),
        "id:bigint,address:text,tags:text"
    );
    assert_eq!(
        psql(&db, "select (address::json->>'city') || '/' || (address::json->>'country') || '/' || json_array_length(tags::json) from raw.profiles where id = 1"),
        "London/GB/2"
    );
    assert_eq!(
        psql(&db, "select coalesce(address::json->>'city', 'null') || '/' || json_array_length(tags::json) from raw.profiles where id = 2"),
        "null/0"
    );
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), a load
/// running over a second draws a progress bar, cleared before the result.
#[test]
fn a_long_load_shows_a_progress_bar_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("util-linux's `script` is needed to give the load a terminal");
    }
    let db = pg::database("load_progress");
    let dir = load_project(&db, SOURCES);
    let p = dir.path();
    let mut big = String::from("merchant_id,merchant_name\n");
    for i in 0..2_000_000 {
        big.push_str(&format!("{i},merchant number {i} with a longer name\n"));
    }
    write(p, "curated/merchants/big.csv", &big);
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} load -s source:curated.merchants",
                env!("CARGO_BIN_EXE_strata")
            ),
            "/dev/null",
        ])
        .current_dir(p)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2000000 rows"), "{text}");
    // The bar: `[###---] 0/1 files, N rows, X of Y, Ns`, redrawn in place,
    // filling as the file is read.
    assert!(text.contains("0/1 files, "), "{text}");
    assert!(text.contains("#-"), "{text}");
    assert!(text.contains("\r\x1b[2K"), "{text}");
}

/// Loads of several tables start at once, each creating the schema's load
/// history if it is missing: one that finds another session creating it at
/// that moment (here a transaction holding it, uncommitted) carries on once
/// the other commits, instead of failing with "already exists".
#[test]
fn a_history_table_created_meanwhile_is_used() {
    let db = pg::database("load_race");
    let yml = "version: 2\nsources:\n  - name: s\n    schema: fresh\n    tables:\n      - name: t\n        external: {location: files/t/, file_format: csv}\n        columns: [{name: n, data_type: integer}]\n";
    let dir = load_project(&db, yml);
    write(dir.path(), "files/t/a.csv", "n\n1\n2\n");
    psql(&db, "create schema fresh");
    let mut other = pg::psql_session(
        &db,
        "begin;\n\
         create table fresh._strata_load_history (target_relation varchar(1024) not null, \
         file_key varchar(1024) not null, file_size bigint, file_version varchar(1024), \
         row_count bigint, loaded_at timestamp without time zone, invocation_id varchar(64), \
         primary key (target_relation, file_key));\n\
         select pg_sleep(2);\ncommit;\n",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = strata(dir.path(), &["load"]);
    assert!(other.wait().unwrap().success());
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        psql(&db, "select count(*) from fresh._strata_load_history"),
        "1"
    );
    assert_eq!(psql(&db, "select sum(n) from fresh.t"), "3");
}
