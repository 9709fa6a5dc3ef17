//! `strata watch` driven as an analyst would: files edited, broken, fixed,
//! added and deleted under a running watch, its `--log-format json` events
//! read back, and the warehouse checked.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pg::psql;
use common::*;

/// A running `strata watch`, its JSON events arriving on a channel.
struct Watch {
    child: std::process::Child,
    events: mpsc::Receiver<serde_json::Value>,
    /// Every line seen, for failure messages.
    seen: Vec<String>,
}

impl Watch {
    fn start(dir: &Path) -> Watch {
        Watch::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Watch {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["watch", "--log-format", "json", "--no-preview"])
            .args(extra)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"code": "text", "msg": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut w = Watch {
            child,
            events: rx,
            seen: Vec::new(),
        };
        w.next("watch_ready");
        w
    }

    /// The next event with this code, skipping others; every watch event
    /// skipped is returned too, for counting.
    fn next_with_skipped(&mut self, code: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.to_string());
                    if v["code"] == code {
                        return (v, skipped);
                    }
                    skipped.push(v);
                }
                Err(_) => panic!("no '{code}' event; seen:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn next(&mut self, code: &str) -> serde_json::Value {
        self.next_with_skipped(code).0
    }

    /// The nodes of the next rebuild.
    fn rebuilt(&mut self) -> Vec<String> {
        let v = self.next("watch_rebuilt");
        assert_eq!(v["data"]["success"], true, "{}", self.seen.join("\n"));
        v["data"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn models(nodes: &[String]) -> Vec<&str> {
    nodes
        .iter()
        .filter(|n| n.starts_with("model."))
        .map(String::as_str)
        .collect()
}

#[test]
fn watch_rebuilds_what_each_save_changes() {
    let db = pg::database("watch");
    let profile = pg::profile(&db);
    let dir = project(&[
        ("profiles.yml", &profile),
        (
            "dbt_project.yml",
            "name: proj\nprofile: proj\nvars:\n  factor: 2\nmodels:\n  proj:\n    +materialized: view\n",
        ),
        ("macros/twice.sql", "{% macro twice(x) %}({{ x }} * 2){% endmacro %}"),
        ("models/a.sql", "select 1 as id"),
        (
            "models/b.sql",
            "{{ config(materialized='table') }}select id from {{ ref('a') }}",
        ),
        ("models/c.sql", "select id from {{ ref('b') }}"),
        ("models/x1.sql", "select {{ twice(1) }} as v"),
        ("models/x2.sql", "select {{ twice(2) }} as v"),
        ("models/x3.sql", "select {{ twice(3) }} as v"),
        ("models/v.sql", "select {{ var('factor') }} as factor"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: a\n    columns:\n      - name: id\n        data_tests: [not_null]\n",
        ),
    ]);
    let p = dir.path();
    let r = strata(p, &["build"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let mut w = Watch::start(p);

    // An edited model: it, the views below it and its tests; not the table below.
    write(p, "models/a.sql", "select 2 as id");
    let nodes = w.rebuilt();
    assert_eq!(models(&nodes), vec!["model.proj.a"], "{nodes:?}");
    assert!(
        nodes
            .iter()
            .any(|n| n.starts_with("test.proj.not_null_a_id")),
        "{nodes:?}"
    );
    assert_eq!(psql(&db, "select id from main.a"), "2");

    // A Jinja mistake in a model: the error names the file, the last good
    // state stays; fixing it rebuilds the model.
    write(p, "models/a.sql", "select {{ oops( }} as id");
    let e = w.next("watch_error");
    assert!(e["msg"].as_str().unwrap().contains("models/a.sql"), "{e}");
    write(p, "models/a.sql", "select 3 as id");
    assert_eq!(models(&w.rebuilt()), vec!["model.proj.a"]);
    assert_eq!(psql(&db, "select id from main.a"), "3");
    // A changed ref moves a model in the graph: once view c reads a, the
    // next edit of a rebuilds c too.
    write(p, "models/c.sql", "select id from {{ ref('a') }}");
    assert_eq!(models(&w.rebuilt()), vec!["model.proj.c"]);
    write(p, "models/a.sql", "select 5 as id");
    assert_eq!(models(&w.rebuilt()), vec!["model.proj.a", "model.proj.c"]);
    assert_eq!(psql(&db, "select id from main.c"), "5");

    // Broken YAML: the error names the file; nothing changes; fixing it
    // carries on.
    write(
        p,
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: a\n    columns: [\n",
    );
    let e = w.next("watch_error");
    assert!(e["msg"].as_str().unwrap().contains("schema.yml"), "{e}");
    write(
        p,
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: a\n    columns:\n      - name: id\n        data_tests: [not_null, unique]\n",
    );
    let nodes = w.rebuilt();
    assert!(
        nodes.iter().any(|n| n.starts_with("test.proj.unique_a_id")),
        "the new test runs: {nodes:?}"
    );

    // A new model is built; a deleted one is reported.
    write(p, "models/d.sql", "select 4 as id");
    assert_eq!(models(&w.rebuilt()), vec!["model.proj.d"]);
    assert_eq!(psql(&db, "select id from main.d"), "4");
    std::fs::remove_file(p.join("models/d.sql")).unwrap();
    let removed = w.next("watch_removed");
    assert_eq!(removed["data"]["nodes"][0], "model.proj.d", "{removed}");

    // A macro three models call: those three, nothing else.
    write(
        p,
        "macros/twice.sql",
        "{% macro twice(x) %}({{ x }} + {{ x }}){% endmacro %}",
    );
    assert_eq!(
        models(&w.rebuilt()),
        vec!["model.proj.x1", "model.proj.x2", "model.proj.x3"]
    );

    // A var in dbt_project.yml: the model reading it.
    write(
        p,
        "dbt_project.yml",
        "name: proj\nprofile: proj\nvars:\n  factor: 3\nmodels:\n  proj:\n    +materialized: view\n",
    );
    assert_eq!(models(&w.rebuilt()), vec!["model.proj.v"]);
    assert_eq!(psql(&db, "select factor from main.v"), "3");

    // A burst of saves (an editor writing several times): one rebuild.
    for i in 0..5 {
        write(p, "models/a.sql", &format!("select {} as id", 10 + i));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, skipped) = w.next_with_skipped("watch_rebuilt");
    let changes = skipped
        .iter()
        .filter(|v| v["code"] == "watch_change")
        .count();
    assert_eq!(changes, 1, "{}", w.seen.join("\n"));
    assert_eq!(psql(&db, "select id from main.a"), "14");

    // A save while a slow rebuild runs cancels it (server side) and the
    // next rebuild builds the newer version.
    write(
        p,
        "models/slow.sql",
        "{{ config(materialized='table') }}select 1 as x from pg_sleep(20)",
    );
    w.next("watch_change");
    std::thread::sleep(Duration::from_millis(700));
    write(
        p,
        "models/slow.sql",
        "{{ config(materialized='table') }}select 2 as x",
    );
    let superseded = w.next("watch_superseded");
    assert_eq!(superseded["data"]["nodes"][0], "model.proj.slow");
    assert_eq!(models(&w.rebuilt()), vec!["model.proj.slow"]);
    assert_eq!(psql(&db, "select x from main.slow"), "2");

    // Ctrl-C: a clean stop, exit 130.
    let pid = w.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = w.child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn watch_sees_profiles_outside_the_project() {
    let profiles = tempfile::tempdir().unwrap();
    let profile = |schema: &str| {
        format!("proj:\n  target: dev\n  outputs:\n    dev: {{type: postgres, host: localhost, user: u, dbname: d, schema: {schema}}}\n")
    };
    let file = profiles.path().join("profiles.yml");
    std::fs::write(&file, profile("one")).unwrap();
    let dir = project(&[
        ("dbt_project.yml", "name: proj\nprofile: proj\n"),
        ("models/a.sql", "select 1 as id"),
    ]);
    let mut w = Watch::start_with(
        dir.path(),
        &[
            "--compile-only",
            "--profiles-dir",
            profiles.path().to_str().unwrap(),
        ],
    );
    // A new schema in the profile renames every relation: all recompiled.
    std::fs::write(&file, profile("two")).unwrap();
    let v = w.next("watch_compiled");
    assert_eq!(v["data"]["nodes"][0], "model.proj.a", "{v}");
}
