//! The Redshift adapter over the Postgres wire protocol, end to end against
//! the test PostgreSQL (Redshift speaks that protocol). The database gets
//! Redshift's system views (SVV_TABLES, SVV_COLUMNS, ...) defined over
//! Postgres's catalog (`fixtures/redshift/catalog.sql`), so the adapter's
//! catalog queries, its seed INSERTs, snapshot locks and freshness run as
//! they would on a cluster. Redshift-only DDL clauses (DISTSTYLE, SORTKEY,
//! late binding) are checked by snapshot and sqlparser in the unit tests.

mod common;

use common::pg::psql;
use common::*;

/// A project whose `dev` target is `type: redshift` over the wire protocol,
/// pointing at `db`.
fn redshift_project(db: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    redshift::install_catalog(db);
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: redshift\n      method: database\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: main\n      threads: 2\n      sslmode: prefer\n",
        pg::port(),
        pg::password()
    );
    redshift::project_with(&profile, files)
}

#[test]
fn every_command_runs_over_the_wire_protocol() {
    let db = pg::database("redshift_wire");
    let dir = redshift_project(&db, redshift::PROJECT);
    redshift::every_command(dir.path(), &db);
}

#[test]
fn a_failing_model_keeps_the_old_relation_and_retry_reruns_it() {
    let db = pg::database("redshift_retry");
    let dir = redshift_project(
        &db,
        &[
            (
                "models/a.sql",
                "{{ config(materialized='table') }}select 1 as id",
            ),
            ("models/b.sql", "select * from {{ ref('a') }}"),
        ],
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
    assert_eq!(psql(&db, "select count(*) from main.a"), "1");
    std::fs::write(
        p.join("models/a.sql"),
        "{{ config(materialized='table') }}select 2 as id",
    )
    .unwrap();
    let r = strata(p, &["retry"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select id from main.b"), "2");
}

#[test]
fn a_redshift_target_without_a_password_says_so() {
    let dir = project(&[(
        "profiles.yml",
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: redshift\n      host: example.com\n      user: u\n      dbname: db\n      schema: main\n",
    ), ("models/a.sql", "select 1 as id")]);
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("needs a 'password'"), "{}", r.stderr);
}

/// Statements Strata sends to Redshift that sqlparser's Redshift dialect
/// cannot read although Redshift documents them; each is checked by a
/// snapshot instead.
fn sqlparser_lacks(statement: &str) -> Option<&'static str> {
    let s = statement.to_lowercase();
    [
        (
            "lock table",
            "LOCK (https://docs.aws.amazon.com/redshift/latest/dg/r_LOCK.html)",
        ),
        ("interleaved sortkey", "INTERLEAVED SORTKEY"),
        ("auto refresh", "AUTO REFRESH"),
    ]
    .into_iter()
    .find(|(k, _)| s.contains(k))
    .map(|(_, why)| why)
}

/// The demo planned for Redshift with no cluster (`--dry-run --offline`):
/// every statement of every node, read back by sqlparser's Redshift dialect.
#[test]
fn the_demo_plans_for_redshift_offline_in_sql_redshift_parses() {
    use sqlparser::dialect::RedshiftSqlDialect;
    use sqlparser::parser::Parser;
    let dir = copy_demo(true);
    let p = dir.path();
    let r = strata(p, &["compile", "-t", "redshift"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // The curated layer is read from S3 on Redshift.
    let manifest = read(p, "target/strata/manifest.json");
    assert!(
        manifest.contains("\"location\":\"s3://payments-curated/transactions/\""),
        "the redshift target's sources point at S3"
    );
    let r = strata(p, &["build", "-t", "redshift", "--dry-run", "--offline"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!p.join("target/strata/run_results.json").exists());

    let run = p.join("target/strata/run/payments");
    let fact =
        std::fs::read_to_string(run.join("models/marts/core/fact_transactions.sql")).unwrap();
    assert!(
        fact.contains(r#"diststyle key distkey ("customer_sk") sortkey ("created_at")"#),
        "{fact}"
    );
    let dim = std::fs::read_to_string(run.join("models/marts/core/dim_customers.sql")).unwrap();
    assert!(dim.contains("diststyle all"), "{dim}");
    let stg = std::fs::read_to_string(run.join("models/staging/stg_customers.sql")).unwrap();
    assert!(stg.contains("with no schema binding"), "{stg}");
    let seed = std::fs::read_to_string(run.join("seeds/currency_rates.csv")).unwrap();
    assert!(seed.contains("insert into"), "{seed}");

    let mut parsed = 0;
    let mut failures = Vec::new();
    for e in walkdir::WalkDir::new(&run) {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        for statement in text.split(";\n\n").filter(|s| !s.trim().is_empty()) {
            if sqlparser_lacks(statement).is_some() {
                continue;
            }
            match Parser::parse_sql(&RedshiftSqlDialect {}, statement) {
                Ok(_) => parsed += 1,
                Err(err) => failures.push(format!("{}: {err}\n{statement}", e.path().display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(parsed > 60, "{parsed}");
}
