//! `strata compile` on the fixture project: compiled SQL, ephemeral CTEs,
//! package macros, dispatch, vars and the manifest's schema.

mod common;

use common::*;

fn compiled(dir: &std::path::Path, rel: &str) -> String {
    read(dir, &format!("target/compiled/{rel}"))
}

#[test]
fn compiles_the_fixture_project() {
    let dir = copy_fixture("basic");
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = dir.path();
    insta::assert_snapshot!(
        "ephemeral_chain_and_macros",
        compiled(p, "shop/models/marts/finance/orders.sql")
    );
    insta::assert_snapshot!(
        "custom_schema_and_loop",
        compiled(p, "shop/models/marts/customers.sql")
    );
    insta::assert_snapshot!(
        "dispatch_override_and_source",
        compiled(p, "shop/models/staging/stg_payments.sql")
    );
    insta::assert_snapshot!(
        "package_model_vars",
        compiled(p, "util_pkg/models/pkg_model.sql")
    );
    insta::assert_snapshot!(
        "relationships_test_with_where",
        compiled(p, "shop/models/schema.yml/relationships_orders_customer_id__customer_id__ref_customers_.sql")
    );
    insta::assert_snapshot!(
        "accepted_values_hashed_name",
        compiled(
            p,
            "shop/models/schema.yml/accepted_values_orders_1ce6ab157c285f7cd2ac656013faf758.sql"
        )
    );
    insta::assert_snapshot!(
        "custom_generic_test",
        compiled(p, "shop/models/schema.yml/is_positive_orders_amount.sql")
    );
    insta::assert_snapshot!(
        "singular_test",
        compiled(p, "shop/tests/assert_no_negative_paid.sql")
    );
}

#[test]
fn cli_vars_override_project_and_package_vars() {
    let dir = copy_fixture("basic");
    let r = strata(
        dir.path(),
        &[
            "compile",
            "--vars",
            "{region: us, pkg_greeting: from-cli}",
            "-s",
            "orders",
            "pkg_model",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(compiled(dir.path(), "shop/models/marts/finance/orders.sql").contains("'us' as region"));
    let pkg = compiled(dir.path(), "util_pkg/models/pkg_model.sql");
    assert!(pkg.contains("'from-cli' as greeting"), "{pkg}");
    assert!(pkg.contains("'package-default' as pkg_only"), "{pkg}");
}

#[test]
fn target_changes_schema_naming() {
    let dir = copy_fixture("basic");
    let r = strata(
        dir.path(),
        &["compile", "--target", "prod", "-s", "customers"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = compiled(dir.path(), "shop/models/marts/customers.sql");
    assert!(sql.contains("\"shopdb\".\"marts\".\"fct_orders\""), "{sql}");
    // A single selected model's SQL is printed, as dbt does.
    assert!(r
        .stdout
        .contains("from \"shopdb\".\"marts\".\"fct_orders\""));
}

#[test]
fn manifest_validates_against_dbt_v12_schema() {
    let dir = copy_fixture("basic");
    // The semantic layer is parsed into the manifest (not executed).
    std::fs::write(
        dir.path().join("models/semantic.yml"),
        "semantic_models:\n  - name: orders_sm\n    model: ref('orders')\n    defaults:\n      agg_time_dimension: ordered_at\n    entities:\n      - name: order\n        type: primary\n        expr: order_id\n    dimensions:\n      - name: ordered_at\n        type: time\n        type_params:\n          time_granularity: day\n    measures:\n      - name: order_total\n        agg: sum\n        expr: amount\n      - name: order_count\n        agg: sum\n        expr: 1\n\
metrics:\n  - name: revenue\n    label: Revenue\n    type: simple\n    type_params:\n      measure: order_total\n  - name: orders\n    type: simple\n    type_params:\n      measure:\n        name: order_count\n        fill_nulls_with: 0\n  - name: revenue_per_order\n    type: ratio\n    type_params:\n      numerator: revenue\n      denominator: orders\n  - name: revenue_7d\n    type: cumulative\n    type_params:\n      measure: order_total\n      window: 7 days\n\
saved_queries:\n  - name: daily_revenue\n    query_params:\n      metrics: [revenue]\n      group_by: [\"TimeDimension('order__ordered_at', 'day')\"]\n      where: \"{{ Dimension('order__ordered_at') }} > '2024-01-01'\"\n    exports:\n      - name: daily_revenue\n        config:\n          export_as: table\n",
    )
    .unwrap();
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("schemas/manifest-v12.json")).unwrap(),
    )
    .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/manifest.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&manifest)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let sm = &manifest["semantic_models"]["semantic_model.shop.orders_sm"];
    assert_eq!(sm["node_relation"]["alias"], "fct_orders");
    assert_eq!(
        sm["depends_on"]["nodes"],
        serde_json::json!(["model.shop.orders"])
    );
    assert_eq!(sm["measures"][1]["expr"], "1");
    let m = &manifest["metrics"];
    assert_eq!(
        m["metric.shop.revenue"]["type_params"]["measure"]["name"],
        "order_total"
    );
    assert_eq!(
        m["metric.shop.revenue_per_order"]["type_params"]["numerator"]["name"],
        "revenue"
    );
    assert_eq!(
        m["metric.shop.revenue_7d"]["type_params"]["window"],
        serde_json::json!({"count": 7, "granularity": "day"})
    );
    assert_eq!(
        m["metric.shop.revenue"]["depends_on"]["nodes"],
        serde_json::json!(["semantic_model.shop.orders_sm"])
    );
    let sq = &manifest["saved_queries"]["saved_query.shop.daily_revenue"];
    assert_eq!(
        sq["depends_on"]["nodes"],
        serde_json::json!(["metric.shop.revenue"])
    );

    let nodes = manifest["nodes"].as_object().unwrap();
    let orders = &nodes["model.shop.orders"];
    assert_eq!(orders["alias"], "fct_orders");
    assert_eq!(orders["schema"], "analytics_marts");
    assert_eq!(orders["description"], "One row per order, with payments.");
    assert_eq!(
        orders["config"]["meta"]["owner"], "finance",
        "YAML merge keys apply"
    );
    assert_eq!(
        orders["depends_on"]["nodes"],
        serde_json::json!(["model.shop.stg_payments", "model.shop.stg_orders_filtered"])
    );
    assert!(
        nodes.contains_key("test.shop.unique_orders_order_id.fed79b3a6e")
            || nodes
                .keys()
                .any(|k| k.starts_with("test.shop.unique_orders_order_id."))
    );
    assert!(nodes.contains_key("operation.shop.shop-on-run-start-0"));
    assert!(nodes.contains_key("snapshot.shop.orders_snapshot"));
    assert_eq!(
        nodes["snapshot.shop.orders_snapshot"]["schema"],
        "snapshots"
    );
    assert!(manifest["sources"]
        .as_object()
        .unwrap()
        .contains_key("source.shop.stripe.payments"));
    assert!(manifest["docs"]
        .as_object()
        .unwrap()
        .contains_key("doc.shop.orders_doc"));
    assert_eq!(
        manifest["parent_map"]["model.shop.customers"],
        serde_json::json!(["model.shop.orders"])
    );
    assert!(manifest["selectors"]
        .as_object()
        .unwrap()
        .contains_key("finance_only"));
    assert!(manifest["macros"]
        .as_object()
        .unwrap()
        .contains_key("macro.util_pkg.cents_to_dollars"));
}

#[test]
fn secrets_never_reach_artifacts() {
    // A secret is only read in profiles.yml, but a model can still print
    // the target's settings.
    let dir = project(&[
        (
            "profiles.yml",
            "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: localhost\n      user: \"{{ env_var('DBT_ENV_SECRET_TOKEN') }}\"\n      dbname: db\n      schema: main\n",
        ),
        ("models/m.sql", "select '{{ target.user }}' as token"),
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["compile"])
        .current_dir(dir.path())
        .env("DBT_ENV_SECRET_TOKEN", "hunter2-s3cr3t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = read(dir.path(), "target/manifest.json");
    assert!(!manifest.contains("hunter2-s3cr3t"));
    assert!(manifest.contains("*****"));
    assert!(!read(dir.path(), "target/compiled/proj/models/m.sql").contains("hunter2-s3cr3t"));
}

#[test]
fn parse_writes_manifest_without_compiled_sql() {
    let dir = copy_fixture("basic");
    let r = strata(dir.path(), &["parse"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let manifest: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/manifest.json")).unwrap();
    assert_eq!(manifest["nodes"]["model.shop.orders"]["compiled"], false);
    assert!(!dir.path().join("target/compiled").exists());
}

#[test]
fn init_scaffolds_a_project_that_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let r = strata(dir.path(), &["init", "my_shop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let proj = dir.path().join("my_shop");
    let r = strata(&proj, &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = read(
        &proj,
        "target/compiled/my_shop/models/example/my_second_model.sql",
    );
    assert!(
        sql.contains("\"strata\".\"analytics\".\"my_first_model\""),
        "{sql}"
    );
    let again = strata(dir.path(), &["init", "my_shop"]);
    assert_eq!(again.code, 2);
}

#[test]
fn clean_removes_targets_and_packages() {
    let dir = copy_fixture("basic");
    assert_eq!(strata(dir.path(), &["compile"]).code, 0);
    let r = strata(dir.path(), &["clean"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!dir.path().join("target").exists());
    assert!(!dir.path().join("dbt_packages").exists());
}

#[test]
fn demo_project_compiles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["compile", "--project-dir"])
        .arg(root)
        .arg("--target-path")
        .arg(target.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fact = std::fs::read_to_string(
        target
            .path()
            .join("compiled/payments/models/marts/core/fact_transactions.sql"),
    )
    .unwrap();
    assert!(fact.contains("\"payments\".\"payments_staging\".\"stg_transactions\""));
}

/// Built-in generic tests are produced natively for speed; the result must be
/// byte-identical to rendering Strata's own Jinja macros.
#[test]
fn native_builtin_tests_match_their_jinja_macros() {
    let native = copy_fixture("basic");
    let jinja = copy_fixture("basic");
    assert_eq!(strata(native.path(), &["compile"]).code, 0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("compile")
        .current_dir(jinja.path())
        .env("STRATA_JINJA_TESTS", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = "target/compiled/shop/models/schema.yml";
    let mut compared = 0;
    for e in std::fs::read_dir(native.path().join(dir)).unwrap() {
        let name = e.unwrap().file_name();
        let rel = format!("{dir}/{}", name.to_string_lossy());
        assert_eq!(read(native.path(), &rel), read(jinja.path(), &rel), "{rel}");
        compared += 1;
    }
    assert!(compared >= 7, "compared {compared} files");
}

/// Versioned models (dbt's `versions:`): each version's file is a version of
/// the model, `ref(name)` means the latest and `ref(name, v=1)` that version,
/// and the alias defaults to `<name>_v<v>`.
#[test]
fn model_versions_resolve_like_dbt() {
    let dir = project(&[
        ("models/orders_v1.sql", "select 1 as id"),
        ("models/orders_v2.sql", "select 2 as id"),
        ("models/orders_next.sql", "select 3 as id"),
        (
            "models/orders.yml",
            "models:\n  - name: orders\n    latest_version: 2\n    versions:\n      - v: 1\n      - v: 2\n      - v: 3\n        defined_in: orders_next\n",
        ),
        ("models/latest.sql", "select * from {{ ref('orders') }}"),
        ("models/first.sql", "select * from {{ ref('orders', v=1) }}"),
        ("models/third.sql", "select * from {{ ref('orders', version=3) }}"),
    ]);
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let compiled = |m: &str| read(dir.path(), &format!("target/compiled/proj/models/{m}.sql"));
    assert!(
        compiled("latest").contains("\"orders_v2\""),
        "{}",
        compiled("latest")
    );
    assert!(
        compiled("first").contains("\"orders_v1\""),
        "{}",
        compiled("first")
    );
    assert!(
        compiled("third").contains("\"orders_v3\""),
        "{}",
        compiled("third")
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/manifest.json")).unwrap();
    let v1 = &manifest["nodes"]["model.proj.orders.v1"];
    assert_eq!(v1["name"], "orders");
    assert_eq!(v1["version"], "1");
    assert_eq!(v1["latest_version"], "2");
    assert_eq!(v1["alias"], "orders_v1");
    assert_eq!(
        manifest["nodes"]["model.proj.latest"]["depends_on"]["nodes"][0],
        "model.proj.orders.v2"
    );
}

/// Relations are dict-like as in dbt (`is mapping`, `.get('metadata')`), so
/// packages' relation checks accept them, and a generic test's `model` is one.
#[test]
fn relations_are_mappings_with_metadata() {
    let dir = project(&[
        ("models/a.sql", "select 1 as id"),
        (
            "models/b.sql",
            "{% set r = ref('a') %}select '{{ r is mapping }}' as is_map, '{{ r.get('metadata', {}).get('type', '') }}' as kind, '{{ r.information_schema('columns') }}' as info",
        ),
        ("macros/t.sql", "{% test is_rel(model) %}select '{{ model is mapping }}' as m, '{{ model.identifier }}' as ident where false{% endtest %}"),
        ("models/a.yml", "models:\n  - name: a\n    data_tests: [is_rel]\n"),
    ]);
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = read(dir.path(), "target/compiled/proj/models/b.sql");
    assert!(b.contains("'True' as is_map, 'PostgresRelation' as kind, '\"db\".information_schema.columns' as info"), "{b}");
    let t = std::fs::read_dir(dir.path().join("target/compiled/proj/models/a.yml"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(t.contains("'True' as m, 'a' as ident"), "{t}");
}
