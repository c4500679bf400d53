#!/usr/bin/env bash
# The Raft benchmark: uptime-cluster against etcd, on this machine, with the
# same load generator (scripts/bench_raft_load.py) driving both.
#
#  1. disk probe: 1 KiB append+fsync latency where the data dirs live
#  2. uptime-cluster: 3 nodes on 127.0.0.1 (scripts/dev-cluster.sh, mutual TLS
#     between peers, fsync on); committed 1 KiB writes (PUT
#     /api/v1/settings/{key}) at 1, 16 and 256 concurrent proposers:
#     commits/s, p50/p99 commit latency; then FAILOVER_TRIALS times: kill -9
#     the leader, time to the next committed write through a survivor,
#     restart the node, wait until all 3 are healthy again
#  3. etcd: the same figures from a 3-member etcd (scripts/bench-etcd.sh)
#  4. a side-by-side table with ratios (ours / etcd's) and the issue's
#     targets, then as the LAST line of stdout one JSON object with every
#     figure
#
# Usage: scripts/bench-raft.sh
# Knobs (environment):
#   BENCH_SECONDS=10       seconds per concurrency level, for both systems
#   BENCH_MAX_OPS=2000000  cap on puts per level (bounded in time and count)
#   FAILOVER_TRIALS=20     leader kill -9 trials, for each system
#   SKIP_FAILOVER=1        no failover trials (failover keys are null)
#   SKIP_ETCD=1            uptime-cluster only (etcd keys and ratios are null)
#   FSYNC_SAMPLES=1000     write+fsync samples per disk probe
#   KEEP_BENCH_DIR=1       keep the work dir (node logs, etcd logs, raw
#                          results) on exit; it is printed to stderr
#   TMPDIR                 where the work dir goes (both clusters' data and
#                          the fsync probe, so all three share one disk)
#   DEV_CLUSTER_BIN_DIR    prebuilt uptime-node/uptimectl (else dev-cluster.sh
#                          builds target/release if needed)
#
# Everything is bounded in time, only 127.0.0.1 is targeted, and everything
# started here (nodes, etcd members, load generators) is stopped on exit.
# Anomalies (failed writes, failover trials with no commit, a node that does
# not come back) are reported, with node log tails, but do not stop the run.

set -euo pipefail

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_MAX_OPS=${BENCH_MAX_OPS:-2000000}
FAILOVER_TRIALS=${FAILOVER_TRIALS:-20}
SKIP_FAILOVER=${SKIP_FAILOVER:-0}
SKIP_ETCD=${SKIP_ETCD:-0}
FSYNC_SAMPLES=${FSYNC_SAMPLES:-1000}
KEEP_BENCH_DIR=${KEEP_BENCH_DIR:-0}
LEVELS=(1 16 256)
NODES=3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
helper="$here/bench_raft_load.py"
devc="$here/dev-cluster.sh"

work=$(mktemp -d -t bench-raft.XXXXXX)
results="$work/results"
cluster="$work/uptime"     # the dev cluster's DIR
mkdir -p "$results"
: >"$results/anomalies.txt"

child_pid=""     # the helper or script currently running in the background
etcd_pid=""      # bench-etcd.sh while it runs
mirror_pid=""    # the pipeline that shows bench-etcd.sh's output live

# kill -9 a pid read from a pid file, only if it is still the program named
# (a pid file can outlive its process, and pids get reused).
kill_named() {
    local pid=$1 name=$2
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    [[ $(ps -o comm= -p "$pid" 2>/dev/null) == "$name" ]] && kill -9 "$pid" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$? f
    trap - EXIT INT TERM
    if [[ -n $child_pid ]]; then kill "$child_pid" 2>/dev/null || true; fi
    if [[ -n $etcd_pid ]]; then
        # bench-etcd.sh stops its members and helper in its own EXIT trap;
        # give it time, then make sure from its pid files.
        kill "$etcd_pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$etcd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$etcd_pid" 2>/dev/null || true
    fi
    for f in "$work"/bench-etcd.*/m*.pid; do
        if [[ -f $f ]]; then kill_named "$(<"$f")" etcd; fi
    done
    if [[ -n $mirror_pid ]]; then kill "$mirror_pid" 2>/dev/null || true; fi
    if [[ -d $cluster ]]; then
        DEV_CLUSTER_GRACE=5 "$devc" down "$cluster" >/dev/null 2>&1 || true
        for f in "$cluster"/node*/pid; do
            if [[ -f $f ]]; then kill_named "$(<"$f")" uptime-node; fi
        done
    fi
    if [[ -n $child_pid ]]; then kill -9 "$child_pid" 2>/dev/null || true; fi
    if [[ $KEEP_BENCH_DIR == 1 ]]; then
        echo "kept $work (uptime node logs: $cluster/node*/log)" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background and waits, so a trapped signal
# interrupts the wait at once and cleanup can stop it.
# Usage: bg OUTFILE CMD ARGS...   (stdout -> OUTFILE)
bg() {
    local out=$1 rc=0
    shift
    "$@" >"$out" &
    child_pid=$!
    wait "$child_pid" || rc=$?
    child_pid=""
    return "$rc"
}
py() { local out=$1; shift; bg "$out" python3 "$helper" "$@"; }

anomaly() {
    echo "ANOMALY: $*" | tee -a "$results/anomalies.txt" >&2
}

# The last lines of every node's log (long lines cut), for an anomaly report.
node_log_tails() {
    local k
    for ((k = 1; k <= NODES; k++)); do
        [[ -f $cluster/node$k/log ]] || continue
        echo "--- $cluster/node$k/log (last 8 lines) ---" >&2
        tail -n 8 "$cluster/node$k/log" | cut -c1-400 >&2
    done
}

wait_gone() {
    local pid=$1
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    echo "pid $pid still alive after 5 s" >&2
    return 1
}

rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD -- crates proto Cargo.toml Cargo.lock 2>/dev/null || rev+="+dirty"
[[ -n ${DEV_CLUSTER_BIN_DIR:-} ]] && rev="prebuilt:$DEV_CLUSTER_BIN_DIR"
echo "bench-raft: uptime-cluster $rev vs etcd; work dir $work" \
     "(on $(df -P "$work" | awk 'NR==2 {print $1}')), $(nproc) cores"

# ---------------------------------------------------------------- disk ----
echo "disk fsync probe in $work, before any load:"
py "$results/fsync.json" fsync --dir "$work" --count "$FSYNC_SAMPLES" --size 1024 \
    --mode append-fsync
py "$results/fdatasync_prealloc.json" fsync --dir "$work" --count "$FSYNC_SAMPLES" \
    --size 1024 --mode prealloc-fdatasync

# -------------------------------------------------------------- uptime ----
echo "uptime-cluster: starting $NODES nodes (scripts/dev-cluster.sh up; builds if needed)..."
if ! bg "$work/devc-up.out" timeout 1800 "$devc" up "$NODES" "$cluster"; then
    cat "$work/devc-up.out"
    echo "bench-raft: the uptime cluster did not come up; node logs:" >&2
    node_log_tails
    exit 1
fi
cat "$work/devc-up.out"
UPTIMECTL_TOKEN=$(sed -n 's/^UPTIMECTL_TOKEN=//p' "$cluster/env")
export UPTIMECTL_TOKEN   # the helper reads it from the environment, not argv
urls=()
for ((k = 1; k <= NODES; k++)); do urls[k - 1]=$(<"$cluster/node$k/api_url"); done
all_endpoints=$(IFS=,; echo "${urls[*]}")
if ! py /dev/null wait-healthy --api uptime --endpoints "$all_endpoints" --timeout 60; then
    node_log_tails
    exit 1
fi
echo "cluster up: $all_endpoints"
# One write first: a wrong route, token or value limit is a setup error, not
# something to time.
if ! py "$work/preflight.json" put --api uptime --endpoints "${urls[0]}" --value-size 1024; then
    echo "bench-raft: a 1 KiB PUT /api/v1/settings/{key} did not commit:" \
         "$(cat "$work/preflight.json")" >&2
    node_log_tails
    exit 1
fi

echo "uptime-cluster put load, 1 KiB values, ${BENCH_SECONDS}s per level, proposers spread over all nodes (1: on the leader, then on a follower):"
# A lone proposer writes to the leader (commit latency, like for like with
# etcd's); one more run puts it on a follower (forwarding included).
for c in "${LEVELS[@]}"; do
    via=spread; [[ $c == 1 ]] && via=leader
    if ! py "$results/load_$c.json" load --api uptime --endpoints "$all_endpoints" \
        --clients "$c" --seconds "$BENCH_SECONDS" --max-ops "$BENCH_MAX_OPS" \
        --value-size 1024 --via "$via"; then
        anomaly "uptime load at $c proposers committed nothing"
    fi
    errs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("errors", 0))' \
        "$results/load_$c.json" 2>/dev/null || echo "?")
    if [[ $errs != 0 ]]; then
        anomaly "uptime load at $c proposers: $errs failed writes (see errors by kind above)"
    fi
done

py "$results/load_1_follower.json" load --api uptime --endpoints "$all_endpoints" \
    --clients 1 --seconds "$BENCH_SECONDS" --max-ops "$BENCH_MAX_OPS" --value-size 1024 --via follower \
    || anomaly "uptime load at 1 proposer via a follower committed nothing"

echo "disk fsync probe again, after uptime-cluster's load:"
py "$results/fsync_after.json" fsync --dir "$work" --count "$FSYNC_SAMPLES" --size 1024 \
    --mode append-fsync

failover_failed=0
if [[ $SKIP_FAILOVER != 1 ]]; then
    echo "uptime-cluster failover: $FAILOVER_TRIALS trials of kill -9 leader -> next committed write:"
    for ((t = 1; t <= FAILOVER_TRIALS; t++)); do
        if ! py "$work/leader" leader --api uptime --endpoints "$all_endpoints" --timeout 15; then
            anomaly "failover trial $t: no leader found within 15 s; stopping the trials"
            node_log_tails
            break
        fi
        lead=$(($(<"$work/leader") + 1))
        pid=$(<"$cluster/node$lead/pid")
        survivors=()
        for ((k = 1; k <= NODES; k++)); do ((k == lead)) || survivors+=("${urls[k - 1]}"); done
        if py "$work/trial.json" failover --api uptime --kill-pid "$pid" \
            --endpoints "$(IFS=,; echo "${survivors[*]}")" --timeout 30; then
            cat "$work/trial.json" >>"$results/failover.jsonl"
            trial=$(<"$work/trial.json")
        else
            failover_failed=$((failover_failed + 1))
            anomaly "failover trial $t: no write committed within 30 s of killing leader node $lead"
            node_log_tails
            trial="no commit"
        fi
        wait_gone "$pid" || true
        t0=$(date +%s%N)
        if ! bg "$work/devc-start.out" "$devc" start "$lead" "$cluster" 2>"$work/devc-start.err"; then
            anomaly "failover trial $t: node $lead did not restart: $(tail -n 3 "$work/devc-start.err")"
            node_log_tails
            break
        fi
        if ! py /dev/null wait-healthy --api uptime --endpoints "$all_endpoints" --timeout 60; then
            anomaly "failover trial $t: cluster not healthy within 60 s of restarting node $lead"
            node_log_tails
            break
        fi
        echo "  trial $t: killed leader node $lead, $trial; back to 3 healthy in" \
             "$((($(date +%s%N) - t0) / 1000000)) ms"
    done
fi

# The nodes go before etcd starts, so the two never share the machine.
DEV_CLUSTER_GRACE=5 "$devc" down "$cluster"

# ---------------------------------------------------------------- etcd ----
etcd_json="$results/etcd.json"
if [[ $SKIP_ETCD != 1 ]]; then
    echo "etcd: scripts/bench-etcd.sh with the same knobs (its output below, prefixed):"
    etcd_out="$results/etcd.out"
    : >"$etcd_out"
    BENCH_SECONDS=$BENCH_SECONDS BENCH_MAX_OPS=$BENCH_MAX_OPS \
        FAILOVER_TRIALS=$FAILOVER_TRIALS SKIP_FAILOVER=$SKIP_FAILOVER \
        FSYNC_SAMPLES=$FSYNC_SAMPLES KEEP_BENCH_DIR=$KEEP_BENCH_DIR TMPDIR=$work \
        bash "$here/bench-etcd.sh" >"$etcd_out" 2> >(sed -u 's/^/  [etcd] /' >&2) &
    etcd_pid=$!
    # Mirror its stdout live; the JSON line is read from the file afterwards.
    tail -n +1 -f --pid="$etcd_pid" "$etcd_out" | sed -u -e '/^{/d' -e 's/^/  [etcd] /' &
    mirror_pid=$!
    etcd_rc=0
    wait "$etcd_pid" || etcd_rc=$?
    etcd_pid=""
    wait "$mirror_pid" || true
    mirror_pid=""
    last=$(tail -n 1 "$etcd_out")
    if [[ $etcd_rc == 0 && $last == "{"* ]]; then
        printf '%s\n' "$last" >"$etcd_json"
    else
        anomaly "bench-etcd.sh exited $etcd_rc; etcd figures are null"
    fi
fi

# -------------------------------------------------------------- report ----
if [[ -s $results/anomalies.txt ]]; then
    echo
    echo "anomalies in this run:"
    sed 's/^/  /' "$results/anomalies.txt"
fi
compare_args=(--dir "$results" --uptime-version "$rev" --bench-seconds "$BENCH_SECONDS"
              --failover-failed "$failover_failed" --levels "${LEVELS[@]}")
[[ -f $etcd_json ]] && compare_args+=(--etcd-json "$etcd_json")
[[ $SKIP_ETCD == 1 ]] && compare_args+=(--etcd-skipped)
py "$work/report.txt" compare "${compare_args[@]}"
cat "$work/report.txt"
