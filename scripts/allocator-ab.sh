#!/usr/bin/env bash
# Side by side: gavel with mimalloc (the default build) against the system's
# malloc (`--no-default-features`), alternating runs, same harness and ports.
# Each line: allocator, clients, bids/s, p50 and p99 in µs.
# Usage: scripts/allocator-ab.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release --no-default-features
cp target/release/gavel target/release/gavel-system-malloc
cargo build --release
for round in $(seq "$rounds"); do
    for clients in 1 64; do
        for variant in mimalloc system-malloc; do
            binary=target/release/gavel
            [ "$variant" = system-malloc ] && binary=target/release/gavel-system-malloc
            "$binary" bench --json --quiet --clients "$clients" --duration "${DURATION:-5s}" --warmup 1s \
                --base-port 8400 --client-port 8000 |
                python3 -c "import json,sys; r=json.load(sys.stdin); l=r['latency_us']; print('$variant', $clients, round(r['bids_per_second']), round(l['p50']), round(l['p99']), 'foreign', round(r.get('host_cpu_foreign_share') or 0, 3), 'leader HWM MiB', next((round(n['vm_hwm_kib']/1024, 1) for n in r['node_memory'] if n['role'] == 'leader'), '-'))"
        done
    done
done
