//! Strata: loads dbt-format projects, compiles them into a dependency graph and
//! writes dbt-compatible artifacts.

pub mod adapter;
pub mod artifacts;
pub mod cli;
pub mod commands;
pub mod compile;
pub mod confmap;
pub mod deps;
pub mod engine;
pub mod error;
pub mod graph;
pub mod jinja;
pub mod load;
pub mod localpg;
pub mod manifest;
pub mod materialize;
pub mod project;
pub mod report;
pub mod scheduler;
pub mod secrets;
pub mod selector_syntax;
pub mod sql;
pub mod table;
pub mod yaml_depth;

use std::process::ExitCode;

use cli::{Cli, Command};
use commands::Outcome;

/// Runs one CLI invocation: exit 0 on success, 1 when models or tests failed,
/// 2 when the tool or the input was wrong, 130 when `interrupt` stopped it.
/// The caller owns the interrupt (the binary triggers it on Ctrl-C).
pub fn run(mut cli: Cli, interrupt: &engine::Interrupt) -> ExitCode {
    cli.command.stamp();
    // Whatever prints a secret's value (debug, an error quoting a connection
    // string) shows `*****` instead, as dbt does.
    secrets::register_from_env();
    let result = match &cli.command {
        Command::Parse(a) => commands::parse::run(a),
        Command::Compile(a) => commands::compile::run(a),
        Command::Ls(a) => commands::ls::run(a),
        Command::Run(a) => commands::run::run(a, interrupt),
        Command::Seed(a) => commands::run::seed(a, interrupt),
        Command::Load(a) => commands::load::run(a, interrupt),
        Command::Build(a) => commands::run::build(a, interrupt),
        Command::Snapshot(a) => commands::run::snapshot(a, interrupt),
        Command::Test(a) => commands::run::test(a, interrupt),
        Command::Source(a) => match &a.action {
            cli::SourceAction::Freshness(c) => commands::freshness::run(c),
        },
        Command::Retry(a) => commands::run::retry(a, interrupt),
        Command::Show(a) => commands::show::run(a),
        Command::RunOperation(a) => commands::run_operation::run(a),
        Command::Deps(a) => commands::deps::run(a),
        Command::Clean(a) => commands::clean::run(a),
        Command::Init(a) => commands::init::run(a),
        Command::Debug(a) => commands::debug::run(a),
        Command::Pg(a) => commands::pg::run(a),
        Command::Watch(a) => commands::watch::run(a, interrupt),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) => {
            let mut text = format!("{e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                let s = c.to_string();
                if !text.contains(&s) {
                    text.push_str(&format!("\n  caused by: {s}"));
                }
                cause = c.source();
            }
            crate::errln!("{}", secrets::scrub(&text));
            ExitCode::from(2)
        }
    }
}
