//! `strata load` from an S3 location: a real S3-protocol server in-process
//! (s3s-fs), objects put and listed through the AWS SDK with request signing,
//! listing past one page (1,000 keys), ETags telling changed objects apart,
//! ranged reads.
#![cfg(feature = "aws")]

mod common;

use common::pg::psql;
use common::*;

#[test]
fn s3_locations_list_every_page_and_load_each_object_once() {
    let db = pg::database("load_s3");
    let s3 = s3::start(&["curated"]);
    for i in 0..1001 {
        s3.put(
            "curated",
            &format!("merchants/part-{i:04}.csv"),
            format!("merchant_id,merchant_name\n{i},m{i}\n").into_bytes(),
        );
    }
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: main\n",
        pg::port(),
        pg::password()
    );
    let dir = project(&[
        ("profiles.yml", &profile),
        ("dbt_project.yml", "name: proj\nprofile: proj\n"),
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: curated\n    schema: raw\n    tables:\n      - name: merchants\n        external:\n          location: s3://curated/merchants/\n          file_format: csv\n        columns:\n          - {name: merchant_id, data_type: integer}\n          - {name: merchant_name, data_type: text}\n",
        ),
    ]);
    let env = s3.env();
    let p = dir.path();
    let r = strata_env(p, &["load"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1001 files, 1001 rows"), "{}", r.stderr);
    assert_eq!(
        psql(&db, "select count(distinct merchant_id) from raw.merchants"),
        "1001"
    );
    assert_eq!(
        psql(
            &db,
            "select count(*) from raw._strata_load_history where file_version <> ''"
        ),
        "1001",
        "every object is recorded with its version (ETag, or the time s3s-fs lists instead)"
    );

    // One object replaced, one added (gzip).
    s3.put(
        "curated",
        "merchants/part-0000.csv",
        b"merchant_id,merchant_name\n0,replaced\n".to_vec(),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"merchant_id,merchant_name\n5000,new\n").unwrap();
    s3.put("curated", "merchants/zz-new.csv.gz", gz.finish().unwrap());
    let r = strata_env(p, &["load"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 file, 1 rows"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("s3://curated/merchants/part-0000.csv changed since it was loaded"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "1002");
}
