//! Bad input gets a clear error, changes nothing, and crashes nothing; and
//! the command-line clients print one clear line per answer.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use gavel::auction::{Bid, Verdict};
use gavel::client::node_status;
use gavel::transport::pb::replication::replication_client::ReplicationClient;
use gavel::transport::pb::replication::{FromBackup, Hello, from_backup};
use gavel::transport::{AuctionConnection, CallError, InvalidCode, Network, TransportSettings};

use common::{client, start};

fn gavel(args: &[&str]) -> (String, i32) {
    let output = Command::new(env!("CARGO_BIN_EXE_gavel")).args(args).output().expect("run gavel");
    (String::from_utf8_lossy(&output.stdout).trim().to_string(), output.status.code().unwrap_or(-1))
}

fn bid_request(bidder: &str, amount: u64, auction_id: &str) -> Bid {
    Bid {
        name_digest: None,
        auction_id: auction_id.into(),
        bidder: bidder.into(),
        amount,
        client_id: "bad-input".into(),
        // Any id a session may use.
        request_id: rand::random_range(1..=gavel::auction::MAX_REQUEST_ID),
        at_unix_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_clear_exception_and_change_nothing() {
    let cluster = start(10, 3, &[]).await;
    let server = cluster.client_address();
    let mut reader = client(&cluster);
    assert_eq!(reader.bid("", "kim", 50).await.expect("bid").verdict, Verdict::Success);
    let (before, _) = reader.result("").await.expect("result");

    let mut connection =
        AuctionConnection::new(&Network::tcp(), &server, &TransportSettings::default(), Duration::from_secs(2))
            .expect("connection");
    let huge_name = "x".repeat(1_000);
    let cases = [
        (bid_request("kim", 0, ""), "above 0"),
        (bid_request("", 60, ""), "empty"),
        (bid_request("   ", 60, ""), "empty"),
        (bid_request(&huge_name, 60, ""), "longer"),
        (bid_request("bell\u{7}", 60, ""), "control"),
        (bid_request("kim", 60, "no-such-auction"), "unknown auction"),
        (bid_request("kim", 60, &"a".repeat(100)), "auction id"),
    ];
    for (request, expected) in cases {
        let outcome = connection.bid(&request, &[]).await.expect("answered");
        assert_eq!(outcome.verdict, Verdict::Exception, "{request:?}");
        let said = gavel::auction::render(&outcome.reason);
        assert!(said.contains(expected), "{said:?} does not say {expected:?}");
    }

    // A message larger than any valid request is refused by the transport.
    let oversized = bid_request(&"y".repeat(100_000), 60, "");
    match connection.bid(&oversized, &[]).await {
        Err(CallError::Invalid { code: InvalidCode::OutOfRange, message }) => assert!(!message.is_empty()),
        other => panic!("an oversized message must be refused, got {other:?}"),
    }
    // Reads of unknown auctions are refused too.
    match connection.result("no-such-auction").await {
        Err(CallError::NotFound { what, message }) => {
            assert_eq!(what.as_deref(), Some("no-such-auction"), "the auction not found is named");
            assert!(message.contains("unknown auction"), "{message}");
        }
        other => panic!("unknown auction must be refused, got {other:?}"),
    }

    // A replication stream that does not start with hello is refused.
    let mut replication = ReplicationClient::connect(format!("http://{server}")).await.expect("connect");
    let not_hello =
        FromBackup { message: Some(from_backup::Message::Ack(gavel::transport::pb::replication::Ack { index: 9 })) };
    assert!(replication.replicate(tokio_stream::iter(vec![not_hello])).await.is_err());
    let nameless =
        FromBackup { message: Some(from_backup::Message::Hello(Hello { node: String::new(), ..Hello::default() })) };
    assert!(replication.replicate(tokio_stream::iter(vec![nameless])).await.is_err());

    // Nothing changed, and every node still answers.
    let (after, _) = reader.result("").await.expect("result");
    assert_eq!(
        (after.highest_amount, after.highest_bidder.as_str(), after.accepted_bids),
        (before.highest_amount, "kim", 1)
    );
    for i in 0..cluster.len() {
        node_status(&Network::tcp(), &cluster.node_address(i), Duration::from_secs(1)).await.expect("node alive");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_shot_commands_print_one_line_and_exit_by_one_rule() {
    let cluster = start(11, 2, &[]).await;
    let server = cluster.client_address();
    let target = ["--server", server.as_str()];
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(target.iter()).map(|arg| arg.to_string()).collect() };
    let run = |args: Vec<String>| gavel(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let (line, code) = run(with(&["bid", "120", "--id", "alice"]));
    assert!(line.starts_with("SUCCESS"), "{line}");
    assert_eq!(code, 0);
    // Refused, by the service or by the command before it sent anything:
    // 1, whatever the command (a FAIL, an EXCEPTION, not found).
    const REFUSED: i32 = 1;
    let (line, code) = run(with(&["bid", "100", "--id", "bob"]));
    assert!(line.starts_with("FAIL") && line.contains("120"), "{line}");
    assert_eq!(code, REFUSED);
    let (line, code) = run(with(&["bid", "0", "--id", "bob"]));
    assert!(line.starts_with("EXCEPTION"), "{line}");
    assert_eq!(code, REFUSED, "the service refused it");
    for invalid in ["-5", "abc", "1.5", "99999999999999999999", ""] {
        let (line, code) = run(with(&["bid", invalid, "--id", "bob"]));
        assert!(line.starts_with("EXCEPTION"), "{invalid:?}: {line}");
        assert_eq!(code, REFUSED, "{invalid:?} is invalid input");
    }
    let (line, code) = run(with(&["result"]));
    assert!(line.contains("highest bid 120 by alice"), "{line}");
    assert_eq!(code, 0);
    for refused in [
        vec!["show", "a99"],
        vec!["result", "--auction", "nope"],
        vec!["history", "a99"],
        vec!["create", "--seller", "sam", "--title", "a vase", "--duration", "2y"],
        vec!["cancel", "a99", "--seller", "sam"],
    ] {
        let (line, code) = run(with(&refused));
        assert_eq!(code, REFUSED, "{refused:?}: {line}");
    }

    // Nobody listens here: a clear error and the code of "unreachable",
    // for reads and writes alike.
    const UNREACHABLE: i32 = 3;
    for command in [vec!["result"], vec!["bid", "5", "--id", "bob"], vec!["show", "a1"], vec!["status"]] {
        let mut args = command.clone();
        args.extend(["--server", "127.0.0.1:1", "--timeout", "300ms"]);
        let (line, code) = gavel(&args);
        assert!(line.starts_with("ERROR"), "{command:?}: {line}");
        assert_eq!(code, UNREACHABLE, "{command:?}: {line}");
    }
}

#[test]
fn a_server_refuses_a_thread_count_it_cannot_mean() {
    for threads in ["100000", "-1", "two"] {
        let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(["server", "--port", "1", &format!("--worker-threads={threads}")])
            .output()
            .expect("run gavel");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{threads}: {stderr}");
        assert!(stderr.contains("from 0 (one per core) to 256"), "{threads}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdin_client_answers_each_line() {
    let cluster = start(12, 2, &[]).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["client", "--id", "alice", "--server", &cluster.client_address()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("client starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"100\n90\nhello\n-3\n\nresult\nhelp\nquit\n200\n").expect("write");
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answers: Vec<&str> = stdout.lines().map(|line| line.trim_start_matches("> ")).skip(1).collect();
    assert!(answers[0].starts_with("SUCCESS: bid 100 by alice"), "{stdout}");
    assert!(answers[1].starts_with("FAIL: bid 90 is not higher than the highest bid 100"), "{stdout}");
    assert!(answers[2].starts_with("unknown command \"hello\""), "{stdout}");
    assert!(answers[3].starts_with("EXCEPTION: amount must be a whole number above 0"), "{stdout}");
    assert!(answers[4].starts_with("RESULT: auction default is running; highest bid 100 by alice"), "{stdout}");
    assert!(answers[5].contains("whole number to bid"), "{stdout}");
    assert!(!stdout.contains("bid 200"), "nothing after quit is read: {stdout}");
    assert!(output.status.success());
}

/// A request id past the largest a session may use is refused before it is
/// sequenced: it cannot end the session (a request id of 2^64 - 1 used to
/// be accepted, after which no id of that session was new).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_past_the_largest_is_refused_and_the_session_goes_on() {
    let cluster = start(84, 1, &[]).await;
    let mut connection = AuctionConnection::new(
        &Network::tcp(),
        &cluster.client_address(),
        &TransportSettings::default(),
        Duration::from_secs(5),
    )
    .expect("connection");
    let bid =
        |amount, request_id| Bid { client_id: "one-session".into(), request_id, ..bid_request("kim", amount, "") };
    assert_eq!(connection.bid(&bid(10, 1), &[]).await.expect("bid").verdict, Verdict::Success);
    for request_id in [u64::MAX, gavel::auction::MAX_REQUEST_ID + 1] {
        let refused = connection.bid(&bid(20, request_id), &[]).await.expect("answered");
        assert_eq!(refused.verdict, Verdict::Exception, "{refused:?}");
        assert_eq!(refused.reason.as_ref().map(|reason| reason.code()), Some("request_id_too_large"));
    }
    let next = connection.bid(&bid(30, 2), &[]).await.expect("bid");
    assert_eq!((next.verdict, next.highest_amount), (Verdict::Success, 30), "the session goes on: {next:?}");
}
