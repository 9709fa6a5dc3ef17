//! Two invocations in one process (as `watch` will make them) do not
//! interfere: each run gets its own interrupt handle, reporter and adapter,
//! and nothing a run sets outlives it.

mod common;

use clap::Parser;
use common::pg::psql;
use common::*;
use strata::engine::Interrupt;

fn invoke(dir: &std::path::Path, args: &[&str], interrupt: &Interrupt) -> std::process::ExitCode {
    let mut argv = vec!["strata"];
    argv.extend_from_slice(args);
    let project_dir = dir.to_string_lossy().to_string();
    argv.extend_from_slice(&["--project-dir", &project_dir, "-q"]);
    strata::run(strata::cli::Cli::parse_from(argv), interrupt)
}

#[test]
fn runs_in_one_process_are_independent() {
    let db = pg::database("in_process");
    let profile = pg::profile(&db);
    let dir = project(&[
        ("profiles.yml", &profile),
        ("dbt_project.yml", "name: proj\nprofile: proj\n"),
        ("seeds/nums.csv", "n\n1\n2\n"),
        (
            "models/total.sql",
            "select sum(n) as s from {{ ref('nums') }}",
        ),
    ]);
    let first = Interrupt::new();
    assert_eq!(
        invoke(dir.path(), &["build"], &first),
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(psql(&db, "select s from main.total"), "3");

    // A run whose handle was interrupted stops (exit 130) without building ...
    let stopped = Interrupt::new();
    stopped.trigger();
    std::fs::write(dir.path().join("seeds/nums.csv"), "n\n1\n2\n3\n").unwrap();
    assert_eq!(
        invoke(dir.path(), &["build"], &stopped),
        std::process::ExitCode::from(130)
    );
    assert_eq!(psql(&db, "select s from main.total"), "3");

    // ... and the next run, with its own handle, is not affected by it.
    let next = Interrupt::new();
    assert_eq!(
        invoke(dir.path(), &["build"], &next),
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(psql(&db, "select s from main.total"), "6");
    // The first handle can be reused after a reset.
    first.trigger();
    first.reset();
    assert_eq!(
        invoke(dir.path(), &["run"], &first),
        std::process::ExitCode::SUCCESS
    );
}
