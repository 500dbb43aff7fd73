#!/usr/bin/env bash
# Readers beside the bids, each scenario with and without its readers, one
# after the other in one session, 3 nodes; JSON lines go to OUT_DIR and a
# summary with the ratios is printed at the end.
#   scripts/bench-readers.sh BINARY OUT_DIR [DURATION]
# 1. never-reading watch streams after revision 1 on the leader, over
#    20,000 auctions with 2 KiB descriptions;
# 2. 100 watchers of every auction, spread over the nodes, bids at full rate;
# 3. 10,000 watchers (100 auctions x 100), spread over the nodes, 1,000 bids/s.
set -euo pipefail
binary=$1 out=$2 duration=${3:-10s}
mkdir -p "$out"
common=(--nodes 3 --base-port 7400 --client-port 7000 --json --quiet --duration "$duration" --warmup 2s)
house=(--auctions 20000 --sessions 20000 --description-bytes 2048)
"$binary" bench "${common[@]}" "${house[@]}" >> "$out/silent-without.jsonl"
"$binary" bench "${common[@]}" "${house[@]}" --silent-watchers 1000 >> "$out/silent-with.jsonl"
"$binary" bench "${common[@]}" --auctions 100 --sessions 100 >> "$out/all-without.jsonl"
"$binary" bench "${common[@]}" --auctions 100 --sessions 100 --watchers 100 --watch-scope all --watch-every-node \
    >> "$out/all-with.jsonl"
"$binary" bench "${common[@]}" --auctions 100 --sessions 100 --rate 1000 >> "$out/spread-without.jsonl"
"$binary" bench "${common[@]}" --auctions 100 --sessions 100 --rate 1000 --watchers 10000 --watch-scope spread \
    --watch-every-node >> "$out/spread-with.jsonl"
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def last(name):
    return json.loads((out / f"{name}.jsonl").read_text().splitlines()[-1])
for scenario in ("silent", "all", "spread"):
    without, with_ = last(f"{scenario}-without"), last(f"{scenario}-with")
    def line(run):
        peaks = ", ".join(f"{node['role']} {(node['vm_hwm_kib'] or 0) / 1024:.0f} MiB" for node in run["node_memory"])
        return (f"{run['bids_per_second']:,.0f} bids/s, p50 {run['latency_us']['p50'] / 1000:.2f} ms, "
                f"p99 {run['latency_us']['p99'] / 1000:.2f} ms; peak RSS {peaks}")
    print(f"{scenario}: without readers {line(without)}")
    print(f"{scenario}: with readers    {line(with_)}")
    print(f"{scenario}: bids/s ratio {with_['bids_per_second'] / without['bids_per_second']:.2f}, "
          f"p99 ratio {with_['latency_us']['p99'] / without['latency_us']['p99']:.2f}; "
          f"host CPU outside the nodes (the bench's bidders and readers) {with_.get('host_cpu_foreign_share')}")
    for note in with_.get("notes", []):
        if "watch" in note or "events lost" in note or "cores" in note:
            print(f"  {note}")
PY
