//! `gavel demo`: its nodes keep their state on disk, so `crash all` then
//! `restart` brings every auction back, and the demo says so; the prompt's
//! walk-through (sell, switch to the auction, bid as someone else) works,
//! and a watch carries on through the crash of every node.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The demo process and, through its nodes' status, the nodes it started:
/// all of them are killed if the test ends early.
struct Demo {
    child: Child,
    node_ports: Vec<u16>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            for port in &self.node_ports {
                let address = format!("127.0.0.1:{port}");
                if let Ok(status) = runtime.block_on(gavel::client::node_status(
                    &gavel::transport::Network::tcp(),
                    &address,
                    Duration::from_millis(300),
                )) {
                    // SAFETY: kill(2) has no memory effects; the pid is a node this test's demo started.
                    unsafe { libc::kill(status.pid as libc::pid_t, libc::SIGKILL) };
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn after_crash_all_the_demo_restarts_every_node_from_disk_and_every_auction_is_back() {
    let ports = common::ports(48);
    let child = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["demo", "--id", "dee", "--base-port", &ports.base.to_string()])
        .args(["--client-port", &ports.client.to_string(), "--http-base-port", &(ports.base + 10).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts");
    let mut demo = Demo { child, node_ports: (0..3).map(|i| ports.base + i).collect() };
    // What the demo prints, read as it comes, so that `quit` waits for the
    // watch's line.
    let printed = Arc::new(Mutex::new(String::new()));
    let mut stdout = demo.child.stdout.take().expect("stdout");
    let reader = {
        let printed = Arc::clone(&printed);
        std::thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(read) = stdout.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                printed.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..read]));
            }
        })
    };
    let mut stdin = demo.child.stdin.take().expect("stdin");
    let typed = "75\ncreate 10m a blue vase\nuse a1\n50\nas bob\n50\nwatch\ncrash all\nrestart\n60\nresult\n";
    stdin.write_all(typed.as_bytes()).expect("type at the prompt");
    // The watch carries on through the crash of every node: it prints the
    // bid made after the restart.
    let watched = "a1 BID: bob now holds the highest bid, 60";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed.lock().unwrap().contains(watched) {
        assert!(Instant::now() < deadline, "the watch printed no bid after the restart:\n{}", printed.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    stdin.write_all(b"quit\n").expect("type at the prompt");
    drop(stdin);

    while demo.child.try_wait().expect("demo status").is_none() {
        assert!(Instant::now() < deadline, "the demo did not finish in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().expect("the reader");
    let output = printed.lock().unwrap().clone();
    let expected = [
        &format!("the web page: http://127.0.0.1:{}/", ports.base + 10),
        "SUCCESS: bid 75 by dee",
        "CREATED: auction a1 (a blue vase)",
        "FAIL: a seller cannot bid on their own auction",
        "bidding and selling as bob",
        "SUCCESS: bid 50 by bob",
        "watching auction a1",
        "=== CRASH every node (SIGKILL)",
        "every node came back from its data directory, and with them 2 auctions:",
        "running, highest 75 by dee",
        "running, highest 50 by bob",
        "SUCCESS: bid 60 by bob",
        "RESULT: auction a1 is running; highest bid 60 by bob",
        "stopping the cluster",
    ];
    let mut rest = output.as_str();
    for line in expected {
        let at = rest.find(line).unwrap_or_else(|| panic!("{line:?} missing, in order, from:\n{output}"));
        rest = &rest[at + line.len()..];
    }
    assert!(!output.contains("the watch of auction"), "the watch never stopped: {output}");
    // The banner says the demo's commands once.
    assert_eq!(output.matches("`crash all` (SIGKILL every node)").count(), 1, "{output}");
    // The demo removes what it wrote (its logs too, unless --keep-logs).
    let written = output
        .split_once("logs and data in ")
        .and_then(|(_, rest)| rest.split_once(" (removed at the end"))
        .map(|(dir, _)| std::path::PathBuf::from(dir))
        .unwrap_or_else(|| panic!("the demo names where it writes: {output}"));
    assert!(!written.exists(), "{} is left behind", written.display());
}
