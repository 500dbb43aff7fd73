#!/usr/bin/env bash
# The "Durable" figures of BENCHMARKS.md, side by side in one run: bids/s and
# latency at 1 and 64 clients for gavel in memory, with --fsync never and
# --fsync always (data on the disk under $DISK, not tmpfs), the no-work
# server, and etcd with its data on tmpfs and on the same disk; then the
# recovery of a cluster SIGKILLed with a million entries in its log, with
# snapshots (the default) and without (the whole log replayed). Rounds
# alternate the systems, so a slow spell of the host touches all of them.
# Writes JSON lines under bench/results/durable/.
#
# Needs etcd and protoc for the etcd feature (`apt-get install -y
# etcd-server protobuf-compiler`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --features etcd
gavel=target/release/gavel
out=bench/results/durable
disk=${DISK:-/var/tmp/gavel-bench-disk}
rounds=${ROUNDS:-3}
mkdir -p "$out" "$disk"
common=(--base-port 7400 --client-port 7000 --json --quiet --duration 5s --warmup 1s)

for round in $(seq "$rounds"); do
    for clients in 1 64; do
        "$gavel" bench --system null --clients "$clients" "${common[@]}" >> "$out/null-c$clients.jsonl"
        "$gavel" bench --clients "$clients" "${common[@]}" >> "$out/memory-c$clients.jsonl"
        "$gavel" bench --clients "$clients" --data-dir "$disk" --fsync never "${common[@]}" >> "$out/fsync-never-c$clients.jsonl"
        "$gavel" bench --clients "$clients" --data-dir "$disk" --fsync always "${common[@]}" >> "$out/fsync-always-c$clients.jsonl"
        "$gavel" bench --system etcd --clients "$clients" "${common[@]}" >> "$out/etcd-tmpfs-c$clients.jsonl"
        "$gavel" bench --system etcd --clients "$clients" --etcd-data-root "$disk" "${common[@]}" >> "$out/etcd-disk-c$clients.jsonl"
    done
done
rm -rf "${disk:?}"/gavel-bench-*
recovery=(--base-port 7400 --client-port 7000 --json --quiet --clients 64 --sessions 100000 --data-dir "$disk")
"$gavel" bench "${recovery[@]}" --recovery-after 1000000 >> "$out/recovery-1m.jsonl"
rm -rf "${disk:?}"/gavel-bench-*
"$gavel" bench "${recovery[@]}" --recovery-after 1000000 --snapshot-every 0 >> "$out/recovery-1m-no-snapshot.jsonl"
rm -rf "${disk:?}"/gavel-bench-*
