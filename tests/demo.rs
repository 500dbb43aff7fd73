//! `gavel demo`: its nodes keep their state on disk, so `crash all` then
//! `restart` brings the auction back, and the demo says so.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
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
fn after_crash_all_the_demo_restarts_every_node_from_disk_and_the_auction_is_back() {
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
    let mut stdin = demo.child.stdin.take().expect("stdin");
    stdin.write_all(b"75\ncrash all\nrestart\nresult\nquit\n").expect("type at the prompt");
    drop(stdin);

    let deadline = Instant::now() + Duration::from_secs(60);
    while demo.child.try_wait().expect("demo status").is_none() {
        assert!(Instant::now() < deadline, "the demo did not finish in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut output = String::new();
    demo.child.stdout.take().expect("stdout").read_to_string(&mut output).expect("read the demo's output");
    let expected = [
        &format!("the web page: http://127.0.0.1:{}/", ports.base + 10),
        "SUCCESS: bid 75 by dee",
        "=== CRASH every node (SIGKILL)",
        "every node came back from its data directory: the auction is back, highest bid 75 by dee",
        "RESULT: auction default is running; highest bid 75 by dee",
        "stopping the cluster",
    ];
    let mut rest = output.as_str();
    for line in expected {
        let at = rest.find(line).unwrap_or_else(|| panic!("{line:?} missing, in order, from:\n{output}"));
        rest = &rest[at + line.len()..];
    }
}
