//! `strata run` against a real PostgreSQL: views and tables on first run and
//! rerun, a failing model leaving the old relation intact, skips, threads,
//! fail-fast and run_results.json.

mod common;

use common::*;

use common::pg::psql;

fn warehouse_project(db: &str, threads: usize, files: &[(&str, &str)]) -> tempfile::TempDir {
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: main\n      threads: {threads}\n",
        pg::port(),
        pg::password()
    );
    let mut all: Vec<(&str, &str)> = vec![
        ("profiles.yml", &profile),
        (
            "dbt_project.yml",
            "name: proj\nprofile: proj\nmodels:\n  proj:\n    marts:\n      +materialized: table\n      +schema: marts\n",
        ),
    ];
    all.extend_from_slice(files);
    project(&all)
}

const MODELS: &[(&str, &str)] = &[
    ("models/base.sql", "select g as id from generate_series(1, 10) g"),
    ("models/marts/totals.sql", "{{ config(post_hook='analyze {{ this }}') }}select count(*) as n, sum(id) as s from {{ ref('base') }}"),
    ("models/marts/eph.sql", "{{ config(materialized='ephemeral') }}select id from {{ ref('base') }} where id > 5"),
    ("models/marts/big_ids.sql", "select * from {{ ref('eph') }}"),
];

#[test]
fn first_run_rerun_and_results() {
    let db = pg::database("run_basic");
    let dir = warehouse_project(&db, 4, MODELS);
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select n || ',' || s from main_marts.totals"),
        "10,55"
    );
    assert_eq!(psql(&db, "select count(*) from main_marts.big_ids"), "5");
    assert_eq!(
        psql(
            &db,
            "select table_type from information_schema.tables where table_name = 'base'"
        ),
        "VIEW"
    );
    assert!(
        r.stderr
            .contains("Done. PASS=3 WARN=0 ERROR=0 SKIP=0 TOTAL=3"),
        "{}",
        r.stderr
    );
    // Rerun replaces in place.
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(psql(&db, "select n from main_marts.totals"), "10");
    let results: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/run_results.json")).unwrap();
    let totals = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["unique_id"] == "model.proj.totals")
        .unwrap();
    assert_eq!(totals["status"], "success");
    assert_eq!(totals["adapter_response"]["rows_affected"], 1);
    assert_eq!(
        totals["relation_name"],
        "\"".to_string() + &db + "\".\"main_marts\".\"totals\""
    );
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("schemas/run-results-v6.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&results)
        .take(5)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn failing_model_keeps_previous_relation_and_skips_descendants() {
    let db = pg::database("run_fail");
    let dir = warehouse_project(&db, 2, MODELS);
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    std::fs::write(
        dir.path().join("models/base.sql"),
        "select no_such_column from generate_series(1, 3) g",
    )
    .unwrap();
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Database Error in model base (models/base.sql)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("column \"no_such_column\" does not exist"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("ERROR=1 SKIP=2"), "{}", r.stderr);
    // The old view is still there and readable.
    assert_eq!(psql(&db, "select count(*) from main.base"), "10");
    let results: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/run_results.json")).unwrap();
    let statuses: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "skipped").count(), 2);
}

#[test]
fn one_and_eight_threads_give_identical_results() {
    let mut files: Vec<(String, String)> = vec![("models/m0.sql".into(), "select 1 as v".into())];
    for i in 1..20 {
        files.push((
            format!("models/m{i}.sql"),
            format!("select v + {i} as v from {{{{ ref('m{}') }}}}", i / 2),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut seen = Vec::new();
    for threads in [1, 8] {
        let db = pg::database(&format!("run_threads_{threads}"));
        let dir = warehouse_project(&db, threads, &refs);
        let r = strata(dir.path(), &["run"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        // A rerun replaces views whose dependents were dropped with their old parents.
        let r = strata(dir.path(), &["run"]);
        assert_eq!(r.code, 0, "rerun: {}", r.stderr);
        seen.push(psql(&db, "select string_agg(v::text, ',' order by v) from (select v from main.m19 union all select v from main.m13) x"));
    }
    // m_i = m_(i/2) + i from m0 = 1: m13 = 24 and m19 = 36 only if every ref resolved.
    assert_eq!(seen[0], "24,36");
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn fail_fast_stops_at_the_first_failure() {
    let db = pg::database("run_failfast");
    let dir = warehouse_project(
        &db,
        1,
        &[
            (
                "models/a_bad.sql",
                "{{ config(materialized='table') }}select 1/0 as boom",
            ),
            ("models/b.sql", "select 1 as x"),
            ("models/c.sql", "select 2 as y"),
        ],
    );
    let r = strata(dir.path(), &["run", "--fail-fast"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("division by zero"), "{}", r.stderr);
    assert!(r.stderr.contains("ERROR=1 SKIP=2"), "{}", r.stderr);
}

#[test]
fn seeds_load_with_inferred_types_and_survive_bad_files() {
    let db = pg::database("seeds");
    let dir = warehouse_project(
        &db,
        2,
        &[
            (
                "seeds/people.csv",
                "id,name,score,joined,active,note\n1,\"Lovelace, Ada\",9.5,2024-01-02,true,\n2,Hopper,7,2024-02-03,false,\"said \"\"hi\"\"\"\n",
            ),
            ("seeds/codes.csv", "code,label\n007,bond\n042,answer\n"),
            ("seeds/_seeds.yml", "version: 2\nseeds:\n  - name: codes\n    config:\n      column_types:\n        code: text\n"),
            ("models/people_summary.sql", "select count(*) as n, sum(score) as s from {{ ref('people') }}"),
        ],
    );
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("OK loaded seed file main.people"),
        "{}",
        r.stderr
    );
    let types = psql(
        &db,
        "select string_agg(column_name || ':' || data_type, ',' order by ordinal_position) from information_schema.columns where table_name = 'people'",
    );
    assert_eq!(
        types,
        "id:integer,name:text,score:numeric,joined:date,active:boolean,note:text"
    );
    assert_eq!(
        psql(
            &db,
            "select name || '|' || coalesce(note, 'NULL') from main.people order by id"
        ),
        "Lovelace, Ada|NULL\nHopper|said \"hi\""
    );
    assert_eq!(
        psql(
            &db,
            "select string_agg(code, ',' order by code) from main.codes"
        ),
        "007,042"
    );
    assert_eq!(
        psql(&db, "select n || ',' || s from main.people_summary"),
        "2,16.5"
    );

    // A ragged row: the error names file and line, and the old table survives.
    std::fs::write(
        dir.path().join("seeds/people.csv"),
        "id,name,score,joined,active,note\n3,X,1,2024-01-01,true,\n4,Y\n",
    )
    .unwrap();
    let r = strata(dir.path(), &["seed"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("seeds/people.csv:3:1"), "{}", r.stderr);
    assert!(
        r.stderr.contains("row has 2 fields but the header has 6"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select count(*) from main.people"), "2");

    // A value the column type rejects: Postgres's COPY error, mapped to the file line.
    std::fs::write(
        dir.path().join("seeds/people.csv"),
        "id,name,score,joined,active,note\n3,X,1,2024-01-01,true,\n",
    )
    .unwrap();
    assert_eq!(strata(dir.path(), &["seed"]).code, 0);
    std::fs::write(
        dir.path().join("seeds/_seeds.yml"),
        "version: 2\nseeds:\n  - name: codes\n    config:\n      column_types:\n        code: integer\n        label: integer\n",
    )
    .unwrap();
    let r = strata(dir.path(), &["seed", "--full-refresh", "-s", "codes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("seeds/codes.csv:2"), "{}", r.stderr);
    assert_eq!(
        psql(&db, "select count(*) from main.codes"),
        "2",
        "the previous table survives"
    );
    // Truncate and reload keeps the table; --full-refresh recreates it.
    assert_eq!(psql(&db, "select count(*) from main.people"), "1");
}

fn incremental_project(db: &str, model: &str) -> tempfile::TempDir {
    warehouse_project(
        db,
        2,
        &[
            ("models/events.sql", model),
            (
                "seeds/src.csv",
                "id,region,v,ts\n1,eu,a,1\n2,us,b,1\n,eu,n,1\n",
            ),
        ],
    )
}

fn set_source(dir: &std::path::Path, csv: &str) {
    std::fs::write(dir.join("seeds/src.csv"), csv).unwrap();
}

#[test]
fn incremental_strategies_and_null_keys() {
    for strategy in ["merge", "delete+insert"] {
        let db = pg::database(&format!("inc_{}", strategy.replace('+', "_")));
        let model = format!(
            "{{{{ config(materialized='incremental', unique_key=['id', 'region'], incremental_strategy='{strategy}') }}}}\n\
             select id, region, v, ts from {{{{ ref('src') }}}}\n\
             {{% if is_incremental() %}}where ts > (select max(ts) from {{{{ this }}}}){{% endif %}}"
        );
        let dir = incremental_project(&db, &model);
        let r = strata(dir.path(), &["build"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(psql(&db, "select count(*) from main.events"), "3");
        // id 1 changes, a NULL-key row arrives again, id 3 is new.
        set_source(
            dir.path(),
            "id,region,v,ts\n1,eu,a2,2\n,eu,n2,2\n3,eu,c,2\n",
        );
        let r = strata(dir.path(), &["build"]);
        assert_eq!(r.code, 0, "{strategy}: {}", r.stderr);
        assert_eq!(
            psql(&db, "select string_agg(coalesce(id::text, 'null') || '=' || v, ',' order by id nulls last) from main.events"),
            "1=a2,2=b,3=c,null=n2",
            "{strategy}"
        );
        let compiled = read(dir.path(), "target/compiled/proj/models/events.sql");
        assert!(
            compiled.contains("where ts > (select max(ts) from"),
            "is_incremental() was true: {compiled}"
        );
        // --full-refresh rebuilds from the current source only.
        let r = strata(dir.path(), &["build", "--full-refresh"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(psql(&db, "select count(*) from main.events"), "3");
    }
}

#[test]
fn incremental_append_and_schema_changes() {
    let db = pg::database("inc_schema");
    let dir = incremental_project(
        &db,
        "{{ config(materialized='incremental', on_schema_change='fail') }}select id, v from {{ ref('src') }}",
    );
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select count(*) from main.events"),
        "6",
        "append adds rows again"
    );
    // A new column with on_schema_change=fail stops the model and keeps the table.
    std::fs::write(
        dir.path().join("models/events.sql"),
        "{{ config(materialized='incremental', on_schema_change='fail') }}select id, v, region from {{ ref('src') }}",
    )
    .unwrap();
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("Source columns not in target: [region text]"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select count(*) from main.events"), "6");
    // append_new_columns adds it.
    std::fs::write(
        dir.path().join("models/events.sql"),
        "{{ config(materialized='incremental', on_schema_change='append_new_columns') }}select id, v, region from {{ ref('src') }}",
    )
    .unwrap();
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    assert_eq!(
        psql(
            &db,
            "select count(*) filter (where region is not null) || '/' || count(*) from main.events"
        ),
        "3/9"
    );
    // sync_all_columns drops the removed one.
    std::fs::write(
        dir.path().join("models/events.sql"),
        "{{ config(materialized='incremental', on_schema_change='sync_all_columns') }}select id, region from {{ ref('src') }}",
    )
    .unwrap();
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    assert_eq!(
        psql(&db, "select string_agg(column_name, ',' order by ordinal_position) from information_schema.columns where table_name = 'events'"),
        "id,region"
    );
}

#[test]
fn show_previews_models_and_inline_sql() {
    let db = pg::database("show");
    let dir = warehouse_project(&db, 2, MODELS);
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    let r = strata(dir.path(), &["show", "-s", "totals"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "| n   | s   |\n| --- | --- |\n| 10  | 55  |\n");
    let r = strata(
        dir.path(),
        &[
            "show",
            "--inline",
            "select id from {{ ref('base') }} order by id",
            "--limit",
            "2",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "| id  |\n| --- |\n| 1   |\n| 2   |\n");
}

#[test]
fn retry_reruns_failures_and_skips_only() {
    let db = pg::database("retry");
    let dir = warehouse_project(
        &db,
        2,
        &[
            ("models/ok.sql", "select 1 as x"),
            ("models/bad.sql", "{{ config(materialized='table') }}select * from {{ var('tbl', 'main.missing_table') }}"),
            ("models/after_bad.sql", "select * from {{ ref('bad') }}"),
        ],
    );
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 1);
    psql(&db, "create table main.missing_table (y int)");
    let r = strata(dir.path(), &["retry"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("running 2 models"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("main.ok "),
        "ok is not re-run: {}",
        r.stderr
    );
    let r = strata(dir.path(), &["retry"]);
    assert!(r.stderr.contains("Nothing to retry"), "{}", r.stderr);
}

#[test]
fn relation_settings_indexes_grants_docs_unlogged() {
    let db = pg::database("settings");
    psql(&db, "do $$ begin if not exists (select from pg_roles where rolname = 'strata_reporter') then create role strata_reporter; end if; end $$");
    let dir = warehouse_project(
        &db,
        2,
        &[
            (
                "models/marts/wide.sql",
                "{{ config(unlogged=true, indexes=[{'columns': ['id'], 'unique': true}], grants={'select': ['strata_reporter']}, persist_docs={'relation': true, 'columns': true}) }}\
                 select g as id, g * 2 as doubled from generate_series(1, 5) g",
            ),
            (
                "models/marts/schema.yml",
                "version: 2\nmodels:\n  - name: wide\n    description: \"Wide table\"\n    columns:\n      - name: id\n        description: \"Key\"\n      - name: not_produced\n        description: \"ignored\"\n",
            ),
        ],
    );
    for _ in 0..2 {
        let r = strata(dir.path(), &["run"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            psql(
                &db,
                "select relpersistence from pg_class where relname = 'wide'"
            ),
            "u"
        );
        assert_eq!(psql(&db, "select count(*) from pg_indexes where tablename = 'wide' and indexdef like '%UNIQUE%(id)%'"), "1");
        assert_eq!(
            psql(&db, "select privilege_type from information_schema.role_table_grants where table_name = 'wide' and grantee = 'strata_reporter'"),
            "SELECT"
        );
        assert_eq!(
            psql(&db, "select obj_description('main_marts.wide'::regclass)"),
            "Wide table"
        );
        assert_eq!(
            psql(
                &db,
                "select col_description('main_marts.wide'::regclass, 1)"
            ),
            "Key"
        );
    }
}

#[test]
fn materialized_views_are_created_then_refreshed() {
    let db = pg::database("matview");
    let dir = warehouse_project(
        &db,
        2,
        &[
            ("seeds/nums.csv", "n\n1\n2\n"),
            (
                "models/mv.sql",
                "{{ config(materialized='materialized_view', indexes=[{'columns': ['total']}]) }}select sum(n) as total from {{ ref('nums') }}",
            ),
        ],
    );
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    assert_eq!(psql(&db, "select total from main.mv"), "3");
    assert_eq!(
        psql(
            &db,
            "select count(*) from pg_matviews where matviewname = 'mv'"
        ),
        "1"
    );
    std::fs::write(dir.path().join("seeds/nums.csv"), "n\n1\n2\n10\n").unwrap();
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("REFRESH MATERIALIZED VIEW"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select total from main.mv"), "13");
    assert_eq!(
        psql(
            &db,
            "select count(*) from pg_indexes where tablename = 'mv'"
        ),
        "1"
    );
    let r = strata(dir.path(), &["run", "--full-refresh"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stderr.contains("REFRESH MATERIALIZED VIEW"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select total from main.mv"), "13");
}

#[test]
fn enforced_contracts_check_types_and_apply_constraints() {
    let db = pg::database("contract");
    let yml = "version: 2\nmodels:\n  - name: customers\n    config:\n      contract:\n        enforced: true\n    columns:\n      - name: id\n        data_type: int\n        constraints:\n          - type: not_null\n          - type: primary_key\n      - name: email\n        data_type: varchar(100)\n        constraints:\n          - type: check\n            expression: \"email like '%@%'\"\n";
    let dir = warehouse_project(
        &db,
        2,
        &[
            (
                "models/marts/customers.sql",
                "select 1 as id, 'a@x.io'::varchar(100) as email",
            ),
            ("models/marts/schema.yml", yml),
        ],
    );
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select count(*) from information_schema.table_constraints where table_name = 'customers' and constraint_type in ('PRIMARY KEY', 'CHECK')"),
        "3",
        "primary key, check, and the not-null check"
    );
    // A type mismatch stops the model before anything changes.
    std::fs::write(
        dir.path().join("models/marts/customers.sql"),
        "select 'one' as id, 'a@x.io'::varchar(100) as email",
    )
    .unwrap();
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("| id | integer | text | data type mismatch |"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select id from main_marts.customers"), "1");
    // A constraint violation fails inside the transaction: the old table stays.
    std::fs::write(
        dir.path().join("models/marts/customers.sql"),
        "select 2 as id, 'no-at-sign'::varchar(100) as email",
    )
    .unwrap();
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("violates check constraint"),
        "{}",
        r.stderr
    );
    assert_eq!(psql(&db, "select id from main_marts.customers"), "1");
}

#[test]
fn run_operation_uses_the_warehouse_from_macros() {
    let db = pg::database("runop");
    let dir = warehouse_project(
        &db,
        2,
        &[
            ("models/people.sql", "{{ config(materialized='table') }}select 1 as id, 'ada' as name union all select 2, 'grace'"),
            (
                "macros/ops.sql",
                "{% macro report(min_id) %}\n\
                 {% set rel = adapter.get_relation(database=target.database, schema=target.schema, identifier='people') %}\n\
                 {% set cols = adapter.get_columns_in_relation(rel) %}\n\
                 {% set res = run_query('select count(*) as n from ' ~ rel ~ ' where id >= ' ~ min_id) %}\n\
                 {% call statement('names', fetch_result=True) %}select string_agg(name, ',' order by id) from {{ rel }}{% endcall %}\n\
                 {{ print(rel.type ~ '|' ~ (cols | map(attribute='name') | join(',')) ~ '|' ~ res.rows[0]['n'] ~ '|' ~ load_result('names')['data'][0][0]) }}\n\
                 {{ return('not printed') }}\n\
                 {% endmacro %}\n\
                 {% macro cleanup() %}{% do adapter.drop_relation(adapter.get_relation(target.database, target.schema, 'people')) %}dropped{% endmacro %}",
            ),
        ],
    );
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    let r = strata(
        dir.path(),
        &["run-operation", "report", "--args", "{min_id: 2}"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "table|id,name|1|ada,grace");
    let r = strata(dir.path(), &["run-operation", "cleanup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(
            &db,
            "select count(*) from information_schema.tables where table_name = 'people'"
        ),
        "0"
    );
    let r = strata(dir.path(), &["run-operation", "no_such_macro"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn grants_on_kept_relations_are_revoked_to_match_the_config() {
    let db = pg::database("revoke");
    for role in ["strata_a", "strata_b"] {
        psql(&db, &format!("do $$ begin if not exists (select from pg_roles where rolname = '{role}') then create role {role}; end if; end $$"));
    }
    let model = |who: &str| {
        format!("{{{{ config(materialized='incremental', grants={{'select': [{who}]}}) }}}}select 1 as id")
    };
    let dir = warehouse_project(
        &db,
        2,
        &[("models/inc.sql", &model("'strata_a', 'strata_b'"))],
    );
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    let grantees = || {
        psql(&db, "select string_agg(grantee, ',' order by grantee) from information_schema.role_table_grants where table_name = 'inc' and grantee like 'strata_%'")
    };
    assert_eq!(grantees(), "strata_a,strata_b");
    std::fs::write(dir.path().join("models/inc.sql"), model("'strata_b'")).unwrap();
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        grantees(),
        "strata_b",
        "strata_a was revoked on the incremental run"
    );
    // A view replaced in place also ends with exactly the configured grants.
    let view = |who: &str| format!("{{{{ config(grants={{'select': [{who}]}}) }}}}select 1 as id");
    std::fs::write(
        dir.path().join("models/v.sql"),
        view("'strata_a', 'strata_b'"),
    )
    .unwrap();
    assert_eq!(strata(dir.path(), &["run", "-s", "v"]).code, 0);
    std::fs::write(dir.path().join("models/v.sql"), view("'strata_a'")).unwrap();
    let r = strata(dir.path(), &["run", "-s", "v"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select string_agg(grantee, ',' order by grantee) from information_schema.role_table_grants where table_name = 'v' and grantee like 'strata_%'"),
        "strata_a"
    );
}

fn snapshot_project(db: &str, config: &str) -> tempfile::TempDir {
    let snap = format!(
        "{{% snapshot items_snapshot %}}\n{{{{ config(target_schema='snapshots', {config}) }}}}\nselect * from {{{{ ref('items') }}}}\n{{% endsnapshot %}}"
    );
    warehouse_project(
        db,
        2,
        &[
            ("seeds/items.csv", "id,region,price,updated_at\n1,eu,10,2024-01-01 00:00:00\n2,us,20,2024-01-01 00:00:00\n"),
            ("snapshots/items.sql", &snap),
        ],
    )
}

fn versions(db: &str) -> String {
    psql(
        db,
        "select string_agg(id || ':' || price || ':' || case when dbt_valid_to is null then 'cur' else 'old' end, ',' order by id, dbt_valid_from) from snapshots.items_snapshot",
    )
}

#[test]
fn snapshot_check_strategy_tracks_changes_and_reverts() {
    let db = pg::database("snap_check");
    let dir = snapshot_project(
        &db,
        "unique_key='id', strategy='check', check_cols=['price']",
    );
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    assert_eq!(versions(&db), "1:10:cur,2:20:cur");
    let r = strata(dir.path(), &["snapshot"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(versions(&db), "1:10:cur,2:20:cur", "no change adds nothing");
    std::fs::write(
        dir.path().join("seeds/items.csv"),
        "id,region,price,updated_at\n1,eu,11,2024-01-01 00:00:00\n2,us,20,2024-01-01 00:00:00\n",
    )
    .unwrap();
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    std::fs::write(
        dir.path().join("seeds/items.csv"),
        "id,region,price,updated_at\n1,eu,10,2024-01-01 00:00:00\n2,us,20,2024-01-01 00:00:00\n",
    )
    .unwrap();
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    assert_eq!(
        versions(&db),
        "1:10:old,1:11:old,1:10:cur,2:20:cur",
        "a reverted value gives three versions"
    );
    assert_eq!(
        psql(
            &db,
            "select count(*) from snapshots.items_snapshot where dbt_valid_to is null"
        ),
        "2"
    );
}

#[test]
fn snapshot_timestamp_strategy_hard_deletes_and_new_columns() {
    let db = pg::database("snap_ts");
    let dir = snapshot_project(&db, "unique_key=['id', 'region'], strategy='timestamp', updated_at='updated_at', hard_deletes='new_record'");
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    // id 1 updated (newer timestamp), id 2 deleted, id 3 new with a NULL region, and a new column.
    std::fs::write(
        dir.path().join("seeds/items.csv"),
        "id,region,price,updated_at,color\n1,eu,15,2024-02-01 00:00:00,red\n3,,30,2024-02-01 00:00:00,blue\n",
    )
    .unwrap();
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        versions(&db),
        "1:10:old,1:15:cur,2:20:old,2:20:cur,3:30:cur"
    );
    assert_eq!(psql(&db, "select dbt_is_deleted from snapshots.items_snapshot where id = 2 and dbt_valid_to is null"), "True");
    assert_eq!(
        psql(
            &db,
            "select color from snapshots.items_snapshot where id = 3"
        ),
        "blue"
    );
    // Same data again: nothing changes, the NULL-keyed row is not duplicated.
    assert_eq!(strata(dir.path(), &["snapshot"]).code, 0);
    assert_eq!(
        psql(
            &db,
            "select count(*) from snapshots.items_snapshot where id = 3"
        ),
        "1"
    );
    assert_eq!(
        versions(&db),
        "1:10:old,1:15:cur,2:20:old,2:20:cur,3:30:cur"
    );
}

#[test]
fn snapshot_invalidate_deletes_and_concurrent_runs() {
    let db = pg::database("snap_inv");
    let dir = snapshot_project(
        &db,
        "unique_key='id', strategy='check', check_cols='all', hard_deletes='invalidate'",
    );
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    std::fs::write(
        dir.path().join("seeds/items.csv"),
        "id,region,price,updated_at\n1,eu,12,2024-01-01 00:00:00\n",
    )
    .unwrap();
    assert_eq!(strata(dir.path(), &["seed"]).code, 0);
    // Two snapshot runs at once: the advisory lock serializes them.
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("snapshot")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(versions(&db), "1:10:old,1:12:cur,2:20:old");
    assert_eq!(
        psql(
            &db,
            "select count(*) from snapshots.items_snapshot where dbt_valid_to is null"
        ),
        "1",
        "one current row per key"
    );
}

#[test]
fn incremental_on_schema_change_ignore_keeps_the_table_shape() {
    let db = pg::database("inc_ignore");
    let dir = incremental_project(
        &db,
        "{{ config(materialized='incremental') }}select id, v from {{ ref('src') }}",
    );
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    std::fs::write(
        dir.path().join("models/events.sql"),
        "{{ config(materialized='incremental', on_schema_change='ignore') }}select id, v, region from {{ ref('src') }}",
    )
    .unwrap();
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select string_agg(column_name, ',' order by ordinal_position) from information_schema.columns where table_name = 'events'"),
        "id,v",
        "the new column is ignored"
    );
    assert_eq!(psql(&db, "select count(*) from main.events"), "6");
}

#[test]
fn yaml_snapshot_with_relation_and_ignored_deletes() {
    let db = pg::database("snap_yaml");
    let dir = warehouse_project(
        &db,
        2,
        &[
            ("seeds/items.csv", "id,price\n1,10\n2,20\n"),
            (
                "snapshots/snapshots.yml",
                "version: 2\nsnapshots:\n  - name: items_history\n    relation: ref('items')\n    config:\n      schema: hist\n      unique_key: id\n      strategy: check\n      check_cols: all\n",
            ),
        ],
    );
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    std::fs::write(dir.path().join("seeds/items.csv"), "id,price\n1,11\n").unwrap();
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // hard_deletes defaults to ignore: id 2 stays current.
    assert_eq!(
        psql(&db, "select string_agg(id || ':' || price || ':' || (dbt_valid_to is null), ',' order by id, dbt_valid_from) from main_hist.items_history"),
        "1:10:false,1:11:true,2:20:true"
    );
}

#[test]
fn seed_full_refresh_false_and_hooks_of_seeds_and_snapshots() {
    let db = pg::database("seed_hooks");
    let dir = warehouse_project(
        &db,
        2,
        &[
            ("seeds/kept.csv", "id,name\n1,a\n2,b\n"),
            ("seeds/plain.csv", "id\n1\n"),
            (
                "seeds/_seeds.yml",
                "version: 2\nseeds:\n  - name: kept\n    config:\n      full_refresh: false\n      pre_hook: \"create table if not exists main.hook_log (what text, n int)\"\n      post_hook:\n        - \"insert into main.hook_log select 'seed {{ this.identifier }}', count(*) from {{ this }}\"\n        - sql: \"insert into main.hook_log values ('outside', 0)\"\n          transaction: false\n",
            ),
            (
                "snapshots/snap.sql",
                "{% snapshot kept_snapshot %}\n{{ config(target_schema='snapshots', unique_key='id', strategy='check', check_cols='all', post_hook=\"insert into main.hook_log select 'snapshot', count(*) from {{ this }}\") }}\nselect * from {{ ref('kept') }}\n{% endsnapshot %}",
            ),
        ],
    );
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(
            &db,
            "select string_agg(what || ':' || n, ',' order by what) from main.hook_log"
        ),
        "outside:0,seed kept:2,snapshot:2",
        "seed post-hooks run inside and after the load, snapshot post-hooks after it"
    );
    let oid = |table: &str| psql(&db, &format!("select 'main.{table}'::regclass::oid"));
    let (kept, plain) = (oid("kept"), oid("plain"));
    std::fs::write(
        dir.path().join("seeds/kept.csv"),
        "id,name\n1,a\n2,b\n3,c\n",
    )
    .unwrap();
    let r = strata(dir.path(), &["seed", "--full-refresh"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        oid("kept"),
        kept,
        "full_refresh: false keeps the table under --full-refresh"
    );
    assert_ne!(oid("plain"), plain, "other seeds are recreated");
    assert_eq!(psql(&db, "select count(*) from main.kept"), "3");
    assert_eq!(
        psql(
            &db,
            "select n from main.hook_log where what = 'seed kept' order by n desc limit 1"
        ),
        "3"
    );
}

#[test]
fn seed_values_arrive_exactly_or_the_seed_fails() {
    let db = pg::database("seed_exact");
    let dir = warehouse_project(
        &db,
        2,
        &[
            ("seeds/marker.csv", "v\na\n\\.\nb\n\nc\n"),
            ("seeds/wide.csv", "id,v\n1,x\n"),
        ],
    );
    let r = strata(dir.path(), &["seed"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(
            &db,
            "select string_agg(coalesce(v, 'NULL'), '|' order by ctid) from main.marker"
        ),
        "a|\\.|b|NULL|c",
        "COPY's end marker is a value, a blank line a NULL"
    );
    // An unterminated quote fails the seed at its line; the table survives.
    let mut rows = String::from("id,v\n");
    for i in 1..=2000 {
        if i == 1000 {
            rows.push_str("1000,\"open\n");
        } else {
            rows.push_str(&format!("{i},x\n"));
        }
    }
    std::fs::write(dir.path().join("seeds/wide.csv"), rows).unwrap();
    let r = strata(dir.path(), &["seed"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("seeds/wide.csv:1001"), "{}", r.stderr);
    assert!(r.stderr.contains("never closed"), "{}", r.stderr);
    assert_eq!(psql(&db, "select count(*) from main.wide"), "1");
    // Invalid UTF-8 fails that seed at its line; the others still load.
    std::fs::write(dir.path().join("seeds/wide.csv"), b"id,v\n1,x\n2,\xff\n").unwrap();
    let r = strata(dir.path(), &["seed"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("seeds/wide.csv:3:1"), "{}", r.stderr);
    assert!(
        r.stderr.contains("OK loaded seed file main.marker"),
        "{}",
        r.stderr
    );
}

fn spawn_strata(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Polls `sql` on `db` until it returns `want`, for up to `secs` seconds.
fn wait_for(db: &str, sql: &str, want: &str, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if psql(db, sql) == want {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

const SLEEPING: &str = "select count(*) from pg_stat_activity where datname = current_database() and query like '%pg_sleep(30)%' and state = 'active' and pid <> pg_backend_pid()";

/// A signal mid-statement: the run stops (exit 130), the statement is
/// cancelled server side and the previous table is intact.
fn signal_stops_the_run(signal: i32, name: &str) {
    let db = pg::database(name);
    let dir = warehouse_project(
        &db,
        2,
        &[(
            "models/slow.sql",
            "{{ config(materialized='table') }}select 1 as v",
        )],
    );
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    std::fs::write(
        dir.path().join("models/slow.sql"),
        "{{ config(materialized='table') }}select 2 as v from (select pg_sleep(30)) s",
    )
    .unwrap();
    let child = spawn_strata(dir.path(), &["run"]);
    assert!(wait_for(&db, SLEEPING, "1", 20), "the statement started");
    let start = std::time::Instant::now();
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        psql(&db, "select v from main.slow"),
        "1",
        "the previous table is intact"
    );
    assert!(
        wait_for(&db, SLEEPING, "0", 5),
        "the server statement was cancelled"
    );
}

#[test]
fn ctrl_c_cancels_and_leaves_the_old_relation() {
    signal_stops_the_run(libc::SIGINT, "ctrlc");
}

#[test]
fn sigterm_stops_a_run_like_ctrl_c() {
    signal_stops_the_run(libc::SIGTERM, "sigterm");
}

/// Ctrl-C while a large seed file is being read: the load must not start
/// (or commit) afterwards; the previous table stays.
#[test]
fn ctrl_c_while_a_seed_is_read_keeps_the_previous_table() {
    let db = pg::database("seedint");
    let dir = warehouse_project(&db, 1, &[("seeds/big.csv", "id,v\n1,a\n")]);
    assert_eq!(strata(dir.path(), &["seed"]).code, 0);
    let mut big = String::from("id,v\n");
    for i in 0..1_500_000 {
        big.push_str(&format!("{i},value number {i}\n"));
    }
    std::fs::write(dir.path().join("seeds/big.csv"), big).unwrap();
    let mut child = spawn_strata(dir.path(), &["seed"]);
    // The seed has started (its START line) when the file is being read.
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("START") {
            break;
        }
    }
    assert!(seen.contains("START"), "{seen}");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{}", rest.join("\n"));
    assert_eq!(
        psql(&db, "select count(*) from main.big"),
        "1",
        "{}",
        rest.join("\n")
    );
}

/// kill -9 of Strata mid-statement: the backend notices its client is gone
/// (client_connection_check_interval) and stops, releasing its locks,
/// instead of running on for minutes.
#[test]
fn after_kill_9_the_server_statement_stops_and_a_snapshot_lock_is_released() {
    let db = pg::database("kill9");
    psql(&db, "create table public.src as select 1 as id, 'a' as v");
    let dir = warehouse_project(
        &db,
        1,
        &[(
            "snapshots/snap.sql",
            "{% snapshot snap %}{{ config(target_schema='main', unique_key='id', strategy='check', check_cols='all') }}\
             select id, v from public.src, (select pg_sleep({{ var('sleep', 0) }})) s{% endsnapshot %}",
        )],
    );
    assert_eq!(strata(dir.path(), &["snapshot"]).code, 0);
    psql(&db, "update public.src set v = 'b'");
    let mut child = spawn_strata(dir.path(), &["snapshot", "--vars", "{sleep: 30}"]);
    assert!(
        wait_for(&db, SLEEPING, "1", 20),
        "the snapshot statement started"
    );
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        wait_for(&db, SLEEPING, "0", 10),
        "the orphaned statement stopped"
    );
    // The next snapshot is not blocked by an orphaned advisory lock.
    let r = strata(dir.path(), &["snapshot"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(
            &db,
            "select count(*) from main.snap where dbt_valid_to is null and v = 'b'"
        ),
        "1"
    );
}

/// When the server goes away mid-run, the run stops with one clear error
/// instead of every remaining model failing to connect.
#[test]
fn a_server_that_goes_away_stops_the_run_with_one_error() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = strata::localpg::LocalCluster::at(root.path().join("pg"), "strata").unwrap();
    let conn = cluster.ensure_running().unwrap();
    let profile = format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: postgres\n      schema: main\n      threads: 1\n      retries: 0\n",
        conn.port,
        cluster.password().unwrap()
    );
    let mut files: Vec<(String, String)> = vec![("profiles.yml".into(), profile)];
    for i in 0..20 {
        files.push((
            format!("models/m{i:02}.sql"),
            "{{ config(materialized='table') }}select 1 as v from (select pg_sleep(0.3)) s".into(),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = project(&refs);
    let child = spawn_strata(dir.path(), &["run"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    cluster.stop().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("The warehouse cannot be reached any more, so the run stopped"),
        "{stderr}"
    );
    let errors = stderr.lines().filter(|l| l.contains("ERROR")).count();
    assert!(
        errors <= 2,
        "one node fails, the rest are skipped: {stderr}"
    );
    cluster.destroy();
}

/// After kill -9, run_results.json holds what finished and what did not, so
/// `retry` runs exactly the unfinished nodes (not "Nothing to retry").
#[test]
fn retry_after_kill_9_runs_what_did_not_finish() {
    let db = pg::database("retrykill");
    let dir = warehouse_project(
        &db,
        1,
        &[
            ("models/a.sql", "{{ config(materialized='table') }}select 1 as v"),
            ("models/b.sql", "{{ config(materialized='table') }}select v from {{ ref('a') }}, (select pg_sleep({{ var('sleep', 0) }})) s"),
            ("models/c.sql", "select v from {{ ref('b') }}"),
        ],
    );
    assert_eq!(strata(dir.path(), &["run"]).code, 0);
    let mut child = spawn_strata(dir.path(), &["run", "--vars", "{sleep: 30}"]);
    assert!(wait_for(&db, SLEEPING, "1", 20), "b is running");
    std::thread::sleep(std::time::Duration::from_millis(700));
    child.kill().unwrap();
    let _ = child.wait();
    let results: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/run_results.json")).unwrap();
    let status = |id: &str| {
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"] == id)
            .map(|r| r["status"].as_str().unwrap().to_string())
    };
    assert_eq!(
        status("model.proj.a").as_deref(),
        Some("success"),
        "{results}"
    );
    assert_eq!(status("model.proj.b").as_deref(), Some("skipped"));
    assert_eq!(status("model.proj.c").as_deref(), Some("skipped"));
    let r = strata(dir.path(), &["retry"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("The last run did not finish"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("running 2 models") || r.stderr.contains("2 models"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("main.a "),
        "a finished and is not rerun: {}",
        r.stderr
    );
}

/// Replacing a table or view keeps the views built on it (dbt's `drop ...
/// cascade` loses them until a later run rebuilds them, or forever for views
/// not in the project): a run of one model never leaves fewer relations.
#[test]
fn views_built_on_a_replaced_relation_survive_it() {
    let db = pg::database("dependents");
    let dir = warehouse_project(
        &db,
        2,
        &[
            (
                "models/base.sql",
                "{{ config(materialized='table') }}select 1 as id, 'a' as name",
            ),
            ("models/v1.sql", "select id, name from {{ ref('base') }}"),
            ("models/v2.sql", "select id from {{ ref('v1') }}"),
            ("seeds/s.csv", "id,code\n1,x\n"),
        ],
    );
    assert_eq!(strata(dir.path(), &["build"]).code, 0);
    psql(
        &db,
        "create view public.manual with (security_barrier) as select count(*) as n from main.base",
    );
    psql(&db, "comment on view public.manual is 'made by hand'");
    psql(&db, "create role reader_dep");
    psql(&db, "grant select on public.manual to reader_dep");
    psql(&db, "create view public.on_seed as select code from main.s");
    psql(
        &db,
        "create view public.reads_name as select name from main.base",
    );
    // Only base is rebuilt, now with two rows and without `name`.
    std::fs::write(
        dir.path().join("models/base.sql"),
        "{{ config(materialized='table') }}select g as id, 'a' as name from generate_series(1, 2) g",
    )
    .unwrap();
    let r = strata(dir.path(), &["run", "-s", "base"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select count(*) from main.v2"),
        "2",
        "v1 and v2 read the new table"
    );
    assert_eq!(psql(&db, "select n from public.manual"), "2");
    assert_eq!(
        psql(&db, "select obj_description('public.manual'::regclass)"),
        "made by hand"
    );
    assert_eq!(
        psql(
            &db,
            "select has_table_privilege('reader_dep', 'public.manual', 'select')"
        ),
        "t"
    );
    assert_eq!(
        psql(
            &db,
            "select reloptions::text from pg_class where oid = 'public.manual'::regclass"
        ),
        "{security_barrier=true}"
    );
    // A view that no longer fits the new relation is dropped (as before), the model still builds.
    std::fs::write(
        dir.path().join("models/base.sql"),
        "{{ config(materialized='table') }}select g as id from generate_series(1, 3) g",
    )
    .unwrap();
    let r = strata(dir.path(), &["run", "-s", "base"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(
            &db,
            "select count(*) from pg_views where viewname = 'reads_name'"
        ),
        "0"
    );
    assert_eq!(psql(&db, "select n from public.manual"), "3");
    // A view model replaced in place keeps the views on it; one whose columns
    // change shape is swapped, and the views on it are pointed at the new one.
    // (v1 and v2 read `name`, which base lost above: they are rebuilt first.)
    std::fs::write(
        dir.path().join("models/v1.sql"),
        "select id, 'b' as name from {{ ref('base') }}",
    )
    .unwrap();
    let r = strata(dir.path(), &["run", "-s", "v1+"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    psql(&db, "create view public.on_v1 as select id from main.v1");
    let oid = psql(&db, "select 'main.v1'::regclass::oid");
    std::fs::write(
        dir.path().join("models/v1.sql"),
        "select id, 'c' as name from {{ ref('base') }}",
    )
    .unwrap();
    let r = strata(dir.path(), &["run", "-s", "v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&db, "select 'main.v1'::regclass::oid"),
        oid,
        "replaced in place"
    );
    assert_eq!(
        psql(
            &db,
            "select name from main.v2 join public.on_v1 using (id) join main.v1 using (id) limit 1"
        ),
        "c"
    );
    std::fs::write(
        dir.path().join("models/v1.sql"),
        "select id::bigint as id from {{ ref('base') }}",
    )
    .unwrap();
    let r = strata(dir.path(), &["run", "-s", "v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(psql(&db, "select count(*) from public.on_v1"), "3");
    assert_eq!(psql(&db, "select count(*) from main.v2"), "3");
    assert_eq!(psql(&db, "select format_type(atttypid, atttypmod) from pg_attribute where attrelid = 'main.v1'::regclass and attname = 'id'"), "bigint");
    // A seed recreated for a new header keeps the views on it that still fit.
    std::fs::write(dir.path().join("seeds/s.csv"), "id,code,extra\n1,yz,2\n").unwrap();
    let r = strata(dir.path(), &["seed"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(psql(&db, "select code from public.on_seed"), "yz");
}

/// dbt's cross-database macros compute on Postgres what dbt documents: each
/// check below is one boolean column, and all of them must be true.
#[test]
fn cross_database_macros_compute_what_dbt_documents() {
    let db = pg::database("crossdb");
    let checks: &[(&str, &str)] = &[
        ("month", "{{ dbt.datediff(\"'2024-01-31'::date\", \"'2024-03-01'::date\", 'month') }} = 2"),
        ("day", "{{ dbt.datediff(\"'2024-01-01'::date\", \"'2024-03-15'::date\", 'day') }} = 74"),
        ("year", "{{ dbt.datediff(\"'2023-12-31'::date\", \"'2024-01-01'::date\", 'year') }} = 1"),
        ("quarter", "{{ dbt.datediff(\"'2023-12-31'::date\", \"'2024-04-01'::date\", 'quarter') }} = 2"),
        ("week_same", "{{ dbt.datediff(\"'2024-01-07'::date\", \"'2024-01-13'::date\", 'week') }} = 0"),
        ("week_next", "{{ dbt.datediff(\"'2024-01-13'::date\", \"'2024-01-14'::date\", 'week') }} = 1"),
        ("week_back", "{{ dbt.datediff(\"'2024-01-14'::date\", \"'2024-01-13'::date\", 'week') }} = -1"),
        ("hour", "{{ dbt.datediff(\"'2024-01-01 23:59'::timestamp\", \"'2024-01-02 00:01'::timestamp\", 'hour') }} = 1"),
        ("minute", "{{ dbt.datediff(\"'2024-01-01 23:59'::timestamp\", \"'2024-01-02 00:01'::timestamp\", 'minute') }} = 2"),
        ("second", "{{ dbt.datediff(\"'2024-01-01 00:00:59.9'::timestamp\", \"'2024-01-01 00:01:00.1'::timestamp\", 'second') }} = 1"),
        ("millisecond", "{{ dbt.datediff(\"'2024-01-01 00:00:00.100'::timestamp\", \"'2024-01-01 00:00:01.250'::timestamp\", 'millisecond') }} = 1150"),
        ("dateadd", "{{ dbt.dateadd('day', 3, \"'2024-01-30'::date\") }} = '2024-02-02'::timestamp"),
        ("dateadd_neg", "{{ dbt.dateadd('month', -1, \"'2024-03-31'::date\") }} = '2024-02-29'::timestamp"),
        ("date_trunc", "{{ dbt.date_trunc('month', \"'2024-02-10'::date\") }} = '2024-02-01'::timestamp"),
        ("last_day", "{{ dbt.last_day(\"'2024-02-10'::date\", 'month') }} = '2024-02-29'::date"),
        ("last_day_q", "{{ dbt.last_day(\"'2024-02-10'::date\", 'quarter') }} = '2024-03-31'::date"),
        ("date", "{{ dbt.date(2024, 2, 29) }} = '2024-02-29'::date"),
        ("split_last", "{{ dbt.split_part(\"'a,b,c'\", \"','\", -1) }} = 'c'"),
        ("split_2", "{{ dbt.split_part(\"'a,b,c'\", \"','\", 2) }} = 'b'"),
        ("concat", "{{ dbt.concat([\"'a'\", \"'b'\"]) }} = 'ab'"),
        ("hash", "{{ dbt.hash(\"'a'\") }} = '0cc175b9c0f1b6a831c399e269772661'"),
        ("literal", "{{ dbt.string_literal(dbt.escape_single_quotes(\"it's\")) }} = 'it''s'"),
        ("replace", "{{ dbt.replace(\"'aXa'\", \"'X'\", \"'-'\") }} = 'a-a'"),
        ("position", "{{ dbt.position(\"'c'\", \"'abc'\") }} = 3"),
        ("length", "{{ dbt.length(\"'abcd'\") }} = 4"),
        ("right", "{{ dbt.right(\"'abcd'\", 2) }} = 'cd'"),
        ("cast", "{{ dbt.safe_cast(\"'12'\", dbt.type_int()) }} + {{ dbt.cast(\"'1.5'\", dbt.type_numeric()) }} = 13.5"),
        ("bool_text", "{{ dbt.cast_bool_to_text('true') }} = 'true'"),
        ("types", "pg_typeof(cast(1 as {{ dbt.type_bigint() }}))::text || pg_typeof(cast(1 as {{ dbt.type_float() }}))::text || pg_typeof(cast('t' as {{ dbt.type_boolean() }}))::text || pg_typeof(cast(now() as {{ dbt.type_timestamp() }}))::text = 'bigintdouble precisionbooleantimestamp without time zone'"),
        ("arrays", "{{ dbt.array_concat(dbt.array_append(dbt.array_construct([1, 2]), 3), dbt.array_construct([4])) }} = array[1, 2, 3, 4] and cardinality({{ dbt.array_construct([]) }}) = 0"),
        ("listagg", "(select {{ dbt.listagg('v', \"','\", 'order by v desc', 2) }} from (values ('a'), ('b'), ('c')) t(v)) = 'c,b'"),
        ("listagg_all", "(select {{ dbt.listagg('v', \"'|'\", 'order by v') }} from (values ('b'), ('a')) t(v)) = 'a|b'"),
        ("bool_or", "(select {{ dbt.bool_or('v') }} from (values (false), (true)) t(v))"),
        ("any_value", "(select {{ dbt.any_value('v') }} from (values (7), (7)) t(v)) = 7"),
        ("series", "(select count(*) from ({{ dbt.generate_series(5) }}) s) = 5"),
        ("spine", "(select count(*) || min(date_day)::date::text from ({{ dbt.date_spine('day', \"'2024-01-01'\", \"'2024-02-01'\") }}) s) = '312024-01-01'"),
        ("sets", "(select count(*) from (select 1 {{ dbt.intersect() }} select 1 {{ dbt.except() }} select 2) s) = 1"),
    ];
    let model: String = format!(
        "select\n{}",
        checks
            .iter()
            .map(|(name, expr)| format!("    ({expr}) as c_{name}"))
            .collect::<Vec<_>>()
            .join(",\n")
    );
    let dir = warehouse_project(&db, 1, &[("models/checks.sql", &model)]);
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (name, expr) in checks {
        assert_eq!(
            psql(&db, &format!("select c_{name} from main.checks")),
            "t",
            "{name}: {expr}\n{}",
            read(dir.path(), "target/compiled/proj/models/checks.sql")
        );
    }
}

/// The statuses in run_results.json by node name.
fn statuses(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let rr: serde_json::Value =
        serde_json::from_str(&read(dir, "target/run_results.json")).unwrap();
    rr["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["unique_id"].as_str().unwrap();
            let name = id.rsplit('.').next().unwrap().to_string();
            (name, r["status"].as_str().unwrap().to_string())
        })
        .collect()
}

/// As in dbt: a node whose Jinja fails at run time errors alone (its
/// descendants skip, the rest runs); a node that introspects renders after
/// its parents are built, so it sees their data on a fresh database; a
/// singular test that refs nothing runs after everything it could inspect.
#[test]
fn render_errors_are_per_node_and_introspection_sees_built_parents() {
    let db = pg::database("run_render");
    let dir = warehouse_project(
        &db,
        4,
        &[
            ("models/base.sql", "select g as id from generate_series(1, 3) g"),
            (
                "models/counted.sql",
                "{% set n = run_query('select count(*) as n from ' ~ ref('base')).columns[0].values()[0] if execute else 0 %}\
                 {% set cols = adapter.get_columns_in_relation(ref('base')) %}\
                 {% set executed = adapter.execute('select 41 + 1 as x', fetch=True)[1].columns[0].values()[0] if execute else 0 %}\
                 select {{ n }} as n, '{{ cols | map(attribute='quoted') | join(',') }}' as cols, '{{ cols[0].data_type if cols else '' }}' as t, {{ executed }} as executed",
            ),
            (
                "models/broken.sql",
                "select {{ exceptions.raise_compiler_error('boom at run time') if execute else 1 }} as x from {{ ref('base') }}",
            ),
            ("models/below_broken.sql", "select * from {{ ref('broken') }}"),
            (
                "macros/count_of.sql",
                "{% macro count_of(rel) %}{{ return(run_query('select count(*) from ' ~ rel).columns[0].values()[0] if execute else 0) }}{% endmacro %}",
            ),
            (
                "tests/counted_is_built.sql",
                "{% set rel = api.Relation.create(database=target.database, schema=target.schema, identifier='counted') %}\
                 select 1 where {{ count_of(rel) }} <> 1",
            ),
        ],
    );
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(
        out.contains("Compilation Error in model broken") && out.contains("boom at run time"),
        "{out}"
    );
    let st = statuses(dir.path());
    assert_eq!(st["base"], "success");
    assert_eq!(st["counted"], "success");
    assert_eq!(st["broken"], "error");
    assert_eq!(st["below_broken"], "skipped");
    assert_eq!(st["counted_is_built"], "pass");
    assert_eq!(
        psql(
            &db,
            "select n || ' ' || cols || ' ' || t || ' ' || executed from main.counted"
        ),
        "3 \"id\" integer 42"
    );
}

/// Unit tests run after their model's parents are built (the fixture takes
/// its column types from them) and before the model, which a failure skips.
#[test]
fn unit_tests_run_in_dag_order_and_a_failure_skips_the_model() {
    let db = pg::database("run_unit_order");
    let dir = warehouse_project(
        &db,
        2,
        &[
            ("models/src.sql", "select 1::integer as id, 'a'::text as name"),
            ("models/doubled.sql", "select id * 2 as id2 from {{ ref('src') }}"),
            ("models/after.sql", "select * from {{ ref('doubled') }}"),
            (
                "models/unit.yml",
                "unit_tests:\n  - name: nulls_first\n    model: doubled\n    given:\n      - input: ref('src')\n        rows:\n          - {id: }\n          - {id: 2}\n    expect:\n      rows:\n        - {id2: }\n        - {id2: 4}\n  - name: wrong\n    model: doubled\n    config:\n      tags: \"{{ 'skipme' if target.name == 'dev' else 'run' }}\"\n    given:\n      - input: ref('src')\n        rows:\n          - {id: 1}\n    expect:\n      rows:\n        - {id2: 3}\n",
            ),
        ],
    );
    // The failing unit test is tagged from its rendered config: excluding
    // the tag leaves the passing one, and the model builds.
    let r = strata(dir.path(), &["build", "--exclude", "tag:skipme"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let st = statuses(dir.path());
    assert_eq!(st.get("nulls_first").map(String::as_str), Some("pass"));
    assert!(!st.contains_key("wrong"));
    let r = strata(dir.path(), &["build"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let st = statuses(dir.path());
    assert_eq!(st["wrong"], "fail");
    assert_eq!(st["src"], "success");
    assert_eq!(st["doubled"], "skipped");
    assert_eq!(st["after"], "skipped");
}

/// A post-hook whose Jinja runs a statement (dbt_project_evaluator's
/// `insert_resources_from_graph(this)`) runs it in the model's transaction,
/// after the table exists.
#[test]
fn statements_run_by_a_hook_go_into_the_node_transaction() {
    let db = pg::database("run_hook_stmt");
    let dir = warehouse_project(
        &db,
        1,
        &[
            (
                "macros/fill.sql",
                "{% macro fill(rel) %}{% call statement('insert') %}insert into {{ rel }} values (2), (3){% endcall %}{% endmacro %}",
            ),
            (
                "models/filled.sql",
                "{{ config(materialized='table', post_hook=\"{{ fill(this) }}\") }}select 1 as id",
            ),
        ],
    );
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select sum(id) from main.filled"), "6");
}

/// dbt's incremental-strategy macros, as custom materializations call them.
#[test]
fn merge_and_delete_insert_macros_build_working_sql() {
    let db = pg::database("run_merge_macros");
    psql(
        &db,
        "create schema if not exists main; \
         create table main.tgt (id int, v text); insert into main.tgt values (1, 'a'), (3, 'z'); \
         create table main.tgt2 (id int, v text); insert into main.tgt2 values (1, 'a'), (3, 'z'); \
         create table main.src (id int, v text); insert into main.src values (1, 'b'), (2, 'c');",
    );
    let dir = warehouse_project(
        &db,
        1,
        &[(
            "macros/ops.sql",
            "{% macro apply(kind) %}\
             {% set tgt = api.Relation.create(database=target.database, schema='main', identifier=('tgt' if kind == 'merge' else 'tgt2')) %}\
             {% set src = api.Relation.create(database=target.database, schema='main', identifier='src') %}\
             {% set cols = adapter.get_columns_in_relation(tgt) %}\
             {% call statement('apply') %}\
             {% if kind == 'merge' %}{{ get_merge_sql(tgt, src, 'id', cols, ['DBT_INTERNAL_DEST.id > 0']) }}\
             {% else %}{{ get_delete_insert_merge_sql(tgt, src, ['id'], cols) }}{% endif %}\
             {% endcall %}{% endmacro %}",
        )],
    );
    for kind in ["merge", "delete_insert"] {
        let r = strata(
            dir.path(),
            &[
                "run-operation",
                "apply",
                "--args",
                &format!("{{kind: {kind}}}"),
            ],
        );
        assert_eq!(r.code, 0, "{kind}: {}{}", r.stdout, r.stderr);
    }
    for t in ["tgt", "tgt2"] {
        assert_eq!(
            psql(
                &db,
                &format!("select string_agg(id || v, ',' order by id) from main.{t}")
            ),
            "1b,2c,3z",
            "{t}"
        );
    }
}

/// dbt-redshift's layout configs are accepted and ignored on Postgres, so
/// one project serves both; a bad `sort_type` is a config error.
#[test]
fn redshift_layout_configs_are_accepted_on_postgres() {
    let db = pg::database("run_layout_cfg");
    let dir = warehouse_project(
        &db,
        1,
        &[
            (
                "models/fact.sql",
                "{{ config(materialized='table', dist='id', sort=['id'], sort_type='compound', backup=false) }}select 1 as id",
            ),
            (
                "models/stg.sql",
                "{{ config(materialized='view', bind=false) }}select * from {{ ref('fact') }}",
            ),
        ],
    );
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(psql(&db, "select count(*) from main.stg"), "1");
    std::fs::write(
        dir.path().join("models/fact.sql"),
        "{{ config(materialized='table', sort_type='sideways') }}select 1 as id",
    )
    .unwrap();
    let r = strata(dir.path(), &["run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("sort_type"), "{}", r.stderr);
}
