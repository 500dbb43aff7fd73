//! A cluster with TLS on (`--certs-dir`): peers prove they belong, and
//! operators who they are. An outsider with no certificate, with one of
//! another CA, with a client's, or with another node's cannot join,
//! replicate, probe or change the membership, and the cluster bids on
//! unchanged while they try; the two ways an unauthenticated cluster lost
//! acknowledged bids (an impostor under a frozen backup's name, and anyone
//! removing members) lose nothing here.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gavel::auction::{Bid, CreateAuction, Reason, Verdict};
use gavel::client::{Client, ClientConfig};
use gavel::security::NameSecrets;
use gavel::security::certs::CertsDir;
use gavel::tools::cluster::LocalCluster;
use gavel::tools::rogue::RogueStream;
use gavel::transport::Tls;
use gavel::transport::{AuctionConnection, CallError, Network, TransportSettings, probe_peer, remove_member};

use common::{accepted_amounts, accepted_more_than, client, eventually, membership, spawn_bidders, spec};

const SETTLE: Duration = Duration::from_secs(15);
const CALL: Duration = Duration::from_secs(2);
const HOUR: Duration = Duration::from_secs(3600);

/// The certificates of one test: the cluster's (a CA, one per node, an
/// operator's and client ann's) and another CA's, whose node certificate
/// names one of this cluster's nodes. Removed when the test ends.
struct Certificates {
    root: PathBuf,
}

impl Certificates {
    /// Made with `gavel cert`, as an operator would.
    fn make(slot: u16, nodes: &[String]) -> Self {
        let root = std::env::temp_dir().join(format!("gavel-certs-{}-slot{slot}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let certificates = Certificates { root };
        let own = certificates.own();
        cert(&["create-ca"], &own);
        for node in nodes {
            cert(&["create-node", node], &own);
        }
        cert(&["create-operator"], &own);
        cert(&["create-client", "ann"], &own);
        cert(&["create-client", "cy"], &own);
        let other = certificates.other();
        cert(&["create-ca"], &other);
        cert(&["create-node", &nodes[1]], &other);
        cert(&["create-operator"], &other);
        certificates
    }

    fn own(&self) -> PathBuf {
        self.root.join("cluster")
    }

    fn other(&self) -> PathBuf {
        self.root.join("other")
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn cert(args: &[&str], dir: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .arg("cert")
        .args(args)
        .arg("--certs-dir")
        .arg(dir)
        .output()
        .expect("gavel cert runs");
    assert!(output.status.success(), "gavel cert {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn node_addresses(slot: u16, nodes: usize) -> Vec<String> {
    let base = common::ports(slot).base;
    (0..nodes).map(|i| format!("127.0.0.1:{}", base + i as u16)).collect()
}

async fn start_secure(slot: u16, certificates: &Certificates, server_args: &[&str]) -> LocalCluster {
    let mut spec = spec(slot, 3, server_args);
    spec.certs_dir = Some(certificates.own());
    LocalCluster::start(spec).await.expect("cluster starts")
}

fn over(tls: anyhow::Result<Arc<Tls>>) -> Network {
    Network::tcp().with_tls(Some(tls.expect("credentials load")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_neither_join_replicate_probe_nor_remove_and_only_an_operator_changes_the_membership() {
    const SLOT: u16 = 78;
    let nodes = node_addresses(SLOT, 3);
    let certificates = Certificates::make(SLOT, &nodes);
    let own = certificates.own();
    // Only the operator removes a member here.
    let mut cluster = start_secure(SLOT, &certificates, &["--ack-timeout", "30s"]).await;
    let members = membership(&cluster, 0).await.expect("the leader answers");
    assert_eq!(members, nodes, "three members, 0 leading");
    let (leader, impersonated) = (nodes[0].clone(), nodes[1].clone());

    let stop = Arc::new(AtomicBool::new(false));
    let bidders = spawn_bidders(cluster.network().clone(), cluster.client_address(), 2, Arc::clone(&stop));
    let before = accepted_more_than(&cluster, SETTLE, 10).await;

    let ca = std::fs::read_to_string(own.join("ca.crt")).expect("ca.crt");
    let other_ca_node = CertsDir::new(&certificates.other())
        .read_pair(&CertsDir::new(&certificates.other()).node_files(&impersonated))
        .expect("the other CA's certificate of node 1");
    // What an outsider could hold without a node's key of this CA; the
    // last holds one, but another node's.
    let outsiders = [
        ("no TLS", Network::tcp(), true),
        ("no certificate", over(Tls::for_client(&own, None)), true),
        (
            "a node certificate of another CA",
            over(Tls::new(&ca, Some((&other_ca_node.0, &other_ca_node.1))).map(Arc::new)),
            true,
        ),
        ("the other CA's operator certificate", over(Tls::for_client(&certificates.other(), Some("operator"))), true),
        ("a client certificate", over(Tls::for_client(&own, Some("ann"))), true),
        ("another node's certificate", over(Tls::for_node(&own, &nodes[2])), false),
    ];
    for (who, network, refused_probe) in &outsiders {
        let joined = RogueStream::open(network, &leader, &impersonated, CALL).await;
        assert!(joined.is_err(), "with {who}, a replication stream opened as {impersonated}");
        if *refused_probe {
            let probed = probe_peer(network, &leader, CALL).await;
            assert!(probed.is_err(), "with {who}, the peer probe answered: {probed:?}");
        }
        let removed = remove_member(network, &leader, &impersonated, CALL).await;
        assert!(removed.is_err(), "with {who}, RemoveMember answered: {removed:?}");
    }
    // A client's certificate is not an operator's, for the tool either.
    let (removed, said) = member_remove_as(&cluster, &own, "ann", &impersonated, &leader);
    assert!(!removed && said.contains("may not change the membership"), "{said}");

    accepted_more_than(&cluster, SETTLE, before + 10).await;
    assert_eq!(membership(&cluster, 0).await, Some(members.clone()), "the membership is as it was");

    // Node 2 freezes (so that it does not rejoin at once) and the operator
    // removes it; then the leader dies, and node 1 takes over with every
    // acknowledged bid.
    cluster.freeze(2).expect("freeze node 2");
    let (removed, said) = member_remove_as(&cluster, &own, "operator", &nodes[2], &leader);
    assert!(removed && said.contains("removed from the membership"), "{said}");
    let after = membership(&cluster, 0).await.expect("the leader answers");
    assert_eq!(after, nodes[..2], "node 2 is out");
    stop.store(true, Ordering::Relaxed);
    let acknowledged = bidders.await.expect("bidders");
    cluster.kill(0).expect("kill the leader");
    assert_eq!(cluster.wait_for_leader(SETTLE).await.expect("a takeover"), 1);
    let accepted = accepted_amounts(&cluster).await;
    let lost: Vec<_> = acknowledged.iter().filter(|amount| !accepted.contains(amount)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged bids lost: {lost:?}", lost.len(), acknowledged.len());
}

/// The finding replayed with TLS on: node 1 freezes; an outsider with a
/// client certificate tries to replicate under its name and to remove
/// node 2; the leader drops node 1 on its ack timeout and goes on with
/// node 2; the leader is killed and node 1 thawed. Unauthenticated, the
/// impostor kept node 1 in the membership and node 2 was removed, so node 1
/// took over with a stale state (7,411 of 10,138 bids lost). Here node 2
/// takes over, and every acknowledged bid is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_of_a_frozen_backup_is_refused_and_no_acknowledged_bid_is_lost() {
    const SLOT: u16 = 79;
    let nodes = node_addresses(SLOT, 3);
    let certificates = Certificates::make(SLOT, &nodes);
    let own = certificates.own();
    let mut cluster = start_secure(SLOT, &certificates, &[]).await;
    let (leader, frozen, other) = (nodes[0].clone(), nodes[1].clone(), nodes[2].clone());
    let stop = Arc::new(AtomicBool::new(false));
    let bidders = spawn_bidders(cluster.network().clone(), cluster.client_address(), 4, Arc::clone(&stop));
    accepted_more_than(&cluster, SETTLE, 20).await;

    cluster.freeze(1).expect("freeze node 1");
    let outsider = over(Tls::for_client(&own, Some("ann")));
    // The impostor tries until the leader has dropped node 1.
    let dropped = eventually("the leader to drop the frozen node 1", SETTLE, || {
        let (cluster, outsider, leader, frozen) = (&cluster, outsider.clone(), leader.clone(), frozen.clone());
        async move {
            let opened = RogueStream::open(&outsider, &leader, &frozen, CALL).await;
            assert!(opened.is_err(), "the impostor opened a replication stream as {frozen}");
            membership(cluster, 0).await.filter(|members| !members.contains(&frozen))
        }
    })
    .await;
    assert!(dropped.contains(&other), "node 2 stays: {dropped:?}");
    let removal = remove_member(&outsider, &leader, &other, CALL).await;
    assert!(removal.is_err(), "the outsider removed node 2: {removal:?}");
    accepted_more_than(&cluster, SETTLE, client(&cluster).result("").await.expect("result").0.accepted_bids + 20).await;

    stop.store(true, Ordering::Relaxed);
    let acknowledged = bidders.await.expect("bidders");
    cluster.kill(0).expect("kill the leader");
    cluster.thaw(1).expect("thaw node 1");
    assert_eq!(cluster.wait_for_leader(SETTLE).await.expect("a takeover"), 2, "node 2 takes over, not node 1");
    let accepted = accepted_amounts(&cluster).await;
    let lost: Vec<_> = acknowledged.iter().filter(|amount| !accepted.contains(amount)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged bids lost: {lost:?}", lost.len(), acknowledged.len());
}

/// Off loopback, a server without certificates refuses to start unless
/// told `--insecure`, and says why.
#[test]
fn a_server_off_loopback_needs_certificates_or_insecure() {
    let port = common::ports(80).base;
    // It refuses before it binds; were it to start, the deadline stops it.
    let args = ["server", "--host", "0.0.0.0", "--port", &port.to_string(), "--client-port", &(port + 1).to_string()];
    let output = common::run_tool(&args.map(String::from), Duration::from_secs(10));
    let said = &output.stderr;
    assert!(!output.success, "it started: {said}");
    assert!(said.contains("without certificates") && said.contains("--insecure"), "{said}");
}

/// Runs `gavel member remove MEMBER` against `node` with the cluster's
/// certificates, showing `cert_name`'s; returns whether it succeeded.
fn member_remove_as(cluster: &LocalCluster, certs: &Path, cert_name: &str, member: &str, node: &str) -> (bool, String) {
    let certs = certs.to_str().expect("a UTF-8 temporary directory");
    common::member_remove(cluster, member, &[node.to_string()], &["--certs-dir", certs, "--cert-name", cert_name])
}

/// A client of the cluster's client port that keeps its names' secrets in
/// `names` (none: it sends no secret).
fn client_with_names(cluster: &LocalCluster, names: Option<&Path>) -> Client {
    let config = ClientConfig {
        servers: vec![cluster.client_address()],
        network: cluster.network().clone(),
        names: names.map(|dir| Arc::new(NameSecrets::in_dir(dir))),
        ..ClientConfig::default()
    };
    Client::new(config).expect("client")
}

/// With TLS on, a name is its first user's: a bid, create or cancel under
/// it without its secret, or with another's, is refused and changes
/// nothing, over gRPC and over REST (its bearer token); the owner's bids
/// work after failovers, on nodes that got the binding by replication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_its_first_users_and_survives_failovers() {
    const SLOT: u16 = 82;
    let nodes = node_addresses(SLOT, 3);
    let certificates = Certificates::make(SLOT, &nodes);
    let mut spec = spec(SLOT, 3, &[]);
    spec.certs_dir = Some(certificates.own());
    spec.http_base_port = Some(common::ports(SLOT).base + 10);
    let mut cluster = LocalCluster::start(spec).await.expect("cluster starts");
    let (ann_names, mallory_names) = (certificates.root.join("ann-names"), certificates.root.join("mallory-names"));
    let mut ann = client_with_names(&cluster, Some(&ann_names));
    let mut mallory = client_with_names(&cluster, Some(&mallory_names));
    let mut anonymous = client_with_names(&cluster, None);

    assert_eq!(ann.bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    for (who, client) in [("another secret", &mut mallory), ("no secret", &mut anonymous)] {
        let outcome = client.bid("", "ann", 20).await.expect("answered");
        assert_eq!(outcome.verdict, Verdict::Exception, "{who}: {outcome:?}");
        assert_eq!(outcome.reason.as_ref().map(Reason::code), Some("name_owned"), "{who}");
    }
    let created = ann.create_auction(CreateAuction::lasting("ann", "a vase", "", 1, HOUR)).await.expect("create");
    assert_eq!(created.verdict, Verdict::Success, "{created:?}");
    let cancel = mallory.cancel_auction(&created.auction_id, "ann").await.expect("answered");
    assert_eq!(cancel.reason.as_ref().map(Reason::code), Some("name_owned"), "{cancel:?}");
    assert!(!ann.get_auction(&created.auction_id).await.expect("read").cancelled, "the refused cancel changed nothing");

    // REST: the bearer token is the secret, in hex.
    let secret = NameSecrets::in_dir(&ann_names).secret_for("ann").expect("ann's secret");
    let token: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    let http = cluster.http_address(1).expect("an HTTP port");
    let bid_over_rest = |token: Option<String>, amount: u64| {
        let request = reqwest::Client::new()
            .post(format!("http://{http}/auctions/{}/bids", created.auction_id))
            .json(&serde_json::json!({ "participant_id": "bo", "bid_price": amount }));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.expect("answered").status().as_u16() }
    };
    assert_eq!(bid_over_rest(Some(token.clone()), 5).await, 201, "bo's first bid binds bo to ann's token");
    assert_eq!(bid_over_rest(None, 6).await, 403, "without the token, bo is someone else's");
    let view = ann.get_auction(&created.auction_id).await.expect("read");
    assert_eq!((view.highest_bidder.as_str(), view.highest_amount), ("bo", 5), "the refusal changed nothing");

    // The HTTP API's sessions are its own: a gRPC client cannot take the
    // session of an Idempotency-Key before the HTTP API does, while a
    // keyed REST bid through a backup's HTTP port, forwarded with that
    // node's certificate, gets it.
    let mut connection =
        AuctionConnection::new(cluster.network(), &cluster.client_address(), &TransportSettings::default(), CALL)
            .expect("connection");
    let taken = Bid {
        name_digest: None,
        auction_id: created.auction_id.clone(),
        bidder: "dee".into(),
        amount: 100,
        client_id: "http:order-1".into(),
        request_id: 1,
        at_unix_ms: 0,
    };
    let answer = connection.bid(&taken, &[]).await;
    assert!(matches!(answer, Err(CallError::Invalid { .. })), "{answer:?}");
    let keyed = reqwest::Client::new()
        .post(format!("http://{http}/auctions/{}/bids", created.auction_id))
        .header("Idempotency-Key", "order-1")
        .json(&serde_json::json!({ "participant_id": "dee", "bid_price": 100 }))
        .send()
        .await
        .expect("answered");
    assert_eq!(keyed.status().as_u16(), 201);

    // A client certificate is the alternative to a secret: its name is
    // bound to the certificate, and then neither a secret nor nothing will do.
    let cy_network = over(Tls::for_client(&certificates.own(), Some("cy")));
    let cy_config =
        ClientConfig { servers: vec![cluster.client_address()], network: cy_network, ..ClientConfig::default() };
    let mut cy = Client::new(cy_config).expect("client");
    assert_eq!(cy.bid("", "cy", 50).await.expect("bid").verdict, Verdict::Success);
    for (who, client) in [("a secret", &mut mallory), ("nothing", &mut anonymous)] {
        let outcome = client.bid("", "cy", 60).await.expect("answered");
        assert_eq!(outcome.reason.as_ref().map(Reason::code), Some("name_owned"), "{who}: {outcome:?}");
    }
    assert_eq!(cy.bid("", "cy", 70).await.expect("bid").verdict, Verdict::Success);

    // Two failovers: node 0's successor, then node 2 alone, which holds
    // the bindings only as replicated to it.
    for dying in [0, 1] {
        cluster.kill(dying).expect("kill the leader");
        cluster.wait_for_leader(SETTLE).await.expect("a takeover");
    }
    let mut ann = client_with_names(&cluster, Some(&ann_names));
    let mut mallory = client_with_names(&cluster, Some(&mallory_names));
    let outcome = mallory.bid("", "ann", 40).await.expect("answered");
    assert_eq!(outcome.reason.as_ref().map(Reason::code), Some("name_owned"), "{outcome:?}");
    assert_eq!(ann.bid("", "ann", 80).await.expect("bid").verdict, Verdict::Success);
}
