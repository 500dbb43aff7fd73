#!/usr/bin/env bash
# Side by side: the server on a multi-thread runtime (A) against a
# current-thread one (B), alternating runs, same harness and ports.
# Usage: scripts/runtime-ab.sh A_BINARY B_BINARY [ROUNDS]
set -euo pipefail
a=$1 b=$2 rounds=${3:-3}
for round in $(seq "$rounds"); do
    for variant in A B; do
        binary=$a; [ "$variant" = B ] && binary=$b
        for clients in 1 64; do
            "$binary" bench --json --quiet --clients "$clients" --duration 5s --warmup 1s \
                --base-port 8400 --client-port 8000 |
                python3 -c "import json,sys; r=json.load(sys.stdin); l=r['latency_us']; print('$variant', $clients, round(r['bids_per_second']), round(l['p50']), round(l['p99']))"
        done
    done
done
