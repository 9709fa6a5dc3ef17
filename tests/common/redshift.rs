//! What the Redshift tests share: Redshift's system views on the test
//! PostgreSQL, and a small project exercising every command.

use super::pg::psql;

/// Creates Redshift's system views over Postgres's catalog in `db`
/// (`fixtures/redshift/catalog.sql`).
pub fn install_catalog(db: &str) {
    let catalog = std::fs::read_to_string(super::fixture("redshift/catalog.sql")).unwrap();
    for stmt in catalog.split(";\n").filter(|s| {
        s.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
    }) {
        psql(db, stmt);
    }
}

/// A project with this profiles.yml and these files.
pub fn project_with(profile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let mut all: Vec<(&str, &str)> = vec![
        ("profiles.yml", profile),
        ("dbt_project.yml", "name: proj\nprofile: proj\n"),
    ];
    all.extend_from_slice(files);
    super::project(&all)
}

pub const PROJECT: &[(&str, &str)] = &[
    ("seeds/customers.csv", "id,name,joined\n1,Ann,2024-01-02\n2,Bob,\n3,\"O'Neil, C\",2024-03-04\n"),
    (
        "models/stg_customers.sql",
        "{{ config(materialized='view') }}select id, name, joined from {{ ref('customers') }}",
    ),
    (
        "models/dim_customers.sql",
        "{{ config(materialized='table', dist='all', sort=['id']) }}select * from {{ ref('stg_customers') }}",
    ),
    (
        "models/fct_events.sql",
        "{{ config(materialized='incremental', unique_key='id', incremental_strategy='delete+insert', dist='id', sort='id') }}\
         select id, name from {{ ref('stg_customers') }}\
         {% if is_incremental() %} where id >= (select max(id) from {{ this }}){% endif %}",
    ),
    (
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: dim_customers\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n\
         sources:\n  - name: raw\n    schema: main\n    loaded_at_field: joined::timestamp\n    freshness:\n      error_after: {count: 1, period: day}\n    tables:\n      - name: customers\n",
    ),
    (
        "snapshots/customers_snap.sql",
        "{% snapshot customers_snap %}{{ config(target_schema='snap', unique_key='id', strategy='check', check_cols=['name']) }}\
         select * from {{ ref('customers') }}{% endsnapshot %}",
    ),
    (
        "macros/ops.sql",
        "{% macro count_customers() %}{% set t = run_query('select count(*) from ' ~ ref('customers')) %}{{ log('customers: ' ~ t.columns[0].values()[0], info=true) }}{% endmacro %}",
    ),
];

/// Runs every command on a `type: redshift` project built from [`PROJECT`]
/// and checks what each did in `db`, whatever the transport.
pub fn every_command(p: &std::path::Path, db: &str) {
    use super::strata;

    let r = strata(p, &["debug"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("type:          redshift"), "{}", r.stdout);

    // Seeds load with multi-row INSERTs (no client COPY on Redshift, no S3
    // staging configured), typed without truncation.
    let r = strata(p, &["seed"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        psql(db, "select name from main.customers where id = 3"),
        "O'Neil, C"
    );
    assert_eq!(
        psql(
            db,
            "select count(*) from main.customers where joined is null"
        ),
        "1"
    );
    assert_eq!(
        psql(db, "select data_type from information_schema.columns where table_name = 'customers' and column_name = 'name'"),
        "character varying"
    );
    // A reload keeps the table and replaces its rows in one transaction.
    let r = strata(p, &["seed"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(db, "select count(*) from main.customers"), "3");

    // dist/sort are planned for Redshift: on this Postgres they would be a
    // syntax error, so the run proves the DDL went through the dialect. The
    // test exercises the rest of the Redshift plans: skip the layout here.
    let r = strata(p, &["build", "--exclude", "dim_customers", "fct_events"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(db, "select count(*) from snap.customers_snap"), "3");

    // ... and the layout did reach the server: Postgres rejects DISTSTYLE.
    let r = strata(p, &["run", "-s", "dim_customers"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("diststyle"), "{}", r.stderr);

    let r = strata(p, &["show", "-s", "stg_customers", "--limit", "2"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Ann"), "{}", r.stdout);

    let r = strata(p, &["run-operation", "count_customers"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("customers: 3") || r.stderr.contains("customers: 3"),
        "{}{}",
        r.stdout,
        r.stderr
    );

    // Freshness: Redshift's GETDATE, the age computed by the client.
    let r = strata(p, &["source", "freshness"]);
    assert_eq!(
        r.code, 1,
        "stale data is an error: {}{}",
        r.stdout, r.stderr
    );
    assert!(r.stderr.contains("ERROR STALE") || r.stdout.contains("ERROR STALE"));

    // A snapshot run after a change closes the old version (LOCK TABLE and
    // GETDATE on the Redshift side).
    psql(db, "update main.customers set name = 'Bobby' where id = 2");
    let r = strata(p, &["snapshot"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(db, "select count(*) from snap.customers_snap"), "4");
    assert_eq!(
        psql(
            db,
            "select count(*) from snap.customers_snap where dbt_valid_to is null"
        ),
        "3"
    );
}
