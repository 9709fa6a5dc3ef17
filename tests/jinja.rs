//! The dbt Jinja context: built-in functions, modules, macros with `return()`,
//! mutable containers, dispatch, materialization blocks and phase-sensitive code.

mod common;

use common::*;

fn compile_one(files: &[(&str, &str)], model: &str) -> String {
    let dir = project(files);
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    read(
        dir.path(),
        &format!("target/compiled/proj/models/{model}.sql"),
    )
}

#[test]
fn builtin_functions_and_modules() {
    let sql = compile_one(
        &[
            (
                "macros/helpers.sql",
                "{% macro pick(xs) %}{% for x in xs %}{% if x > 1 %}{{ return(x) }}{% endif %}{% endfor %}{{ return(none) }}{% endmacro %}\n\
                 {% macro cols() %}{% set out = [] %}{% for c in ['a', 'b'] %}{% do out.append(c ~ '_x') %}{% endfor %}{{ return(out) }}{% endmacro %}",
            ),
            (
                "models/m.sql",
                "{% set d = {} %}{% do d.update({'k': 'v'}) %}\
                 select\n\
                 {{ pick([1, 5, 7]) }} as first_big,\n\
                 '{{ cols() | join(',') }}' as cols,\n\
                 '{{ d['k'] }}' as dict_update,\n\
                 '{{ local_md5('abc') }}' as md5,\n\
                 '{{ tojson({'a': [1, 2]}) }}' as js,\n\
                 '{{ fromjson('{\"x\": 3}')['x'] }}' as from_js,\n\
                 '{{ fromyaml('a: [1, 2]')['a'] | length }}' as from_yaml,\n\
                 '{{ zip([1, 2], ['a', 'b']) | list | length }}' as zipped,\n\
                 '{{ set([1, 1, 2]) | length }}' as set_len,\n\
                 '{{ modules.re.sub('[0-9]+', 'N', 'a1b22') }}' as re_sub,\n\
                 '{{ modules.re.match('(a)(b)', 'abc').group(2) }}' as re_group,\n\
                 '{{ modules.itertools.chain([1], [2, 3]) | length }}' as chained,\n\
                 '{{ modules.datetime.datetime.strptime('2024-01-02 03:04:05', '%Y-%m-%d %H:%M:%S').strftime('%d/%m') }}' as dt,\n\
                 {{ adapter.quote('Mixed Case') }} as quoted,\n\
                 '{{ api.Relation.create(database='d', schema='s', identifier='t') }}' as rel,\n\
                 '{{ api.Relation.create(database='d', schema='s', identifier='t').include(database=false) }}' as rel_no_db,\n\
                 '{{ 'Hello'.upper() }}{{ ' x '.strip() }}' as py_methods,\n\
                 '{{ project_name }}/{{ target.name }}/{{ target.schema }}' as ctx,\n\
                 {{ this }} as this_rel,\n\
                 '{{ execute }}' as execute_flag,\n\
                 '{{ 'y' if is_incremental() else 'n' }}' as incremental,\n\
                 '{{ config.get('materialized') }}' as materialized\n\
                 {{ log('hello from log', info=true) }}{{ exceptions.warn('careful') }}",
            ),
        ],
        "m",
    );
    insta::assert_snapshot!(sql);
}

#[test]
fn materialization_and_test_blocks_are_recognised() {
    let dir = project(&[
        (
            "macros/mat.sql",
            "{% materialization my_view, default %}\n{{ return({'relations': []}) }}\n{% endmaterialization %}\n\
             {% materialization my_view, adapter='postgres' %}\nselect 1\n{% endmaterialization %}",
        ),
        ("tests/generic/is_even.sql", "{% test is_even(model, column_name) %}\nselect * from {{ model }} where {{ column_name }} % 2 = 1\n{% endtest %}"),
        ("models/m.sql", "select 2 as n"),
        ("models/schema.yml", "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: n\n        data_tests: [is_even]\n"),
    ]);
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let manifest: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/manifest.json")).unwrap();
    let macros = manifest["macros"].as_object().unwrap();
    assert!(macros.contains_key("macro.proj.materialization_my_view_default"));
    assert!(macros.contains_key("macro.proj.materialization_my_view_postgres"));
    assert!(macros.contains_key("macro.proj.test_is_even"));
    let sql = read(
        dir.path(),
        "target/compiled/proj/models/schema.yml/is_even_m_n.sql",
    );
    assert_eq!(
        sql,
        "\nselect * from \"db\".\"main\".\"m\" where n % 2 = 1\n"
    );
}

#[test]
fn compile_phase_values_are_rendered_again() {
    // `execute` and `config.get` differ between parse and compile; the model is
    // rendered a second time rather than reusing the parse output.
    let sql = compile_one(
        &[(
            "models/m.sql",
            "{{ config(materialized='table', meta={'owner': 'ops'}) }}\
             select {% if execute %}'{{ config.get('meta')['owner'] }}'{% else %}null{% endif %} as owner, '{{ this.identifier }}' as ident",
        )],
        "m",
    );
    assert_eq!(sql, "select 'ops' as owner, 'm' as ident");
}

#[test]
fn whitespace_matches_jinja2_defaults() {
    let sql = compile_one(
        &[(
            "models/m.sql",
            "{% set cols = ['a', 'b'] %}\nselect\n  {%- for c in cols %}\n  {{ c }}{% if not loop.last %},{% endif %}\n  {%- endfor %}\nfrom t\n",
        )],
        "m",
    );
    // Jinja2: no trim_blocks/lstrip_blocks, the final newline dropped with the file strip.
    assert_eq!(sql, "\nselect\n  a,\n  b\nfrom t");
}

#[test]
fn require_dbt_version_and_log_format_json() {
    let dir = project(&[
        (
            "dbt_project.yml",
            "name: proj\nprofile: proj\nrequire-dbt-version: ['>=2.0.0']\n",
        ),
        ("models/a.sql", "select 1"),
    ]);
    let r = strata(dir.path(), &["parse", "--log-format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(events.iter().any(
        |e| e["level"] == "warn" && e["msg"].as_str().unwrap().contains("require-dbt-version")
    ));
    assert!(events.iter().any(|e| e["code"] == "parse"));
}

#[test]
fn deps_reports_packages_that_need_a_network() {
    let dir = project(&[(
        "packages.yml",
        "packages:\n  - package: dbt-labs/dbt_utils\n    version: [\">=1.0.0\", \"<2.0.0\"]\n",
    )]);
    // A hub that cannot be reached (nothing listens on port 9).
    let offline = [("DBT_PACKAGE_HUB_URL", "http://127.0.0.1:9")];
    let r = strata_env(dir.path(), &["deps"], &offline);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("dbt-labs/dbt_utils"), "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot reach 127.0.0.1:9"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("dbt_packages/dbt_utils"), "{}", r.stderr);
    // An already installed copy is used as is.
    std::fs::create_dir_all(dir.path().join("dbt_packages/dbt_utils/macros")).unwrap();
    std::fs::write(
        dir.path().join("dbt_packages/dbt_utils/dbt_project.yml"),
        "name: dbt_utils\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dbt_packages/dbt_utils/macros/star.sql"),
        "{% macro star() %}*{% endmacro %}",
    )
    .unwrap();
    let r = strata_env(dir.path(), &["deps"], &offline);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("already installed"));
    std::fs::write(
        dir.path().join("models/a.sql"),
        "select {{ dbt_utils.star() }} from t",
    )
    .unwrap_or_else(|_| {
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::write(
            dir.path().join("models/a.sql"),
            "select {{ dbt_utils.star() }} from t",
        )
        .unwrap();
    });
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        read(dir.path(), "target/compiled/proj/models/a.sql"),
        "select * from t"
    );
}

#[test]
fn debug_shows_the_resolved_target_without_secrets() {
    let dir = copy_fixture("basic");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("debug")
        .current_dir(dir.path())
        .env("SHOP_TEST_PASSWORD", "pa55-w0rd")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Nothing listens on the fixture's port: the check fails with exit code 1.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("connection:    FAILED"), "{text}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pa55-w0rd"));
    assert!(text.contains("profile:       shop"));
    assert!(text.contains("schema:        analytics"));
    assert!(!text.contains("pa55-w0rd"));
}

#[test]
fn package_generic_tests_are_namespaced() {
    let dir = project(&[
        ("dbt_packages/checks/dbt_project.yml", "name: checks\n"),
        (
            "dbt_packages/checks/macros/tests.sql",
            "{% test positive(model, column_name) %}\nselect * from {{ model }} where {{ column_name }} <= 0\n{% endtest %}",
        ),
        ("models/m.sql", "select 1 as n"),
        ("models/schema.yml", "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: n\n        data_tests: [checks.positive]\n"),
    ]);
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let manifest: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/manifest.json")).unwrap();
    let (id, node) = manifest["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("test.proj.checks_positive_m_n."))
        .expect("test named checks_positive_m_n, as dbt names namespaced tests");
    assert_eq!(node["test_metadata"]["namespace"], "checks", "{id}");
    assert_eq!(
        node["depends_on"]["macros"][0],
        "macro.checks.test_positive"
    );
    let sql = read(
        dir.path(),
        "target/compiled/proj/models/schema.yml/checks_positive_m_n.sql",
    );
    assert_eq!(sql, "\nselect * from \"db\".\"main\".\"m\" where n <= 0\n");
}

/// profiles.yml renders with dbt's filters (`| as_number`), and
/// dbt_project.yml with `target`, as dbt renders them.
#[test]
fn project_files_render_with_dbts_context() {
    let dir = project(&[
        (
            "profiles.yml",
            "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: localhost\n      port: \"{{ env_var('STRATA_TEST_UNSET_PORT', '6543') | as_number }}\"\n      user: u\n      dbname: db\n      schema: main\n      threads: \"{{ '3' | as_number }}\"\n",
        ),
        (
            "dbt_project.yml",
            "name: proj\nversion: '1.0'\nprofile: proj\nmodels:\n  proj:\n    +materialized: \"{{ 'table' if target.type == 'postgres' else 'view' }}\"\n    +schema: \"{{ target.name }}_x\"\n",
        ),
        ("models/m.sql", "select {{ target.port }} as port, {{ target.threads }} as threads"),
    ]);
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = read(dir.path(), "target/compiled/proj/models/m.sql");
    assert!(sql.contains("select 6543 as port, 3 as threads"), "{sql}");
    let manifest: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/manifest.json")).unwrap();
    let m = &manifest["nodes"]["model.proj.m"];
    assert_eq!(m["config"]["materialized"], "table");
    assert_eq!(m["schema"], "main_dev_x");
}

/// `modules.datetime` constructors and `modules.pytz`, printed as Python does.
#[test]
fn datetime_and_pytz_modules() {
    let sql = compile_one(
        &[(
            "models/m.sql",
            "select '{{ modules.datetime.date(1997, 9, 29) }}' as d,\n\
             '{{ modules.datetime.datetime(1997, 9, 29, 6, 14, 0, tzinfo=modules.pytz.timezone('America/New_York')) }}' as dt,\n\
             '{{ modules.datetime.datetime(2024, 1, 2, microsecond=5) }}' as micro,\n\
             '{{ modules.datetime.timedelta(days=1, hours=2) }}' as td,\n\
             '{{ modules.datetime.timedelta(hours=-1).days }}' as td_days,\n\
             '{{ modules.datetime.date(2024, 1, 1).strftime('%A') }}' as weekday,\n\
             '{{ modules.datetime.date(2024, 1, 1).isoweekday() }}' as iso,\n\
             '{{ modules.pytz.utc }}' as utc",
        )],
        "m",
    );
    for expected in [
        "'1997-09-29' as d",
        "'1997-09-29 06:14:00' as dt",
        "'2024-01-02 00:00:00.000005' as micro",
        "'1 day, 2:00:00' as td",
        "'-1' as td_days",
        "'Monday' as weekday",
        "'1' as iso",
        "'UTC' as utc",
    ] {
        assert!(sql.contains(expected), "{expected}\n{sql}");
    }
}

/// dbt's cross-database macros are callable bare and as `dbt.x`, and a
/// project's own `<adapter>__x` wins over Strata's, as dispatch resolves it.
#[test]
fn cross_database_macros_dispatch_and_can_be_overridden() {
    let sql = compile_one(
        &[
            (
                "macros/types.sql",
                "{% macro postgres__type_string() %}{{ return('varchar(42)') }}{% endmacro %}",
            ),
            (
                "models/m.sql",
                "select cast(1 as {{ dbt.type_string() }}) as a, cast(2 as {{ type_int() }}) as b, {{ dbt.concat(['x', 'y']) }} as c, {{ dbt.string_literal('z') }} as d",
            ),
        ],
        "m",
    );
    assert!(
        sql.contains("cast(1 as varchar(42)) as a, cast(2 as integer) as b, x || y as c, 'z' as d"),
        "{sql}"
    );
}

/// `deps` installs the packages that installed packages declare, as dbt
/// does (a package's local paths are relative to it), each once.
#[test]
fn deps_installs_the_dependencies_of_packages() {
    let dir = project(&[
        (
            "packages.yml",
            "packages:\n  - local: vendor/pkg_a\n  - local: vendor/pkg_b\n",
        ),
        ("vendor/pkg_a/dbt_project.yml", "name: pkg_a\n"),
        (
            "vendor/pkg_a/packages.yml",
            "packages:\n  - local: ../pkg_b\n  - local: ../pkg_c\n",
        ),
        (
            "vendor/pkg_a/macros/a.sql",
            "{% macro a() %}{{ pkg_c.c() }}{% endmacro %}",
        ),
        ("vendor/pkg_b/dbt_project.yml", "name: pkg_b\n"),
        ("vendor/pkg_c/dbt_project.yml", "name: pkg_c\n"),
        (
            "vendor/pkg_c/macros/c.sql",
            "{% macro c() %}'from c'{% endmacro %}",
        ),
        ("models/m.sql", "select {{ pkg_a.a() }} as v"),
    ]);
    let r = strata(dir.path(), &["deps"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("installed pkg_b").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("installed pkg_c"), "{}", r.stderr);
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(read(dir.path(), "target/compiled/proj/models/m.sql").contains("select 'from c' as v"));
}

/// A generic test's config values written with Jinja are rendered, natively
/// (a number stays a number), as dbt's test builder does.
#[test]
fn jinja_in_test_configs_is_rendered() {
    let dir = project(&[
        ("models/m.sql", "select 1 as id"),
        (
            "models/m.yml",
            "models:\n  - name: m\n    columns:\n      - name: id\n        data_tests:\n          - not_null:\n              config:\n                severity: \"{{ 'warn' if target.type == 'postgres' else 'error' }}\"\n                limit: \"{{ 2 + 1 }}\"\n",
        ),
    ]);
    let r = strata(dir.path(), &["parse"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let manifest: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "target/manifest.json")).unwrap();
    let test = manifest["nodes"]
        .as_object()
        .unwrap()
        .values()
        .find(|n| n["resource_type"] == "test")
        .unwrap();
    assert_eq!(test["config"]["severity"], "warn");
    assert_eq!(test["config"]["limit"], 3);
}

/// `var('x', none)` has a default, none, as in dbt; `var('x')` has none.
#[test]
fn var_with_an_explicit_none_default() {
    let sql = compile_one(
        &[(
            "models/m.sql",
            "select {{ 'missing' if var('not_set', none) is none else 'set' }} as v",
        )],
        "m",
    );
    assert!(sql.contains("select missing as v"), "{sql}");
}

/// Python and dbt semantics that real packages (dbt_expectations, codegen,
/// audit_helper, dbt_project_evaluator) depend on.
#[test]
fn python_semantics_packages_rely_on() {
    let sql = compile_one(
        &[
            (
                "dbt_project.yml",
                "name: proj\nversion: '1.0'\nprofile: proj\nvars:\n  known: 7\nmodels:\n  proj:\n    +materialized: table\n",
            ),
            (
                "macros/helpers.sql",
                "{% macro named(schema_name, name=schema_name, upper=name | upper) %}{{ return(name ~ '/' ~ upper) }}{% endmacro %}\n\
                 {% macro kw(a) %}{{ a }}|{{ kwargs.get('b', 'nob') }}|{{ varargs | length }}{% endmacro %}\n\
                 {% macro wrap() %}[{{ caller() }}]{% endmacro %}\n\
                 {% macro add_to(xs) %}{% do xs.append(9) %}{{ return(xs) }}{% endmacro %}",
            ),
            ("models/other.sql", "select 1 as x"),
            (
                "models/m.sql",
                "{% set d = modules.datetime.date(2024, 1, 10) %}\
                 {% set dt = modules.datetime.datetime(2024, 1, 10, 12, 0, 0) %}\
                 {% set week = modules.datetime.timedelta(days=7) %}\
                 {% set acc = {'a': 1} %}{% do acc.update({'b': []}) %}{% do acc['b'].append(2) %}\
                 {% set ns = namespace(xs=none) %}{% set ns.xs = [] %}{% do ns.xs.append('n') %}\
                 select\n\
                 '{{ d - modules.datetime.timedelta(days=10) }}' as date_minus,\n\
                 '{{ week + d }}' as date_plus_reflected,\n\
                 '{{ (dt - week).isoformat() }}' as datetime_minus,\n\
                 '{{ dt.replace(hour=0, minute=30) }}/{{ d.replace(day=1) }}' as replaced,\n\
                 '{{ ['a', 'b'].index('b') }}{{ [1, 1, 2].count(1) }}' as index_count,\n\
                 '{{ (d - modules.datetime.date(2024, 1, 1)).days }}' as date_diff,\n\
                 '{{ d < d + week }}' as date_cmp,\n\
                 '{{ named('raw') }}' as default_from_earlier_arg,\n\
                 '{{ acc['b'] | join(',') }}{{ ns.xs | join(',') }}' as nested_mutation,\n\
                 '{{ ([1, 2, 3] | list).pop() }}' as popped,\n\
                 '{{ modules.re.sub('(a)(b)', '\\\\g<2>\\\\1', 'xab') }}' as re_groups,\n\
                 '{{ modules.re.findall('\\\\w+(?=!)', 'hi! there') | join(',') }}' as lookahead,\n\
                 '{{ flags.WHICH }}' as which,\n\
                 '{{ kw(1, 2, 3, b=4) }}/{{ kw(0) }}' as var_kw_args,\n\
                 '{% call wrap() %}inner{% endcall %}' as caller_block,\n\
                 '{{ add_to([1, 2]) | join(',') }}' as mutable_arg,\n\
                 '{{ \"%s-%d-%.1f\" % (\"a\", 5, 2.25) }}' as percent_format,\n\
                 '{{ \"a=b=c\".partition(\"=\") | join(\"|\") }}/{{ \"hello world\".title() }}' as str_methods,\n\
                 '{{ \"one two three four\" | truncate(9, leeway=0) }}/{{ \"a b c\" | wordcount }}' as filters,\n\
                 '{{ zip([1], [\"a\"]) | list }}' as zipped,\n\
                 '{{ dbt.type_string is defined }}{{ dbt.no_such_macro_abc is defined }}' as ns_defined,\n\
                 '{{ context['project_name'] }}/{{ context.get('named')('x') }}/{{ context.get('nope', 'd') }}' as ctx_lookup,\n\
                 '{{ builtins.ref('other') }}' as builtin_ref,\n\
                 '{{ var.has_var('known') }}{{ var.has_var('unknown') }}{{ var('known') }}' as has_var,\n\
                 '{{ invocation_args_dict.which }}/{{ selected_resources | length }}' as invocation,\n\
                 '{{ model.config.materialized }}' as model_materialized,\n\
                 '{{ config.get('materialized') }}' as config_materialized,\n\
                 '{{ graph.nodes.values() | selectattr('resource_type', 'equalto', 'model') | list | length }}' as graph_models",
            ),
        ],
        "m",
    );
    for want in [
        "'2023-12-31' as date_minus",
        "'2024-01-17' as date_plus_reflected",
        "'2024-01-03T12:00:00.000000' as datetime_minus",
        "'9' as date_diff",
        "'2024-01-10 00:30:00/2024-01-01' as replaced",
        "'12' as index_count",
        "'True' as date_cmp",
        "'raw/RAW' as default_from_earlier_arg",
        "'2n' as nested_mutation",
        "'3' as popped",
        "'xba' as re_groups",
        "'hi' as lookahead",
        "'compile' as which",
        "'1|4|2/0|nob|0' as var_kw_args",
        "'[inner]' as caller_block",
        "'1,2,9' as mutable_arg",
        "'a-5-2.2' as percent_format",
        "'a|=|b=c/Hello World' as str_methods",
        "'one.../3' as filters",
        "'[(1, 'a')]' as zipped",
        "'TrueFalse' as ns_defined",
        "'proj/x/X/d' as ctx_lookup",
        "'\"db\".\"main\".\"other\"' as builtin_ref",
        "'TrueFalse7' as has_var",
        "'compile/2' as invocation",
        "'table' as model_materialized",
        "'table' as config_materialized",
        "'2' as graph_models",
    ] {
        assert!(sql.contains(want), "missing {want} in:\n{sql}");
    }
}

/// `model.config` sees dbt_project.yml's folder configs while parsing, so a
/// model may check its own materialization (as dbt_project_evaluator does)
/// without a false error at parse time.
#[test]
fn parse_time_config_sees_folder_configs() {
    let dir = project(&[
        (
            "dbt_project.yml",
            "name: proj\nversion: '1.0'\nprofile: proj\nmodels:\n  proj:\n    marts:\n      +materialized: table\n",
        ),
        (
            "models/marts/m.sql",
            "{% if model.config.materialized != 'table' %}{{ exceptions.raise_compiler_error('not a table: ' ~ model.config.materialized) }}{% endif %}\
             select 1 as x",
        ),
    ]);
    let r = strata(dir.path(), &["parse"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// dbt_project.yml's `vars:` are rendered where they are used, with the
/// using node's context: a var may hold `source()` (dbt's lazy vars).
#[test]
fn project_vars_render_where_they_are_used() {
    let sql = compile_one(
        &[
            (
                "dbt_project.yml",
                "name: proj\nversion: '1.0'\nprofile: proj\nvars:\n  orders_rel: \"{{ source('raw', 'orders') }}\"\n  where_target: \"{{ target.name }}\"\n  plain: 3\n",
            ),
            (
                "models/sources.yml",
                "sources:\n  - name: raw\n    schema: landing\n    tables:\n      - name: orders\n",
            ),
            (
                "models/m.sql",
                "select {{ var('plain') }} as n, '{{ var('where_target') }}' as t from {{ var('orders_rel') }}",
            ),
        ],
        "m",
    );
    assert!(
        sql.contains("select 3 as n, 'dev' as t from \"db\".\"landing\".\"orders\""),
        "{sql}"
    );
}

/// Properties for a model with no file warn (their tests are skipped), as in
/// dbt; Jinja in a properties file's `enabled:` is rendered.
#[test]
fn unmatched_properties_warn_and_yaml_config_jinja_renders() {
    let dir = project(&[
        (
            "models/props.yml",
            "models:\n  - name: ghost\n    columns:\n      - name: id\n        data_tests: [not_null]\n  - name: off\n    config:\n      enabled: \"{{ target.name == 'prod' }}\"\n",
        ),
        ("models/off.sql", "select 1 as id"),
        ("models/on.sql", "select 1 as id"),
    ]);
    let r = strata(dir.path(), &["ls"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("properties for model 'ghost' match no file"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout.trim(), "proj.on", "{}", r.stdout);
}
