#!/usr/bin/env bash
# The probe benchmark (issue 3): uptime-cluster's HTTP checks against the
# loopback ceiling and against the Prometheus blackbox exporter, then the
# scheduler holding 100k monitors.
#
#  1. nginx (Debian package) serves a small 200 on several 127.0.0.x addresses
#     and ports (spread so ephemeral ports don't run out; backlog 65535)
#  2. probe: `probe-bench http` runs fresh-connection HTTP checks with
#     CONCURRENCY workers for HTTP_SECONDS: checks/s and CPU µs per check
#  3. wrk -H 'Connection: close' at the same concurrency against the same
#     nginx: the fresh-connection loopback ceiling
#  4. prometheus-blackbox-exporter (Debian package) driven through /probe by
#     wrk at the same concurrency, probing the same nginx
#  5. `probe-bench sched`: SCHED_MONITORS monitors at SCHED_INTERVAL s against
#     the nginx targets for SCHED_SECONDS: RSS, CPU, checks/s, lateness p99
#  6. a table with ratios and the issue's targets, then as the LAST line of
#     stdout one JSON object with every figure
#
# Usage: scripts/bench-probe.sh
# Knobs (environment):
#   CONCURRENCY=64        workers / connections for steps 2-4
#   HTTP_SECONDS=10       seconds for each of steps 2-4
#   SCHED_MONITORS=100000 SCHED_INTERVAL=30 SCHED_SECONDS=60   step 5
#   SKIP_SCHED=1          skip step 5 (its keys are null)
#   SKIP_PEERS=1          skip steps 3-4 (their keys and ratios are null)
#   KEEP_BENCH_DIR=1      keep the work dir (configs, logs, raw JSON)
#
# Only 127.0.0.x is targeted, every run is bounded in time (and the probe
# loop in count), and everything started here is stopped on exit.

set -euo pipefail

CONCURRENCY=${CONCURRENCY:-64}
HTTP_SECONDS=${HTTP_SECONDS:-10}
SCHED_MONITORS=${SCHED_MONITORS:-100000}
SCHED_INTERVAL=${SCHED_INTERVAL:-30}
SCHED_SECONDS=${SCHED_SECONDS:-60}
SKIP_SCHED=${SKIP_SCHED:-0}
SKIP_PEERS=${SKIP_PEERS:-0}
KEEP_BENCH_DIR=${KEEP_BENCH_DIR:-0}
ADDRS=(127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5)
PORTS=(18081 18082)
BLACKBOX_ADDR=127.0.0.1:19115

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
work=$(mktemp -d -t bench-probe.XXXXXX)
pids=()

log() { echo "bench-probe: $*" >&2; }

cleanup() {
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  if [ "$KEEP_BENCH_DIR" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- tools ------------------------------------------------------------------

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} from Debian"
  # Install without starting the packages' own services (nginx on :80,
  # the exporter on :9115): this script runs its own instances.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

log "building probe-bench (release)"
(cd "$root" && cargo build --release -q -p uptime-benches --bin probe-bench) >&2
bench="$root/target/release/probe-bench"

# --- nginx ------------------------------------------------------------------

targets=()
listens=""
for a in "${ADDRS[@]}"; do
  for p in "${PORTS[@]}"; do
    targets+=("http://$a:$p/")
    listens+="    listen $a:$p backlog=65535;"$'\n'
  done
done
target_list=$(IFS=,; echo "${targets[*]}")
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile 200000;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 65535; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
$listens
    location / { return 200 "ok\n"; }
  }
}
EOF
ulimit -n 200000 2>/dev/null || ulimit -n 65535 2>/dev/null || true
nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)

wait_port() { # host port
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on $1:$2"; return 1
}
wait_port "${ADDRS[0]}" "${PORTS[0]}"

# --- 2. probe -----------------------------------------------------------------

log "probe: $CONCURRENCY workers, ${HTTP_SECONDS}s, ${#targets[@]} targets"
"$bench" http --targets "$target_list" --concurrency "$CONCURRENCY" --seconds "$HTTP_SECONDS" >"$work/probe.json"
cat "$work/probe.json" >&2

# --- 3, 4. peers -------------------------------------------------------------

wrk_rate() { # wrk output file -> requests/s
  awk '/Requests\/sec:/ {print $2}' "$1"
}
wrk_close=null
blackbox=null
if [ "$SKIP_PEERS" != 1 ]; then
  threads=2
  [ "$CONCURRENCY" -lt 2 ] && threads=1
  log "wrk -H 'Connection: close': $CONCURRENCY connections, ${HTTP_SECONDS}s"
  wrk -t"$threads" -c"$CONCURRENCY" -d"${HTTP_SECONDS}s" -H 'Connection: close' "${targets[0]}" >"$work/wrk.txt" 2>&1 || true
  cat "$work/wrk.txt" >&2
  wrk_close=$(wrk_rate "$work/wrk.txt"); wrk_close=${wrk_close:-null}

  cat >"$work/blackbox.yml" <<EOF
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
EOF
  prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address="$BLACKBOX_ADDR" \
    >"$work/blackbox.log" 2>&1 &
  pids+=($!)
  wait_port "${BLACKBOX_ADDR%:*}" "${BLACKBOX_ADDR#*:}"
  probe_url="http://$BLACKBOX_ADDR/probe?target=${targets[0]}&module=http_2xx"
  if command -v curl >/dev/null && ! curl -fsS "$probe_url" | grep -q '^probe_success 1'; then
    log "the blackbox exporter's probe does not succeed; see $work/blackbox.log"
  fi
  log "blackbox exporter /probe: $CONCURRENCY connections, ${HTTP_SECONDS}s"
  wrk -t"$threads" -c"$CONCURRENCY" -d"${HTTP_SECONDS}s" "$probe_url" >"$work/blackbox-wrk.txt" 2>&1 || true
  cat "$work/blackbox-wrk.txt" >&2
  blackbox=$(wrk_rate "$work/blackbox-wrk.txt"); blackbox=${blackbox:-null}
fi

# --- 5. scheduler ------------------------------------------------------------

if [ "$SKIP_SCHED" != 1 ]; then
  log "scheduler: $SCHED_MONITORS monitors every ${SCHED_INTERVAL}s for ${SCHED_SECONDS}s"
  "$bench" sched --targets "$target_list" --monitors "$SCHED_MONITORS" --interval "$SCHED_INTERVAL" \
    --seconds "$SCHED_SECONDS" >"$work/sched.json"
  cat "$work/sched.json" >&2
else
  echo null >"$work/sched.json"
fi

# --- 6. report ---------------------------------------------------------------

python3 - "$work/probe.json" "$work/sched.json" "$wrk_close" "$blackbox" "$CONCURRENCY" <<'EOF'
import json, sys
probe = json.load(open(sys.argv[1]))
sched = json.load(open(sys.argv[2]))
num = lambda s: None if s in ("null", "") else float(s)
wrk, bb, conc = num(sys.argv[3]), num(sys.argv[4]), int(sys.argv[5])
rate = probe["checks_per_s"]
ratio = lambda a, b: round(a / b, 3) if a and b else None
fig = {
    "concurrency": conc,
    "probe_checks_per_s": round(rate, 1),
    "probe_up": probe["up"],
    "probe_checks": probe["checks"],
    "wrk_close_req_per_s": wrk,
    "ratio_vs_wrk": ratio(rate, wrk),
    "blackbox_probes_per_s": bb,
    "ratio_vs_blackbox": ratio(rate, bb),
    "cpu_us_per_check": round(probe["cpu_us_per_check"], 1),
    "sched_monitors": sched and sched["monitors"],
    "sched_checks_per_s": sched and round(sched["checks_per_s"], 1),
    "sched_up": sched and sched["up"],
    "sched_100k_rss_mb": sched and round(sched["rss_mb"], 1),
    "sched_100k_rss_peak_mb": sched and round(sched["rss_peak_mb"], 1),
    "sched_100k_cpu_pct": sched and round(sched["cpu_pct"], 1),
    "sched_lateness_p50_ms": sched and round(sched["lateness_p50_ms"], 2),
    "sched_lateness_p99_ms": sched and round(sched["lateness_p99_ms"], 2),
}
rows = [
    ("probe checks/s (fresh connections)", fig["probe_checks_per_s"], ""),
    ("wrk Connection: close req/s", wrk, ""),
    ("ratio vs wrk", fig["ratio_vs_wrk"], ">= 0.8"),
    ("blackbox exporter probes/s", bb, ""),
    ("ratio vs blackbox", fig["ratio_vs_blackbox"], ">= 5"),
    ("CPU us per check", fig["cpu_us_per_check"], ""),
    ("scheduler RSS MB", fig["sched_100k_rss_mb"], "< 300"),
    ("scheduler CPU % of one core", fig["sched_100k_cpu_pct"], "< 50"),
    ("scheduler checks/s", fig["sched_checks_per_s"], ""),
    ("schedule lateness p99 ms", fig["sched_lateness_p99_ms"], "< 100"),
]
for name, value, target in rows:
    print(f"{name:<38} {'-' if value is None else value:>12}  {target}")
print(json.dumps(fig))
EOF
