#!/usr/bin/env bash
# jepsen-lite: a fault-injection run against real uptime-node processes.
#
#   scripts/jepsen.sh --minutes N --nodes 3|5 [--nemesis kill,pause,partition,clock,disk] [--seed S] [--out FILE] [--net nft|proxy]
#
# Builds the node and the harness (release; JEPSEN_PROFILE=debug for the
# debug-only failpoints, e.g. UPTIMETEST_DISPATCH_SEND_BEFORE_CLAIM=1, the
# planted bug the checkers must catch), starts the cluster with node K on
# 127.0.0.K, and runs the workload, target flips and nemeses for N minutes,
# then heals and checks. Prints a summary and the seed; writes FILE (default
# jepsen-results.json) and FILE's plot (.svg). Exit 0: every checker holds;
# 1: a checker failed; 2: the run could not be carried out.
# As root, partitions are nftables rules on loopback (Debian's nftables);
# without root, or with --net proxy, a TCP proxy in front of every node's
# peer listener holds the bytes of a cut instead. `disk` needs root (a tmpfs
# data directory per node); `clock` needs Debian's libfaketime.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${JEPSEN_PROFILE:-release}
if [ "$(id -u)" = 0 ]; then
  command -v nft >/dev/null || { echo "jepsen.sh: needs nft (apt-get install nftables), or --net proxy" >&2; exit 2; }
fi
flag=(); [ "$PROFILE" = release ] && flag=(--release)
(cd "$ROOT" && cargo build "${flag[@]}" -q -p uptime-node --bins && cargo build "${flag[@]}" -q -p uptime-jepsen-lite --bin jepsen-lite)
export DEV_CLUSTER_BIN_DIR="$ROOT/target/$PROFILE"
# The run stops by itself; the timeout only guards against a hang.
minutes=3
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = --minutes ] && minutes=${args[$((i + 1))]:-3}; done
limit=$(python3 -c "print(int(float('$minutes') * 60 + 600))")
exec timeout --kill-after=30 "$limit" "$ROOT/target/$PROFILE/jepsen-lite" --root "$ROOT" "$@"
