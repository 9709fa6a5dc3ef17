//! The `strata` binary: parses arguments, owns the process's signal handling,
//! and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let interrupt = strata::engine::Interrupt::new();
    {
        // Ctrl-C: runs stop starting work and cancel statements in flight.
        let interrupt = interrupt.clone();
        // Without a handler (another one is installed), Ctrl-C keeps its default.
        let _ = ctrlc::set_handler(move || interrupt.trigger());
    }
    strata::run(strata::cli::Cli::parse(), &interrupt)
}
