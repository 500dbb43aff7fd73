#!/usr/bin/env bash
# The "Hold the line" figures of BENCHMARKS.md: throughput beside hostile
# peers (alternating with runs without them), the leader's RSS beside a peer
# that never reads, a backup's rejoin into a million bidders under load, and
# the pause of a graceful (SIGTERM) handover. Writes JSON lines under
# bench/results/hold-the-line/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
gavel=target/release/gavel
out=bench/results/hold-the-line
mkdir -p "$out"
common=(--base-port 7400 --client-port 7000 --json --quiet)

for round in 1 2 3; do
    "$gavel" bench --clients 64 --duration 5s --warmup 1s "${common[@]}" >> "$out/plain-c64.jsonl"
    "$gavel" bench --clients 64 --duration 5s --warmup 1s --hostile 5 "${common[@]}" >> "$out/hostile5-c64.jsonl"
done
"$gavel" bench --clients 64 --duration 60s --warmup 1s --greedy-peers 1 "${common[@]}" >> "$out/greedy-60s-c64.jsonl"
"$gavel" bench --clients 64 --failover 20 --graceful "${common[@]}" >> "$out/graceful-failover-c64.jsonl"
"$gavel" bench --clients 64 --sessions 1000000 --rejoin-after 1000000 "${common[@]}" >> "$out/rejoin-1m.jsonl"
