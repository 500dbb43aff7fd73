#!/usr/bin/env bash
# The auction house's figures of BENCHMARKS.md: bids spread over 10,000 open
# auctions against the same load on one auction (alternating), and the
# leader's memory with 100,000 auctions. JSON lines under
# bench/results/auction-house/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
gavel=target/release/gavel
out=bench/results/auction-house
mkdir -p "$out"
common=(--base-port 7400 --client-port 7000 --json --quiet --clients 64 --sessions 10000 --duration 5s --warmup 1s)
for round in 1 2 3; do
    "$gavel" bench --auctions 1 "${common[@]}" >> "$out/one-auction.jsonl"
    "$gavel" bench --auctions 10000 "${common[@]}" >> "$out/10000-auctions.jsonl"
done
"$gavel" bench --base-port 7400 --client-port 7000 --json --quiet --clients 64 --sessions 100000 \
    --auctions 100000 --duration 5s --warmup 1s >> "$out/100000-auctions.jsonl"
