#!/usr/bin/env bash
# Alternating runs of two gavel binaries and the null server, so that a change
# on the hot path is measured against the build before it in one session:
#   scripts/bench-ab.sh BEFORE_BINARY AFTER_BINARY OUT_DIR [ROUNDS]
# Each round runs 64 clients for 5 s and 1 client for 5 s with each binary,
# then the null server (of AFTER) with 64 clients; JSON lines go to OUT_DIR.
# With FAILOVER_TRIALS=N, each round also runs N failover trials with each
# binary; with RECOVERY_AFTER=N, a durable run of N bids with each binary,
# then the SIGKILL of every node and the time to recover (data directories
# under a fresh temporary directory each time).
set -euo pipefail
before=$1 after=$2 out=$3 rounds=${4:-5}
failover_trials=${FAILOVER_TRIALS:-0}
recovery_after=${RECOVERY_AFTER:-0}
mkdir -p "$out"
common=(--base-port 7400 --client-port 7000 --json --quiet)
throughput=(--duration 5s --warmup 1s)
for round in $(seq "$rounds"); do
    for side in before after; do
        binary=$before; [ "$side" = after ] && binary=$after
        "$binary" bench --clients 64 "${common[@]}" "${throughput[@]}" >> "$out/ab-$side-c64.jsonl"
        "$binary" bench --clients 1 "${common[@]}" "${throughput[@]}" >> "$out/ab-$side-c1.jsonl"
        if [ "$failover_trials" -gt 0 ]; then
            "$binary" bench --failover "$failover_trials" "${common[@]}" --warmup 1s >> "$out/ab-$side-failover.jsonl"
        fi
        if [ "$recovery_after" -gt 0 ]; then
            data=$(mktemp -d)
            # The figures are in the report's notes; a recovery run answers
            # no measured bids, which the bench's exit status counts a failure.
            "$binary" bench --data-dir "$data" --recovery-after "$recovery_after" "${common[@]}" \
                >> "$out/ab-$side-recovery.jsonl" || true
            rm -rf "$data"
        fi
    done
    "$after" bench --system null --clients 64 "${common[@]}" "${throughput[@]}" >> "$out/ab-null-c64.jsonl"
done
