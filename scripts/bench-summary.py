#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench-all.sh into the Markdown tables of
BENCHMARKS.md: medians over the repetitions, ratios taken per repetition
(runs of one repetition ran back to back) and their median, and the issue's
targets with whether they are met. Standard library only.

Usage: scripts/bench-summary.py RESULTS_DIR [--clean SHARE]

With --clean, only runs during which other processes took at most SHARE of
the host's CPU count, whether bench-all.sh kept them or set them aside
(NAME.rejected.jsonl); then the per-run ratios no longer pair runs that ran
back to back: read the ratio of medians.
"""

import json
import statistics
import sys
from pathlib import Path


def load(directory, clean=None):
    runs = {}
    for path in sorted(Path(directory).glob("*.jsonl")):
        rejected = path.name.endswith(".rejected.jsonl")
        if rejected and clean is None:
            continue
        name = path.name.removesuffix(".rejected.jsonl").removesuffix(".jsonl")
        reports = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if clean is not None:
            reports = [r for r in reports if (r.get("host_cpu_foreign_share") or 0) <= clean]
        runs.setdefault(name, []).extend(reports)
    return {name: reports for name, reports in runs.items() if reports}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def leader_hwm_mib(report):
    for node in report.get("node_memory", []):
        if node.get("role") == "leader" and node.get("vm_hwm_kib"):
            return node["vm_hwm_kib"] / 1024
    return None


def throughput_table(runs, names, label):
    lines = [
        f"| {label} | runs | bids/s | p50 µs | p99 µs | p99.9 µs | max µs | SUCCESS % | errors | leader peak RSS MiB | other processes' CPU, median (max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, title in names:
        reports = runs.get(name, [])
        if not reports:
            continue
        col = lambda f: median([f(r) for r in reports])  # noqa: E731
        success = col(lambda r: 100 * r["outcomes"]["success"] / r["answered"] if r["answered"] else None)
        errors = sum(sum(r["errors"].values()) for r in reports)
        shares = [100 * r["host_cpu_foreign_share"] for r in reports if r.get("host_cpu_foreign_share") is not None]
        busy = f"{fmt(median(shares), 1)}% ({fmt(max(shares, default=None), 1)}%)"
        lines.append(
            f"| {title} | {len(reports)} | {fmt(col(lambda r: r['bids_per_second']))} "
            f"| {fmt(col(lambda r: r['latency_us']['p50']))} | {fmt(col(lambda r: r['latency_us']['p99']))} "
            f"| {fmt(col(lambda r: r['latency_us']['p999']))} | {fmt(col(lambda r: r['latency_us']['max']))} "
            f"| {fmt(success)} | {errors} | {fmt(col(leader_hwm_mib), 1)} | {busy} |"
        )
    return "\n".join(lines)


def ratio(runs, numerator, denominator):
    """Median of per-repetition ratios, and ratio of medians."""
    a = [r["bids_per_second"] for r in runs.get(numerator, [])]
    b = [r["bids_per_second"] for r in runs.get(denominator, [])]
    per_rep = [x / y for x, y in zip(a, b) if y]
    of_medians = (median(a) / median(b)) if a and b and median(b) else None
    return median(per_rep), per_rep, of_medians


def main():
    clean = float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--clean" else None
    runs = load(sys.argv[1], clean)
    out = []
    out.append("### Clients sweep (3 nodes)\n")
    out.append(throughput_table(runs, [(f"gavel-n3-c{c}", f"{c} clients") for c in (1, 8, 64, 256)], "3 nodes"))
    out.append("\n### Backups sweep (64 clients)\n")
    out.append(
        throughput_table(
            runs,
            [
                ("gavel-n1-c64", "1 node (no backup)"),
                ("gavel-n2-c64", "2 nodes (1 backup)"),
                ("gavel-n3-c64", "3 nodes (2 backups)"),
                ("gavel-n5-c64", "5 nodes (4 backups)"),
            ],
            "64 clients",
        )
    )
    out.append("\n### gavel beside etcd (same harness, same session)\n")
    out.append(
        throughput_table(
            runs,
            [
                ("gavel-n3-c64", "gavel, 3 nodes, 64 clients"),
                ("etcd-c64", "etcd, 3 members, 64 clients"),
                ("gavel-n3-c1", "gavel, 3 nodes, 1 client"),
                ("etcd-c1", "etcd, 3 members, 1 client"),
                ("gavel-n1-c1", "gavel, 1 node, 1 client"),
            ],
            "system",
        )
    )
    out.append("\n### Driver: bare connection vs the client library (3 nodes, 64 clients)\n")
    out.append(
        throughput_table(
            runs,
            [("gavel-n3-c64", "AuctionConnection (default)"), ("gavel-n3-c64-client", "client::Client")],
            "driver",
        )
    )
    out.append("\n### Runtime: one thread per process vs one worker per core (3 nodes)\n")
    out.append(
        throughput_table(
            runs,
            [
                ("gavel-n3-c64", "64 clients, single-threaded (default)"),
                ("gavel-n3-c64-mt", "64 clients, multi-thread"),
                ("gavel-n3-c1", "1 client, single-threaded (default)"),
                ("gavel-n3-c1-mt", "1 client, multi-thread"),
            ],
            "runtime",
        )
    )

    out.append("\n### Ratios (per repetition, runs back to back; median, then each)\n")
    out.append("| ratio | median of per-run ratios | per run | ratio of medians |")
    out.append("|---|---|---|---|")
    ratios = {}
    for label, a, b in [
        ("gavel 3 nodes / etcd, 64 clients", "gavel-n3-c64", "etcd-c64"),
        ("gavel 3 nodes / etcd, 1 client", "gavel-n3-c1", "etcd-c1"),
        ("gavel 3 nodes / gavel 1 node, 64 clients", "gavel-n3-c64", "gavel-n1-c64"),
        ("gavel 5 nodes / gavel 1 node, 64 clients", "gavel-n5-c64", "gavel-n1-c64"),
        ("Client / AuctionConnection, 64 clients", "gavel-n3-c64-client", "gavel-n3-c64"),
        ("single-threaded / multi-thread, 64 clients", "gavel-n3-c64", "gavel-n3-c64-mt"),
        ("single-threaded / multi-thread, 1 client", "gavel-n3-c1", "gavel-n3-c1-mt"),
    ]:
        med, each, of_medians = ratio(runs, a, b)
        ratios[label] = med
        out.append(f"| {label} | {fmt(med, 2)} | {', '.join(fmt(x, 2) for x in each)} | {fmt(of_medians, 2)} |")

    failover = runs.get("failover-n3-c64", [])
    if failover:
        out.append("\n### Failover (3 nodes, 64 clients, SIGKILL of the leader)\n")
        out.append("| run | trials | first ack p50 ms | first ack p99 ms | first ack max ms | stall p50 ms | stall p99 ms | stall max ms | bids/s over the run | gave up |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        pooled_ack, pooled_stall = [], []
        for i, report in enumerate(failover, 1):
            f = report["failover"]
            pooled_ack += [t["kill_to_first_ack_ms"] for t in f["trials"] if t["kill_to_first_ack_ms"] is not None]
            pooled_stall += [t["longest_stall_ms"] for t in f["trials"] if t["longest_stall_ms"] is not None]
            a, s = f["kill_to_first_ack_ms"], f["longest_stall_ms"]
            out.append(
                f"| {i} | {a['count']} | {fmt(a['p50'], 1)} | {fmt(a['p99'], 1)} | {fmt(a['max'], 1)} "
                f"| {fmt(s['p50'], 1)} | {fmt(s['p99'], 1)} | {fmt(s['max'], 1)} | {fmt(report['bids_per_second'])} "
                f"| {report['errors']['gave_up']} |"
            )
        out.append(
            f"| median of runs | | {fmt(median([r['failover']['kill_to_first_ack_ms']['p50'] for r in failover]), 1)} "
            f"| {fmt(median([r['failover']['kill_to_first_ack_ms']['p99'] for r in failover]), 1)} | "
            f"| {fmt(median([r['failover']['longest_stall_ms']['p50'] for r in failover]), 1)} "
            f"| {fmt(median([r['failover']['longest_stall_ms']['p99'] for r in failover]), 1)} | | | |"
        )
        pooled_ack.sort()
        pooled_stall.sort()

        def rank(values, q):
            if not values:
                return None
            return values[min(len(values), max(1, -(-int(q * len(values) * 1000) // 1000))) - 1]

        out.append(
            f"\nPooled over {len(pooled_ack)} trials: first ack p50 {fmt(rank(pooled_ack, 0.5), 1)} ms, "
            f"p99 {fmt(rank(pooled_ack, 0.99), 1)} ms, max {fmt(pooled_ack[-1] if pooled_ack else None, 1)} ms; "
            f"longest stall p50 {fmt(rank(pooled_stall, 0.5), 1)} ms, p99 {fmt(rank(pooled_stall, 0.99), 1)} ms."
        )
        ratios["failover_p50"] = rank(pooled_ack, 0.5)
        ratios["failover_p99"] = rank(pooled_ack, 0.99)

    for name in ("memory-n3", "memory-n3-10m"):
        memory = runs.get(name, [])
        if not memory:
            continue
        first = memory[0]["memory"]
        out.append(
            f"\n### Leader RSS over {first['bids']:,} bids from {first['sessions']:,} sessions "
            f"(3 nodes, {memory[0]['clients']} clients)\n"
        )
        checkpoints = first["checkpoints"]
        header = "| run | " + " | ".join(f"after {c['bids']:,} bids" for c in checkpoints) + " | growth, 2nd half | per bid | bids/s |"
        out.append(header)
        out.append("|---" * (len(checkpoints) + 4) + "|")
        for i, report in enumerate(memory, 1):
            m = report["memory"]
            cells = " | ".join(fmt(c["vm_rss_kib"] / 1024 if c["vm_rss_kib"] else None, 1) + " MiB" for c in m["checkpoints"])
            out.append(
                f"| {i} | {cells} | {fmt(m['rss_growth_second_half_kib'])} KiB "
                f"| {fmt(m['rss_growth_per_bid_second_half_bytes'], 2)} B | {fmt(report['bids_per_second'])} |"
            )

    # The targets.
    def med(name, f):
        return median([f(r) for r in runs.get(name, [])])

    n3c64 = med("gavel-n3-c64", lambda r: r["bids_per_second"])
    targets = [
        ("3 nodes, 64 clients: >= 20,000 acknowledged bids/s", n3c64, n3c64 is not None and n3c64 >= 20000, fmt(n3c64)),
        ("3 nodes >= 5x etcd's txn/s (64 clients)", ratios.get("gavel 3 nodes / etcd, 64 clients"),
         (ratios.get("gavel 3 nodes / etcd, 64 clients") or 0) >= 5, fmt(ratios.get("gavel 3 nodes / etcd, 64 clients"), 2) + "x"),
        ("3 nodes >= 0.5x gavel's own 1-node baseline (64 clients)", ratios.get("gavel 3 nodes / gavel 1 node, 64 clients"),
         (ratios.get("gavel 3 nodes / gavel 1 node, 64 clients") or 0) >= 0.5,
         fmt(ratios.get("gavel 3 nodes / gavel 1 node, 64 clients"), 2) + "x"),
    ]
    p50_1 = med("gavel-n3-c1", lambda r: r["latency_us"]["p50"])
    p99_1 = med("gavel-n3-c1", lambda r: r["latency_us"]["p99"])
    p99_64 = med("gavel-n3-c64", lambda r: r["latency_us"]["p99"])
    targets += [
        ("1 client, 3 nodes: p50 <= 300 µs", p50_1, p50_1 is not None and p50_1 <= 300, fmt(p50_1) + " µs"),
        ("1 client, 3 nodes: p99 <= 1 ms", p99_1, p99_1 is not None and p99_1 <= 1000, fmt(p99_1) + " µs"),
        ("64 clients, 3 nodes: p99 <= 5 ms", p99_64, p99_64 is not None and p99_64 <= 5000, fmt(p99_64) + " µs"),
    ]
    if "failover_p50" in ratios:
        fp50, fp99 = ratios["failover_p50"], ratios["failover_p99"]
        targets += [
            ("failover SIGKILL -> first ack p50 <= 50 ms", fp50, fp50 is not None and fp50 <= 50, fmt(fp50, 1) + " ms"),
            ("failover SIGKILL -> first ack p99 <= 250 ms", fp99, fp99 is not None and fp99 <= 250, fmt(fp99, 1) + " ms"),
        ]
    out.append("\n### The issue's targets\n")
    out.append("| target | measured (median) | met? |")
    out.append("|---|---|---|")
    for label, value, met, shown in targets:
        out.append(f"| {label} | {shown} | {'yes' if met else ('no' if value is not None else 'not measured')} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
