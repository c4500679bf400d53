#!/usr/bin/env bash
# etcd half of the Raft benchmark: a 3-member etcd cluster on 127.0.0.1,
# measured for put throughput/latency, leader failover time, and the disk's
# own fsync latency, so uptime-cluster's Raft numbers have a reference.
#
# Usage: scripts/bench-etcd.sh   (scripts/bench-raft.sh runs it as its etcd
# half, next to uptime-cluster, with the same load generator)
# Knobs (environment):
#   BENCH_SECONDS=10     seconds per concurrency level (1, 16, 256 clients)
#   BENCH_MAX_OPS=2000000  cap on puts per level (each level is bounded in
#                        both time and count)
#   FAILOVER_TRIALS=20   leader kill -9 trials
#   SKIP_FAILOVER=1      skip the failover trials (failover keys are null)
#   FSYNC_SAMPLES=1000   write+fsync samples for the disk probe
#   KEEP_BENCH_DIR=1     keep the temp dir (etcd logs, raw results) on exit
#   TMPDIR               where the data dirs go (mktemp honours it); the
#                        fsync probe runs in the same place
#
# Output: human-readable figures, then as the LAST line one JSON object.
# Needs root only to apt-get install etcd-server/etcd-client if missing.

set -euo pipefail

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_MAX_OPS=${BENCH_MAX_OPS:-2000000}
FAILOVER_TRIALS=${FAILOVER_TRIALS:-20}
SKIP_FAILOVER=${SKIP_FAILOVER:-0}
FSYNC_SAMPLES=${FSYNC_SAMPLES:-1000}
KEEP_BENCH_DIR=${KEEP_BENCH_DIR:-0}
LEVELS=(1 16 256)
MEMBERS=3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
helper="$here/bench_raft_load.py"

# etcd and etcdctl read ETCD_*/ETCDCTL_* from the environment; drop them so a
# stray setting (e.g. ETCD_UNSAFE_NO_FSYNC) cannot change what is measured.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^ETCD(CTL)?_' || true)

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    echo "installing etcd-server and etcd-client from Debian..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
etcd_version=$(etcd --version | awk '/^etcd Version:/ {print $3}')

work=$(mktemp -d -t bench-etcd.XXXXXX)
results="$work/results"
mkdir -p "$results"

pids=()         # etcd pid per member index; replaced when a member restarts
helper_pid=""   # the helper currently running, so a signal can stop it too

cleanup() {
    local rc=$? pid alive
    trap - EXIT INT TERM
    local procs=("${pids[@]}")
    [[ -n $helper_pid ]] && procs+=("$helper_pid")
    for pid in "${procs[@]}"; do kill "$pid" 2>/dev/null || true; done
    # Let etcd and the helper exit cleanly for up to 5 s, then force them.
    for _ in $(seq 50); do
        alive=0
        for pid in "${procs[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${procs[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    if [[ $KEEP_BENCH_DIR == 1 ]]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs the helper in the background and waits, so a trapped signal
# interrupts the wait at once and cleanup can stop the helper.
# Usage: py OUTFILE SUBCOMMAND ARGS...   (stdout -> OUTFILE)
py() {
    local out=$1 rc=0
    shift
    python3 "$helper" "$@" >"$out" &
    helper_pid=$!
    wait "$helper_pid" || rc=$?
    helper_pid=""
    return "$rc"
}

read -r -a ports <<<"$(python3 "$helper" free-ports $((2 * MEMBERS)))"
client_urls=() peer_urls=() cluster=""
for ((i = 0; i < MEMBERS; i++)); do
    client_urls[i]="http://127.0.0.1:${ports[2 * i]}"
    peer_urls[i]="http://127.0.0.1:${ports[2 * i + 1]}"
    cluster+="${cluster:+,}m$i=${peer_urls[i]}"
done
all_endpoints=$(IFS=,; echo "${client_urls[*]}")
token="bench-$(basename "$work")"

# Default fsync, election and heartbeat settings on purpose: the point is
# etcd as deployed.  With an existing data dir, etcd ignores the
# --initial-cluster* flags, so the same command line serves for a restart.
start_member() {
    local i=$1
    etcd --name "m$i" --data-dir "$work/m$i" \
        --listen-client-urls "${client_urls[i]}" \
        --advertise-client-urls "${client_urls[i]}" \
        --listen-peer-urls "${peer_urls[i]}" \
        --initial-advertise-peer-urls "${peer_urls[i]}" \
        --initial-cluster "$cluster" \
        --initial-cluster-token "$token" \
        --initial-cluster-state new \
        --logger zap --log-outputs stderr \
        >>"$work/m$i.log" 2>&1 &
    pids[i]=$!
    # For a parent (bench-raft.sh) that must stop etcd even if this script
    # itself is SIGKILLed before its own cleanup runs.
    echo "${pids[i]}" >"$work/m$i.pid"
    # Disowned so bash does not print a "Killed" job notice for every
    # failover trial; bash still reaps it, and cleanup stops it by pid.
    disown "${pids[i]}"
}

# Bounded wait for a pid to be gone, so a restarted member never races its
# predecessor for the ports or the data dir.
wait_gone() {
    local pid=$1
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    echo "pid $pid still alive after 5 s" >&2
    return 1
}

echo "etcd $etcd_version; work dir $work (on $(df -P "$work" | awk 'NR==2 {print $1}'))"

# Probe the disk first, while nothing else is writing to it.
echo "disk fsync probe in $work:"
py "$results/fsync.json" fsync --dir "$work" --count "$FSYNC_SAMPLES" --size 1024 \
    --mode append-fsync
py "$results/fdatasync_prealloc.json" fsync --dir "$work" --count "$FSYNC_SAMPLES" \
    --size 1024 --mode prealloc-fdatasync

for ((i = 0; i < MEMBERS; i++)); do start_member "$i"; done
py /dev/null wait-healthy --api etcd --endpoints "$all_endpoints" --timeout 60
echo "cluster up: $all_endpoints"
etcdctl --endpoints "$all_endpoints" endpoint status -w table

echo "put load, 1 KiB values, ${BENCH_SECONDS}s per level, clients spread over all members (1: on the leader, then on a follower):"
for c in "${LEVELS[@]}"; do
    via=spread; [[ $c == 1 ]] && via=leader
    py "$results/load_$c.json" load --api etcd --endpoints "$all_endpoints" \
        --clients "$c" --seconds "$BENCH_SECONDS" --max-ops "$BENCH_MAX_OPS" \
        --value-size 1024 --via "$via"
done
py "$results/load_1_follower.json" load --api etcd --endpoints "$all_endpoints" \
    --clients 1 --seconds "$BENCH_SECONDS" --max-ops "$BENCH_MAX_OPS" --value-size 1024 --via follower

# Again after the load: on a VM with a throttled or shared disk, fsync cost
# can change by an order of magnitude with recent I/O, which this exposes.
echo "disk fsync probe again, after the load:"
py "$results/fsync_after.json" fsync --dir "$work" --count "$FSYNC_SAMPLES" --size 1024 \
    --mode append-fsync

if [[ $SKIP_FAILOVER != 1 ]]; then
    echo "failover: $FAILOVER_TRIALS trials of kill -9 leader -> next committed put:"
    for ((t = 1; t <= FAILOVER_TRIALS; t++)); do
        py "$work/leader" leader --api etcd --endpoints "$all_endpoints" --timeout 15
        lead=$(<"$work/leader")
        survivors=()
        for ((i = 0; i < MEMBERS; i++)); do
            ((i == lead)) || survivors+=("${client_urls[i]}")
        done
        py "$work/trial.json" failover --api etcd --kill-pid "${pids[lead]}" \
            --endpoints "$(IFS=,; echo "${survivors[*]}")" --timeout 30
        cat "$work/trial.json" >>"$results/failover.jsonl"
        wait_gone "${pids[lead]}"
        echo "  trial $t: killed leader m$lead, $(<"$work/trial.json")"
        start_member "$lead"
        py /dev/null wait-healthy --api etcd --endpoints "$all_endpoints" --timeout 60
    done
fi

py "$work/report.txt" report --dir "$results" --etcd-version "$etcd_version" \
    --levels "${LEVELS[@]}"
cat "$work/report.txt"
