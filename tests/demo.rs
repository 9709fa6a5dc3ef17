//! The repository's payments demo, built end to end on a real PostgreSQL:
//! staging cleans the raw data, snapshots keep customer history, and the fact
//! table joins each transaction to the dimension version valid at its time.

mod common;

use common::*;

use common::pg::psql;

#[test]
fn demo_builds_and_keeps_customer_history() {
    let dir = copy_demo(false);
    let db = pg::database("demo");
    std::fs::write(
        dir.path().join("profiles.yml"),
        format!(
            "payments:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: payments\n      threads: 4\n",
            pg::port(),
            pg::password()
        ),
    )
    .unwrap();
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ERROR=0 SKIP=0"), "{}", r.stderr);
    // Staging: retried deliveries deduplicated (latest wins), amounts and dates parsed.
    assert_eq!(
        psql(
            &db,
            "select count(*) from payments_staging.stg_transactions"
        ),
        "15"
    );
    assert_eq!(
        psql(
            &db,
            "select status from payments_staging.stg_transactions where transaction_id = 't-0006'"
        ),
        "settled"
    );
    assert_eq!(psql(&db, "select amount || ' ' || currency from payments_staging.stg_transactions where transaction_id = 't-0003'"), "1234.56 USD");
    assert_eq!(psql(&db, "select created_at from payments_staging.stg_transactions where transaction_id = 't-0002'"), "2024-03-01 11:20:00");
    assert_eq!(psql(&db, "select billing_country || '/' || notify_by_sms from payments_core.dim_customers where customer_id = 'c-002'"), "US/true");
    // A customer changes tier: a second version; old facts keep the old version.
    let seed = std::fs::read_to_string(dir.path().join("seeds/raw_customers.csv")).unwrap();
    std::fs::write(
        dir.path().join("seeds/raw_customers.csv"),
        seed.replace("\"\"tier\"\": \"\"bronze\"\"", "\"\"tier\"\": \"\"gold\"\""),
    )
    .unwrap();
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select string_agg(tier || ':' || is_current, ',' order by valid_from) from payments_core.dim_customers where customer_id = 'c-004'"),
        "bronze:false,gold:true"
    );
    assert_eq!(
        psql(&db, "select count(distinct customer_sk) from payments_core.fact_transactions where customer_id = 'c-004'"),
        "1",
        "transactions before the change join the version valid then"
    );
    assert_eq!(psql(&db, "select tier from payments_analytics.customer_lifetime_value where customer_id = 'c-004'"), "gold");
}
