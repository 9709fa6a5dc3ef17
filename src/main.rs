//! The `strata` binary: parses arguments and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    strata::run(strata::cli::Cli::parse())
}
