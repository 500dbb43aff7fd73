//! The `gavel` command: servers, clients, and the tools around them. The
//! command line itself is in [`cli`]; this file starts the process.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::args::{Cli, Commands};
use cli::process::{build_runtime, init_logging, termination_signal};

// glibc's malloc and free were 12 % of a leader's CPU under load; side by
// side, mimalloc raised 64-client throughput by 17 % at the median, for
// about 8 MiB more resident memory (BENCHMARKS.md, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command_line = Cli::parse();
    init_logging();
    // Servers and the bench's load generator run on one thread unless told
    // otherwise: side by side, that cut the one-client p50 by 40 % and raised
    // the 64-client throughput on a host whose cores the nodes share
    // (BENCHMARKS.md, "Runtime"). The other commands are not hot.
    let worker_threads = match &command_line.command {
        Commands::Server(args) => args.worker_threads,
        Commands::Bench(args) => args.worker_threads,
        Commands::NullServer(args) => args.worker_threads,
        _ => 0,
    };
    let runtime = match build_runtime(worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The tools that start their own servers stop them on SIGINT or SIGTERM:
    // the run is dropped, and with it the guards that kill the servers. (Not
    // the prompts: an interrupt ends them as it ends any program, and the
    // demo's servers, in the terminal's process group, get it too.)
    let stops_on_signal = matches!(command_line.command, Commands::Chaos(_) | Commands::Bench(_));
    let outcome = runtime.block_on(async move {
        if !stops_on_signal {
            return cli::run(command_line).await;
        }
        tokio::select! {
            outcome = cli::run(command_line) => outcome,
            (name, code) = termination_signal() => {
                eprintln!("stopped by {name}; the servers it started are stopped too");
                Ok(ExitCode::from(code))
            }
        }
    });
    // Drops every task, and the guards they hold; a check still running on
    // a blocking thread gets a second to notice.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
