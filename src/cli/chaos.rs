//! `gavel chaos`: a run under injected faults, then the checks of its
//! history.

use std::process::ExitCode;

use anyhow::Context;

use gavel::tools::chaos::{self, ChaosConfig, FaultKind};

use super::args::ChaosArgs;

/// With a data directory, a chaos run kills every node at once too.
fn with_kill_all(mut faults: Vec<FaultKind>, durable: bool) -> Vec<FaultKind> {
    if durable && !faults.is_empty() && !faults.contains(&FaultKind::KillAll) {
        faults.push(FaultKind::KillAll);
    }
    faults
}

/// `gavel chaos`: fails if any check failed, and prints how to replay it.
pub async fn chaos(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let config = ChaosConfig {
        binary: std::env::current_exe().context("finding the gavel binary")?,
        nodes: args.nodes,
        clients: args.clients,
        duration: args.duration,
        seed,
        history: args.history,
        base_port: args.base_port,
        client_port: args.client_port,
        log_dir: args.log_dir,
        faults: with_kill_all(args.faults, args.data_dir.is_some()),
        data_dir: args.data_dir,
        max_pause: args.max_pause,
        hostile: args.hostile,
        auctions: args.auctions,
        secure: args.secure,
        // Short timeouts, so that faults resolve well within the run.
        server_args: ["--ack-timeout", "500ms", "--leader-timeout", "500ms", "--duration", "24h"]
            .map(String::from)
            .to_vec(),
    };
    println!(
        "chaos: {} nodes, {} clients and {} hostile, {:?}, faults {:?}, seed {seed}{}",
        config.nodes,
        config.clients,
        config.hostile,
        config.duration,
        config.faults,
        if config.secure { ", TLS and authentication on" } else { "" }
    );
    let report = chaos::run(config).await?;
    println!("{}", report.render());
    if !report.passed() {
        println!("replay with: gavel chaos --seed {seed} (same flags)");
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
