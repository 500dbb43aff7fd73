//! The auction house's catalogue on real processes: sellers create auctions,
//! anyone lists and reads them, through failover and with exactly-once
//! creates.

mod common;

use std::process::Command;
use std::time::Duration;

use gavel::auction::{CreateAuction, Verdict};
use gavel::transport::{AuctionConnection, CallError, Network, TransportSettings};

use common::{eventually, start};

const SETTLE: Duration = Duration::from_secs(10);

fn gavel(args: &[&str]) -> (String, i32) {
    let output = Command::new(env!("CARGO_BIN_EXE_gavel")).args(args).output().expect("run gavel");
    (String::from_utf8_lossy(&output.stdout).trim().to_string(), output.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sellers_create_auctions_that_anyone_lists_and_bids_on_through_failover() {
    let mut cluster = start(37, 3, &[]).await;
    let server = cluster.client_address();
    let target = ["--server", server.as_str()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(target);
        gavel(&all)
    };

    let (line, code) = run(&["create", "--seller", "sam", "--title", "a vase", "--min", "5", "--duration", "10m"]);
    assert_eq!((line.as_str(), code), ("CREATED: auction a1 (a vase)", 0));
    let (line, code) = run(&["create", "--seller", "sam", "--title", "  ", "--duration", "10m"]);
    assert!(line.starts_with("EXCEPTION: title must not be empty"), "{line}");
    assert_eq!(code, 1, "the service refused it: the code of a refusal, as for every command");

    let (line, _) = run(&["bid", "4", "--id", "bo", "--auction", "a1"]);
    assert!(line.starts_with("FAIL") && line.contains("minimum"), "{line}");
    let (line, _) = run(&["bid", "7", "--id", "sam", "--auction", "a1"]);
    assert!(line.starts_with("FAIL") && line.contains("own auction"), "{line}");
    let (line, _) = run(&["bid", "7", "--id", "bo", "--auction", "a1"]);
    assert!(line.starts_with("SUCCESS"), "{line}");

    let (lines, code) = run(&["list", "--json"]);
    assert_eq!(code, 0);
    let listed: Vec<serde_json::Value> = lines.lines().map(|line| serde_json::from_str(line).expect("json")).collect();
    let ids: Vec<&str> = listed.iter().map(|info| info["auction_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["default", "a1"]);
    assert_eq!((listed[1]["highest_bidder"].as_str(), listed[1]["highest_amount"].as_u64()), (Some("bo"), Some(7)));

    // The leader dies; the catalogue, and the next id, carry on.
    let leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
    cluster.kill(leader).expect("kill");
    cluster.wait_for_leader(SETTLE).await.expect("takeover");
    let (line, code) = run(&["show", "a1"]);
    assert_eq!(code, 0);
    assert!(line.starts_with("a1  \"a vase\" by sam: running, highest 7 by bo"), "{line}");
    let (line, _) = run(&["create", "--seller", "sue", "--title", "a clock", "--duration", "1h"]);
    assert_eq!(line, "CREATED: auction a2 (a clock)");
    let (lines, code) = run(&["history", "a1", "--json"]);
    assert_eq!(code, 0);
    let history: Vec<serde_json::Value> = lines.lines().map(|line| serde_json::from_str(line).expect("json")).collect();
    assert_eq!(history.len(), 1, "the one accepted bid: {lines}");
    assert_eq!((history[0]["bidder"].as_str(), history[0]["amount"].as_u64()), (Some("bo"), Some(7)));
    let (shown, _) = run(&["show", "a1", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["revision"], history[0]["revision"], "the bid was the auction's last change");
    // Cancel: not by another, not with bids, yes without.
    let (line, _) = run(&["cancel", "a1", "--seller", "bo"]);
    assert!(line.starts_with("EXCEPTION: only its seller"), "{line}");
    let (line, _) = run(&["cancel", "a1", "--seller", "sam"]);
    assert!(line.starts_with("FAIL") && line.contains("has bids"), "{line}");
    let (line, _) = run(&["create", "--seller", "sam", "--title", "a lamp", "--duration", "1h"]);
    assert_eq!(line, "CREATED: auction a3 (a lamp)");
    let (line, code) = run(&["cancel", "a3", "--seller", "sam"]);
    assert_eq!((line.as_str(), code), ("CANCELLED: auction a3", 0));
    let (line, _) = run(&["show", "a3"]);
    assert!(line.ends_with("cancelled by its seller"), "{line}");
    let (line, _) = run(&["bid", "5", "--id", "bo", "--auction", "a3"]);
    assert!(line.starts_with("FAIL") && line.contains("over"), "{line}");

    let (lines, code) = run(&["status", "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&lines).expect("json");
    assert_eq!(status["leader_queue"].as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(status["nodes"][0]["role"], "leader", "{status}");
    let (line, code) = run(&["show", "a9"]);
    assert!(line.starts_with("EXCEPTION: unknown auction"), "{line}");
    assert_ne!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_after_failover_creates_one_auction() {
    let mut cluster = start(38, 3, &[]).await;
    let settings = TransportSettings::default();
    let connection =
        AuctionConnection::new(&Network::tcp(), &cluster.client_address(), &settings, Duration::from_secs(1))
            .expect("connection");
    let create = CreateAuction {
        max_open_per_seller: 0,
        name_digest: None,
        seller: "sam".into(),
        title: "a lamp".into(),
        description: String::new(),
        minimum_amount: 1,
        duration_ms: 600_000,
        ends_at_unix_ms: 0,
        client_id: "seller-session".into(),
        request_id: 1,
        at_unix_ms: 0,
        max_auctions: 0,
    };
    let first = connection.clone().create_auction(&create, &[]).await.expect("created");
    assert_eq!((first.verdict, first.auction_id.as_str()), (Verdict::Success, "a1"));

    let leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
    cluster.kill(leader).expect("kill");
    // The same request again, sequenced later by the new leader: the same
    // answer, and no second auction, although its end would come later.
    let retried = eventually("the retry to be answered", SETTLE, || {
        let (mut connection, create) = (connection.clone(), create.clone());
        async move { connection.create_auction(&create, &[]).await.ok() }
    })
    .await;
    assert_eq!(retried, first);
    let page = connection.clone().list_auctions(false, 0, "").await.expect("list");
    assert_eq!(page.auctions.len(), 2, "the default auction and a1: {page:?}");
    match connection.clone().get_auction("nope").await {
        Err(CallError::NotFound { what, message }) => {
            assert_eq!(what.as_deref(), Some("nope"), "the auction not found is named");
            assert!(message.contains("unknown auction"), "{message}");
        }
        other => panic!("an unknown auction is NOT_FOUND: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_creates_lists_switches_auctions_and_shows_their_history() {
    use std::io::Write;
    use std::process::Stdio;

    let cluster = start(42, 2, &[]).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["client", "--id", "sam", "--server", &cluster.client_address()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("client starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"create 10m a blue vase\nlist\nuse a1\n7\nhistory\nuse default\n7\nhistory\nquit\n")
        .expect("write");
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().map(|line| line.trim_start_matches("> ")).skip(1).collect();
    assert_eq!(lines[0], "CREATED: auction a1 (a blue vase)", "{stdout}");
    assert!(lines[1].starts_with("default  ") && lines[2].starts_with("a1  \"a blue vase\" by sam"), "{stdout}");
    assert_eq!(lines[3], "numbers now bid on auction a1", "{stdout}");
    assert!(lines[4].starts_with("FAIL") && lines[4].contains("own auction"), "{stdout}");
    assert_eq!(lines[5], "no accepted bids yet", "{stdout}");
    assert_eq!(lines[6], "numbers now bid on auction default", "{stdout}");
    assert!(lines[7].starts_with("SUCCESS: bid 7 by sam"), "{stdout}");
    assert!(lines[8].starts_with("sam bid 7 (revision "), "{stdout}");
    assert!(output.status.success());
}

/// `--max-auctions` bounds the house: the default auction counts, so a limit
/// of 2 takes one create and fails the next, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_past_the_max_auctions_of_the_server_fails() {
    let cluster = start(77, 1, &["--max-auctions", "2"]).await;
    let server = cluster.client_address();
    let create = ["create", "--seller", "sam", "--title", "a vase", "--duration", "10m", "--server", server.as_str()];
    let (line, code) = gavel(&create);
    assert_eq!((line.as_str(), code), ("CREATED: auction a1 (a vase)", 0));
    let (line, _) = gavel(&create);
    assert!(line.starts_with("FAIL: the auction house holds 2 auctions already"), "{line}");
}

/// `--max-bids-per-second` holds at the leader for each bidder on its own,
/// over gRPC and REST alike: past it a bid is refused with when to retry
/// (RESOURCE_EXHAUSTED naming the wait; 429 with `Retry-After`), has no
/// effect, and another bidder is not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidder_past_its_rate_is_refused_with_when_to_retry_and_others_are_not() {
    let mut spec = common::spec(83, 1, &["--max-bids-per-second", "5"]);
    spec.http_base_port = Some(common::ports(83).base + 10);
    let cluster = gavel::tools::cluster::LocalCluster::start(spec).await.expect("cluster starts");
    let settings = TransportSettings::default();
    let mut connection =
        AuctionConnection::new(&Network::tcp(), &cluster.client_address(), &settings, Duration::from_secs(5))
            .expect("connection");
    let bid = |bidder: &str, amount: u64, request_id: u64| gavel::auction::Bid {
        name_digest: None,
        auction_id: String::new(),
        bidder: bidder.into(),
        amount,
        client_id: format!("{bidder}-session"),
        request_id,
        at_unix_ms: 0,
    };
    // A burst of five, then refusals, each naming its wait.
    let mut refused = None;
    for n in 1..=20 {
        match connection.bid(&bid("ann", n, n), &[]).await {
            Ok(outcome) => assert_eq!(outcome.verdict, Verdict::Success, "{outcome:?}"),
            Err(CallError::RateLimited { retry_after, message }) => {
                refused = Some((n, retry_after, message));
                break;
            }
            Err(error) => panic!("bid {n}: {error}"),
        }
    }
    let (n, retry_after, message) = refused.expect("twenty bids at once pass a rate of five");
    assert!(n > 5, "the burst is five: refused at {n}");
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200), "{retry_after:?}");
    assert!(message.contains("\"ann\"") && message.contains("5 bids a second"), "{message}");
    let (view, _) = connection.result("").await.expect("result");
    assert_eq!(view.highest_amount, n - 1, "the refused bid had no effect");
    let other = connection.bid(&bid("bob", 1_000, 1), &[]).await.expect("bob's bid");
    assert_eq!(other.verdict, Verdict::Success, "another bidder is not held back");

    // REST: the same limit, as a 429 with Retry-After.
    let http = cluster.http_address(0).expect("an HTTP port");
    let mut statuses = Vec::new();
    for amount in 2_000..2_020 {
        let response = reqwest::Client::new()
            .post(format!("http://{http}/auctions/default/bids"))
            .json(&serde_json::json!({ "participant_id": "cy", "bid_price": amount }))
            .send()
            .await
            .expect("answered");
        let retry_after = response.headers().get("retry-after").map(|value| value.to_str().unwrap_or("").to_string());
        statuses.push((response.status().as_u16(), retry_after));
    }
    let limited = statuses.iter().find(|(status, _)| *status == 429).expect("a 429 among twenty bids at once");
    assert_eq!(limited.1.as_deref(), Some("1"), "{statuses:?}");
}
