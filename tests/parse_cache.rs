//! The incremental parse cache: each change re-parses exactly the files it
//! can affect, and a cached parse always equals a fresh one (a property
//! test over random edit sequences).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use serde_json::Value as Json;
use strata::manifest::cache::{CacheStats, ParseCache, FILE_NAME};
use strata::manifest::parser;
use strata::project::{LoadOptions, Project};

fn load(dir: &Path, vars: Option<&str>) -> Project {
    Project::load(&LoadOptions {
        project_dir: dir.to_path_buf(),
        profiles_dir: None,
        profile: None,
        target: None,
        vars: vars.map(str::to_string),
        offline: true,
        which: "parse".into(),
        full_refresh: false,
    })
    .expect("project loads")
}

/// The manifest as JSON without its per-invocation metadata, or the error.
fn manifest(project: &Project, cache: Option<&mut ParseCache>) -> Result<Json, String> {
    let parsed = parser::parse_cached(project, Arc::new(strata::jinja::services::Silent), cache)
        .map_err(|e| e.to_string())?;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("manifest.json");
    let meta = strata::artifacts::manifest::ManifestMeta {
        invocation_id: "x",
        started_at: chrono::DateTime::UNIX_EPOCH,
        target_path: "target",
    };
    strata::artifacts::manifest::write(&path, &parsed.manifest, &Default::default(), &meta)
        .map_err(|e| e.to_string())?;
    let mut v: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("metadata");
    // The manifest does not show parse-time renders (reused when compiling):
    // compare every node's full state too.
    o.insert(
        "nodes_as_parsed".into(),
        Json::String(format!("{:#?}", parsed.manifest.nodes)),
    );
    Ok(v)
}

/// Parses with the cache saved under the project's target dir, as a command
/// does; returns the manifest and what was reused.
fn cached(dir: &Path, vars: Option<&str>) -> (Result<Json, String>, CacheStats) {
    let project = load(dir, vars);
    let mut cache = ParseCache::load(&dir.join("target"));
    let m = manifest(&project, Some(&mut cache));
    cache.save().unwrap();
    (m, cache.stats)
}

fn fresh(dir: &Path, vars: Option<&str>) -> Result<Json, String> {
    manifest(&load(dir, vars), None)
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const PROJECT: &str = "name: shop\nprofile: shop\nvars:\n  min_amount: 10\n  region: eu\n";

fn shop() -> tempfile::TempDir {
    project(&[
        ("dbt_project.yml", PROJECT),
        (
            "macros/money.sql",
            "{% macro cents(col) %}({{ col }} * 100)::int{% endmacro %}\n\
             {% macro unused() %}1{% endmacro %}",
        ),
        ("models/orders.sql", "select 1 as id, 20 as amount"),
        (
            "models/big_orders.sql",
            "select * from {{ ref('orders') }} where amount > {{ var('min_amount') }}",
        ),
        (
            "models/a.sql",
            "select {{ cents('amount') }} as c from {{ ref('orders') }}",
        ),
        (
            "models/b.sql",
            "select {{ cents('amount') }} as c from {{ ref('orders') }}",
        ),
        ("models/c.sql", "select {{ cents('1') }} as c"),
        ("models/plain.sql", "select 2 as x"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: orders\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n",
        ),
    ])
}

/// The shop project with a profile, for running commands on it.
fn shop_with_profile() -> tempfile::TempDir {
    let dir = shop();
    write(
        dir.path(),
        "profiles.yml",
        "shop:\n  target: dev\n  outputs:\n    dev: {type: postgres, host: localhost, user: u, dbname: d, schema: s}\n",
    );
    dir
}

#[test]
fn each_change_reparses_exactly_what_it_affects() {
    let dir = shop();
    let d = dir.path();
    // 7 cacheable files: 6 models and the properties file.
    let (m, s) = cached(d, None);
    assert_eq!(m, fresh(d, None));
    assert_eq!((s.reused, s.parsed), (0, 7));
    assert!(d.join("target").join(FILE_NAME).exists());

    // Nothing changed: nothing is parsed.
    let (m, s) = cached(d, None);
    assert_eq!(m, fresh(d, None));
    assert_eq!((s.reused, s.parsed), (7, 0));

    // One model edited: that model only.
    write(d, "models/plain.sql", "select 3 as x");
    let (m, s) = cached(d, None);
    assert_eq!(m, fresh(d, None));
    assert_eq!(s.parsed, 1);

    // A macro used by three models: those three, nothing else.
    write(
        d,
        "macros/money.sql",
        "{% macro cents(col) %}round({{ col }} * 100)::int{% endmacro %}\n\
         {% macro unused() %}1{% endmacro %}",
    );
    let (m, s) = cached(d, None);
    assert_eq!(m, fresh(d, None));
    assert_eq!(s.parsed, 3);
    // A macro nobody calls: nothing.
    write(
        d,
        "macros/money.sql",
        "{% macro cents(col) %}round({{ col }} * 100)::int{% endmacro %}\n\
         {% macro unused() %}2{% endmacro %}",
    );
    assert_eq!(cached(d, None).1.parsed, 0);

    // A var in dbt_project.yml: the model reading it.
    write(
        d,
        "dbt_project.yml",
        &PROJECT.replace("min_amount: 10", "min_amount: 50"),
    );
    let (m, s) = cached(d, None);
    assert_eq!(m, fresh(d, None));
    assert_eq!(s.parsed, 1);
    assert!(m.unwrap()["nodes"]["model.shop.big_orders"]["raw_code"]
        .as_str()
        .is_some());
    // A var nobody reads: nothing.
    write(
        d,
        "dbt_project.yml",
        &PROJECT
            .replace("min_amount: 10", "min_amount: 50")
            .replace("region: eu", "region: us"),
    );
    assert_eq!(cached(d, None).1.parsed, 0);
    // --vars overriding it: the model reading it.
    let (m, s) = cached(d, Some("{min_amount: 99}"));
    assert_eq!(m, fresh(d, Some("{min_amount: 99}")));
    assert_eq!(s.parsed, 1);

    // A new file is parsed; a deleted one disappears with its tests.
    write(d, "models/new.sql", "select 1 as n");
    let (m, s) = cached(d, None);
    assert_eq!(m, fresh(d, None));
    assert_eq!(s.parsed, 2, "the new model, and big_orders's var is back");
    std::fs::remove_file(d.join("models/plain.sql")).unwrap();
    let (m, _) = cached(d, None);
    let m = m.unwrap();
    assert!(m["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .all(|k| !k.contains("plain")));
    assert_eq!(Ok(m), fresh(d, None));
    // A properties file emptied: its tests go.
    write(d, "models/schema.yml", "version: 2\n");
    let (m, s) = cached(d, None);
    assert_eq!(s.parsed, 1);
    let m = m.unwrap();
    assert!(m["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .all(|k| !k.starts_with("test.")));
    assert_eq!(Ok(m), fresh(d, None));
}

#[test]
fn env_vars_and_the_clock_are_never_stale() {
    let dir = project(&[
        ("dbt_project.yml", PROJECT),
        (
            "models/by_env.sql",
            "select '{{ env_var(\"STRATA_CACHE_TEST_REGION\", \"none\") }}' as r",
        ),
        ("models/stamped.sql", "select '{{ run_started_at }}' as t"),
    ]);
    let d = dir.path();
    let (_, s) = cached(d, None);
    assert_eq!(s.parsed, 2);
    // The clock is read again every time; the env var only when it changed.
    assert_eq!(
        cached(d, None).1,
        CacheStats {
            reused: 1,
            parsed: 1,
            uncacheable: 1
        }
    );
    // This test binary's other tests do not read this variable.
    std::env::set_var("STRATA_CACHE_TEST_REGION", "eu");
    let (m, s) = cached(d, None);
    std::env::remove_var("STRATA_CACHE_TEST_REGION");
    assert_eq!(
        s,
        CacheStats {
            reused: 0,
            parsed: 2,
            uncacheable: 1
        }
    );
    assert!(m.unwrap()["nodes"]["model.shop.by_env"]["raw_code"].is_string());
}

#[test]
fn a_corrupt_or_foreign_cache_is_ignored() {
    let dir = shop();
    let d = dir.path();
    let _ = cached(d, None);
    let file = d.join("target").join(FILE_NAME);
    let good = std::fs::read(&file).unwrap();
    // Truncated, garbage, and another build's cache are all ignored.
    for bad in [
        good[..good.len() / 2].to_vec(),
        b"not a cache".to_vec(),
        good.iter()
            .map(|b| if *b == b'.' { b',' } else { *b })
            .collect(),
    ] {
        std::fs::write(&file, bad).unwrap();
        let (m, s) = cached(d, None);
        assert_eq!(s.reused, 0);
        assert_eq!(m, fresh(d, None));
    }
    // ... and replaced by a good one.
    assert_eq!(cached(d, None).1.parsed, 0);
}

#[test]
fn commands_use_the_cache_unless_told_not_to() {
    let dir = shop_with_profile();
    let d = dir.path();
    let r = strata(d, &["parse", "--no-partial-parse"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!d.join("target").join(FILE_NAME).exists());
    for cmd in ["parse", "compile", "ls"] {
        let r = strata(d, &[cmd, "--log-format", "json"]);
        assert_eq!(r.code, 0, "{cmd}: {}", r.stderr);
        assert!(d.join("target").join(FILE_NAME).exists(), "{cmd}");
    }
    // Errors are never cached: they show every time.
    write(d, "models/plain.sql", "select {{ oops( }}");
    for _ in 0..2 {
        let r = strata(d, &["parse"]);
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("models/plain.sql"), "{}", r.stderr);
    }
}

#[test]
fn a_large_properties_file_round_trips() {
    // Large properties files are cached in chunks, read back in parallel.
    let mut files: Vec<(String, String)> = vec![("dbt_project.yml".into(), PROJECT.into())];
    let mut yml = String::from("version: 2\nmodels:\n");
    for i in 0..700 {
        files.push((format!("models/m{i}.sql"), format!("select {i} as id")));
        yml.push_str(&format!(
            "  - name: m{i}\n    description: model {i}\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n"
        ));
    }
    files.push(("models/schema.yml".into(), yml));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = project(&refs);
    let d = dir.path();
    let (first, _) = cached(d, None);
    let (again, s) = cached(d, None);
    assert_eq!(s.parsed, 0);
    assert_eq!(first, again);
    assert_eq!(again, fresh(d, None));
    assert_eq!(
        again.unwrap()["nodes"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("test."))
            .count(),
        1400
    );
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random edits of the kinds an analyst makes (bodies, macros, vars,
/// properties, files added and deleted, mistakes); after each, the cached
/// parse equals a fresh one.
#[test]
fn cached_parse_equals_fresh_parse_after_random_edits() {
    for seed in [7u64, 1234, 99991] {
        let dir = shop();
        let d = dir.path();
        let mut rng = Rng(seed);
        let mut models: Vec<String> = ["orders", "big_orders", "a", "b", "c", "plain"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let bodies = |rng: &mut Rng, models: &[String]| -> String {
            let other = &models[rng.below(models.len())];
            match rng.below(7) {
                0 => format!("select {} as x", rng.below(100)),
                1 => format!("select * from {{{{ ref('{other}') }}}}"),
                2 => "select {{ var('min_amount') }} as m".into(),
                3 => "select {{ cents('2') }} as c".into(),
                4 => format!("{{{{ config(materialized='table', tags=['t{}']) }}}}\nselect 1 as id", rng.below(3)),
                5 => "{{ config(tags=[var('region', 'xx')]) }}select '{{ var('region', 'xx') }}' as r".into(),
                _ => "select {{ broken( }}".into(),
            }
        };
        for step in 0..60 {
            let what = rng.below(7);
            match what {
                0 | 1 => {
                    let m = models[rng.below(models.len())].clone();
                    let body = bodies(&mut rng, &models);
                    write(d, &format!("models/{m}.sql"), &body);
                }
                2 => write(
                    d,
                    "macros/money.sql",
                    &format!(
                        "{{% macro cents(col) %}}({{{{ col }}}} * {})::int{{% endmacro %}}",
                        [100, 1000, 10][rng.below(3)]
                    ),
                ),
                3 => write(
                    d,
                    "dbt_project.yml",
                    &PROJECT
                        .replace("min_amount: 10", &format!("min_amount: {}", rng.below(4)))
                        .replace("region: eu", ["region: eu", "region: us"][rng.below(2)]),
                ),
                4 => {
                    let name = format!("m{}", rng.below(5));
                    if models.contains(&name) {
                        let _ = std::fs::remove_file(d.join(format!("models/{name}.sql")));
                        models.retain(|m| *m != name);
                    } else {
                        let body = bodies(&mut rng, &models);
                        write(d, &format!("models/{name}.sql"), &body);
                        models.push(name);
                    }
                }
                5 => {
                    let m = &models[rng.below(models.len())];
                    let test = ["unique", "not_null"][rng.below(2)];
                    write(
                        d,
                        "models/schema.yml",
                        &format!("version: 2\nmodels:\n  - name: {m}\n    columns:\n      - name: id\n        data_tests: [{test}]\n"),
                    );
                }
                _ => {
                    // A save that changes nothing (editors do this).
                    let p = d.join("models/plain.sql");
                    if let Ok(t) = std::fs::read_to_string(&p) {
                        std::fs::write(p, t).unwrap();
                    }
                }
            }
            let (got, _) = cached(d, None);
            let want = fresh(d, None);
            assert_eq!(
                got, want,
                "seed {seed}, step {step} (edit kind {what}): cached parse differs"
            );
        }
    }
}

/// manifest.json as a compile left it: (everything but the metadata, metadata).
fn written_manifest(d: &Path) -> (Json, Json) {
    let mut v: Json =
        serde_json::from_str(&std::fs::read_to_string(d.join("target/manifest.json")).unwrap())
            .unwrap();
    let meta = v.as_object_mut().unwrap().remove("metadata").unwrap();
    (v, meta)
}

#[test]
fn an_unchanged_compile_reuses_its_outputs() {
    let dir = shop_with_profile();
    let d = dir.path();
    // Read only while compiling, so only the compile knows about it.
    write(
        d,
        "models/by_env.sql",
        "select '{% if execute %}{{ env_var(\"STRATA_MEMO_TEST\", \"a\") }}{% endif %}' as v",
    );
    const REUSED: &str = "nothing changed since the last compile";
    let compile = |args: &[&str], env: &[(&str, &str)]| -> (bool, Run) {
        let mut all = vec!["compile"];
        all.extend(args);
        let r = strata_env(d, &all, env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        (r.stdout.contains(REUSED) || r.stderr.contains(REUSED), r)
    };
    let compiled = |model: &str| {
        std::fs::read_to_string(d.join(format!("target/compiled/shop/models/{model}.sql"))).unwrap()
    };

    assert!(!compile(&[], &[]).0);
    let (body, meta) = written_manifest(d);
    assert!(compile(&[], &[]).0);
    // The same manifest, as this invocation's.
    let (body2, meta2) = written_manifest(d);
    assert_eq!(body, body2);
    assert_ne!(meta["invocation_id"], meta2["invocation_id"]);
    assert_eq!(meta["project_name"], meta2["project_name"]);
    // ... and what a compile without any cache writes.
    assert!(!compile(&["--no-partial-parse"], &[]).0);
    assert_eq!(body, written_manifest(d).0);
    // That compile forgot the memo (it was not remembered).
    assert!(!compile(&[], &[]).0);
    assert!(compile(&[], &[]).0);

    // An env var the compile read.
    assert!(!compile(&[], &[("STRATA_MEMO_TEST", "b")]).0);
    assert!(compiled("by_env").contains("'b'"));
    assert!(compile(&[], &[("STRATA_MEMO_TEST", "b")]).0);
    assert!(!compile(&[], &[]).0);
    assert!(compiled("by_env").contains("'a'"));

    // A file edited, a var given, another selection.
    write(d, "models/plain.sql", "select 3 as x");
    assert!(!compile(&[], &[]).0);
    assert!(compiled("plain").contains("select 3"));
    assert!(compile(&[], &[]).0);
    assert!(!compile(&["--vars", "{min_amount: 5}"], &[]).0);
    assert!(compiled("big_orders").contains("> 5"));
    assert!(!compile(&[], &[]).0);
    let (reused, r) = compile(&["-s", "plain"], &[]);
    assert!(
        !reused && r.stdout.contains("select 3 as x"),
        "{}",
        r.stdout
    );
    let (reused, r) = compile(&["-s", "plain"], &[]);
    assert!(reused && r.stdout.contains("select 3 as x"), "{}", r.stdout);

    // Outputs touched since: a compiled file deleted, the manifest rewritten.
    assert!(!compile(&[], &[]).0);
    std::fs::remove_file(d.join("target/compiled/shop/models/plain.sql")).unwrap();
    assert!(!compile(&[], &[]).0);
    assert!(compiled("plain").contains("select 3"));
    assert_eq!(strata(d, &["parse"]).code, 0);
    assert!(!compile(&[], &[]).0);
    assert!(compile(&[], &[]).0);

    // An env var read while linking (a source's schema).
    write(
        d,
        "models/sources.yml",
        "version: 2\nsources:\n  - name: raw\n    schema: \"{{ env_var('STRATA_MEMO_RAW', 'raw_a') }}\"\n    tables: [{name: events}]\n",
    );
    write(
        d,
        "models/from_raw.sql",
        "select * from {{ source('raw', 'events') }}",
    );
    assert!(!compile(&[], &[]).0);
    assert!(compile(&[], &[]).0);
    assert!(!compile(&[], &[("STRATA_MEMO_RAW", "raw_b")]).0);
    assert!(
        compiled("from_raw").contains("raw_b"),
        "{}",
        compiled("from_raw")
    );
    assert!(!compile(&[], &[]).0);
    assert!(compiled("from_raw").contains("raw_a"));
    // A unit test's fixture file.
    write(d, "tests/fixtures/orders_in.csv", "id,amount\n1,20\n");
    assert!(!compile(&[], &[]).0);
    assert!(compile(&[], &[]).0);
    write(d, "tests/fixtures/orders_in.csv", "id,amount\n2,30\n");
    assert!(!compile(&[], &[]).0);

    // A compile that reads the clock is never reused.
    write(
        d,
        "models/stamped.sql",
        "select '{{ run_started_at }}' as t",
    );
    assert!(!compile(&[], &[]).0);
    assert!(!compile(&[], &[]).0);
    std::fs::remove_file(d.join("models/stamped.sql")).unwrap();
    assert!(!compile(&[], &[]).0);
    assert!(compile(&[], &[]).0);
}
