//! `strata ls` with every selector form, YAML selectors and output formats.

mod common;

use common::*;

fn ls(dir: &std::path::Path, args: &[&str]) -> String {
    let mut full = vec!["ls", "--output", "name", "-q"];
    full.extend_from_slice(args);
    let r = strata(dir, &full);
    assert_eq!(r.code, 0, "ls {args:?}: {}", r.stderr);
    r.stdout
}

#[test]
fn every_selector_form() {
    let dir = copy_fixture("basic");
    let p = dir.path();
    let cases: &[(&str, &[&str])] = &[
        ("all", &[]),
        ("name", &["-s", "orders"]),
        ("parents", &["-s", "+orders", "--resource-type", "model"]),
        (
            "children",
            &["-s", "stg_orders+", "--resource-type", "model"],
        ),
        (
            "parents_depth",
            &["-s", "1+orders", "--resource-type", "model"],
        ),
        (
            "children_depth",
            &["-s", "stg_orders+1", "--resource-type", "model"],
        ),
        ("at", &["-s", "@stg_payments", "--resource-type", "model"]),
        ("tag", &["-s", "tag:finance"]),
        ("path", &["-s", "path:models/staging"]),
        ("path_file", &["-s", "models/marts/customers.sql"]),
        ("config", &["-s", "config.materialized:ephemeral"]),
        ("config_schema", &["-s", "config.schema:core"]),
        ("resource_type", &["-s", "resource_type:seed"]),
        (
            "source",
            &["-s", "source:stripe+", "--resource-type", "model", "source"],
        ),
        ("test_type_generic", &["-s", "test_type:generic"]),
        ("test_type_singular", &["-s", "test_type:singular"]),
        ("test_name", &["-s", "test_name:unique"]),
        ("package", &["-s", "package:util_pkg"]),
        ("fqn", &["-s", "fqn:shop.marts.finance.*"]),
        ("folder_fqn", &["-s", "staging"]),
        ("wildcard", &["-s", "stg_*", "--resource-type", "model"]),
        (
            "union",
            &["-s", "customers stg_payments", "--resource-type", "model"],
        ),
        (
            "intersection",
            &["-s", "tag:staging,config.materialized:ephemeral"],
        ),
        (
            "exclude",
            &[
                "-s",
                "path:models",
                "--exclude",
                "orders",
                "--resource-type",
                "model",
            ],
        ),
        ("yaml_selector", &["--selector", "finance_only"]),
        (
            "yaml_selector_union_exclude",
            &[
                "--selector",
                "marts_without_customers",
                "--resource-type",
                "model",
            ],
        ),
        (
            "indirect_cautious",
            &["-s", "orders", "--indirect-selection", "cautious"],
        ),
        (
            "indirect_empty",
            &["-s", "orders", "--indirect-selection", "empty"],
        ),
        (
            "exposure_free_resource_type",
            &["--resource-type", "analysis", "snapshot"],
        ),
    ];
    let mut out = String::new();
    for (label, args) in cases {
        out.push_str(&format!(
            "## {label}: {}\n{}\n",
            args.join(" "),
            ls(p, args)
        ));
    }
    insta::assert_snapshot!("selector_forms", out);
}

#[test]
fn default_yaml_selector_applies_without_flags() {
    let dir = project(&[
        ("models/a.sql", "select 1"),
        ("models/b.sql", "select * from {{ ref('a') }}"),
        (
            "selectors.yml",
            "selectors:\n  - name: only_b\n    default: true\n    definition: b\n",
        ),
    ]);
    assert_eq!(ls(dir.path(), &[]), "b\n");
    assert_eq!(ls(dir.path(), &["-s", "a"]), "a\n");
}

#[test]
fn output_formats() {
    let dir = copy_fixture("basic");
    let p = dir.path();
    let sel = strata(
        p,
        &[
            "ls",
            "-q",
            "-s",
            "+customers",
            "--resource-type",
            "model",
            "seed",
            "source",
        ],
    );
    insta::assert_snapshot!("ls_selector_output", sel.stdout);
    let path = strata(p, &["list", "-q", "-s", "customers", "--output", "path"]);
    // The model, then its two tests (declared in schema.yml), as dbt prints them.
    assert_eq!(
        path.stdout,
        "models/marts/customers.sql\nmodels/schema.yml\nmodels/schema.yml\n"
    );
    let json = strata(
        p,
        &[
            "ls",
            "-q",
            "-s",
            "customers",
            "--resource-type",
            "model",
            "--output",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    for key in [
        "name",
        "resource_type",
        "package_name",
        "original_file_path",
        "unique_id",
        "alias",
        "config",
        "tags",
        "depends_on",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["config"]["materialized"], "table");
    assert_eq!(
        v["depends_on"]["nodes"],
        serde_json::json!(["model.shop.orders"])
    );
    let keys = strata(
        p,
        &[
            "ls",
            "-q",
            "-s",
            "customers",
            "--resource-type",
            "model",
            "--output",
            "json",
            "--output-keys",
            "name",
            "alias",
        ],
    );
    assert_eq!(
        keys.stdout.trim(),
        r#"{"name":"customers","alias":"customers"}"#
    );
}
