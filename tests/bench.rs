//! `gavel bench` end to end: a short run against its own three-node cluster,
//! or against the null server, prints one JSON object with sane figures. No
//! timing thresholds: this checks the harness, not the machine.

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_reports_sane_figures_as_json() {
    let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["bench", "--duration", "2s", "--warmup", "500ms", "--clients", "4", "--nodes", "3", "--json"])
        .args(["--base-port", "26000", "--client-port", "26019"])
        // The default is one thread per process, which every other test
        // runs on; here the multi-thread runtimes take the load.
        .args(["--worker-threads", "2", "--server-threads", "2"])
        .output()
        .expect("gavel bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gavel bench failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let report: Value = serde_json::from_str(stdout.trim()).expect("stdout is one JSON object");

    let number = |pointer: &str| {
        report.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer} in {report}"))
    };
    assert!(number("/bids_per_second") > 0.0, "{report}");
    assert!(number("/answered") > 0.0, "{report}");
    let (p50, p99, max) = (number("/latency_us/p50"), number("/latency_us/p99"), number("/latency_us/max"));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "p50 {p50}, p99 {p99}, max {max}");
    assert_eq!(
        number("/outcomes/success") + number("/outcomes/fail") + number("/outcomes/exception"),
        number("/answered")
    );

    assert_eq!(number("/load_generator_threads"), 2.0, "{report}");
    assert_eq!(number("/server_threads"), 2.0, "{report}");

    let errors = report["errors"].as_object().expect("an errors object");
    for kind in ["unavailable", "not_leader", "timeout", "rejected", "gave_up"] {
        assert!(errors.get(kind).and_then(Value::as_u64).is_some(), "errors.{kind} in {report}");
    }

    let nodes = report["node_memory"].as_array().expect("node_memory");
    assert_eq!(nodes.len(), 3, "{report}");
    for node in nodes {
        let peak = node["vm_hwm_kib"].as_u64().unwrap_or(0);
        assert!(peak > 0, "peak RSS of {node}");
    }
    assert_eq!(nodes.iter().filter(|node| node["role"] == "leader").count(), 1, "{report}");
}

/// The unreplicated baseline: a cluster of one node (which names no peers).
#[test]
fn bench_of_one_node_runs_the_unreplicated_baseline() {
    let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["bench", "--duration", "1s", "--warmup", "200ms", "--clients", "2", "--nodes", "1", "--json"])
        .args(["--base-port", "26060", "--client-port", "26079"])
        .output()
        .expect("gavel bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gavel bench --nodes 1 failed: {stderr}");
    let report: Value = serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).expect("one JSON object");
    assert_eq!(report["nodes"], 1, "{report}");
    assert!(report["answered"].as_u64().is_some_and(|answered| answered > 0), "{report}");
    let nodes = report["node_memory"].as_array().expect("node_memory");
    assert_eq!(nodes.len(), 1, "{report}");
    assert_eq!(nodes[0]["role"], "leader", "{report}");
}

/// The null server: the same workload against a server that does no work.
#[test]
fn bench_against_the_null_server_reports_it_as_null() {
    let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["bench", "--system", "null", "--duration", "1s", "--warmup", "200ms", "--clients", "4", "--json"])
        .args(["--client-port", "26039"])
        .output()
        .expect("gavel bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gavel bench --system null failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let report: Value = serde_json::from_str(stdout.trim()).expect("stdout is one JSON object");

    assert_eq!(report["system"], "null", "{report}");
    assert_eq!(report["target"], "127.0.0.1:26039", "{report}");
    let answered = report["answered"].as_u64().expect("answered");
    assert!(answered > 0, "{report}");
    assert!(report["bids_per_second"].as_f64().is_some_and(|rate| rate > 0.0), "{report}");
    // It answers every bid SUCCESS.
    assert_eq!(report.pointer("/outcomes/success").and_then(Value::as_u64), Some(answered), "{report}");
    assert_eq!(report["server_threads"], 1, "{report}");

    let servers = report["node_memory"].as_array().expect("node_memory");
    assert_eq!(servers.len(), 1, "{report}");
    assert_eq!(servers[0]["role"], "null", "{report}");
    assert!(servers[0]["vm_hwm_kib"].as_u64().is_some_and(|peak| peak > 0), "{report}");
}

#[test]
fn bench_against_the_null_server_refuses_the_modes_it_cannot_run() {
    for mode in [&["--failover", "2"][..], &["--bids", "100"], &["--target", "127.0.0.1:1"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(["bench", "--system", "null", "--client-port", "26059"])
            .args(mode)
            .output()
            .expect("gavel bench runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{mode:?} was accepted");
        assert!(stderr.contains("--system null supports the throughput runs only"), "{mode:?}: {stderr}");
    }
}
