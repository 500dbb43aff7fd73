#!/usr/bin/env bash
# Side by side: the runtimes of the servers and of the load generator,
# alternating runs of one binary, same harness and ports. Each line: the
# configuration (load generator threads:server threads; 1 is a
# single-threaded event loop, 0 one worker per core), clients, bids/s, p50
# and p99 in µs.
# Usage: scripts/runtime-ab.sh [ROUNDS] [CONFIGS...]   (default: 3 rounds, 1:1 0:0)
set -euo pipefail
binary=${BINARY:-target/release/gavel}
rounds=${1:-3}
shift || true
configs=("${@:-1:1}")
[ $# -eq 0 ] && configs=(1:1 0:0)
for round in $(seq "$rounds"); do
    for clients in 1 64; do
        for config in "${configs[@]}"; do
            "$binary" bench --json --quiet --clients "$clients" --duration "${DURATION:-5s}" --warmup 1s \
                --worker-threads "${config%%:*}" --server-threads "${config##*:}" \
                --base-port 8400 --client-port 8000 |
                python3 -c "import json,sys; r=json.load(sys.stdin); l=r['latency_us']; print('$config', $clients, round(r['bids_per_second']), round(l['p50']), round(l['p99']))"
        done
    done
done
