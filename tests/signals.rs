//! A tool that starts its own servers stops them when it is told to stop:
//! SIGTERM to `gavel chaos` leaves no server behind.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gavel::transport::{Network, probe_status};

use common::{eventually, is_alive, ports};

/// Kills the tool if the test ends early.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// If the tool left its servers behind (the failure this test looks for),
/// kills them, so that a failing run leaves nothing running either.
struct Leftovers(Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // Only a gavel server: the pid could have been reused.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if is_alive(pid) && String::from_utf8_lossy(&cmdline).contains("server") {
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

#[tokio::test]
async fn sigterm_to_chaos_stops_its_servers() {
    let ports = ports(14);
    let (base, client) = (ports.base.to_string(), ports.client.to_string());
    let child = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["chaos", "--duration", "60s", "--nodes", "3", "--seed", "1"])
        .args(["--base-port", base.as_str(), "--client-port", client.as_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gavel chaos starts");
    let mut chaos = Guard(child);

    // The servers' own pids, from their status.
    let network = Network::tcp();
    let servers: Vec<u32> = eventually("three servers answering", Duration::from_secs(20), || {
        let network = network.clone();
        async move {
            let mut pids = Vec::new();
            for port in ports.base..ports.base + 3 {
                let address = format!("127.0.0.1:{port}");
                pids.push(probe_status(&network, &address, Duration::from_millis(300)).await.ok()?.pid);
            }
            Some(pids)
        }
    })
    .await;
    let leftovers = Leftovers(servers);

    unsafe { libc::kill(chaos.0.id() as libc::pid_t, libc::SIGTERM) };
    let status = eventually("chaos to exit", Duration::from_secs(10), || {
        let status = chaos.0.try_wait().expect("wait for chaos");
        async move { status }
    })
    .await;
    assert_eq!(status.code(), Some(143), "exit status {status:?}");
    for &pid in &leftovers.0 {
        eventually(&format!("server {pid} to be gone"), Duration::from_secs(5), || async move {
            (!is_alive(pid)).then_some(())
        })
        .await;
    }
    // A node the fault injector restarted has a pid not listed above: no
    // node may answer on any of the ports either.
    for port in (ports.base..ports.base + 3).chain([ports.client]) {
        let address = format!("127.0.0.1:{port}");
        if let Ok(status) = probe_status(&network, &address, Duration::from_millis(300)).await {
            drop(Leftovers(vec![status.pid]));
            panic!("a server still answered on {address}: {status:?}");
        }
    }
}
