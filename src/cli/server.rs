//! `gavel server`, one node of a cluster, and `gavel null-server`, the
//! bench's ceiling.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use gavel::auction::AuctionBook;
use gavel::auction::machine::AuctionSettings;
use gavel::node::{self, NodeConfig, StorageConfig};
use gavel::storage::{OsDisk, WriterMode};
use gavel::transport::Tls;
use gavel::transport::{InProcessNode, Network, Port};

use super::args::{NullServerArgs, Peer, ServerArgs, ServerSecurity};
use super::process::{ReadersRuntime, termination_signal};

/// `gavel server`: one node, and its HTTP API if asked, until a signal.
pub async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    if args.port == args.client_port {
        anyhow::bail!("--port {} is the client port: give each node a port of its own", args.port);
    }
    raise_open_file_limit();
    let node_address = SocketAddr::new(args.host, args.port);
    let network = Network::tcp().with_tls(server_tls(&args.security, node_address)?);
    let listener = network.bind(node_address, Port::Node).await.with_context(|| format!("binding {node_address}"))?;
    let mut config = NodeConfig::<AuctionBook>::new(node_address, SocketAddr::new(args.host, args.client_port));
    config.peers = match args.peers {
        Some(peers) => peers
            .into_iter()
            .map(|peer: Peer| peer.address(args.host))
            .filter(|&peer| peer != node_address)
            .map(|peer| peer.to_string())
            .collect(),
        None => {
            let low = args.port.saturating_sub(8);
            let high = args.port.saturating_add(8);
            (low..=high)
                .filter(|&port| port != args.port && port != args.client_port)
                .map(|port| SocketAddr::new(args.host, port).to_string())
                .collect()
        }
    };
    config.ack_timeout = args.ack_timeout;
    config.leader_timeout = args.leader_timeout;
    config.heartbeat_interval = args.heartbeat;
    config.takeover_timeout = args.takeover_timeout;
    config.machine = AuctionSettings {
        retain_closed: args.retain_closed,
        default_auction_duration: args.duration,
        max_auctions: args.max_auctions,
        max_open_per_seller: args.max_open_per_seller,
        max_bids_per_second: args.max_bids_per_second,
        max_creates_per_second: args.max_creates_per_second,
    };
    config.storage = args.data_dir.map(|dir| StorageConfig {
        dir,
        fsync: args.fsync,
        disk: Arc::new(OsDisk),
        snapshot_every: args.snapshot_every,
        writer: WriterMode::Thread,
    });
    config.http_address = args.http_port.map(|port| SocketAddr::new(args.host, port).to_string());
    if let Some(dir) = args.record_dir {
        config.coordinator.dir = dir;
    }
    config.new_cluster = args.new_cluster;
    // On one thread, the node's readers get a thread of their own: their
    // work would otherwise queue before the replication's on the one run
    // queue (BENCHMARKS.md, "Readers on a thread of their own").
    let readers = if args.worker_threads == 1 { Some(ReadersRuntime::start()?) } else { None };
    config.readers = readers.as_ref().map(|readers| readers.handle().clone());
    // Bound before the node starts, so that a port in use fails the start.
    let http_listener = match args.http_port {
        Some(port) => {
            let address = SocketAddr::new(args.host, port);
            Some(tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?)
        }
        None => None,
    };

    // The first SIGINT or SIGTERM stops the node gracefully: a leader hands
    // over to the first of its leaderQueue, a backup leaves. A second one
    // exits at once.
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let (name, _) = termination_signal().await;
        tracing::info!(signal = name, "stopping; a second signal exits at once");
        on_signal.cancel();
        let (name, code) = termination_signal().await;
        eprintln!("{name} again: exiting now");
        std::process::exit(i32::from(code));
    });
    tracing::info!(node = %node_address, client_port = args.client_port, pid = std::process::id(), "node starting");
    let servers = {
        let mut servers = vec![config.client_address.to_string(), node_address.to_string()];
        servers.extend(config.peers.iter().cloned());
        servers
    };
    let node = node::Node::new(config, network);
    // The HTTP API beside the node, sharing its stop; it reaches the
    // cluster as any client does (its own node first, in process, then the
    // client port and every node).
    let web = http_listener.map(|listener| {
        let in_process = Some(InProcessNode::new(&node_address.to_string(), node.backend()));
        let web_config = gavel::web::WebConfig {
            node_address: node_address.to_string(),
            servers,
            in_process,
            limits: gavel::web::ConnectionLimits::default(),
            network: node.network().clone(),
        };
        tracing::info!(address = ?listener.local_addr().ok(), "serving the HTTP API");
        let web = gavel::web::serve(listener, web_config, shutdown.clone());
        match &readers {
            Some(readers) => readers.handle().spawn(web),
            None => tokio::spawn(web),
        }
    });
    let result = node.run(listener, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(web) = web {
        match tokio::time::timeout(Duration::from_secs(2), web).await {
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the HTTP API failed"),
            Ok(_) => {}
            Err(_) => tracing::debug!("HTTP connections still open; closing them"),
        }
    }
    result
}

/// The node's TLS credentials, if it has certificates. Without them it
/// serves in the clear, where anyone who reaches its ports can join the
/// cluster, remove members and bid under any name: on loopback only, unless
/// told `--insecure` (CockroachDB's convention).
fn server_tls(security: &ServerSecurity, node: SocketAddr) -> anyhow::Result<Option<Arc<Tls>>> {
    match &security.certs_dir {
        Some(dir) => {
            let tls = Tls::for_node(dir, &node.to_string())?;
            tracing::info!(certs_dir = %dir.display(), "TLS on: peers and operators show certificates");
            Ok(Some(tls))
        }
        None if node.ip().is_loopback() => Ok(None),
        None if security.insecure => {
            tracing::warn!("--insecure: serving {} without TLS or authentication", node.ip());
            Ok(None)
        }
        None => anyhow::bail!(
            "refusing to serve on {} without certificates: any host that reaches it could join the cluster, \
             remove members and bid under any name. Give --certs-dir (make them with `gavel cert`), or \
             --insecure to serve without TLS and authentication",
            node.ip()
        ),
    }
}

/// Serves the null client API on 127.0.0.1 until SIGINT, as `serve` does a node.
pub async fn null_server(args: NullServerArgs) -> anyhow::Result<()> {
    let address = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), args.port);
    let listener = Network::tcp().bind(address, Port::Client).await.with_context(|| format!("binding {address}"))?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    tracing::info!(address = %address, pid = std::process::id(), "null server starting");
    let settings = gavel::transport::TransportSettings::default();
    gavel::tools::null_server::serve_null(address.to_string(), listener, settings, shutdown).await?;
    Ok(())
}

/// A server holds a descriptor per connection: lift the soft limit to the
/// hard one, so the connection caps, not the descriptor limit, bound it.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
