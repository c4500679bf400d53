#!/usr/bin/env bash
# The monitoring domain benchmark (issue 4), as far as it is built:
#   - apply throughput of digest entries through the real state machine on
#     redb (results/s folded into state), batched as the real path batches them;
#   - history bytes per monitor at default retention;
#   - snapshot size and build time of the state that run built.
# Not yet measured (printed as null): CPU per node and log bytes/s of a live
# 3-node cluster with 10k monitors, RSS, and a new node's catch-up time at
# 10k monitors with 30 days of history.
#
# Usage: scripts/bench-domain.sh [MONITORS] [SECONDS]   (defaults 10000 10)
# The last line printed is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
monitors=${1:-10000}
seconds=${2:-10}
cargo build --release -q -p uptime-benches --bin domain-bench
out=$(target/release/domain-bench "$monitors" "$seconds")
printf '%s\n' "$out" | sed '$d'
python3 - "$(printf '%s\n' "$out" | tail -n 1)" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
row = {
    "apply_results_per_s": d["apply_results_per_s"],
    "history_bytes_per_monitor": d["history_bytes_per_monitor"],
    "snapshot_mb_10k": d["snapshot_mb"] if d["monitors"] == 10000 else None,
    "snapshot_build_s": d["snapshot_build_s"],
    "tick_ms_10k": d["tick_ms"] if d["monitors"] == 10000 else None,
    "cpu_pct_leader_10k": None,
    "cpu_pct_follower_10k": None,
    "log_bytes_per_s_10k": None,
    "rss_mb_10k": None,
    "catch_up_s": None,
}
print("targets: apply >= 200000 results/s:", "met" if row["apply_results_per_s"] >= 200000 else "NOT met",
      "| history <= 100 KB per monitor:", "met" if row["history_bytes_per_monitor"] <= 100_000 else "NOT met")
print(json.dumps(row))
PY
