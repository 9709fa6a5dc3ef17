//! Bad input: every error names the file, line and column, quotes the line,
//! gives a hint, exits 2, and independent errors are reported together.

mod common;

use common::*;

fn fails(files: &[(&str, &str)], args: &[&str]) -> String {
    let dir = project(files);
    let r = strata(dir.path(), args);
    assert_eq!(
        r.code, 2,
        "expected exit 2, got {}: {}{}",
        r.code, r.stdout, r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r.stderr
}

#[test]
fn yaml_syntax_error() {
    insta::assert_snapshot!(fails(
        &[(
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: a\n    description: \"unclosed\n  - name: b\n"
        )],
        &["parse"],
    ));
}

#[test]
fn yaml_shape_error() {
    insta::assert_snapshot!(fails(
        &[(
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: a\n    columns: not-a-list\n"
        )],
        &["parse"],
    ));
}

#[test]
fn unknown_refs_are_reported_together_with_suggestions() {
    insta::assert_snapshot!(fails(
        &[
            ("models/stg_orders.sql", "select 1 as id"),
            ("models/orders.sql", "select *\nfrom {{ ref('stg_ordrs') }}"),
            (
                "models/other.sql",
                "select * from {{ ref('nothing_like_it') }}"
            ),
        ],
        &["compile"],
    ));
}

#[test]
fn unknown_source() {
    insta::assert_snapshot!(fails(
        &[
            (
                "models/src.yml",
                "version: 2\nsources:\n  - name: raw\n    tables:\n      - name: orders\n"
            ),
            ("models/a.sql", "select * from {{ source('raw', 'order') }}"),
        ],
        &["compile"],
    ));
}

#[test]
fn unknown_macro() {
    insta::assert_snapshot!(fails(
        &[("models/a.sql", "select\n  {{ cents_to_dolars('x') }} as y")],
        &["compile"],
    ));
}

#[test]
fn missing_var_names_the_model() {
    insta::assert_snapshot!(fails(
        &[(
            "models/a.sql",
            "select 1\nwhere x > {{ var('start_date') }}"
        )],
        &["compile"],
    ));
}

#[test]
fn missing_env_var() {
    insta::assert_snapshot!(fails(
        &[(
            "models/a.sql",
            "select '{{ env_var('STRATA_SURELY_UNSET_VAR') }}'"
        )],
        &["compile"],
    ));
}

#[test]
fn jinja_syntax_error() {
    insta::assert_snapshot!(fails(
        &[("models/a.sql", "select 1\n{% if true %}\nwhere 1 = 1\n")],
        &["compile"],
    ));
}

#[test]
fn macro_syntax_error_points_into_macro_file() {
    insta::assert_snapshot!(fails(
        &[
            ("macros/m.sql", "{% macro ok() %}1{% endmacro %}\n\n{% macro broken() %}\n{{ 1 + }}\n{% endmacro %}"),
            ("models/a.sql", "select {{ ok() }}"),
        ],
        &["compile"],
    ));
}

#[test]
fn compiler_error_from_macro() {
    insta::assert_snapshot!(fails(
        &[
            ("macros/m.sql", "{% macro must_be_positive(x) %}\n{% if x <= 0 %}{{ exceptions.raise_compiler_error('x must be positive, got ' ~ x) }}{% endif %}{{ x }}\n{% endmacro %}"),
            ("models/a.sql", "select {{ must_be_positive(-1) }} as v"),
        ],
        &["compile"],
    ));
}

#[test]
fn cycle_prints_the_cycle() {
    insta::assert_snapshot!(fails(
        &[
            ("models/a.sql", "select * from {{ ref('c') }}"),
            ("models/b.sql", "select * from {{ ref('a') }}"),
            ("models/c.sql", "select * from {{ ref('b') }}"),
        ],
        &["compile"],
    ));
}

#[test]
fn bad_selectors() {
    let files = [("models/a.sql", "select 1")];
    insta::assert_snapshot!("bad_method", fails(&files, &["ls", "-s", "tga:x"]));
    insta::assert_snapshot!("bad_at", fails(&files, &["ls", "-s", "@a+"]));
    insta::assert_snapshot!(
        "unknown_yaml_selector",
        fails(&files, &["ls", "--selector", "nope"])
    );
}

#[test]
fn missing_profile_and_project() {
    let dir = tempfile::tempdir().unwrap();
    let r = strata(dir.path(), &["parse"]);
    assert_eq!(r.code, 2);
    insta::assert_snapshot!("no_project", r.stderr);
    let r = strata(
        project(&[("profiles.yml", "other:\n  outputs: {}\n")]).path(),
        &["parse"],
    );
    assert_eq!(r.code, 2);
    insta::assert_snapshot!("unknown_profile", r.stderr);
}

#[test]
fn unknown_project_keys_warn_but_do_not_fail() {
    let dir = project(&[
        (
            "dbt_project.yml",
            "name: proj\nprofile: proj\nmodle-paths: [models]\n",
        ),
        ("models/a.sql", "select 1"),
    ]);
    let r = strata(dir.path(), &["parse"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown key 'modle-paths'"),
        "{}",
        r.stderr
    );
}

#[test]
fn duplicate_model_names() {
    insta::assert_snapshot!(fails(
        &[
            ("models/a/x.sql", "select 1"),
            ("models/b/x.sql", "select 2")
        ],
        &["parse"],
    ));
}

/// Invalid config values are caught while parsing, each located where it was
/// set: an inline config(), a properties file, dbt_project.yml, a test entry.
#[test]
fn invalid_configs_point_where_they_were_set() {
    insta::assert_snapshot!(fails(
        &[
            (
                "dbt_project.yml",
                "name: proj\nversion: '1.0'\nprofile: proj\nmodels:\n  proj:\n    marts:\n      +on_schema_change: append\n",
            ),
            ("models/marts/orders.sql", "select 1 as id"),
            (
                "models/inline.sql",
                "{{ config(\n    materialized='tabel',\n) }}\nselect 1 as id",
            ),
            ("models/from_yaml.sql", "select 1 as id"),
            ("snapshots/snap.sql", "{% snapshot snap %}\n{{ config(unique_key='id', strategy='timestamp') }}\nselect 1 as id\n{% endsnapshot %}"),
            (
                "models/schema.yml",
                "version: 2\nmodels:\n  - name: from_yaml\n    config:\n      incremental_strategy: upsert\n      materialized: incremental\n  - name: inline\n    columns:\n      - name: id\n        tests:\n          - unique:\n              config:\n                severity: fatal\n",
            ),
        ],
        &["parse"],
    ));
}

/// A disabled node's config is not checked, and a project's own
/// materialization is a valid value.
#[test]
fn custom_materializations_and_disabled_nodes_pass() {
    let dir = project(&[
        (
            "macros/mat.sql",
            "{% materialization mine, default %}{% endmaterialization %}",
        ),
        ("models/a.sql", "{{ config(materialized='mine') }}select 1"),
        (
            "models/b.sql",
            "{{ config(enabled=false, materialized='nonsense') }}select 1",
        ),
    ]);
    let r = strata(dir.path(), &["parse"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A list or dict put inside itself is refused where it is made, and absurdly
/// deep values are refused when printed: an error with the file, never a
/// crash (dbt prints `[[...]]`; Strata says no).
#[test]
fn self_containing_and_absurdly_deep_values_are_errors_not_crashes() {
    for (model, expected) in [
        ("{% set l = [] %}{% do l.append(l) %}select {{ l }}", "cannot put this list inside itself"),
        ("{% set l = [] %}{% do l.extend([[l]]) %}select {{ tojson(l) }}", "cannot put this list inside itself"),
        ("{% set d = {} %}{% do d.update({'k': d}) %}select {{ d }}", "cannot put this dict inside itself"),
        ("{% set l = [] %}{% set d = {'l': l} %}{% do l.append(d) %}select 1", "cannot put this list inside itself"),
        (
            "{% set ns = namespace(v=[]) %}{% for j in range(10) %}{% for i in range(200) %}{% set ns.v = [ns.v] %}{% endfor %}{% endfor %}select {{ ns.v }}",
            "nested more than 1000 levels deep",
        ),
        (
            "{% set ns = namespace(v={}) %}{% for i in range(2000) %}{% set ns.v = {'k': ns.v} %}{% endfor %}select {{ tojson(ns.v) }}",
            "nested more than 1000 levels deep",
        ),
    ] {
        let err = fails(&[("models/m.sql", model)], &["compile"]);
        assert!(err.contains(expected), "{model}\n{err}");
        assert!(err.contains("models/m.sql:1"), "{err}");
    }
    // Deep but legal data still prints, and a list may hold other lists.
    let dir = project(&[(
        "models/m.sql",
        "{% set a = [] %}{% set b = [a] %}{% do a.append(1) %}{% set ns = namespace(v=[]) %}{% for i in range(900) %}{% set ns.v = [ns.v] %}{% endfor %}select '{{ b }}' as b, {{ (ns.v | string | length) }} as n",
    )]);
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = read(dir.path(), "target/compiled/proj/models/m.sql");
    assert!(sql.contains("'[[1]]' as b, 1802 as n"), "{sql}");
}

/// Absurdly nested YAML (libyaml needs quadratic time for it) is refused at
/// once, naming the file, line and column, with the long line cut around it.
#[test]
fn absurdly_nested_yaml_is_refused_with_its_place() {
    let deep = format!("{}1{}", "{a: ".repeat(50_000), "}".repeat(50_000));
    let project_yml = format!("name: proj\nversion: '1.0'\nprofile: proj\nvars:\n  x: {deep}\n");
    let err = fails(&[("dbt_project.yml", &project_yml)], &["parse"]);
    assert!(
        err.contains("YAML nested more than 128 levels deep"),
        "{err}"
    );
    assert!(err.contains("dbt_project.yml:5:"), "{err}");
    assert!(
        err.len() < 2_000,
        "the quoted line is cut: {} bytes",
        err.len()
    );
    let schema = format!("models:\n  - name: m\n    meta: {}\n", "[".repeat(10_000));
    let err = fails(
        &[("models/m.sql", "select 1"), ("models/s.yml", &schema)],
        &["parse"],
    );
    assert!(err.contains("models/s.yml:3:"), "{err}");
    let vars = "[".repeat(40_000);
    let err = fails(&[], &["parse", "--vars", &vars]);
    assert!(err.contains("nested more than 128 levels deep"), "{err}");
}

/// dbt_project.yml that is not UTF-8 is named as such, at its line and column.
#[test]
fn dbt_project_yml_that_is_not_utf8_says_so() {
    let dir = project(&[]);
    std::fs::write(
        dir.path().join("dbt_project.yml"),
        b"name: proj\nprofile: proj\n# caf\xe9\n",
    )
    .unwrap();
    for cmd in ["parse", "deps", "clean"] {
        let r = strata(dir.path(), &[cmd]);
        assert_eq!(r.code, 2, "{cmd}: {}", r.stderr);
        assert!(r.stderr.contains("not valid UTF-8"), "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains("dbt_project.yml:3:6"),
            "{cmd}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("no dbt_project.yml"), "{}", r.stderr);
    }
}

/// `DBT_ENV_SECRET_*` values: usable in profiles.yml, masked in everything
/// Strata prints, and refused where they would end up in SQL or artifacts.
#[test]
fn secret_env_vars_stay_in_profiles_and_are_masked() {
    let secret = [("DBT_ENV_SECRET_USER", "hunter2-user")];
    let profile = "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: 1\n      user: \"{{ env_var('DBT_ENV_SECRET_USER') }}\"\n      dbname: db\n      schema: main\n";
    let dir = project(&[("profiles.yml", profile), ("models/m.sql", "select 1")]);
    let r = strata_env(dir.path(), &["debug"], &secret);
    assert!(r.stdout.contains("user:          *****"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(strata_env(dir.path(), &["parse"], &secret).code, 0);

    for (path, text, at) in [
        (
            "models/m.sql",
            "select '{{ env_var(\"DBT_ENV_SECRET_USER\") | upper }}' as u",
            "models/m.sql:1",
        ),
        (
            "macros/m.sql",
            "{% macro leak() %}{{ env_var('DBT_ENV_SECRET_USER')[1:] }}{% endmacro %}",
            "macros/m.sql:1",
        ),
    ] {
        let files: Vec<(&str, &str)> = if path == "models/m.sql" {
            vec![("profiles.yml", profile), (path, text)]
        } else {
            vec![
                ("profiles.yml", profile),
                (path, text),
                ("models/m.sql", "select '{{ leak() }}'"),
            ]
        };
        let dir = project(&files);
        let r = strata_env(dir.path(), &["compile"], &secret);
        assert_eq!(r.code, 2, "{path}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("secret env var 'DBT_ENV_SECRET_USER' can only be used in profiles.yml or packages.yml"), "{}", r.stderr);
        assert!(r.stderr.contains(at), "{}", r.stderr);
        assert!(
            !r.stderr.contains("hunter2")
                && !r.stdout.contains("hunter2")
                && !r.stderr.contains("HUNTER2")
        );
    }
    // A var is rendered where it is used (dbt's lazy vars): the secret is
    // refused there, in the model that uses it.
    let dir = project(&[
        ("profiles.yml", profile),
        (
            "dbt_project.yml",
            "name: proj\nprofile: proj\nvars:\n  u: \"{{ env_var('DBT_ENV_SECRET_USER') }}\"\n",
        ),
        ("models/uses.sql", "select '{{ var('u') }}' as u"),
    ]);
    let r = strata_env(dir.path(), &["parse"], &secret);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("models/uses.sql")
            && r.stderr.contains("can only be used in profiles.yml")
            && !r.stderr.contains("hunter2"),
        "{}",
        r.stderr
    );
}

/// A model whose file fails to render is reported once: the refs to it and
/// its tests do not add "unknown ref" errors of their own.
#[test]
fn a_model_that_fails_to_render_is_one_error_not_a_cascade() {
    let err = fails(
        &[
            ("models/a.sql", "select {{ undefined_macro_xyz() }}"),
            ("models/b.sql", "select * from {{ ref('a') }}"),
            (
                "models/a.yml",
                "models:\n  - name: a\n    columns:\n      - name: id\n        data_tests: [not_null, unique]\n",
            ),
        ],
        &["parse"],
    );
    assert_eq!(err.matches("error[").count(), 1, "{err}");
    assert!(err.contains("models/a.sql"), "{err}");
    assert!(!err.contains("unknown-ref"), "{err}");
}
