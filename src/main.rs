//! The `strata` binary: parses arguments, owns the process's signal handling
//! and thread stacks, and hands over to the library.

use clap::Parser;

// Parsing allocates millions of small strings across threads; mimalloc's
// per-thread heaps avoid glibc's arena growth (page faults and mprotect calls
// were a fifth of a 10,000-model parse).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let interrupt = strata::engine::Interrupt::new();
    {
        // Ctrl-C, SIGTERM and SIGHUP: runs stop starting work and cancel
        // statements in flight, server side.
        let interrupt = interrupt.clone();
        // Without a handler (another one is installed), the signals keep their default.
        let _ = ctrlc::set_handler(move || interrupt.trigger());
    }
    let cli = strata::cli::Cli::parse();
    // Templates render on the main thread and rayon's workers: both get the
    // stack deep values need (see `jinja::STACK_BYTES`).
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(strata::jinja::STACK_BYTES)
        .build_global();
    let worker = std::thread::Builder::new()
        .name("strata".into())
        .stack_size(strata::jinja::STACK_BYTES);
    let run = {
        let interrupt = interrupt.clone();
        move || strata::run(cli, &interrupt)
    };
    match worker.spawn(run) {
        Ok(h) => h.join().unwrap_or(std::process::ExitCode::from(101)),
        // The system refused the stack: run on this thread's.
        Err(_) => strata::run(strata::cli::Cli::parse(), &interrupt),
    }
}
