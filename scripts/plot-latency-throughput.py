#!/usr/bin/env python3
"""Draws report/latency-throughput.png from the results of
scripts/bench-all.sh: median p50 and p99 latency against median throughput
for 1, 8, 64 and 256 clients, gavel (3 nodes) and etcd (3 members).
Needs matplotlib (pip install matplotlib); not run by CI.

Usage: scripts/plot-latency-throughput.py RESULTS_DIR [OUTPUT.png]
"""

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(directory, names):
    points = []
    for clients, name in names:
        path = Path(directory) / f"{name}.jsonl"
        if not path.exists():
            continue
        reports = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        median = lambda f: statistics.median(f(r) for r in reports)  # noqa: E731
        points.append(
            (
                clients,
                median(lambda r: r["bids_per_second"]),
                median(lambda r: r["latency_us"]["p50"]) / 1000,
                median(lambda r: r["latency_us"]["p99"]) / 1000,
            )
        )
    return points


def main():
    directory = sys.argv[1]
    output = sys.argv[2] if len(sys.argv) > 2 else "report/latency-throughput.png"
    gavel = series(directory, [(c, f"gavel-n3-c{c}") for c in (1, 8, 64, 256)])
    etcd = series(directory, [(1, "etcd-c1"), (64, "etcd-c64")])
    figure, axes = plt.subplots(figsize=(8, 5))
    for label, points, color in [("gavel, 3 nodes", gavel, "tab:blue"), ("etcd, 3 members (tmpfs)", etcd, "tab:red")]:
        if not points:
            continue
        xs = [p[1] for p in points]
        axes.plot(xs, [p[2] for p in points], "o-", color=color, label=f"{label}: p50")
        axes.plot(xs, [p[3] for p in points], "s--", color=color, alpha=0.6, label=f"{label}: p99")
        for clients, x, p50, _ in points:
            axes.annotate(f"{clients}c", (x, p50), textcoords="offset points", xytext=(4, -12), fontsize=8)
    axes.set_xlabel("acknowledged bids per second (median of runs)")
    axes.set_ylabel("latency, ms (log)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.set_title("gavel bench on one 2-core host: latency against throughput\n(closed loop; labels: concurrent clients)")
    axes.legend(fontsize=8)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(output)


if __name__ == "__main__":
    main()
