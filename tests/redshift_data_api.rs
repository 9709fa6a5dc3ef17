//! The Redshift Data API transport through the real `aws-sdk-redshiftdata`
//! client, pointed at a local server that implements the API's JSON
//! operations over the test PostgreSQL (`common/data_api.rs`): submission,
//! polling, paging, batches as transactions, sessions, busy refusals, lost
//! responses retried with the same client token, and cancel.
#![cfg(feature = "aws")]

mod common;

use std::sync::atomic::Ordering;

use common::pg::psql;
use common::*;

/// A `method: data_api` project over `db`, served by `api`.
fn data_api_project(
    db: &str,
    api: &data_api::DataApi,
    files: &[(&str, &str)],
) -> tempfile::TempDir {
    redshift::install_catalog(db);
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: redshift\n      method: data_api\n      cluster_id: test-cluster\n      db_user: strata\n      dbname: {db}\n      schema: main\n      threads: 2\n      region: us-east-1\n      access_key_id: AKIDEXAMPLE\n      secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n      endpoint_url: {}\n",
        api.url
    );
    redshift::project_with(&profile, files)
}

/// A `method: data_api` profile over `db` staging in S3 under `stage`.
fn staged_profile(
    db: &str,
    api: &data_api::DataApi,
    s3: &s3::S3,
    stage: &str,
    threads: usize,
) -> String {
    format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: redshift\n      method: data_api\n      cluster_id: test-cluster\n      db_user: strata\n      dbname: {db}\n      schema: main\n      threads: {threads}\n      region: us-east-1\n      access_key_id: {}\n      secret_access_key: {}\n      endpoint_url: {}\n      s3_endpoint_url: {}\n      s3_staging_dir: {stage}\n      iam_role: arn:aws:iam::123456789012:role/strata-load\n",
        s3::ACCESS_KEY,
        s3::SECRET_KEY,
        api.url,
        s3.url
    )
}

#[test]
fn every_command_runs_over_the_data_api() {
    let db = pg::database("data_api_all");
    let api = data_api::start(&db, 2);
    let dir = data_api_project(&db, &api, redshift::PROJECT);
    redshift::every_command(dir.path(), &db);
    let c = &api.counters;
    assert_eq!(
        c.unsigned.load(Ordering::SeqCst),
        0,
        "every request is signed"
    );
    assert!(
        c.batches.load(Ordering::SeqCst) > 0,
        "atomic plans go as one batch"
    );
    // Three seed rows over pages of two, among others.
    assert!(c.result_pages.load(Ordering::SeqCst) > 2);
}

#[test]
fn a_failing_batch_rolls_back_and_keeps_the_old_table() {
    let db = pg::database("data_api_rollback");
    let api = data_api::start(&db, 100);
    let dir = data_api_project(
        &db,
        &api,
        &[(
            "models/a.sql",
            "{{ config(materialized='table') }}select 1 as id",
        )],
    );
    let p = dir.path();
    let r = strata(p, &["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    std::fs::write(
        p.join("models/a.sql"),
        "{{ config(materialized='table') }}select 1 / 0 as id",
    )
    .unwrap();
    let r = strata(p, &["run"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("division by zero"), "{}", r.stderr);
    assert_eq!(psql(&db, "select id from main.a"), "1");
    assert_eq!(
        psql(
            &db,
            "select count(*) from pg_tables where tablename like 'a__dbt%'"
        ),
        "0"
    );
}

#[test]
fn busy_refusals_are_waited_out_and_lost_responses_do_not_run_twice() {
    let db = pg::database("data_api_retry");
    let api = data_api::start(&db, 100);
    let dir = data_api_project(&db, &api, &[("models/v.sql", "select 1 as id")]);
    let p = dir.path();
    api.busy.store(3, Ordering::SeqCst);
    let r = strata(p, &["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(api.counters.busy_refusals.load(Ordering::SeqCst), 3);

    // The service accepts the statement but the response is lost: the SDK
    // retries with the same client token and gets the same statement back.
    *api.lose_response_to.lock().unwrap() = Some("41 + 1".into());
    let before = api.counters.executed.lock().unwrap().len();
    let r = strata(p, &["show", "--inline", "select 41 + 1 as answer"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("42"), "{}", r.stdout);
    assert!(
        api.lose_response_to.lock().unwrap().is_none(),
        "the response was lost"
    );
    let executed = api.counters.executed.lock().unwrap();
    let answers = executed[before..]
        .iter()
        .filter(|q| q.contains("41 + 1"))
        .count();
    assert_eq!(answers, 1, "{executed:?}");
}

#[test]
fn many_statements_in_one_transaction_use_a_session() {
    let db = pg::database("data_api_session");
    let api = data_api::start(&db, 100);
    // 60 rows over INSERTs of at most 100 KB: with a long value each row is
    // a statement of its own, more than one batch call can carry.
    let mut csv = String::from("id,payload\n");
    for i in 0..60 {
        csv.push_str(&format!("{i},{}\n", "x".repeat(60_000)));
    }
    let dir = data_api_project(&db, &api, &[("seeds/wide.csv", &csv)]);
    let r = strata(dir.path(), &["seed"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select count(*) from main.wide"), "60");
    assert!(api.counters.sessions.load(Ordering::SeqCst) >= 1);
}

#[test]
fn ctrl_c_cancels_the_statement_in_flight() {
    let db = pg::database("data_api_cancel");
    let api = data_api::start(&db, 100);
    let dir = data_api_project(
        &db,
        &api,
        &[(
            "models/slow.sql",
            "{{ config(materialized='table') }}select pg_sleep(30) is null as slept",
        )],
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("run")
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the statement runs on the server.
    let t0 = std::time::Instant::now();
    while !api
        .counters
        .executed
        .lock()
        .unwrap()
        .iter()
        .any(|q| q.contains("pg_sleep"))
    {
        assert!(t0.elapsed().as_secs() < 20, "the model never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signalling a child process we own.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        t0.elapsed().as_secs() < 20,
        "cancel did not stop the statement"
    );
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(api.counters.cancels.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        psql(
            &db,
            "select count(*) from pg_tables where tablename = 'slow'"
        ),
        "0"
    );
}

/// Seeds staged in S3 (a real S3-protocol server, through the SDK's S3
/// client) and copied server side in the load's transaction; the staged
/// object is removed afterwards.
#[test]
fn seeds_are_staged_in_s3_and_copied_server_side() {
    let db = pg::database("data_api_s3_seed");
    let api = data_api::start(&db, 100);
    let s3 = s3::start(&["seeds"]);
    api.read_s3_from(&s3.root);
    redshift::install_catalog(&db);
    let profile = staged_profile(&db, &api, &s3, "s3://seeds/staging", 1);
    let dir = redshift::project_with(
        &profile,
        &[(
            "seeds/rates.csv",
            "currency,rate,note\nUSD,1.0,base\nEUR,1.08,\nJPY,0.0067,\"yen, per unit\"\n",
        )],
    );
    let r = strata(dir.path(), &["seed"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select count(*) from main.rates"), "3");
    assert_eq!(
        psql(&db, "select note from main.rates where currency = 'JPY'"),
        "yen, per unit"
    );
    assert_eq!(
        psql(&db, "select count(*) from main.rates where note is null"),
        "1"
    );
    let executed = api.counters.executed.lock().unwrap().clone();
    let copy = executed
        .iter()
        .find(|q| q.starts_with("copy "))
        .expect("a COPY was sent");
    assert!(
        copy.contains("from 's3://seeds/staging/main.rates-")
            && copy.contains("iam_role 'arn:aws:iam::123456789012:role/strata-load'"),
        "{copy}"
    );
    assert!(
        !executed.iter().any(|q| q.starts_with("insert into")),
        "no INSERT fallback"
    );
    // The staged object served its load and is gone.
    let left: Vec<_> = walkdir::WalkDir::new(s3.root.join("seeds"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "csv"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A value COPY rejects: the error names the seed's line and column, read
    // from SYS_LOAD_ERROR_DETAIL, and the old rows stay.
    std::fs::write(
        dir.path().join("seeds/rates.csv"),
        "currency,rate,note\nUSD,1.0,base\nEUR,one point oh eight,\n",
    )
    .unwrap();
    let r = strata(dir.path(), &["seed"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("sys_load_error_detail"), "{}", r.stderr);
    assert!(
        r.stderr.contains("seeds/rates.csv:3: column rate"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select count(*) from main.rates"), "3");
}

/// `method: iam` over the wire protocol: temporary credentials from
/// GetClusterCredentials (through the SDK, signed), then a connection with
/// them.
#[test]
fn iam_credentials_open_a_wire_connection() {
    let db = pg::database("redshift_iam");
    let api = data_api::start(&db, 100);
    redshift::install_catalog(&db);
    psql(&db, "drop role if exists \"IAM:analyst\"");
    psql(
        &db,
        "create role \"IAM:analyst\" login superuser password 'temporary-Pa55'",
    );
    // The test cluster admits only its own user: let the IAM user in too.
    let hba = psql(&db, "show hba_file");
    let text = std::fs::read_to_string(&hba).unwrap();
    if !text.contains("IAM:analyst") {
        std::fs::write(
            &hba,
            format!("host all \"IAM:analyst\" 127.0.0.1/32 scram-sha-256\n{text}"),
        )
        .unwrap();
        psql(&db, "select pg_reload_conf()");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    api.issue_credentials("IAM:analyst", "temporary-Pa55");
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: redshift\n      method: iam\n      cluster_id: test-cluster\n      user: analyst\n      host: 127.0.0.1\n      port: {}\n      dbname: {db}\n      schema: main\n      threads: 1\n      region: us-east-1\n      autocreate: true\n      db_groups: [analysts]\n      access_key_id: {}\n      secret_access_key: {}\n      endpoint_url: {}\n    serverless:\n      type: redshift\n      method: iam\n      workgroup_name: analytics-wg\n      host: 127.0.0.1\n      port: {port}\n      dbname: {db}\n      schema: main\n      threads: 1\n      region: us-east-1\n      access_key_id: {ak}\n      secret_access_key: {sk}\n      endpoint_url: {url}\n",
        pg::port(),
        s3::ACCESS_KEY,
        s3::SECRET_KEY,
        api.url,
        port = pg::port(),
        ak = s3::ACCESS_KEY,
        sk = s3::SECRET_KEY,
        url = api.url,
    );
    let dir = redshift::project_with(
        &profile,
        &[(
            "models/who.sql",
            "{{ config(materialized='table') }}select current_user::varchar as who",
        )],
    );
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select who from main.who"), "IAM:analyst");
    let forms = api.counters.iam_requests.lock().unwrap().clone();
    assert!(
        forms.iter().any(|f| f.contains("DbUser=analyst")
            && f.contains("AutoCreate=true")
            && f.contains("DbGroups.DbGroup.1=analysts")),
        "{forms:?}"
    );
    // Serverless: GetCredentials for the workgroup.
    psql(&db, "drop table main.who");
    let r = strata(dir.path(), &["run", "-t", "serverless"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select who from main.who"), "IAM:analyst");
    let forms = api.counters.iam_requests.lock().unwrap().clone();
    assert!(
        forms
            .iter()
            .any(|f| f.contains("\"workgroupName\":\"analytics-wg\"")),
        "{forms:?}"
    );
}

/// `strata load` on Redshift: the warehouse COPYs the new files from S3
/// itself, through a manifest Strata writes to the staging location, one
/// per partition; partition values come from the paths, the history is
/// written in the same transaction, and a second drop loads only the new
/// files. A bad file fails the table's whole load and keeps what was there.
#[test]
fn loads_copy_new_files_from_s3_through_a_manifest() {
    let db = pg::database("data_api_load");
    let api = data_api::start(&db, 100);
    let s3 = s3::start(&["curated", "stage"]);
    api.read_s3_from(&s3.root);
    redshift::install_catalog(&db);
    let profile = staged_profile(&db, &api, &s3, "s3://stage/strata", 2);
    let dir = redshift::project_with(
        &profile,
        &[(
            "models/sources.yml",
            "version: 2\nsources:\n  - name: curated\n    schema: raw\n    tables:\n      - name: tx\n        external:\n          location: s3://curated/tx/\n          file_format: parquet\n          partitions: [{name: dt, data_type: date}]\n      - name: merchants\n        external:\n          location: s3://curated/merchants/\n          file_format: csv\n        columns:\n          - {name: merchant_id, data_type: integer}\n          - {name: merchant_name, data_type: varchar(100)}\n      - name: profiles\n        external:\n          location: s3://curated/profiles/\n          file_format: json\n          load: {metadata_columns: true}\n        columns:\n          - {name: customer_id, data_type: integer}\n          - {name: tier, data_type: varchar(20)}\n",
        )],
    );
    let local = tempfile::tempdir().unwrap();
    let parquet = |name: &str, first: i32, n: i32| {
        let path = local.path().join(name);
        write_parquet(&path, first, n);
        std::fs::read(&path).unwrap()
    };
    s3.put(
        "curated",
        "tx/dt=2024-01-01/part-0.parquet",
        parquet("a", 1, 5),
    );
    s3.put(
        "curated",
        "tx/dt=2024-01-01/part-1.parquet",
        parquet("b", 10, 2),
    );
    s3.put(
        "curated",
        "tx/dt=2024-01-02/part-0.parquet",
        parquet("c", 100, 1),
    );
    s3.put(
        "curated",
        "merchants/m-1.csv",
        b"merchant_id,merchant_name\n1,Acme\n2,\"Bolt, Inc\"\n".to_vec(),
    );
    s3.put(
        "curated",
        "profiles/p-1.jsonl",
        b"{\"customer_id\": 7, \"tier\": \"gold\"}\n{\"customer_id\": 8, \"tier\": null}\n"
            .to_vec(),
    );
    // The same columns in another order (COPY maps CSV by position: its own
    // column list), and an empty file (recorded, not copied).
    s3.put(
        "curated",
        "merchants/m-0.csv",
        b"merchant_name,merchant_id\nZed,9\n".to_vec(),
    );
    s3.put("curated", "merchants/m-empty.csv", Vec::new());
    let env = s3.env();
    let p = dir.path();
    let r = strata_env(p, &["load"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("3 files, 8 rows"), "{}", r.stderr);
    assert!(r.stderr.contains("3 files, 3 rows"), "{}", r.stderr);
    assert_eq!(
        psql(
            &db,
            "select merchant_name from raw.merchants where merchant_id = 9"
        ),
        "Zed"
    );
    psql(
        &db,
        "delete from raw.merchants where merchant_id = 9; delete from raw._strata_load_history where file_key in ('m-0.csv', 'm-empty.csv')",
    );
    s3.put(
        "curated",
        "merchants/m-0.csv",
        b"merchant_name,merchant_id\n".to_vec(),
    );
    s3.put(
        "curated",
        "merchants/m-empty.csv",
        b"merchant_id,merchant_name\n".to_vec(),
    );
    let r = strata_env(p, &["load", "-s", "source:curated.merchants"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        psql(&db, "select string_agg(id || '|' || dt, ' ' order by id) from raw.tx where id in (1, 10, 100)"),
        "1|2024-01-01 10|2024-01-01 100|2024-01-02"
    );
    assert_eq!(
        psql(
            &db,
            "select merchant_name from raw.merchants where merchant_id = 2"
        ),
        "Bolt, Inc"
    );
    assert_eq!(
        psql(&db, "select string_agg(customer_id || '|' || coalesce(tier, 'null') || '|' || _strata_source_file, ' ' order by customer_id) from raw.profiles"),
        "7|gold|p-1.jsonl 8|null|p-1.jsonl"
    );
    // Every file recorded, with the single-file COPYs' row counts.
    assert_eq!(
        psql(&db, "select string_agg(file_key || ':' || coalesce(row_count::text, '-'), ' ' order by file_key) from raw._strata_load_history"),
        "dt=2024-01-01/part-0.parquet:- dt=2024-01-01/part-1.parquet:- dt=2024-01-02/part-0.parquet:1 m-0.csv:0 m-1.csv:2 m-empty.csv:0 p-1.jsonl:2"
    );
    let executed = api.counters.executed.lock().unwrap().clone();
    let copies: Vec<&String> = executed.iter().filter(|q| q.starts_with("copy ")).collect();
    // One COPY per table and group of files read alike: the first load
    // copies profiles once, merchants twice (two column orders) and tx twice
    // (two partitions); the merchants-only load copies twice again.
    assert_eq!(copies.len(), 7, "{copies:#?}");
    assert!(
        copies.iter().all(|q| q.contains(" manifest")
            && q.contains("iam_role 'arn:aws:iam::123456789012:role/strata-load'")),
        "{copies:#?}"
    );
    // The manifests served their loads and are gone.
    let left: Vec<_> = walkdir::WalkDir::new(s3.root.join("stage"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().to_string_lossy().ends_with(".manifest"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A second drop: only the new file loads.
    s3.put(
        "curated",
        "tx/dt=2024-01-03/part-0.parquet",
        parquet("d", 200, 3),
    );
    let r = strata_env(p, &["load"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 file, 3 rows"), "{}", r.stderr);
    assert_eq!(psql(&db, "select count(*) from raw.tx"), "11");

    // A CSV row with a value that does not fit: the table's load fails as a
    // whole, names the table, and the other tables still load.
    s3.put(
        "curated",
        "merchants/m-2.csv",
        b"merchant_id,merchant_name\n3,Ok\nfour,Bad\n".to_vec(),
    );
    s3.put(
        "curated",
        "tx/dt=2024-01-04/part-0.parquet",
        parquet("e", 300, 1),
    );
    let r = strata_env(p, &["load"], &env);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("ERROR loading source curated.merchants"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("nothing of this table's load was committed"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "2");
    assert_eq!(psql(&db, "select count(*) from raw.tx"), "12");

    // Two loaders at once: the table lock makes one wait, its guard finds
    // the files recorded by the other, and every row is there once.
    s3.put(
        "curated",
        "merchants/m-2.csv",
        b"merchant_id,merchant_name\n3,Ok\n4,Fine\n".to_vec(),
    );
    for i in 0..4 {
        s3.put(
            "curated",
            &format!("tx/dt=2024-01-05/part-{i}.parquet"),
            parquet(&format!("f{i}"), 400 + 10 * i, 3),
        );
    }
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let a = scope.spawn(|| strata_env(p, &["load"], &env));
        let b = scope.spawn(|| strata_env(p, &["load"], &env));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    for r in &runs {
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    assert_eq!(psql(&db, "select count(*) from raw.tx"), "24");
    assert_eq!(psql(&db, "select count(*) from raw.merchants"), "4");
    assert_eq!(
        psql(
            &db,
            "select count(*) - count(distinct file_key) from raw._strata_load_history"
        ),
        "0"
    );
}
