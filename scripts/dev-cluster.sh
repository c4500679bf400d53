#!/usr/bin/env bash
# A local N-node uptime-cluster on 127.0.0.1, for people and for scripts.
#
#   scripts/dev-cluster.sh up N [DIR]     build if needed, start N nodes, return once a leader is elected
#   scripts/dev-cluster.sh down [DIR]     stop them (SIGTERM, then SIGKILL after a grace period)
#   scripts/dev-cluster.sh start K [DIR]  restart stopped node K with its data
#   scripts/dev-cluster.sh stop K [DIR]   stop node K gracefully
#   scripts/dev-cluster.sh unmount [DIR]  after down: unmount DEV_CLUSTER_DATA_TMPFS data directories
#
# DIR (default ./.dev-cluster) gets `env` (UPTIMECTL_ENDPOINT for node 1 and
# UPTIMECTL_TOKEN), `certs/` (the cluster CA and node certificates: peers use
# mutual TLS, as in production), and per node K: nodeK/config.toml, nodeK/pid
# (the uptime-node process itself), nodeK/api_url, nodeK/log, nodeK/data.
#
# Environment: DEV_CLUSTER_PROFILE=release|debug (default release), DEV_CLUSTER_BIN_DIR to
# use prebuilt binaries, DEV_CLUSTER_GRACE seconds before SIGKILL (default 10),
# DEV_CLUSTER_DISTINCT_ADDRS=1: node K binds both its listeners on 127.0.0.K and
# makes its outgoing peer connections from 127.0.0.K (`peer_source_addr`), so
# faults can be aimed at one node pair (nftables rules on address pairs);
# nodeK/peer_addr holds its peer address.
# DEV_CLUSTER_EXTRA_TOML: TOML appended to every node's config, with @K@
# replaced by the node id (e.g. $'[probe]\nsource_addrs = ["127.0.0.@K@"]').
# DEV_CLUSTER_NODE_ENV: lines of NAME=VALUE for every node's environment, with
# @K@ replaced by the node id and @NODE@ by its directory (kept in
# nodeK/node.env, so `start K` uses them too; e.g. libfaketime for a clock jump).
# DEV_CLUSTER_PEER_PROXY="A1:L1 A2:L2 ...": node K listens for peers on port
# LK but is known to them at AK on the same address, where the caller runs a
# proxy (jepsen-lite's partitions without root); nodeK/peer_addr holds AK.
# DEV_CLUSTER_DATA_TMPFS=SIZE (root): each nodeK/data is a tmpfs of SIZE (e.g.
# 64m), so a test can fill one node's disk; `down` leaves them mounted (the
# data is needed by `start`), `up` and `unmount` take them away.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${DEV_CLUSTER_PROFILE:-release}
GRACE=${DEV_CLUSTER_GRACE:-10}

die() { echo "dev-cluster: $*" >&2; exit 1; }

bin_dir() {
  if [ -n "${DEV_CLUSTER_BIN_DIR:-}" ]; then echo "$DEV_CLUSTER_BIN_DIR"; return; fi
  echo "$ROOT/target/$PROFILE"
}

build() {
  [ -n "${DEV_CLUSTER_BIN_DIR:-}" ] && return 0
  local flag=(); [ "$PROFILE" = release ] && flag=(--release)
  (cd "$ROOT" && cargo build "${flag[@]}" -q -p uptime-node --bins) || die "build failed"
}

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# A killed node whose parent has gone may linger as a zombie until reaped; it is not alive.
pid_alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$state" != Z* ]]
}
alive() { [ -f "$1/pid" ] && pid_alive "$(cat "$1/pid")"; }

start_node() {
  local dir=$1 k=$2 node="$1/node$2"
  alive "$node" && die "node $k is already running (pid $(cat "$node/pid"))"
  [ -f "$node/config.toml" ] || die "no node $k in $dir"
  (
    if [ -f "$node/node.env" ]; then set -a; . "$node/node.env"; set +a; fi
    exec nohup "$(bin_dir)/uptime-node" run --config "$node/config.toml" >>"$node/log" 2>&1 </dev/null
  ) &
  echo $! >"$node/pid"
}

stop_pid() {
  local pid=$1 waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while pid_alive "$pid"; do
    if [ "$waited" -ge $((GRACE * 10)) ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.1; waited=$((waited + 1))
  done
}

# wait_ready DIR N SECONDS: until node 1 (or any node) reports a leader and N healthy members.
wait_ready() {
  local dir=$1 n=$2 secs=$3 deadline=$(( $(date +%s) + $3 ))
  # shellcheck disable=SC1091
  set -a; . "$dir/env"; set +a
  while :; do
    for k in $(seq 1 "$n"); do
      local url; url=$(cat "$dir/node$k/api_url")
      if UPTIMECTL_ENDPOINT=$url "$(bin_dir)/uptimectl" cluster status -o json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d["leader"] is not None and sum(m["healthy"] for m in d["members"]) >= int(sys.argv[1]) else 1)
' "$n" 2>/dev/null; then return 0; fi
      alive "$dir/node$k" || die "node $k exited: $(tail -n 1 "$dir/node$k/log")"
    done
    [ "$(date +%s)" -lt "$deadline" ] || die "no leader with $n healthy members after ${secs}s (logs: $dir/node*/log)"
    sleep 0.2
  done
}

cmd_up() {
  local n=${1:-} dir=${2:-$ROOT/.dev-cluster}
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "usage: dev-cluster.sh up N [DIR]"
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  for k in $(seq 1 "$n"); do alive "$dir/node$k" && die "node $k in $dir is running: run down first"; done
  build
  local bin; bin=$(bin_dir)
  unmount_data "$dir"
  rm -rf "$dir/certs" "$dir"/node*
  "$bin/uptime-node" certs init-ca --dir "$dir/certs" >/dev/null
  local token; token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$token" >"$dir/token"; chmod 600 "$dir/token"
  local ports; read -r -a ports <<<"$(free_ports $((2 * n)))"
  local peers=""
  host_of() { if [ "${DEV_CLUSTER_DISTINCT_ADDRS:-0}" = 1 ]; then echo "127.0.0.$1"; else echo 127.0.0.1; fi; }
  # DEV_CLUSTER_PEER_PROXY="A1:L1 A2:L2 ...": node K is known to its peers
  # at port AK (where the caller's proxy listens) and listens on LK.
  local proxy=(); read -r -a proxy <<<"${DEV_CLUSTER_PEER_PROXY:-}"
  if [ ${#proxy[@]} -gt 0 ] && [ ${#proxy[@]} -ne "$n" ]; then
    die "DEV_CLUSTER_PEER_PROXY needs $n ADVERTISED:LISTEN port pairs, got ${#proxy[@]}"
  fi
  advertised() { if [ ${#proxy[@]} -gt 0 ]; then echo "${proxy[$(($1 - 1))]%%:*}"; else echo "${ports[$((2 * $1 - 2))]}"; fi; }
  listening() { if [ ${#proxy[@]} -gt 0 ]; then echo "${proxy[$(($1 - 1))]##*:}"; else echo "${ports[$((2 * $1 - 2))]}"; fi; }
  for k in $(seq 1 "$n"); do
    local pp ap=${ports[$((2 * k - 1))]} h; h=$(host_of "$k"); pp=$(advertised "$k")
    peers+="{ id = $k, peer_addr = \"$h:$pp\", api_addr = \"http://$h:$ap\" },"
  done
  for k in $(seq 1 "$n"); do
    local node="$dir/node$k" pp ap=${ports[$((2 * k - 1))]} h; h=$(host_of "$k"); pp=$(listening "$k")
    mkdir -p "$node"
    "$bin/uptime-node" certs node --id "$k" --dir "$dir/certs" --host "$h" >/dev/null
    local source=""
    [ "${DEV_CLUSTER_DISTINCT_ADDRS:-0}" = 1 ] && source="peer_source_addr = \"$h\""
    cat >"$node/config.toml" <<TOML
node_id = $k
data_dir = "data"
api_listen = "$h:$ap"
peer_listen = "$h:$pp"
$source
api_token_file = "../token"
peers = [${peers%,}]

[tls]
ca = "../certs/ca.pem"
cert = "../certs/node$k.pem"
key = "../certs/node$k.key"
TOML
    if [ -n "${DEV_CLUSTER_EXTRA_TOML:-}" ]; then
      printf '\n%s\n' "${DEV_CLUSTER_EXTRA_TOML//@K@/$k}" >>"$node/config.toml"
    fi
    if [ -n "${DEV_CLUSTER_NODE_ENV:-}" ]; then
      local env=${DEV_CLUSTER_NODE_ENV//@K@/$k}
      printf '%s\n' "${env//@NODE@/$node}" >"$node/node.env"
    fi
    if [ -n "${DEV_CLUSTER_DATA_TMPFS:-}" ]; then
      mkdir -p "$node/data"
      mount -t tmpfs -o "size=$DEV_CLUSTER_DATA_TMPFS,mode=0700" "dev-cluster-node$k" "$node/data" ||
        die "cannot mount a tmpfs on $node/data (DEV_CLUSTER_DATA_TMPFS needs root)"
    fi
    echo "http://$h:$ap" >"$node/api_url"
    echo "$h:$(advertised "$k")" >"$node/peer_addr"
  done
  printf 'UPTIMECTL_ENDPOINT=%s\nUPTIMECTL_TOKEN=%s\n' "$(cat "$dir/node1/api_url")" "$token" >"$dir/env"
  for k in $(seq 1 "$n"); do start_node "$dir" "$k"; done
  wait_ready "$dir" "$n" 60
  echo "dev-cluster: $n nodes up in $dir (source $dir/env)"
}

cmd_down() {
  local dir=${1:-$ROOT/.dev-cluster}
  [ -d "$dir" ] || return 0
  local pids=()
  for node in "$dir"/node*; do
    alive "$node" && pids+=("$(cat "$node/pid")")
  done
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  return 0
}

# Unmounts every tmpfs data directory under DIR (none: nothing to do).
unmount_data() {
  local dir=$1 m
  for m in "$dir"/node*/data; do
    if [ -d "$m" ] && mountpoint -q "$m"; then umount "$m" || die "cannot unmount $m"; fi
  done
  return 0
}

cmd_unmount() {
  local dir=${1:-$ROOT/.dev-cluster}
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  for node in "$dir"/node*; do alive "$node" && die "$(basename "$node") is running: run down first"; done
  unmount_data "$dir"
}

cmd_start() {
  local k=${1:-} dir=${2:-$ROOT/.dev-cluster}
  [[ "$k" =~ ^[1-9][0-9]*$ ]] || die "usage: dev-cluster.sh start K [DIR]"
  dir=$(cd "$dir" && pwd)
  start_node "$dir" "$k"
  local url; url=$(cat "$dir/node$k/api_url")
  local deadline=$(( $(date +%s) + 30 ))
  until curl -fsS -o /dev/null "$url/healthz" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "node $k did not come up (log: $dir/node$k/log)"
    alive "$dir/node$k" || die "node $k exited (log: $dir/node$k/log)"
    sleep 0.1
  done
}

cmd_stop() {
  local k=${1:-} dir=${2:-$ROOT/.dev-cluster}
  [[ "$k" =~ ^[1-9][0-9]*$ ]] || die "usage: dev-cluster.sh stop K [DIR]"
  alive "$dir/node$k" && stop_pid "$(cat "$dir/node$k/pid")"
  return 0
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  unmount) shift; cmd_unmount "$@" ;;
  *) die "usage: dev-cluster.sh up N [DIR] | down [DIR] | start K [DIR] | stop K [DIR] | unmount [DIR]" ;;
esac
