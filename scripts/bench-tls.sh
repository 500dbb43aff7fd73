#!/usr/bin/env bash
# TLS and authentication on against off, with one gavel binary, in one
# session: each round runs a plain and a secure (--secure) cluster, 64
# clients then 1 client, for 5 s each; JSON lines go to OUT_DIR, and the
# medians and per-round ratios are printed at the end.
#   scripts/bench-tls.sh BINARY OUT_DIR [ROUNDS]
set -euo pipefail
binary=$1 out=$2 rounds=${3:-5}
mkdir -p "$out"
common=(--base-port 7400 --client-port 7000 --json --quiet --duration 5s --warmup 1s)
for round in $(seq "$rounds"); do
    for clients in 64 1; do
        "$binary" bench --clients "$clients" "${common[@]}" >> "$out/plain-c$clients.jsonl"
        "$binary" bench --clients "$clients" --secure "${common[@]}" >> "$out/tls-c$clients.jsonl"
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
def runs(name):
    return [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines() if line.strip()]
for clients in (64, 1):
    plain, tls = runs(f"plain-c{clients}"), runs(f"tls-c{clients}")
    def rate(rs):
        return statistics.median(r["bids_per_second"] for r in rs)
    def latency(rs, quantile):
        return statistics.median(r["latency_us"][quantile] for r in rs) / 1000
    ratios = [t["bids_per_second"] / p["bids_per_second"] for p, t in zip(plain, tls)]
    print(f"{clients} clients: plain {rate(plain):,.0f} bids/s p50 {latency(plain, 'p50'):.3f} ms "
          f"p99 {latency(plain, 'p99'):.3f} ms | TLS {rate(tls):,.0f} bids/s p50 {latency(tls, 'p50'):.3f} ms "
          f"p99 {latency(tls, 'p99'):.3f} ms | TLS/plain median {statistics.median(ratios):.2f} "
          f"(each: {', '.join(f'{r:.2f}' for r in ratios)})")
PY
