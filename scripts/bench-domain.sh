#!/usr/bin/env bash
# The monitoring domain benchmark (issue 4):
#   - apply throughput of digest entries through the real state machine on
#     redb (results/s folded into state), batched as the real path batches them;
#   - the leader's tick over all monitors; history bytes per monitor at default
#     retention (and the size of a snapshot of the short state that run built);
#   - live (scripts/bench_domain_live.py): a 3-node dev cluster probing MONITORS
#     TCP monitors every 10 s against a local nginx: CPU per node (% of one
#     core), RSS, Raft log file growth, after a warm-up;
#   - snapshot (scripts/bench_snapshot_catchup.py): MONITORS monitors with
#     SNAPSHOT_DAYS (30) days of history seeded through Raft: snapshot size and
#     build time, and a new node's catch-up by snapshot (real processes, mutual
#     TLS). About 12 minutes at 10k monitors, most of it seeding.
#
# Usage: scripts/bench-domain.sh [MONITORS] [SECONDS]   (defaults 10000 10)
# SKIP_LIVE=1 skips the live cluster part, SKIP_SNAPSHOT=1 the snapshot part.
# The last line printed is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
monitors=${1:-10000}
seconds=${2:-10}
cargo build --release -q -p uptime-benches --bin domain-bench --bin seed-history
cargo build --release -q -p uptime-node --bins
out=$(target/release/domain-bench "$monitors" "$seconds")
printf '%s\n' "$out" | sed '$d'
live='{}'
if [ "${SKIP_LIVE:-0}" != 1 ]; then
  command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx; }
  live=$(timeout 900 python3 scripts/bench_domain_live.py "$monitors" 10 30 30 | tail -n 1)
fi
snap='{}'
if [ "${SKIP_SNAPSHOT:-0}" != 1 ]; then
  snap_out=$(timeout 3000 python3 scripts/bench_snapshot_catchup.py "$monitors" "${SNAPSHOT_DAYS:-30}")
  printf '%s\n' "$snap_out" | sed '$d'
  snap=$(printf '%s\n' "$snap_out" | tail -n 1)
fi
python3 - "$(printf '%s\n' "$out" | tail -n 1)" "$live" "$snap" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
live = json.loads(sys.argv[2])
snap = json.loads(sys.argv[3])
ten_k = d["monitors"] == 10000
row = {
    "apply_results_per_s": d["apply_results_per_s"],
    "history_bytes_per_monitor": d["history_bytes_per_monitor"],
    "snapshot_mb_10k": snap.get("snapshot_mb") if ten_k else None,
    "snapshot_build_s": snap.get("snapshot_build_s"),
    "snapshot_days": snap.get("days"),
    "snapshot_state_file_mb": snap.get("state_file_mb"),
    "catch_up_s": snap.get("catch_up_s"),
    "promoted_s": snap.get("promoted_s"),
    "catch_up_hashes_equal": snap.get("hashes_equal"),
    "peak_rss_mb_leader_snapshot": snap.get("peak_rss_mb_leader"),
    "peak_rss_mb_new_node_snapshot": snap.get("peak_rss_mb_new_node"),
    "tick_ms_10k": d["tick_ms"] if ten_k else None,
    "cpu_pct_leader_10k": live.get("cpu_pct_leader_10k"),
    "cpu_pct_follower_10k": live.get("cpu_pct_follower_10k"),
    "log_bytes_per_s_10k": live.get("log_bytes_per_s_10k"),
    "rss_mb_10k": live.get("rss_mb_10k"),
    "monitors_up_live": live.get("monitors_up"),
}
if live:
    print(f"live: leader {live['cpu_pct_leader_10k']}% and followers up to {live['cpu_pct_follower_10k']}% of one core "
          f"(target < 20%), RSS up to {live['rss_mb_10k']} MB, log file growth {live['log_bytes_per_s_10k']} B/s")
print("targets: apply >= 200000 results/s:", "met" if row["apply_results_per_s"] >= 200000 else "NOT met",
      "| history <= 100 KB per monitor:", "met" if row["history_bytes_per_monitor"] <= 100_000 else "NOT met")
print(json.dumps(row))
PY
