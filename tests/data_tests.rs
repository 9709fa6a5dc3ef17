//! `strata test` and tests inside `build`: pass/fail/warn, severity and
//! thresholds, `where`, `limit`, `store_failures`, and skipping the descendants
//! of a node whose error-severity test failed.

mod common;

use common::*;

use common::pg::psql;

fn test_project(db: &str, schema_yml: &str) -> tempfile::TempDir {
    let profile = pg::profile(db);
    project(&[
        ("profiles.yml", &profile),
        (
            "seeds/orders.csv",
            "id,status,amount\n1,placed,10\n2,shipped,20\n2,shipped,5\n3,lost,7\n4,,0\n",
        ),
        (
            "models/orders_clean.sql",
            "select * from {{ ref('orders') }}",
        ),
        (
            "models/downstream.sql",
            "select count(*) as n from {{ ref('orders_clean') }}",
        ),
        ("models/schema.yml", schema_yml),
        (
            "tests/no_negative.sql",
            "select * from {{ ref('orders_clean') }} where amount < 0",
        ),
    ])
}

#[test]
fn results_thresholds_severity_where_limit() {
    let db = pg::database("dt_results");
    let yml = "version: 2\nmodels:\n  - name: orders_clean\n    columns:\n      - name: id\n        data_tests:\n          - unique\n          - not_null\n          - unique:\n              name: unique_id_without_duplicates\n              config:\n                where: \"amount > 5\"\n      - name: status\n        data_tests:\n          - accepted_values:\n              arguments:\n                values: [placed, shipped]\n              config:\n                severity: warn\n          - not_null:\n              config:\n                error_if: \">5\"\n                warn_if: \">0\"\n      - name: amount\n        data_tests:\n          - not_null:\n              name: limited\n              config:\n                limit: 1\n          - accepted_values:\n              name: amount_sum_check\n              arguments:\n                values: [10, 20]\n                quote: false\n              config:\n                fail_calc: \"sum(n_records)\"\n                error_if: \">= 3\"\n                warn_if: \">= 2\"\n";
    let dir = test_project(&db, yml);
    assert_eq!(strata(dir.path(), &["seed"]).code, 0);
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    let r = strata(dir.path(), &["test"]);
    assert_eq!(r.code, 1, "an error-severity failure exits 1: {}", r.stderr);
    assert!(
        r.stderr.contains("FAIL 1 unique_orders_clean_id"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("PASS unique_id_without_duplicates"),
        "where filters rows: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("WARN 1 accepted_values_orders_clean_status__placed__shipped"),
        "NULL is not a value group: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("WARN 1 not_null_orders_clean_status"),
        "threshold >5 errors, >0 warns: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("PASS no_negative"),
        "singular test: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("Failure in test unique_orders_clean_id (models/schema.yml)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("Got 1 result, configured to fail if != 0"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("compiled code at"), "{}", r.stderr);
    let results: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/run_results.json")).unwrap();
    let by_name = |n: &str| {
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"].as_str().unwrap().contains(n))
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("unique_orders_clean_id")["status"], "fail");
    assert_eq!(by_name("unique_orders_clean_id")["failures"], 1);
    assert_eq!(by_name("accepted_values")["status"], "warn");
    assert_eq!(by_name("no_negative")["status"], "pass");
    // Selecting by test name and type.
    let r = strata(dir.path(), &["test", "-s", "test_name:accepted_values"]);
    assert!(r.stderr.contains("running 2 data tests"), "{}", r.stderr);
    let r = strata(
        dir.path(),
        &[
            "test",
            "-s",
            "test_name:accepted_values",
            "--exclude",
            "amount_sum_check",
        ],
    );
    assert_eq!(r.code, 0, "warnings do not fail: {}", r.stderr);
    assert!(r.stderr.contains("running 1 data test"), "{}", r.stderr);
}

#[test]
fn store_failures_as_table_and_view() {
    let db = pg::database("dt_store");
    let yml = "version: 2\nmodels:\n  - name: orders_clean\n    columns:\n      - name: id\n        data_tests:\n          - unique:\n              config:\n                store_failures: true\n      - name: status\n        data_tests:\n          - not_null:\n              config:\n                store_failures_as: view\n";
    let dir = test_project(&db, yml);
    assert_eq!(
        strata(dir.path(), &["build", "--exclude", "downstream"]).code,
        1
    );
    assert_eq!(psql(&db, "select unique_field || ':' || n_records from main_dbt_test__audit.unique_orders_clean_id"), "2:2");
    assert_eq!(
        psql(&db, "select table_type from information_schema.tables where table_schema = 'main_dbt_test__audit' and table_name = 'not_null_orders_clean_status'"),
        "VIEW"
    );
}

#[test]
fn build_skips_children_of_a_node_whose_test_failed() {
    let db = pg::database("dt_build");
    let yml = "version: 2\nmodels:\n  - name: orders_clean\n    columns:\n      - name: id\n        data_tests: [unique]\n";
    let dir = test_project(&db, yml);
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("SKIP relation main.downstream"),
        "{}",
        r.stderr
    );
    assert_eq!(
        psql(
            &db,
            "select count(*) from information_schema.tables where table_name = 'downstream'"
        ),
        "0"
    );
    // With the test downgraded to a warning, the child builds.
    std::fs::write(
        dir.path().join("models/schema.yml"),
        "version: 2\nmodels:\n  - name: orders_clean\n    columns:\n      - name: id\n        data_tests:\n          - unique:\n              config:\n                severity: warn\n",
    )
    .unwrap();
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(psql(&db, "select n from main.downstream"), "5");
}

#[test]
fn source_freshness_pass_warn_error_and_sources_json() {
    let db = pg::database("freshness");
    psql(
        &db,
        "create schema raw; \
         create table raw.fresh as select now() - interval '5 minutes' as loaded_at; \
         create table raw.aging as select now() - interval '2 hours' as loaded_at; \
         create table raw.stale as select now() - interval '3 days' as loaded_at, 'old' as kind union all select now(), 'filtered out'; \
         create table raw.archive as select now() - interval '300 days' as loaded_at;",
    );
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: main\n",
        pg::port(),
        pg::password()
    );
    let yml = "version: 2\nsources:\n  - name: raw\n    schema: raw\n    loaded_at_field: loaded_at\n    freshness:\n      warn_after: {count: 1, period: hour}\n      error_after: {count: 1, period: day}\n    tables:\n      - name: fresh\n        columns:\n          - name: loaded_at\n            data_tests: [not_null, unique]\n      - name: aging\n      - name: stale\n        freshness:\n          warn_after: {count: 1, period: hour}\n          error_after: {count: 1, period: day}\n          filter: \"kind = 'old'\"\n      - name: archive\n        freshness: null\n";
    let dir = project(&[("profiles.yml", &profile), ("models/sources.yml", yml)]);
    let r = strata(dir.path(), &["source", "freshness"]);
    assert_eq!(r.code, 1, "a stale source exits 1: {}", r.stderr);
    assert!(
        r.stderr.contains("PASS freshness of raw.fresh"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("WARN freshness of raw.aging"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("ERROR STALE freshness of raw.stale"),
        "the filter keeps only old rows: {}",
        r.stderr
    );
    // `freshness: null` on a table turns its source's freshness off.
    assert!(!r.stderr.contains("raw.archive"), "{}", r.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/sources.json")).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("schemas/sources-v3.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .take(5)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let r = strata(
        dir.path(),
        &["source", "freshness", "-s", "source:raw.fresh"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn unit_tests_formats_overrides_and_diffs() {
    let db = pg::database("unit");
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: main\n",
        pg::port(),
        pg::password()
    );
    let yml = r#"version: 2
sources:
  - name: raw
    tables:
      - name: events
unit_tests:
  - name: doubles_with_multiplier
    model: scaled
    overrides:
      vars: {multiplier: 3}
    given:
      - input: ref('base')
        rows:
          - {id: 1, v: 2}
          - {id: 2}
    expect:
      rows:
        - {id: 1, scaled: 6}
        - {id: 2, scaled: null}
  - name: incremental_branch_and_sql_format
    model: inc
    overrides:
      macros: {is_incremental: true}
    given:
      - input: source('raw', 'events')
        format: sql
        rows: "select 1 as id, 'old' as kind union all select 5, 'new'"
    expect:
      format: sql
      rows: "select 5 as id"
  - name: wrong_expectation
    model: scaled
    given:
      - input: ref('base')
        format: csv
        rows: |
          id,v
          1,10
    expect:
      rows:
        - {id: 1, scaled: 999}
"#;
    let dir = project(&[
        ("profiles.yml", &profile),
        ("models/base.sql", "select 1 as id, 1 as v"),
        ("models/scaled.sql", "select id, v * {{ var('multiplier', 2) }} as scaled from {{ ref('base') }}"),
        (
            "models/inc.sql",
            "{{ config(materialized='incremental') }}select id from {{ source('raw', 'events') }}{% if is_incremental() %} where id > 3{% endif %}",
        ),
        ("models/schema.yml", yml),
    ]);
    let r = strata(dir.path(), &["test"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("PASS scaled::doubles_with_multiplier"),
        "vars override: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("PASS inc::incremental_branch_and_sql_format"),
        "is_incremental override: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("FAIL scaled::wrong_expectation"),
        "{}",
        r.stderr
    );
    insta::assert_snapshot!(
        "unit_test_diff",
        r.stderr
            .lines()
            .skip_while(|l| !l.starts_with("Failure in unit test"))
            .take(6)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/run_results.json")).unwrap();
    assert!(manifest["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(
            |r| r["unique_id"] == "unit_test.proj.scaled.wrong_expectation"
                && r["status"] == "fail"
        ));
}

/// `fixture:` names a file under a test path's `fixtures/` (csv or sql), as in
/// dbt; those files are not singular tests.
#[test]
fn unit_test_fixture_files() {
    let db = pg::database("unitfix");
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: main\n",
        pg::port(),
        pg::password()
    );
    let yml = "unit_tests:\n  - name: from_files\n    model: scaled\n    given:\n      - input: ref('base')\n        format: csv\n        fixture: base_rows\n    expect:\n      format: sql\n      fixture: expected_scaled\n";
    let dir = project(&[
        ("profiles.yml", &profile),
        ("models/base.sql", "select 1 as id, 1 as v"),
        (
            "models/scaled.sql",
            "select id, v * 2 as scaled from {{ ref('base') }}",
        ),
        ("models/schema.yml", yml),
        ("tests/fixtures/base_rows.csv", "id,v\n1,10\n2,20\n"),
        (
            "tests/fixtures/nested/expected_scaled.sql",
            "select 1 as id, 20 as scaled union all select 2, 40",
        ),
    ]);
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("PASS scaled::from_files"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("expected_scaled "),
        "not a singular test: {}",
        r.stderr
    );
    std::fs::remove_file(dir.path().join("tests/fixtures/base_rows.csv")).unwrap();
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("fixture 'base_rows' not found"),
        "{}",
        r.stderr
    );
}
