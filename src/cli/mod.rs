//! The `gavel` command line, a module of the binary: the library is the
//! service and its tools, and this is how a person or a script drives them.
//!
//! - [`args`]: clap's definitions of the commands and their flags.
//! - [`process`]: what the process sets up: logging, the runtime, signals.
//! - [`server`]: `gavel server` and the bench's `gavel null-server`.
//! - [`auctions`]: the one-shot client commands: bid, result, create,
//!   cancel, list, show, history, watch.
//! - [`operator`]: `gavel status` and `gavel member remove`.
//! - [`interactive`]: the bidding prompt of `gavel client` and the demo.
//! - [`demo`]: `gavel demo`, a local cluster with the prompt and its
//!   crash commands, or the crash tour.
//! - [`chaos`]: `gavel chaos`.
//! - [`cert`]: `gavel cert`, the cluster's certificates.
//! - [`pager`]: the one pager every listing walks.
//! - [`render`]: the JSON printed for `--json`.

pub mod args;
mod auctions;
mod cert;
mod chaos;
mod demo;
mod exit;
mod interactive;
mod operator;
mod pager;
pub mod process;
mod render;
mod server;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use gavel::node::CoordinatorConfig;

use args::{Cli, Commands, MemberCommand};

/// Runs the command given. A client command that found no server says
/// why, where a node it can reach knows.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let target = cli.command.client_target().cloned();
    let code = run_command(cli).await?;
    if let Some(target) = target
        && code == exit::unreachable()
    {
        operator::explain_unreachable(&target).await;
    }
    Ok(code)
}

async fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Server(args) => server::serve(args).await.map(|()| ExitCode::SUCCESS),
        Commands::Client { id, target } => {
            let mut client = target.client()?;
            let mut stdin = interactive::stdin();
            interactive::bidding_prompt(&mut client, &target, &id, &mut stdin, "", |_| async { None }).await?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Bid { amount, id, target } => auctions::bid(&amount, &id, &target).await,
        Commands::Result { target } => auctions::result(&target).await,
        Commands::Create { seller, title, description, min, duration, json, target } => {
            let create = gavel::auction::CreateAuction::lasting(&seller, &title, &description, min, duration);
            auctions::create(create, &title, json, &target).await
        }
        Commands::Cancel { id, seller, target } => auctions::cancel(&id, &seller, &target).await,
        Commands::List { open, json, target } => auctions::list(open, json, &target).await,
        Commands::Status { json, target } => operator::cluster_status(&target, json).await,
        Commands::Member(MemberCommand::Remove { member, nodes, client_port, record_dir, security }) => {
            let client = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), client_port);
            let mut record = CoordinatorConfig::for_client_port(client);
            if let Some(dir) = record_dir {
                record.dir = dir;
            }
            // An operator's certificate: only operators change the membership.
            let network = security.network(Some("operator"))?;
            operator::remove_member(&network, &member, &nodes, client, &record).await
        }
        Commands::Watch { ids, after, json, target } => auctions::watch(&ids, after, json, &target).await,
        Commands::History { id, json, target } => auctions::history(&id, json, &target).await,
        Commands::Show { id, json, target } => auctions::show(&id, json, &target).await,
        Commands::Demo(args) => demo::demo(args).await.map(|()| ExitCode::SUCCESS),
        Commands::Chaos(args) => chaos::chaos(args).await,
        Commands::Cert(command) => cert::cert(command),
        Commands::Bench(args) => gavel::tools::bench::run(args).await,
        Commands::NullServer(args) => server::null_server(args).await.map(|()| ExitCode::SUCCESS),
    }
}
