//! `gavel bench` end to end: a short run of every system it offers (gavel
//! with each node count from one to five, etcd where it is installed, the
//! null server) prints one JSON object with sane figures. No timing
//! thresholds: this checks the harness, not the machine.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{ToolOutput, ports, run_tool};

/// Longer than any run here takes, even on a loaded host.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn bench(args: &[&str]) -> ToolOutput {
    let args: Vec<String> = std::iter::once("bench").chain(args.iter().copied()).map(String::from).collect();
    run_tool(&args, RUN_LIMIT)
}

#[test]
fn bench_reports_sane_figures_as_json() {
    let output = bench(&[
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--clients",
        "4",
        "--nodes",
        "3",
        "--json",
        "--base-port",
        "26000",
        "--client-port",
        "26019",
        // The default is one thread per process, which every other test
        // runs on; here the multi-thread runtimes take the load.
        "--worker-threads",
        "2",
        "--server-threads",
        "2",
    ]);
    assert!(output.success, "gavel bench failed: {}", output.stderr);
    let report: Value = serde_json::from_str(output.stdout.trim()).expect("stdout is one JSON object");

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

/// A short run against a cluster of `nodes` on `base_port` and the ports
/// after it; checks what every run's report holds and returns it.
fn bench_of_nodes(nodes: usize, base_port: u16, client_port: u16) -> Value {
    let (nodes_arg, base, client) = (nodes.to_string(), base_port.to_string(), client_port.to_string());
    let output = bench(&[
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--clients",
        "2",
        "--nodes",
        &nodes_arg,
        "--json",
        "--base-port",
        &base,
        "--client-port",
        &client,
    ]);
    assert!(output.success, "gavel bench --nodes {nodes} failed: {}", output.stderr);
    let report: Value = serde_json::from_str(output.stdout.trim()).expect("stdout is one JSON object");
    assert_eq!(report["system"], "gavel", "{report}");
    assert_eq!(report["nodes"], nodes, "{report}");
    let answered = report["answered"].as_u64().expect("answered");
    assert!(answered > 0, "{report}");
    let outcome = |kind: &str| report.pointer(&format!("/outcomes/{kind}")).and_then(Value::as_u64);
    assert_eq!(
        outcome("success").zip(outcome("fail")).zip(outcome("exception")).map(|((s, f), e)| s + f + e),
        Some(answered)
    );
    let members = report["node_memory"].as_array().expect("node_memory");
    assert_eq!(members.len(), nodes, "{report}");
    assert_eq!(members.iter().filter(|member| member["role"] == "leader").count(), 1, "{report}");
    for member in members {
        assert!(["leader", "backup", "joining"].contains(&member["role"].as_str().unwrap_or("")), "{report}");
        assert!(member["vm_hwm_kib"].as_u64().is_some_and(|peak| peak > 0), "peak RSS of {member}");
    }
    report
}

/// The unreplicated baseline: a cluster of one node (which names no peers).
#[test]
fn bench_of_one_node_runs_the_unreplicated_baseline() {
    bench_of_nodes(1, 26060, 26079);
}

#[test]
fn bench_of_two_nodes_runs_a_leader_and_one_backup() {
    let ports = ports(154);
    bench_of_nodes(2, ports.base, ports.client);
}

#[test]
fn bench_of_four_nodes_runs_a_leader_and_three_backups() {
    let ports = ports(155);
    bench_of_nodes(4, ports.base, ports.client);
}

#[test]
fn bench_of_five_nodes_runs_a_leader_and_four_backups() {
    let ports = ports(156);
    bench_of_nodes(5, ports.base, ports.client);
}

/// etcd, the system gavel is compared with. It runs where this gavel was
/// built with the `etcd` feature and an `etcd` binary (Debian's
/// etcd-server) is on the PATH; a gavel without the feature must say how
/// to get it; with the feature and no etcd, the test is skipped.
#[test]
fn bench_against_etcd_reports_it_as_etcd() {
    let ports = ports(157);
    let data_root = std::env::temp_dir();
    let (client_port, peer_port) = (ports.base.to_string(), (ports.base + 10).to_string());
    let run = || {
        bench(&[
            "--system",
            "etcd",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--clients",
            "2",
            "--json",
            "--etcd-client-port",
            &client_port,
            "--etcd-peer-port",
            &peer_port,
            "--etcd-data-root",
            data_root.to_str().expect("a UTF-8 temporary directory"),
        ])
    };
    if !cfg!(feature = "etcd") {
        let output = run();
        assert!(!output.success, "gavel without the etcd feature ran etcd: {}", output.stdout);
        assert!(output.stderr.contains("built without the `etcd` feature"), "{}", output.stderr);
        return;
    }
    let etcd_installed =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("etcd").is_file()));
    if !etcd_installed {
        eprintln!("skipped: no etcd on the PATH (Debian: apt-get install etcd-server)");
        return;
    }
    let output = run();
    assert!(output.success, "gavel bench --system etcd failed: {}", output.stderr);
    let report: Value = serde_json::from_str(output.stdout.trim()).expect("stdout is one JSON object");
    assert_eq!(report["system"], "etcd", "{report}");
    let answered = report["answered"].as_u64().expect("answered");
    assert!(answered > 0, "{report}");
    let outcome = |kind: &str| report.pointer(&format!("/outcomes/{kind}")).and_then(Value::as_u64);
    assert_eq!(
        outcome("success").zip(outcome("fail")).zip(outcome("exception")).map(|((s, f), e)| s + f + e),
        Some(answered)
    );
    let members = report["node_memory"].as_array().expect("node_memory");
    assert_eq!(members.len(), 3, "three etcd members: {report}");
}

/// The null server: the same workload against a server that does no work.
#[test]
fn bench_against_the_null_server_reports_it_as_null() {
    let output = bench(&[
        "--system",
        "null",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--clients",
        "4",
        "--json",
        "--client-port",
        "26039",
    ]);
    assert!(output.success, "gavel bench --system null failed: {}", output.stderr);
    let report: Value = serde_json::from_str(output.stdout.trim()).expect("stdout is one JSON object");

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
        let output = bench(&[&["--system", "null", "--client-port", "26059"][..], mode].concat());
        let stderr = &output.stderr;
        assert!(!output.success, "{mode:?} was accepted");
        assert!(stderr.contains("--system null supports the throughput runs only"), "{mode:?}: {stderr}");
    }
}
