#!/usr/bin/env bash
# Alert figures for docs/performance.md (issue 11), on a 3-node release dev
# cluster on 127.0.0.1, each node probing from its own 127.0.0.K:
#  1. down → alert latency: an HTTP target flipped down, interval 5 s,
#     confirmations 2, TRIALS trials at random phases; and the overhead from
#     the check that confirmed the verdict (the majority-th node's second
#     failing check, as the target saw it) to the sink;
#  2. failover → first dispatch: the leader is sending an open notification
#     (the sink holds it), kill -9 of the leader, until the new leader's send
#     arrives;
#  3. a storm: STORM monitors on one target that goes down: all delivered, none twice;
#  4. side by side: the same down → webhook path through the Prometheus
#     blackbox exporter + Prometheus + Alertmanager (Debian packages, default
#     group_wait/group_interval, the same scrape interval, `for:` one interval).
# Progress on stderr; the last line of stdout is one JSON object.
#
#   scripts/bench-alert.sh [--trials 20] [--failover-trials 10] [--storm 1000] [--am-trials 5] [--interval 5]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARGS=("$@")

need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench-alert: installing ${need[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  # The packages start their services; this run starts its own on free ports.
  for s in prometheus prometheus-alertmanager prometheus-blackbox-exporter prometheus-node-exporter; do
    systemctl stop "$s" 2>/dev/null || service "$s" stop 2>/dev/null || true
  done
fi

(cd "$ROOT" && cargo build --release -q -p uptime-node --bins)
work=$(mktemp -d /tmp/bench-alert.XXXXXX)
cleanup() { "$ROOT/scripts/dev-cluster.sh" down "$work/cluster" >/dev/null 2>&1 || true; }
trap cleanup EXIT
DEV_CLUSTER_EXTRA_TOML=$'[probe]\nsource_addrs = ["127.0.0.@K@"]\nmax_in_flight_per_endpoint = 1024' \
  "$ROOT/scripts/dev-cluster.sh" up 3 "$work/cluster" >&2
timeout 3600 python3 "$ROOT/scripts/bench_alert.py" --dev-dir "$work/cluster" \
  --script "$ROOT/scripts/dev-cluster.sh" --workdir "$work" "${ARGS[@]}"
