#!/usr/bin/env bash
# Alternating runs of two gavel binaries and the null server, so that a change
# on the hot path is measured against the build before it in one session:
#   scripts/bench-ab.sh BEFORE_BINARY AFTER_BINARY OUT_DIR [ROUNDS]
# Each round runs 64 clients for 5 s and 1 client for 5 s with each binary,
# then the null server (of AFTER) with 64 clients; JSON lines go to OUT_DIR.
set -euo pipefail
before=$1 after=$2 out=$3 rounds=${4:-5}
mkdir -p "$out"
common=(--base-port 7400 --client-port 7000 --json --quiet --duration 5s --warmup 1s)
for round in $(seq "$rounds"); do
    for side in before after; do
        binary=$before; [ "$side" = after ] && binary=$after
        "$binary" bench --clients 64 "${common[@]}" >> "$out/ab-$side-c64.jsonl"
        "$binary" bench --clients 1 "${common[@]}" >> "$out/ab-$side-c1.jsonl"
    done
    "$after" bench --system null --clients 64 "${common[@]}" >> "$out/ab-null-c64.jsonl"
done
