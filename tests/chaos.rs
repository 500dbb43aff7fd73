//! `gavel chaos` end to end, scaled down: each node count from one to five
//! and each fault it injects, run once for a few seconds with few clients.
//! The test checks the report's lines and the checker's verdict, not the
//! timings.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{ports, run_tool};

/// Longer than any run here takes, even on a loaded host: a few seconds of
/// load, the heal and the checks.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A directory of the test's own, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(slot: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("gavel-chaos-{}-slot{slot}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `gavel chaos` on `slot`'s ports with `nodes` nodes, two clients, one
/// auction and no hostile client unless `extra` says otherwise; checks that
/// it passed and printed every line of its report; returns the line of the
/// faults injected.
fn chaos(slot: u16, nodes: usize, extra: &[&str]) -> String {
    let ports = ports(slot);
    let mut args: Vec<String> =
        ["chaos", "--duration", "3s", "--clients", "2", "--seed", "7"].into_iter().map(String::from).collect();
    args.extend(["--nodes".into(), nodes.to_string()]);
    args.extend(["--base-port".into(), ports.base.to_string(), "--client-port".into(), ports.client.to_string()]);
    for (flag, scaled_down) in [("--auctions", "1"), ("--hostile", "0")] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), scaled_down.to_string()]);
        }
    }
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let output = run_tool(&args, RUN_LIMIT);
    let said = format!("stdout:\n{}\nstderr:\n{}", output.stdout, output.stderr);
    assert!(output.success, "gavel {} failed: {said}", args.join(" "));
    let lines = [
        format!("chaos: {nodes} nodes, 2 clients"),
        "operations: ".into(),
        "faults injected: ".into(),
        "failovers seen: ".into(),
        "longest operation".into(),
        "hostile: ".into(),
        "checked in ".into(),
        "verdict: PASS".into(),
    ];
    let mut rest = output.stdout.as_str();
    for line in &lines {
        let at = rest.find(line.as_str()).unwrap_or_else(|| panic!("{line:?} missing, in order, from {said}"));
        rest = &rest[at..];
    }
    let faults = output.stdout.lines().find(|line| line.starts_with("faults injected: ")).expect("the faults line");
    faults.to_string()
}

/// One node: no fault can be injected without losing the auction (nobody
/// could take over), so none is.
#[test]
fn chaos_of_one_node_injects_no_fault() {
    let faults = chaos(68, 1, &[]);
    assert_eq!(faults, "faults injected: none");
}

#[test]
fn chaos_of_two_nodes_kills_and_restarts() {
    let faults = chaos(69, 2, &["--faults", "kill,restart"]);
    assert!(faults.contains("kill"), "{faults}");
}

/// Three nodes with the faults that freeze, beside a hostile client, over
/// two auctions; the history it writes is JSON lines.
#[test]
fn chaos_of_three_nodes_freezes_beside_a_hostile_client_and_writes_its_history() {
    let dir = TempDir::new(70);
    let history = dir.0.join("history.jsonl");
    let history_arg = history.to_str().expect("a UTF-8 temporary directory");
    let faults = chaos(70, 3, &["--faults", "stop", "--hostile", "1", "--auctions", "2", "--history", history_arg]);
    assert!(faults.contains("stop"), "{faults}");
    let text = std::fs::read_to_string(&history).expect("the history file");
    assert!(text.lines().count() > 0, "an empty history");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|error| panic!("{error}: {line}"));
    }
}

/// TLS and authentication on: the run stays linearizable through kills,
/// freezes and restarts (each restarted node proves itself again), and the
/// hostile client, holding a client certificate, opens no replication
/// stream under any name.
#[test]
fn chaos_with_tls_on_stays_linearizable_and_a_hostile_client_opens_no_stream() {
    // A stream the hostile client opened would be a violation: no PASS.
    let faults = chaos(81, 3, &["--secure", "--faults", "kill,stop,restart", "--hostile", "1"]);
    assert_ne!(faults, "faults injected: none");
}

/// With data directories the faults include killing every node at once.
#[test]
fn chaos_of_three_durable_nodes_kills_them_all() {
    let dir = TempDir::new(71);
    let data_dir = dir.0.to_str().expect("a UTF-8 temporary directory");
    let faults = chaos(71, 3, &["--faults", "kill-all", "--data-dir", data_dir]);
    assert!(faults.contains("kill all"), "{faults}");
}

#[test]
fn chaos_without_data_directories_refuses_to_kill_every_node() {
    let ports = ports(72);
    let args: Vec<String> = ["chaos", "--duration", "3s", "--faults", "kill-all", "--nodes", "2"]
        .into_iter()
        .map(String::from)
        .chain(["--base-port".into(), ports.base.to_string(), "--client-port".into(), ports.client.to_string()])
        .collect();
    let output = run_tool(&args, RUN_LIMIT);
    assert!(!output.success, "kill-all without --data-dir was accepted: {}", output.stdout);
    assert!(output.stderr.contains("kill-all needs --data-dir"), "{}", output.stderr);
}

#[test]
fn chaos_of_four_nodes_lets_a_removed_backup_outlive_the_leader() {
    let faults = chaos(73, 4, &["--faults", "outlive"]);
    assert!(faults.contains("outlive"), "{faults}");
}

/// Five nodes under the default faults (kill, stop, restart, outlive).
#[test]
fn chaos_of_five_nodes_under_the_default_faults() {
    chaos(74, 5, &[]);
}
