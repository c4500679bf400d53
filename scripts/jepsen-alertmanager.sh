#!/usr/bin/env bash
# Alertmanager HA under network partitions: three instances of Debian's
# prometheus-alertmanager gossiping on loopback, a driver that plays
# Prometheus, a webhook sink with our fencing rule, and nftables cuts
# between the instances. It counts duplicate and missed notifications, to
# set beside the figures of our own harness (docs/reliability.md).
#
# Usage: scripts/jepsen-alertmanager.sh [--minutes N] [--seed S]
#            [--schedule FILE] [--ours RESULTS] [--out FILE] [--keep-dir]
#   --minutes N      run length, float (default 3); a 20 s grace follows
#   --seed S         draws the partition schedule (default 1); ignored
#                    with --schedule
#   --schedule FILE  the exact partitions to apply: a JSON list of
#                    {"start_s": float, "hold_s": float, "cuts": [[a, b], ...]}
#                    (seconds from the run start; [a, b] drops what instance a
#                    sends to instance b, a, b in 1..3; an optional "shape"
#                    string labels it). Faults must not overlap and must end
#                    inside the run.
#   --ours RESULTS   a jepsen-lite results JSON: its figures are printed
#                    beside Alertmanager's (use with --schedule
#                    RESULTS-stem.partitions.json, the same run's partitions)
#   --out FILE       results JSON (the summary goes to stdout either way)
#   --keep-dir       keep the work dir (instance logs, sink.jsonl)
# Knobs (environment), gossip timings of every instance:
#   AM_PEER_TIMEOUT=2s  AM_GOSSIP_INTERVAL=200ms  AM_PUSHPULL_INTERVAL=10s
#   AM_LOG_LEVEL=info   AM_API_PORT=29093 AM_CLUSTER_PORT=29094
#   AM_SINK_PORT=29095
#
# Addresses. Instance K binds its API and its gossip on 127.0.0.K; the sink
# is on 127.0.0.200 and the driver sends from 127.0.0.100, so no cut ever
# stands between them and any instance: both sides of a split reach
# Prometheus and the receiver, which is what makes it a split brain.
#
# Why SNAT. memberlist dials its TCP push-pull connections without binding a
# source address, so the kernel sends them all from 127.0.0.1 and a rule on
# `ip saddr` would cut the wrong instance. Each instance runs under its own
# uid (64101..64103; no account is created) and a postrouting rule rewrites
# the source of its dials to 127.0.0.K. A cut of A -> B then drops, in a
# prerouting chain (after conntrack, before NAT), what A sends to B's gossip
# port and A's replies from its gossip port on connections B opened; the
# replies are matched on their conntrack reply tuple, which still holds the
# wire addresses. Only the gossip port (tcp and udp) is matched, so nothing
# else on these addresses is touched. Packets are dropped on ingress, not
# rejected, and silently: the sender's send() succeeds as on a real network.
#
# Needs root (nft, setpriv). Installs prometheus-alertmanager and nftables
# from Debian if missing. Everything is bounded: instances and the helper
# run under `timeout`, and the exit trap stops them and deletes the table
# `inet jepsen_am`.

set -euo pipefail

minutes=3
seed=1
schedule=""
out=""
ours=""
keep_dir=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --minutes) minutes=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --schedule) schedule=$(realpath "$2"); shift 2 ;;
        --out) out=$(realpath -m "$2"); shift 2 ;;
        --ours) ours=$(realpath "$2"); shift 2 ;;
        --keep-dir) keep_dir=1; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 64 ;;
    esac
done

PEER_TIMEOUT=${AM_PEER_TIMEOUT:-2s}
GOSSIP_INTERVAL=${AM_GOSSIP_INTERVAL:-200ms}
PUSHPULL_INTERVAL=${AM_PUSHPULL_INTERVAL:-10s}
LOG_LEVEL=${AM_LOG_LEVEL:-info}
API_PORT=${AM_API_PORT:-29093}
CLUSTER_PORT=${AM_CLUSTER_PORT:-29094}
SINK_PORT=${AM_SINK_PORT:-29095}
GRACE_S=20
TABLE=jepsen_am
UID_BASE=64100
AM=/usr/bin/prometheus-alertmanager

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
helper="$here/jepsen_alertmanager.py"

if [[ $(id -u) -ne 0 ]]; then
    echo "needs root (nftables, setpriv)" >&2
    exit 1
fi
if [[ -n $schedule && ! -r $schedule ]]; then
    echo "cannot read schedule $schedule" >&2
    exit 64
fi

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    echo "installing $1 from Debian..." >&2
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq "$1" >/dev/null ||
        { apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null &&
          apt-get -o DPkg::Lock::Timeout=900 install -y -qq "$1" >/dev/null; }
}
# A bad schedule fails here, before anything is started.
if [[ -n $schedule ]]; then
    python3 "$helper" schedule --minutes "$minutes" --schedule "$schedule" >/dev/null
fi

[[ -x $AM ]] || apt_install prometheus-alertmanager
command -v nft >/dev/null || apt_install nftables
command -v setpriv >/dev/null || { echo "setpriv (util-linux) is missing" >&2; exit 1; }

if nft list table inet "$TABLE" >/dev/null 2>&1; then
    echo "table inet $TABLE exists: another run is going on, or a killed one left it" >&2
    echo "(remove it with: nft delete table inet $TABLE)" >&2
    exit 1
fi
# jepsen-lite's cuts match 127.0.0.A -> 127.0.0.B on every port, so a run of
# it at the same time would partition these instances as well. The helper
# records any foreign drop rule it sees during the run.
if nft list tables | grep -v " $TABLE\$" | grep -q .; then
    echo "note: other nftables tables exist ($(nft list tables | grep -v " $TABLE\$" | tr '\n' ' '));" \
         "drop rules in them during the run are reported" >&2
fi
for k in 1 2 3; do
    for port in "$API_PORT" "$CLUSTER_PORT"; do
        if ss -Hltun "src 127.0.0.$k:$port" | grep -q .; then
            echo "127.0.0.$k:$port is in use (set AM_API_PORT / AM_CLUSTER_PORT)" >&2
            exit 1
        fi
    done
done
if ss -Hltn "src 127.0.0.200:$SINK_PORT" | grep -q .; then
    echo "127.0.0.200:$SINK_PORT is in use (set AM_SINK_PORT)" >&2
    exit 1
fi

work=$(mktemp -d -t jepsen-am.XXXXXX)
chmod 755 "$work"   # the instances run under their own uids

pids=()
helper_pid=""
table_made=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $helper_pid ]] && kill "$helper_pid" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}" $helper_pid; do wait "$pid" 2>/dev/null || true; done
    if [[ $table_made -eq 1 ]]; then
        nft delete table inet "$TABLE" 2>/dev/null || true
    fi
    if nft list table inet "$TABLE" >/dev/null 2>&1; then
        echo "WARNING: could not delete nft table inet $TABLE" >&2
    fi
    if [[ $keep_dir -eq 1 || $rc -ne 0 ]]; then
        echo "work dir kept: $work (am1..3.log, sink.jsonl)" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the table: SNAT per instance, and the two (empty) cut chains ---------
{
    echo "table inet $TABLE {"
    echo "  chain source_nat {"
    echo "    type nat hook postrouting priority srcnat; policy accept;"
    for k in 1 2 3; do
        echo "    meta skuid $((UID_BASE + k)) ip daddr 127.0.0.0/8 tcp dport $CLUSTER_PORT snat ip to 127.0.0.$k"
    done
    echo "  }"
    echo "  chain cuts { type filter hook prerouting priority -150; policy accept; }"
    echo "}"
} > "$work/table.nft"
table_made=1
nft -f "$work/table.nft"

# --- Alertmanager config: one route, one webhook receiver ------------------
cat > "$work/alertmanager.yml" <<EOF
route:
  receiver: sink
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 5s
  # Long, so that a second delivery is never a re-send by design.
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.200:$SINK_PORT/alert
        send_resolved: true
EOF
chmod 644 "$work/alertmanager.yml"

am_version=$("$AM" --version 2>&1 | awk '/version/ {print $3; exit}')
run_s=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 0.999 }')
limit=$((run_s + GRACE_S + 180))   # hard cap on every child process

for k in 1 2 3; do
    uid=$((UID_BASE + k))
    mkdir -p "$work/data$k"
    chown "$uid:$uid" "$work/data$k"
    peers=()
    for j in 1 2 3; do
        [[ $j -ne $k ]] && peers+=("--cluster.peer=127.0.0.$j:$CLUSTER_PORT")
    done
    timeout -k 5 "$limit" setpriv --reuid="$uid" --regid="$uid" --clear-groups \
        "$AM" \
        --config.file="$work/alertmanager.yml" \
        --storage.path="$work/data$k" \
        --web.listen-address="127.0.0.$k:$API_PORT" \
        --web.external-url="http://127.0.0.$k:$API_PORT/" \
        --cluster.listen-address="127.0.0.$k:$CLUSTER_PORT" \
        --cluster.advertise-address="127.0.0.$k:$CLUSTER_PORT" \
        "${peers[@]}" \
        --cluster.peer-timeout="$PEER_TIMEOUT" \
        --cluster.gossip-interval="$GOSSIP_INTERVAL" \
        --cluster.pushpull-interval="$PUSHPULL_INTERVAL" \
        --cluster.settle-timeout=10s \
        --log.level="$LOG_LEVEL" \
        > "$work/am$k.log" 2>&1 &
    pids+=($!)
done

echo "alertmanager $am_version x3 on 127.0.0.{1,2,3}:$API_PORT (gossip :$CLUSTER_PORT);" \
     "peer-timeout $PEER_TIMEOUT, gossip $GOSSIP_INTERVAL, push-pull $PUSHPULL_INTERVAL"
timeout 120 python3 "$helper" ready --api-port "$API_PORT" --timeout 90 >/dev/null || {
    echo "the instances did not form a cluster; logs:" >&2
    tail -n 20 "$work"/am*.log >&2
    exit 1
}

run_args=(run --minutes "$minutes" --seed "$seed" --work "$work"
          --api-port "$API_PORT" --cluster-port "$CLUSTER_PORT" --sink-port "$SINK_PORT"
          --table "$TABLE" --am-version "$am_version" --grace "$GRACE_S"
          --peer-timeout "$PEER_TIMEOUT" --gossip-interval "$GOSSIP_INTERVAL"
          --pushpull-interval "$PUSHPULL_INTERVAL")
[[ -n $schedule ]] && run_args+=(--schedule "$schedule")
[[ -n $out ]] && run_args+=(--out "$out")
[[ -n $ours ]] && run_args+=(--ours "$ours")

timeout -k 10 "$((run_s + GRACE_S + 60))" python3 "$helper" "${run_args[@]}" &
helper_pid=$!
wait "$helper_pid"
helper_pid=""

for k in 1 2 3; do
    n=$(grep -c 'level=error' "$work/am$k.log" || true)
    echo "   am$k log: $n error lines"
done
if [[ -n $out ]]; then echo "results: $out"; fi
