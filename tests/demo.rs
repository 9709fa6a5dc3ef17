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
    // The curated files loaded first, each recorded once.
    assert!(
        r.stderr
            .contains("OK loaded source curated.transactions: 8 files, 18 rows"),
        "{}",
        r.stderr
    );
    assert_eq!(
        psql(
            &db,
            "select count(*) from payments_raw._strata_load_history"
        ),
        "10"
    );
    // A customer changes tier in the next full delivery of profiles (the
    // table follows it: `mode: replace`), and a second drop of transactions
    // arrives for a new day: only that file loads.
    let profiles = dir
        .path()
        .join("data/curated/customers/profiles-2024-03-01.jsonl");
    let text = std::fs::read_to_string(&profiles).unwrap();
    std::fs::write(
        &profiles,
        text.replace("\"tier\": \"bronze\"", "\"tier\": \"gold\""),
    )
    .unwrap();
    curated::write_transactions(
        "transaction_id,customer_id,merchant_id,amount,currency,status,created_at,ingested_at\n\
         t-0100,c-004,m-01,$20.00,USD,settled,2024-03-10 09:00:00,2024-03-10 09:01:00\n\
         t-0101,c-001,m-02,€12.00,EUR,settled,2024-03-10 10:00:00,2024-03-10 10:00:30\n",
        &dir.path().join("data/curated/transactions"),
        2,
    );
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select string_agg(tier || ':' || is_current, ',' order by valid_from) from payments_core.dim_customers where customer_id = 'c-004'"),
        "bronze:false,gold:true"
    );
    assert!(
        r.stderr
            .contains("OK loaded source curated.transactions: 1 file, 2 rows"),
        "{}",
        r.stderr
    );
    assert_eq!(
        psql(
            &db,
            "select count(*) from payments_staging.stg_transactions"
        ),
        "17"
    );
    assert_eq!(
        psql(&db, "select count(distinct customer_sk) from payments_core.fact_transactions where customer_id = 'c-004'"),
        "1",
        "transactions before the change join the version valid then"
    );
    assert_eq!(psql(&db, "select tier from payments_analytics.customer_lifetime_value where customer_id = 'c-004'"), "gold");
}
