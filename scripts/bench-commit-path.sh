#!/usr/bin/env bash
# Where a commit's time goes, at 1 proposer writing to the leader of a 3-node
# loopback cluster (the p99_ms_1 case of scripts/bench-raft.sh):
#
#  1. log-append-probe (benches/src/bin/log-append-probe.rs) on an idle disk:
#     the log store's own append (redb commit + fsync) against a raw 1 KiB
#     append + fdatasync in the same directory, interleaved.
#  2. scripts/dev-cluster.sh up 3 with the commit_path tracing target on
#     (UPTIME_LOG=info,openraft=warn,commit_path=trace), one proposer writing
#     1 KiB settings to the leader for BENCH_SECONDS, then
#     scripts/commit_path.py: per-stage p50/p90/p99 from the node logs.
#
# Tracing every stage costs a little itself (each event is a formatted log
# line), so the totals here run slightly above bench-raft.sh's; the point is
# the split between stages.
#
# Usage: scripts/bench-commit-path.sh
# Knobs: BENCH_SECONDS=10, PROBE_COUNT=1000, TMPDIR (where the work dir goes),
#        DEV_CLUSTER_BIN_DIR (prebuilt uptime-node/uptimectl), KEEP_BENCH_DIR=1.
# Bounded in time, loopback only; everything started here stops on exit.
# The last line of stdout is one JSON object with every figure.

set -euo pipefail

BENCH_SECONDS=${BENCH_SECONDS:-10}
PROBE_COUNT=${PROBE_COUNT:-1000}
KEEP_BENCH_DIR=${KEEP_BENCH_DIR:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
devc=$root/scripts/dev-cluster.sh
helper=$root/scripts/bench_raft_load.py
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-commit-path.XXXXXX")
cluster=$work/cluster

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -d $cluster ]]; then DEV_CLUSTER_GRACE=5 "$devc" down "$cluster" >/dev/null 2>&1 || true; fi
    if [[ $KEEP_BENCH_DIR == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# dev-cluster.sh builds uptime-node/uptimectl unless DEV_CLUSTER_BIN_DIR is set;
# the probe always comes from this checkout.
echo "building log-append-probe (release) if needed..." >&2
(cd "$root" && cargo build --quiet --release -p uptime-benches --bin log-append-probe >&2)
probe=$root/target/release/log-append-probe

echo "1. log store append vs raw fsync, idle disk ($(df -P "$work" | awk 'NR==2 {print $1}')):"
timeout 300 "$probe" "$work" "$PROBE_COUNT" 1024 | tee "$work/probe.out" | sed '$d'
probe_json=$(tail -n 1 "$work/probe.out")

echo "2. 3-node cluster with commit-path tracing, 1 proposer on the leader, ${BENCH_SECONDS}s:"
UPTIME_LOG=info,openraft=warn,commit_path=trace timeout 300 "$devc" up 3 "$cluster" >"$work/up.out" 2>&1 \
    || { cat "$work/up.out" >&2; exit 1; }
UPTIMECTL_TOKEN=$(sed -n 's/^UPTIMECTL_TOKEN=//p' "$cluster/env")
export UPTIMECTL_TOKEN
endpoints=$(for k in 1 2 3; do cat "$cluster/node$k/api_url"; echo; done | grep . | paste -sd,)
timeout 120 python3 "$helper" wait-healthy --api uptime --endpoints "$endpoints" --timeout 60 >/dev/null
timeout 60 python3 "$helper" put --api uptime --endpoints "$endpoints" --value-size 1024 >/dev/null
timeout $((BENCH_SECONDS + 60)) python3 "$helper" load --api uptime --endpoints "$endpoints" --clients 1 \
    --seconds "$BENCH_SECONDS" --max-ops 2000000 --value-size 1024 --via leader >"$work/load.json"
load_json=$(tail -n 1 "$work/load.json")
DEV_CLUSTER_GRACE=5 "$devc" down "$cluster" >/dev/null 2>&1 || true
python3 "$root/scripts/commit_path.py" "$cluster"/node*/log | tee "$work/path.out" | sed '$d'
path_json=$(tail -n 1 "$work/path.out")

python3 - "$probe_json" "$load_json" "$path_json" <<'PY'
import json, sys
probe, load, path = (json.loads(a) for a in sys.argv[1:])
out = {
    "raw_fsync_p50_ms": round(probe["raw_p50_ms"], 3), "raw_fsync_p99_ms": round(probe["raw_p99_ms"], 3),
    "log_append_p50_ms": round(probe["log_append_p50_ms"], 3), "log_append_p99_ms": round(probe["log_append_p99_ms"], 3),
    "traced_client_p50_ms": load["p50_ms"], "traced_client_p99_ms": load["p99_ms"],
    "server_p50_ms": path["total_p50_us"] / 1000, "server_p99_ms": path["total_p99_us"] / 1000,
    "log_commit_share_of_p50": path["log_commit_share_of_p50"],
    "stages_p50_us": path["stages_p50_us"], "stages_p99_us": path["stages_p99_us"],
}
print(json.dumps(out))
PY
