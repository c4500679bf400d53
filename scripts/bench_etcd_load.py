#!/usr/bin/env python3
"""Helper for scripts/bench-etcd.sh: load generation, failover timing and
fsync probing against a local etcd cluster, standard library only.

Debian packages etcd-server/etcd-client but not etcd's own `benchmark`
tool, so puts go through etcd's HTTP/JSON gRPC gateway (POST /v3/kv/put).

Every subcommand is bounded in time (and load runs also in count), and
every endpoint is checked to be a loopback address before it is used.

Subcommands print machine-readable JSON on stdout and human-readable
progress on stderr, so the shell script can capture one and show the other.
"""

import argparse
import base64
import http.client
import ipaddress
import json
import math
import multiprocessing as mp
import os
import resource
import signal
import socket
import sys
import threading
import time
import urllib.parse

PUT_PATH = "/v3/kv/put"
JSON_HEADERS = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------
# Small shared pieces
# --------------------------------------------------------------------------

def percentile(values, pct):
    """Nearest-rank percentile: always an observed sample, never interpolated,
    so a p99 over 20 failover trials is honestly the worst trial."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def parse_endpoint(url):
    """Return (host, port) for an http://host:port URL, refusing anything that
    is not loopback: this benchmark must never send traffic off the machine."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
        raise SystemExit(f"bad endpoint {url!r}: expected http://127.x.y.z:PORT")
    host = parsed.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"refusing non-loopback endpoint {url!r}")
    return host, parsed.port


def endpoints_arg(text):
    eps = [e for e in text.split(",") if e]
    if not eps:
        raise argparse.ArgumentTypeError("need at least one endpoint")
    return [parse_endpoint(e) for e in eps]


def b64(data):
    return base64.b64encode(data).decode("ascii")


def request_json(endpoint, method, path, body, timeout):
    """One request on a fresh connection; returns (status, parsed JSON or None).
    Raises OSError / HTTPException on transport failure or timeout."""
    conn = http.client.HTTPConnection(*endpoint, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, payload, JSON_HEADERS)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, None


def put_ok(status, doc):
    # The gateway answers 200 with a response header only once the put has
    # been committed by Raft and applied; errors come back as non-200.
    return status == 200 and isinstance(doc, dict) and "header" in doc


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# free-ports
# --------------------------------------------------------------------------

def cmd_free_ports(args):
    # Hold every socket open until all are bound so the N ports are distinct.
    socks = []
    try:
        for _ in range(args.count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------
# wait-healthy / leader
# --------------------------------------------------------------------------

def healthy(endpoint):
    # etcd's /health is only "true" when the member sees a leader and can
    # serve a linearizable read, i.e. it has caught up with the cluster.
    try:
        status, doc = request_json(endpoint, "GET", "/health", None, timeout=1.0)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200 and isinstance(doc, dict) and doc.get("health") == "true"


def cmd_wait_healthy(args):
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if all(healthy(ep) for ep in args.endpoints):
            return 0
        time.sleep(0.1)
    log(f"cluster not healthy after {args.timeout}s")
    return 1


def cmd_leader(args):
    """Print the index (into --endpoints) of the member that is Raft leader."""
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        for idx, ep in enumerate(args.endpoints):
            try:
                status, doc = request_json(
                    ep, "POST", "/v3/maintenance/status", {}, timeout=1.0)
            except (OSError, http.client.HTTPException):
                continue
            if status != 200 or not isinstance(doc, dict):
                continue
            # uint64 ids are JSON strings in the gateway's encoding.
            if doc.get("leader") and doc.get("leader") == doc.get("header", {}).get("member_id"):
                print(idx)
                return 0
        time.sleep(0.1)
    log(f"no leader found within {args.timeout}s")
    return 1


# --------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------

def _client_thread(endpoint, client_id, value_b64, start_at, deadline,
                   max_ops, key_space, req_timeout, out):
    """Closed-loop client: one outstanding put at a time on a kept-alive
    connection, like one etcd client session."""
    latencies = []
    errors = 0
    conn = http.client.HTTPConnection(*endpoint, timeout=req_timeout)
    # Connect before the common start instant so TCP setup is not timed.
    try:
        conn.connect()
    except OSError:
        pass
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    seq = 0
    while seq < max_ops and time.time() < deadline:
        # A bounded key space per client keeps the keyspace (not the MVCC
        # history) small, so index size does not drift across levels.
        key = f"bench/{client_id}/{seq % key_space}".encode()
        body = '{"key":"%s","value":"%s"}' % (b64(key), value_b64)
        seq += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", PUT_PATH, body, JSON_HEADERS)
            resp = conn.getresponse()
            raw = resp.read()
            ok = resp.status == 200 and b'"header"' in raw
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(*endpoint, timeout=req_timeout)
        t1 = time.perf_counter()
        if ok:
            latencies.append(t1 - t0)
        else:
            errors += 1
    conn.close()
    out.append((latencies, errors, time.time()))


def _load_process(assignments, value_b64, start_at, deadline, max_ops,
                  key_space, req_timeout, queue):
    """Runs a share of the clients as threads in one process; several
    processes are used so one interpreter lock does not cap throughput."""
    out = []
    threads = [
        threading.Thread(
            target=_client_thread,
            args=(ep, cid, value_b64, start_at, deadline, max_ops, key_space,
                  req_timeout, out),
            daemon=True)
        for cid, ep in assignments
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = [x for l, _, _ in out for x in l]
    errors = sum(e for _, e, _ in out)
    last_end = max((end for _, _, end in out), default=start_at)
    queue.put((lat, errors, last_end))


def cmd_load(args):
    clients = args.clients
    procs = max(1, min(args.procs or os.cpu_count() or 1, clients))
    value_b64 = b64(os.urandom(args.value_size))
    # Spread clients over members round-robin, as etcd's own benchmark does
    # when given several endpoints; followers forward proposals to the leader.
    assignments = [(f"c{clients}-{i}", args.endpoints[i % len(args.endpoints)])
                   for i in range(clients)]
    per_thread_max = max(1, args.max_ops // clients)
    # A common wall-clock start lets every thread connect first, then begin
    # together; the deadline is what bounds the run in time.
    start_at = time.time() + 0.5 + 0.002 * clients
    deadline = start_at + args.seconds

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    workers = []
    for p in range(procs):
        share = assignments[p::procs]
        w = ctx.Process(target=_load_process,
                        args=(share, value_b64, start_at, deadline,
                              per_thread_max, args.key_space, args.req_timeout,
                              queue),
                        daemon=True)
        w.start()
        workers.append(w)
    # Drain before join: a child blocks on exit until its queued data is read.
    # The get timeout is a backstop only; clients stop at deadline+req_timeout.
    results = [queue.get(timeout=args.seconds + args.req_timeout + 30)
               for _ in workers]
    for w in workers:
        w.join()

    lat = [x for r in results for x in r[0]]
    errors = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results) - start_at
    ops = len(lat)
    # The generator shares the machine's cores with etcd; its CPU use shows
    # when the figures say more about Python than about etcd.
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen_cores = (ru.ru_utime + ru.ru_stime) / elapsed if elapsed > 0 else 0.0
    res = {
        "clients": clients,
        "value_size": args.value_size,
        "ops": ops,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "commits_per_s": round(ops / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(lat, 50) * 1000, 3) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 3) if lat else None,
        "loadgen_cores": round(loadgen_cores, 2),
    }
    log(f"  clients={clients:<4} {res['commits_per_s']:>9.1f} puts/s  "
        f"p50={res['p50_ms']} ms  p99={res['p99_ms']} ms  "
        f"(ops={ops}, errors={errors}, {res['elapsed_s']} s, "
        f"{procs} procs using {res['loadgen_cores']} cores)")
    print(json.dumps(res))
    return 0 if ops > 0 else 1


# --------------------------------------------------------------------------
# failover
# --------------------------------------------------------------------------

def cmd_failover(args):
    """SIGKILL the leader, then time until a put through a survivor commits.

    Attempts are launched every --interval seconds, overlapping, each with a
    short timeout.  A put sent before the survivors notice the leader is gone
    hangs, and one sent mid-election fails fast; overlapping attempts mean the
    first put to succeed after the new leader takes over is seen when it
    completes, rather than after some earlier attempt's timeout expires."""
    value = b64(os.urandom(args.value_size))
    lock = threading.Lock()
    done = threading.Event()
    first = []

    def attempt(ep, n):
        body = {"key": b64(f"failover/{n}".encode()), "value": value}
        try:
            status, doc = request_json(ep, "POST", PUT_PATH, body,
                                       timeout=args.attempt_timeout)
        except (OSError, http.client.HTTPException):
            return
        if put_ok(status, doc):
            t = time.monotonic()
            with lock:
                first.append(t)
            done.set()

    os.kill(args.kill_pid, signal.SIGKILL)
    t_kill = time.monotonic()
    deadline = t_kill + args.timeout
    n = 0
    while not done.is_set() and time.monotonic() < deadline:
        ep = args.endpoints[n % len(args.endpoints)]
        threading.Thread(target=attempt, args=(ep, n), daemon=True).start()
        n += 1
        done.wait(args.interval)
    if not first:
        log(f"no put committed within {args.timeout}s of killing the leader")
        return 1
    with lock:
        ms = (min(first) - t_kill) * 1000
    print(json.dumps({"failover_ms": round(ms, 3), "attempts": n}))
    return 0


# --------------------------------------------------------------------------
# fsync
# --------------------------------------------------------------------------

def cmd_fsync(args):
    """Time SIZE-byte writes each followed by a sync, COUNT times.

    append-fsync (the headline figure): append + fsync, the plain pattern of
    a log that grows its file.  On ext4 every such fsync also commits the
    journal (size and mtime change), which usually dominates.

    prealloc-fdatasync: overwrite a zero-filled file + fdatasync, the way
    etcd's WAL works (it preallocates 64 MB segments and uses fdatasync), so
    no metadata is journaled; closer to the device's raw flush cost."""
    path = os.path.join(args.dir, "fsync-probe.dat")
    data = os.urandom(args.size)
    append = args.mode == "append-fsync"
    sync = os.fsync if append else os.fdatasync
    lat = []
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_APPEND if append else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if not append:
            # Real zeros, not fallocate: unwritten extents would still need
            # a metadata update on first write.
            os.pwrite(fd, bytes(args.size * args.count), 0)
            os.fsync(fd)
        for i in range(args.count):
            t0 = time.perf_counter()
            if append:
                os.write(fd, data)
            else:
                os.pwrite(fd, data, i * args.size)
            sync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    res = {
        "mode": args.mode,
        "count": args.count,
        "size": args.size,
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
    }
    log(f"  {args.mode:<18} {args.size} B x{args.count}: "
        f"p50={res['p50_ms']} ms  p99={res['p99_ms']} ms")
    print(json.dumps(res))
    return 0


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def cmd_report(args):
    """Combine per-step JSON files into the summary and the final JSON line."""
    def load(name):
        path = os.path.join(args.dir, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    out = {"etcd_version": args.etcd_version}
    print("\n=== etcd results ===")
    for c in args.levels:
        r = load(f"load_{c}.json") or {}
        out[f"etcd_commits_per_s_{c}"] = r.get("commits_per_s")
        out[f"etcd_p50_ms_{c}"] = r.get("p50_ms")
        out[f"etcd_p99_ms_{c}"] = r.get("p99_ms")
        print(f"{c:>4} clients: {r.get('commits_per_s')} puts/s, "
              f"p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms, "
              f"errors {r.get('errors')}")

    failovers = []
    fpath = os.path.join(args.dir, "failover.jsonl")
    if os.path.exists(fpath):
        with open(fpath) as f:
            failovers = [json.loads(line)["failover_ms"] for line in f if line.strip()]
    p50, p99 = percentile(failovers, 50), percentile(failovers, 99)
    out["etcd_failover_p50_ms"] = p50
    out["etcd_failover_p99_ms"] = p99
    if failovers:
        print(f"failover over {len(failovers)} trials: p50 {p50} ms, p99 {p99} ms "
              f"(min {min(failovers)}, max {max(failovers)})")
    else:
        print("failover: skipped")

    # Only the pre-load append+fsync probe goes in the JSON; the other two
    # probes are context for reading it.
    fs = load("fsync.json") or {}
    out["fsync_p50_ms"] = fs.get("p50_ms")
    out["fsync_p99_ms"] = fs.get("p99_ms")
    print(f"disk append+fsync: p50 {fs.get('p50_ms')} ms, p99 {fs.get('p99_ms')} ms")
    after = load("fsync_after.json")
    if after:
        print(f"disk append+fsync after the load: "
              f"p50 {after['p50_ms']} ms, p99 {after['p99_ms']} ms")
    fd = load("fdatasync_prealloc.json")
    if fd:
        print(f"disk preallocated overwrite+fdatasync (etcd WAL style): "
              f"p50 {fd['p50_ms']} ms, p99 {fd['p99_ms']} ms")
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------

def main():
    # Turn SIGTERM into a normal exit so multiprocessing's exit handler
    # terminates our daemon worker processes instead of orphaning them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("free-ports", help="print N free 127.0.0.1 TCP ports")
    p.add_argument("count", type=int)
    p.set_defaults(func=cmd_free_ports)

    p = sub.add_parser("wait-healthy", help="wait until every member is healthy")
    p.add_argument("--endpoints", type=endpoints_arg, required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(func=cmd_wait_healthy)

    p = sub.add_parser("leader", help="print the index of the leader endpoint")
    p.add_argument("--endpoints", type=endpoints_arg, required=True)
    p.add_argument("--timeout", type=float, default=15)
    p.set_defaults(func=cmd_leader)

    p = sub.add_parser("load", help="closed-loop put load at fixed concurrency")
    p.add_argument("--endpoints", type=endpoints_arg, required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--max-ops", type=int, default=2_000_000,
                   help="total cap on puts, split evenly across clients")
    p.add_argument("--value-size", type=int, default=1024)
    p.add_argument("--key-space", type=int, default=1000,
                   help="distinct keys per client")
    p.add_argument("--procs", type=int, default=0,
                   help="worker processes (default: CPU count)")
    p.add_argument("--req-timeout", type=float, default=10)
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("failover", help="kill -9 a pid, time the next commit")
    p.add_argument("--kill-pid", type=int, required=True)
    p.add_argument("--endpoints", type=endpoints_arg, required=True,
                   help="surviving members only")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--attempt-timeout", type=float, default=2.0)
    p.add_argument("--value-size", type=int, default=1024)
    p.set_defaults(func=cmd_failover)

    p = sub.add_parser("fsync", help="write+fsync latency in a directory")
    p.add_argument("--dir", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--mode", choices=["append-fsync", "prealloc-fdatasync"],
                   default="append-fsync")
    p.set_defaults(func=cmd_fsync)

    p = sub.add_parser("report", help="summarise result files, JSON last")
    p.add_argument("--dir", required=True)
    p.add_argument("--etcd-version", required=True)
    p.add_argument("--levels", type=int, nargs="+", default=[1, 16, 256])
    p.set_defaults(func=cmd_report)

    args = ap.parse_args()
    sys.exit(args.func(args) or 0)


if __name__ == "__main__":
    main()
