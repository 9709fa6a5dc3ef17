//! `strata run-operation MACRO --args '{...}'`: calls a macro with the warehouse
//! connected, so it can use run_query, statement blocks and adapter methods.

use anyhow::Result;

use super::{Outcome, Session};
use crate::adapter;
use crate::cli::RunOperationArgs;
use crate::compile::Compiler;
use crate::error::DiagKind;

pub fn run(args: &RunOperationArgs) -> Result<Outcome> {
    let s = Session::open(&args.common)?;
    let kwargs = crate::project::parse_cli_vars(args.args.as_deref())?;
    let adapter = adapter::connect(&s.project.dir, &s.project.target, Some(1))?;
    let compiler = Compiler::new(
        &s.parsed,
        Some(crate::engine::warehouse::AdapterWarehouse::shared(&adapter)),
        crate::artifacts::manifest::graph_json,
    );
    s.reporter.info(
        "run_operation",
        &format!("Running macro '{}'", args.macro_name),
    );
    let value = crate::jinja::to_value(&kwargs);
    match compiler.call_macro(&args.macro_name, value) {
        // As in dbt, what the macro renders or returns is not printed; it
        // prints with `print()` or `log(..., info=True)`.
        Ok(_) => {
            super::drop_in_background(s);
            Ok(Outcome::Success)
        }
        // A macro that does not exist is bad input (exit 2); one that fails ran (exit 1).
        Err(d) if d.kind == DiagKind::UnknownMacro => Err(d.into()),
        Err(d) => {
            s.reporter.error(&format!(
                "Encountered an error while running operation:\n{d}"
            ));
            Ok(Outcome::Failed)
        }
    }
}
