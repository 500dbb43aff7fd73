//! `gavel demo`: a local cluster of three nodes with the bidding prompt on
//! it, and the demo's own commands to crash and restart nodes; or, with
//! `--script crash-tour`, the scripted tour whose log is `log.txt`.

use std::time::Duration;

use anyhow::Context;

use gavel::client::{Client, ClientConfig};
use gavel::replication::{Role, epoch_number};
use gavel::security::certs::CertsDir;
use gavel::tools::cluster::{ClusterSpec, LocalCluster};
use gavel::tools::prompt;
use gavel::tools::tour::{self, TourConfig};

use super::args::{ClientSecurity, DemoArgs, Script, Target};
use super::interactive::{self, bidding_prompt};
use super::pager::{Page, for_each_item};

/// `gavel demo`: a local cluster and the prompt on it, or the crash tour.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("finding the gavel binary")?;
    let log_dir = std::env::temp_dir().join(format!("gavel-demo-{}", std::process::id()));
    if let Some(Script::CrashTour) = args.script {
        let config = TourConfig {
            binary,
            base_port: args.base_port,
            client_port: args.client_port,
            auction_duration: args.duration.unwrap_or(Duration::from_secs(8)),
            log_dir,
            keep_logs: args.keep_logs,
        };
        print!("{}", tour::run(config).await?);
        return Ok(());
    }
    // Long enough to explore, crash and restart at leisure.
    let duration = args.duration.unwrap_or(DEMO_AUCTION_DURATION);
    let mut spec = ClusterSpec::new(binary, args.nodes, args.base_port, args.client_port);
    spec.server_args = vec!["--duration".into(), humantime::format_duration(duration).to_string()];
    spec.log_dir = Some(log_dir.clone());
    // Each node keeps its state on disk, so that even the crash of every
    // node loses no acknowledged bid.
    spec.data_dir = Some(log_dir.join("data"));
    spec.http_base_port = Some(args.http_base_port);
    if args.secure {
        let certs = log_dir.join("certs");
        let nodes: Vec<String> =
            (0..args.nodes).map(|i| format!("127.0.0.1:{}", args.base_port as usize + i)).collect();
        CertsDir::new(&certs).create_cluster(&nodes).context("making the demo's certificates")?;
        println!("TLS on: certificates in {} (a CA, one per node, an operator's)", certs.display());
        spec.certs_dir = Some(certs);
    }
    // The prompt's names keep their secrets beside the certificates.
    let names_dir = spec.certs_dir.as_ref().map(|certs| certs.join("names"));
    let security = ClientSecurity { certs_dir: spec.certs_dir.clone(), cert_name: None, names_dir };
    println!(
        "starting {} nodes on ports {}..{}; logs and data in {} (removed at the end unless --keep-logs)",
        args.nodes,
        args.base_port,
        args.base_port as usize + args.nodes - 1,
        log_dir.display()
    );
    // The prompt's commands and the final drop share the cluster.
    let cluster = tokio::sync::Mutex::new(LocalCluster::start(spec).await?);
    println!("{}", status_report(&*cluster.lock().await).await);
    let http: Vec<String> = {
        let cluster = cluster.lock().await;
        (0..cluster.len()).filter_map(|i| cluster.http_address(i)).map(|address| format!("http://{address}")).collect()
    };
    if let Some(first) = http.first() {
        println!("the web page: {first}/ (every node serves it)");
    }
    println!("HTTP/JSON API on any node: {} (GET /auctions, /openapi.json, /metrics)", http.join(", "));

    let target = Target {
        servers: vec![format!("127.0.0.1:{}", args.client_port)],
        auction: String::new(),
        timeout: Duration::from_secs(10),
        security,
    };
    let mut client = target.client()?;
    let mut stdin = interactive::stdin();
    let demo_help = format!("; and the demo's own: {DEMO_COMMANDS}");
    bidding_prompt(&mut client, &target, &args.id, &mut stdin, &demo_help, |word| {
        let cluster = &cluster;
        async move {
            let command = word.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
            match command.as_str() {
                "status" => Some(status_report(&*cluster.lock().await).await),
                "crash" => Some(crash_leader(&mut *cluster.lock().await).await),
                "crash all" => Some(crash_all(&mut *cluster.lock().await)),
                "restart" => Some(restart_crashed(&mut *cluster.lock().await).await),
                _ => None,
            }
        }
    })
    .await?;
    println!("stopping the cluster");
    // The nodes first, then what they wrote; the logs stay only if asked.
    drop(cluster);
    if args.keep_logs {
        let _ = std::fs::remove_dir_all(log_dir.join("data"));
        // The demo's CA key signs anything: it goes with the cluster.
        let _ = std::fs::remove_dir_all(log_dir.join("certs"));
        println!("the nodes' logs are in {}", log_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&log_dir);
    }
    Ok(())
}

async fn status_report(cluster: &LocalCluster) -> String {
    let statuses = cluster.statuses().await;
    let mut lines = Vec::new();
    let mut queue = Vec::new();
    for (i, status) in statuses.iter().enumerate() {
        let address = cluster.node_address(i);
        let pid = cluster.pid(i).map_or("-".to_string(), |pid| pid.to_string());
        let role = match status {
            Some(status) => match status.role {
                Role::Leader => {
                    queue = status.membership.iter().skip(1).cloned().collect();
                    format!("LEADER (epoch {}, log index {})", epoch_number(status.epoch), status.last.index)
                }
                Role::Backup => format!("backup (log index {})", status.last.index),
                Role::Joining => match &status.waiting {
                    Some(why) => format!("waiting: {why}"),
                    None => "joining".to_string(),
                },
            },
            None if cluster.is_running(i) => "not answering".to_string(),
            None => "crashed".to_string(),
        };
        lines.push(format!("  {address}  pid {pid:>7}  {role}"));
    }
    lines.push(format!("  leaderQueue: [{}]", queue.join(", ")));
    lines.join("\n")
}

async fn crash_leader(cluster: &mut LocalCluster) -> String {
    let Some(leader) = cluster.leader().await else { return "no leader to crash right now".into() };
    let address = cluster.node_address(leader);
    if let Err(error) = cluster.kill(leader) {
        return format!("could not crash {address}: {error:#}");
    }
    let started = std::time::Instant::now();
    match cluster.wait_for_leader(Duration::from_secs(5)).await {
        Ok(new_leader) => format!(
            "=== CRASH leader {address} (SIGKILL) === {} took over in {} ms",
            cluster.node_address(new_leader),
            started.elapsed().as_millis()
        ),
        Err(error) => format!("=== CRASH leader {address} (SIGKILL) === {error:#}"),
    }
}

/// The demo's own commands, as its help lists them.
/// How long the demo's own auction runs unless `--duration` says otherwise.
const DEMO_AUCTION_DURATION: Duration = Duration::from_secs(60 * 60);

const DEMO_COMMANDS: &str = "`status`, `crash` (SIGKILL the leader), `crash all` (SIGKILL every node), \
                             `restart` (bring crashed nodes back, from their data directories)";

fn crash_all(cluster: &mut LocalCluster) -> String {
    match cluster.kill_all() {
        Ok(killed) => {
            let crashed: Vec<String> = killed.into_iter().map(|i| cluster.node_address(i)).collect();
            format!("=== CRASH every node (SIGKILL): {} === `restart` brings them back from disk", crashed.join(", "))
        }
        Err(error) => format!("could not crash every node: {error:#}"),
    }
}

async fn restart_crashed(cluster: &mut LocalCluster) -> String {
    let crashed: Vec<usize> = (0..cluster.len()).filter(|&i| !cluster.is_running(i)).collect();
    if crashed.is_empty() {
        return "every node is running".into();
    }
    let everyone = crashed.len() == cluster.len();
    let mut lines = Vec::new();
    // All of them first: after a full crash, none leads until every
    // member is back.
    for &i in &crashed {
        if let Err(error) = cluster.restart(i) {
            lines.push(format!("could not restart {}: {error:#}", cluster.node_address(i)));
        }
    }
    for &i in crashed.iter().filter(|&&i| cluster.is_running(i)) {
        let address = cluster.node_address(i);
        lines.push(match cluster.wait_until_settled(i, Duration::from_secs(15)).await {
            Ok(status) => format!("restarted {address}: {:?}", status.role).to_lowercase(),
            Err(error) => format!("restarted {address}, but {error:#}"),
        });
    }
    if everyone {
        let config = ClientConfig {
            servers: vec![cluster.client_address()],
            network: cluster.network().clone(),
            ..ClientConfig::default()
        };
        // Every auction it brought back, as `list` shows them.
        let mut auctions = Vec::new();
        let listed = match Client::new(config) {
            Ok(mut client) => {
                for_each_item(
                    async |page_token: &str| client.list_auctions(false, 0, page_token).await.map(Page::from),
                    |info| auctions.push(format!("  {}", prompt::format_auction(info))),
                )
                .await
            }
            Err(error) => Err(error),
        };
        match listed {
            Ok(()) => {
                lines.push(format!(
                    "every node came back from its data directory, and with them {} auctions:",
                    auctions.len()
                ));
                lines.extend(auctions);
            }
            Err(error) => lines.push(format!("every node restarted, but reading the auctions failed: {error}")),
        }
    }
    lines.join("\n")
}
