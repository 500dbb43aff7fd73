#!/usr/bin/env bash
# Reproduces every table of BENCHMARKS.md: builds gavel with the `etcd`
# feature, runs each configuration REPS times, interleaved (one repetition of
# every configuration, then the next), so slow drift of the machine touches
# them all alike, and prints the tables (medians) with scripts/bench-summary.py.
#
# Needs Debian's etcd-server (for `etcd`) and protobuf-compiler (for the
# etcd-client crate's build):
#   apt-get install -y etcd-server etcd-client protobuf-compiler
# Takes about 25 minutes with the defaults. Every process it starts is killed
# by the bench itself when each run ends.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
FAILOVER_TRIALS=${FAILOVER_TRIALS:-20}
MEMORY_BIDS=${MEMORY_BIDS:-1000000}
MEMORY_SESSIONS=${MEMORY_SESSIONS:-10000}
OUT=${OUT:-target/bench-results/$(date +%Y%m%d-%H%M%S)}

cargo build --release --features etcd
BIN=target/release/gavel
mkdir -p "$OUT"
echo "results in $OUT" >&2

# The share of CPU time busy over one second, in percent.
busy_percent() {
    local a b
    read -r -a a < <(head -1 /proc/stat)
    sleep 1
    read -r -a b < <(head -1 /proc/stat)
    local total=0 idle=$(( b[4] + b[5] - a[4] - a[5] ))
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# Other work on this host skews every figure: wait (up to QUIET_WAIT seconds)
# for a quiet second before each run. Each report records how busy it was.
QUIET_WAIT=${QUIET_WAIT:-120}
wait_for_quiet_host() {
    local waited=0 busy
    while busy=$(busy_percent) && [ "$busy" -gt 25 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
        waited=$(( waited + 1 ))
    done
    [ "$busy" -gt 25 ] && echo "   host still ${busy}% busy after ${QUIET_WAIT}s; running anyway" >&2
    return 0
}

# A run during which other processes took more than MAX_FOREIGN of the
# host's CPU (the report's host_cpu_foreign_share) is set aside in
# NAME.rejected.jsonl and run again, up to ATTEMPTS times; the last is kept.
MAX_FOREIGN=${MAX_FOREIGN:-0.05}
ATTEMPTS=${ATTEMPTS:-3}

# ONLY, a regular expression, runs only the configurations whose name matches
# (for example ONLY='gavel-n[13]-c64$|etcd-c64').
ONLY=${ONLY:-.}

# run NAME ARGS...: one bench run, its JSON appended to $OUT/NAME.jsonl.
run() {
    local name=$1 attempt line foreign
    shift
    [[ $name =~ $ONLY ]] || return 0
    for attempt in $(seq 1 "$ATTEMPTS"); do
        wait_for_quiet_host
        echo "== $name: gavel bench $* (rep $rep, attempt $attempt)" >&2
        line=$("$BIN" bench --json --quiet "$@")
        foreign=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("host_cpu_foreign_share") or 0)' "$line")
        if [ "$attempt" -lt "$ATTEMPTS" ] && python3 -c 'import sys; sys.exit(float(sys.argv[1]) <= float(sys.argv[2]))' "$foreign" "$MAX_FOREIGN"; then
            echo "   other processes took $foreign of the CPU: running it again" >&2
            echo "$line" >>"$OUT/$name.rejected.jsonl"
            continue
        fi
        echo "$line" >>"$OUT/$name.jsonl"
        return 0
    done
}

common=(--duration "$DURATION" --warmup "$WARMUP")
for rep in $(seq 1 "$REPS"); do
    # Clients sweep, three nodes.
    for clients in 1 8 64 256; do
        run "gavel-n3-c$clients" --nodes 3 --clients "$clients" "${common[@]}"
    done
    # Backups sweep at 64 clients, and the unreplicated baseline.
    for nodes in 1 2 5; do
        run "gavel-n$nodes-c64" --nodes "$nodes" --clients 64 "${common[@]}"
    done
    run "gavel-n1-c1" --nodes 1 --clients 1 "${common[@]}"
    # The client library instead of the bare connection.
    run "gavel-n3-c64-client" --nodes 3 --clients 64 --driver client "${common[@]}"
    # Multi-thread runtimes (one worker per core) in the servers and the
    # load generator, against the single-threaded default.
    run "gavel-n3-c64-mt" --nodes 3 --clients 64 --worker-threads 0 --server-threads 0 "${common[@]}"
    run "gavel-n3-c1-mt" --nodes 3 --clients 1 --worker-threads 0 --server-threads 0 "${common[@]}"
    # etcd beside gavel, same harness.
    run "etcd-c64" --system etcd --clients 64 "${common[@]}"
    run "etcd-c1" --system etcd --clients 1 "${common[@]}"
done

for rep in $(seq 1 "$REPS"); do
    run "failover-n3-c64" --nodes 3 --clients 64 --warmup "$WARMUP" --failover "$FAILOVER_TRIALS"
done

for rep in $(seq 1 "$REPS"); do
    run "memory-n3" --nodes 3 --clients 64 --sessions "$MEMORY_SESSIONS" --bids "$MEMORY_BIDS"
done

python3 scripts/bench-summary.py "$OUT"
if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 scripts/plot-latency-throughput.py "$OUT" "$OUT/latency-throughput.png" >&2
fi
