#!/usr/bin/env python3
"""Helper for scripts/bench-raft.sh and scripts/bench-etcd.sh: load generation,
failover timing and fsync probing against a local uptime-cluster or etcd
cluster, standard library only.

Both systems are driven by exactly the same client code, so the ratios
bench-raft.sh prints compare the servers, not two load generators.  Only the
request each put turns into differs (--api):

  etcd    POST /v3/kv/put on etcd's HTTP/JSON gRPC gateway (Debian packages
          etcd-server/etcd-client but not etcd's own `benchmark` tool)
  uptime  PUT /api/v1/settings/{key} with {"value": ...} on uptime-node's REST
          API (bearer token from --token or $UPTIMECTL_TOKEN)

Either way a put answers 200 only once Raft has committed and applied it, and
each one carries the same 1 KiB ASCII value under keys from the same key space.

Every subcommand is bounded in time (and load runs also in count), and
every endpoint is checked to be a loopback address before it is used.

Subcommands print machine-readable JSON on stdout and human-readable
progress on stderr, so the shell script can capture one and show the other.
"""

import argparse
import base64
import collections
import http.client
import ipaddress
import json
import math
import multiprocessing as mp
import os
import random
import resource
import signal
import socket
import string
import sys
import threading
import time
import urllib.parse

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
    parsed = urllib.parse.urlsplit(url.strip())
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
    eps = [e for e in text.split(",") if e.strip()]
    if not eps:
        raise argparse.ArgumentTypeError("need at least one endpoint")
    return [parse_endpoint(e) for e in eps]


def b64(data):
    return base64.b64encode(data).decode("ascii")


def ascii_value(size):
    """SIZE random ASCII letters and digits: a 1 KiB value is 1 KiB in both
    systems' stores (etcd gets it base64-wrapped on the wire only)."""
    rng = random.SystemRandom()
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


def request_json(endpoint, method, path, body, headers, timeout):
    """One request on a fresh connection; returns (status, raw, parsed JSON or
    None).  Raises OSError / HTTPException on transport failure or timeout."""
    conn = http.client.HTTPConnection(*endpoint, timeout=timeout)
    try:
        conn.request(method, path, body, headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, raw, json.loads(raw)
    except ValueError:
        return resp.status, raw, None


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The two targets.  Each knows how to phrase a put, recognise a committed
# one, tell whether a member is healthy, and find the leader.
# --------------------------------------------------------------------------

class EtcdApi:
    name = "etcd"

    def __init__(self, args):
        self.headers = JSON_HEADERS

    def put(self, key, value):
        """(method, path, body, headers) for one put; value is an ASCII str."""
        body = '{"key":"%s","value":"%s"}' % (b64(key.encode()), b64(value.encode()))
        return "POST", "/v3/kv/put", body, self.headers

    @staticmethod
    def put_ok(status, raw):
        # The gateway answers 200 with a response header only once the put
        # has been committed by Raft and applied; errors come back as non-200.
        return status == 200 and b'"header"' in raw

    def is_leader(self, ep, timeout=1.0):
        """Whether this member says it is the Raft leader."""
        try:
            status, _, doc = request_json(ep, "POST", "/v3/maintenance/status", "{}",
                                          self.headers, timeout)
        except (OSError, http.client.HTTPException):
            return False
        # uint64 ids are JSON strings in the gateway's encoding.
        return bool(status == 200 and isinstance(doc, dict) and doc.get("leader")
                    and doc.get("leader") == doc.get("header", {}).get("member_id"))

    def cluster_view(self, endpoints):
        """One poll of every member: (leader index or None, all healthy)."""
        leader, healthy = None, True
        for idx, ep in enumerate(endpoints):
            # /health is only "true" when the member sees a leader and can
            # serve a linearizable read, i.e. it has caught up.
            try:
                status, _, doc = request_json(ep, "GET", "/health", None, self.headers, 1.0)
                ok = status == 200 and isinstance(doc, dict) and doc.get("health") == "true"
            except (OSError, http.client.HTTPException):
                ok = False
            healthy = healthy and ok
            if self.is_leader(ep):
                leader = idx
        return leader, healthy


class UptimeApi:
    name = "uptime"

    def __init__(self, args):
        token = args.token or os.environ.get("UPTIMECTL_TOKEN")
        if not token:
            raise SystemExit("--api uptime needs --token or $UPTIMECTL_TOKEN")
        self.headers = dict(JSON_HEADERS, Authorization=f"Bearer {token}")

    def put(self, key, value):
        body = '{"value":"%s"}' % value
        return "PUT", "/api/v1/settings/" + urllib.parse.quote(key, safe=""), body, self.headers

    @staticmethod
    def put_ok(status, raw):
        # 200 {"key":…,"value":…} comes once the write is committed and applied.
        return status == 200 and b'"key"' in raw

    def _status(self, ep, timeout=1.0):
        try:
            status, _, doc = request_json(ep, "GET", "/api/v1/cluster", None,
                                          self.headers, timeout)
        except (OSError, http.client.HTTPException):
            return None
        return doc if status == 200 and isinstance(doc, dict) else None

    def is_leader(self, ep, timeout=1.0):
        """Whether this node says it is the Raft leader (its node_id is the
        leader it reports)."""
        doc = self._status(ep, timeout)
        return bool(doc and doc.get("leader") is not None
                    and doc.get("leader") == doc.get("node_id"))

    def cluster_view(self, endpoints):
        """One poll of every node's GET /api/v1/cluster.

        Leader: the node whose own answer names itself (a follower answers
        with the leader's members but its own node_id).  Healthy: every node
        answers, agrees there is a leader, the leader counts all members
        healthy, and every node has applied what the leader has (like etcd's
        /health, which needs a caught-up member)."""
        docs = [self._status(ep) for ep in endpoints]
        leader = None
        for idx, doc in enumerate(docs):
            if doc and doc.get("leader") is not None and doc.get("leader") == doc.get("node_id"):
                leader = idx
        if leader is None or any(d is None or d.get("leader") is None for d in docs):
            return leader, False
        lead = docs[leader]
        members = lead.get("members") or []
        healthy = (len(members) >= len(endpoints)
                   and all(m.get("healthy") for m in members)
                   and all(d.get("leader") == lead.get("leader") for d in docs)
                   and all((d.get("last_applied") or 0) >= (lead.get("last_applied") or 0)
                           for d in docs))
        return leader, healthy


APIS = {"etcd": EtcdApi, "uptime": UptimeApi}


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

def cmd_wait_healthy(args):
    api = APIS[args.api](args)
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    while time.monotonic() < deadline:
        if api.cluster_view(args.endpoints)[1]:
            print(json.dumps({"healthy_after_ms": round((time.monotonic() - t0) * 1000, 1)}))
            return 0
        time.sleep(0.1)
    log(f"{api.name} cluster not healthy after {args.timeout}s")
    return 1


def cmd_leader(args):
    """Print the index (into --endpoints) of the member that is Raft leader."""
    api = APIS[args.api](args)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        leader = api.cluster_view(args.endpoints)[0]
        if leader is not None:
            print(leader)
            return 0
        time.sleep(0.1)
    log(f"no {api.name} leader found within {args.timeout}s")
    return 1


# --------------------------------------------------------------------------
# put (one write, for a preflight check)
# --------------------------------------------------------------------------

def cmd_put(args):
    api = APIS[args.api](args)
    method, path, body, headers = api.put("bench-preflight", ascii_value(args.value_size))
    t0 = time.perf_counter()
    try:
        status, raw, _ = request_json(args.endpoints[0], method, path, body, headers,
                                      timeout=args.timeout)
    except (OSError, http.client.HTTPException) as e:
        print(json.dumps({"ok": False, "error": f"{_error_kind(e)}: {e}"}))
        return 1
    ok = api.put_ok(status, raw)
    res = {"ok": ok, "status": status, "ms": round((time.perf_counter() - t0) * 1000, 3)}
    if not ok:
        res["body"] = raw[:300].decode("utf-8", "replace")
    print(json.dumps(res))
    return 0 if ok else 1


# --------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------

def _error_kind(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    return type(exc).__name__


def _client_thread(api, endpoint, client_id, value, start_at, deadline,
                   max_ops, key_space, req_timeout, out):
    """Closed-loop client: one outstanding put at a time on a kept-alive
    connection, like one etcd client session."""
    latencies = []
    errors = collections.Counter()
    sample = None
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
        # A bounded key space per client keeps the keyspace (not etcd's MVCC
        # history) small, so index size does not drift across levels.
        method, path, body, headers = api.put(f"bench-{client_id}-{seq % key_space}", value)
        seq += 1
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body, headers)
            resp = conn.getresponse()
            raw = resp.read()
            ok = api.put_ok(resp.status, raw)
            if not ok:
                errors[str(resp.status)] += 1
                if sample is None:
                    sample = f"HTTP {resp.status}: {raw[:300].decode('utf-8', 'replace')}"
        except (OSError, http.client.HTTPException) as e:
            ok = False
            errors[_error_kind(e)] += 1
            if sample is None:
                sample = f"{_error_kind(e)}: {e}"
            conn.close()
            conn = http.client.HTTPConnection(*endpoint, timeout=req_timeout)
        t1 = time.perf_counter()
        if ok:
            latencies.append(t1 - t0)
    conn.close()
    out.append((latencies, errors, sample, time.time()))


def _load_process(api, assignments, value, start_at, deadline, max_ops,
                  key_space, req_timeout, queue):
    """Runs a share of the clients as threads in one process; several
    processes are used so one interpreter lock does not cap throughput."""
    out = []
    threads = [
        threading.Thread(
            target=_client_thread,
            args=(api, ep, cid, value, start_at, deadline, max_ops, key_space,
                  req_timeout, out),
            daemon=True)
        for cid, ep in assignments
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = [x for l, _, _, _ in out for x in l]
    errors = collections.Counter()
    for _, e, _, _ in out:
        errors.update(e)
    sample = next((s for _, _, s, _ in out if s), None)
    last_end = max((end for _, _, _, end in out), default=start_at)
    queue.put((lat, dict(errors), sample, last_end))


def cmd_load(args):
    api = APIS[args.api](args)
    clients = args.clients
    # Which endpoint leads as the run starts: with 1 proposer (on endpoint 0)
    # it tells whether its writes were forwarded by a follower.
    leader_idx = api.cluster_view(args.endpoints)[0]
    procs = max(1, min(args.procs or os.cpu_count() or 1, clients))
    value = ascii_value(args.value_size)
    # Spread clients over members round-robin, as etcd's own benchmark does
    # when given several endpoints; followers forward proposals to the leader.
    # --via leader|follower puts every client on one member of that role, so a
    # lone proposer's latency is compared like for like across systems.
    endpoints = args.endpoints
    on_leader = None
    if args.via != "spread":
        if leader_idx is None:
            log(f"no {api.name} leader known: cannot place clients --via {args.via}")
            return 1
        if args.via == "leader":
            endpoints = [args.endpoints[leader_idx]]
        else:
            endpoints = [e for i, e in enumerate(args.endpoints) if i != leader_idx][:1]
        on_leader = args.via == "leader"
    assignments = [(f"c{clients}-{i}", endpoints[i % len(endpoints)])
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
                        args=(api, share, value, start_at, deadline,
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
    errors = collections.Counter()
    for r in results:
        errors.update(r[1])
    sample = next((r[2] for r in results if r[2]), None)
    elapsed = max(r[3] for r in results) - start_at
    ops = len(lat)
    # The generator shares the machine's cores with the servers; its CPU use
    # shows when the figures say more about Python than about the server.
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen_cores = (ru.ru_utime + ru.ru_stime) / elapsed if elapsed > 0 else 0.0
    res = {
        "api": api.name,
        "clients": clients,
        "value_size": args.value_size,
        "ops": ops,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_sample": sample,
        "elapsed_s": round(elapsed, 3),
        "commits_per_s": round(ops / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(lat, 50) * 1000, 3) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 3) if lat else None,
        "max_ms": round(max(lat) * 1000, 3) if lat else None,
        "loadgen_cores": round(loadgen_cores, 2),
        "leader_endpoint_at_start": leader_idx,
        "via": args.via,
        "proposer_on_leader": on_leader,
    }
    log(f"  clients={clients:<4} {res['commits_per_s']:>9.1f} puts/s  "
        f"p50={res['p50_ms']} ms  p99={res['p99_ms']} ms  "
        f"(ops={ops}, errors={res['errors']}, {res['elapsed_s']} s, "
        f"{procs} procs using {res['loadgen_cores']} cores)")
    if errors:
        log(f"    errors by kind: {dict(errors)}; first: {sample}")
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
    api = APIS[args.api](args)
    value = ascii_value(args.value_size)
    lock = threading.Lock()
    done = threading.Event()
    first = []
    failures = collections.Counter()

    def attempt(ep, n):
        method, path, body, headers = api.put(f"failover-{n}", value)
        try:
            status, raw, _ = request_json(ep, method, path, body, headers,
                                          timeout=args.attempt_timeout)
        except (OSError, http.client.HTTPException) as e:
            with lock:
                failures[_error_kind(e)] += 1
            return
        if api.put_ok(status, raw):
            t = time.monotonic()
            with lock:
                first.append(t)
            done.set()
        else:
            with lock:
                failures[str(status)] += 1

    # Alongside, poll each survivor (one thread each, so a slow answer from
    # one does not delay noticing the other) until one says it is leader:
    # this splits the failover time into "new leader" and "first commit".
    elected = []
    seen = threading.Event()

    def watch_leader(ep):
        while not seen.is_set() and time.monotonic() < deadline:
            if api.is_leader(ep, timeout=0.5):
                t = time.monotonic()
                with lock:
                    elected.append(t)
                seen.set()
                return
            time.sleep(0.01)

    os.kill(args.kill_pid, signal.SIGKILL)
    t_kill = time.monotonic()
    # Wall-clock kill time, to line a trial up with the servers' logs.
    now = time.time()
    killed_at = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    deadline = t_kill + args.timeout
    watchers = [threading.Thread(target=watch_leader, args=(ep,), daemon=True)
                for ep in args.endpoints]
    for w in watchers:
        w.start()
    n = 0
    while not done.is_set() and time.monotonic() < deadline:
        ep = args.endpoints[n % len(args.endpoints)]
        threading.Thread(target=attempt, args=(ep, n), daemon=True).start()
        n += 1
        done.wait(args.interval)
    with lock:
        failed = dict(failures)
    if not first:
        log(f"no put committed within {args.timeout}s of killing the leader "
            f"({n} attempts; failures by kind: {failed})")
        return 1
    with lock:
        ms = (min(first) - t_kill) * 1000
    # A commit means there is a leader; give the watchers a moment to see it.
    seen.wait(2.0)
    with lock:
        leader_ms = round((min(elected) - t_kill) * 1000, 1) if elected else None
    print(json.dumps({"failover_ms": round(ms, 3), "leader_ms": leader_ms,
                      "attempts": n, "failed_attempts": failed,
                      "killed_at": killed_at}))
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
# report (bench-etcd.sh on its own) and compare (bench-raft.sh)
# --------------------------------------------------------------------------

def _load_json(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _failovers(directory, key="failover_ms"):
    path = os.path.join(directory, "failover.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        docs = [json.loads(line) for line in f if line.strip()]
    return [d[key] for d in docs if d.get(key) is not None]


def cmd_report(args):
    """Combine etcd's per-step JSON files into the summary and the final JSON
    line (bench-etcd.sh)."""
    out = {"etcd_version": args.etcd_version}
    print("\n=== etcd results ===")
    for c in args.levels:
        r = _load_json(args.dir, f"load_{c}.json") or {}
        out[f"etcd_commits_per_s_{c}"] = r.get("commits_per_s")
        out[f"etcd_p50_ms_{c}"] = r.get("p50_ms")
        out[f"etcd_p99_ms_{c}"] = r.get("p99_ms")
        out[f"etcd_errors_{c}"] = r.get("errors")
        if c == 1 and r.get("proposer_on_leader") is not None:
            out["etcd_proposer_1_on_leader"] = r["proposer_on_leader"]
        elif c == 1 and r.get("leader_endpoint_at_start") is not None:
            out["etcd_proposer_1_on_leader"] = r["leader_endpoint_at_start"] == 0
        print(f"{c:>4} clients: {r.get('commits_per_s')} puts/s, "
              f"p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms, "
              f"errors {r.get('errors')}")

    f = _load_json(args.dir, "load_1_follower.json") or {}
    out["etcd_p50_ms_1_via_follower"] = f.get("p50_ms")
    out["etcd_p99_ms_1_via_follower"] = f.get("p99_ms")

    failovers = _failovers(args.dir)
    p50, p99 = percentile(failovers, 50), percentile(failovers, 99)
    out["etcd_failover_p50_ms"] = p50
    out["etcd_failover_p99_ms"] = p99
    out["etcd_failover_trials"] = len(failovers)
    elected = _failovers(args.dir, "leader_ms")
    out["etcd_failover_leader_p50_ms"] = percentile(elected, 50)
    out["etcd_failover_leader_p99_ms"] = percentile(elected, 99)
    if failovers:
        print(f"failover over {len(failovers)} trials: p50 {p50} ms, p99 {p99} ms "
              f"(min {min(failovers)}, max {max(failovers)}); new leader seen after "
              f"p50 {out['etcd_failover_leader_p50_ms']} ms, "
              f"p99 {out['etcd_failover_leader_p99_ms']} ms")
    else:
        print("failover: skipped")

    # Only the pre-load append+fsync probe goes in the JSON's headline keys;
    # the other two probes are context for reading it.
    fs = _load_json(args.dir, "fsync.json") or {}
    out["fsync_p50_ms"] = fs.get("p50_ms")
    out["fsync_p99_ms"] = fs.get("p99_ms")
    print(f"disk append+fsync: p50 {fs.get('p50_ms')} ms, p99 {fs.get('p99_ms')} ms")
    after = _load_json(args.dir, "fsync_after.json")
    if after:
        out["fsync_after_p99_ms"] = after["p99_ms"]
        print(f"disk append+fsync after the load: "
              f"p50 {after['p50_ms']} ms, p99 {after['p99_ms']} ms")
    fd = _load_json(args.dir, "fdatasync_prealloc.json")
    if fd:
        out["fdatasync_prealloc_p99_ms"] = fd["p99_ms"]
        print(f"disk preallocated overwrite+fdatasync (etcd WAL style): "
              f"p50 {fd['p50_ms']} ms, p99 {fd['p99_ms']} ms")
    print(json.dumps(out))
    return 0


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:.1f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    return f"{v}{unit}"


def cmd_compare(args):
    """Side-by-side table of uptime-cluster vs etcd, then one JSON object as
    the last line (bench-raft.sh).  --dir holds uptime's per-step files and
    fsync probes; --etcd-json is bench-etcd.sh's last line (absent: etcd
    figures and ratios are null)."""
    etcd = {}
    if args.etcd_json and os.path.exists(args.etcd_json):
        with open(args.etcd_json) as f:
            text = f.read().strip()
        if text:
            etcd = json.loads(text)

    out = {"uptime_version": args.uptime_version,
           "etcd_version": etcd.get("etcd_version"),
           "bench_seconds": args.bench_seconds,
           "value_size": 1024,
           "etcd_skipped": args.etcd_skipped}
    for c in args.levels:
        r = _load_json(args.dir, f"load_{c}.json") or {}
        out[f"commits_per_s_{c}"] = r.get("commits_per_s")
        out[f"p50_ms_{c}"] = r.get("p50_ms")
        out[f"p99_ms_{c}"] = r.get("p99_ms")
        out[f"errors_{c}"] = r.get("errors")
        out[f"loadgen_cores_{c}"] = r.get("loadgen_cores")
        if c == 1:
            li = r.get("leader_endpoint_at_start")
            on = r.get("proposer_on_leader")
            out["proposer_1_on_leader"] = on if on is not None else (None if li is None else li == 0)
            out["etcd_proposer_1_on_leader"] = etcd.get("etcd_proposer_1_on_leader")
        for k in ("commits_per_s", "p50_ms", "p99_ms", "errors"):
            out[f"etcd_{k}_{c}"] = etcd.get(f"etcd_{k}_{c}")

    f = _load_json(args.dir, "load_1_follower.json") or {}
    out["p50_ms_1_via_follower"] = f.get("p50_ms")
    out["p99_ms_1_via_follower"] = f.get("p99_ms")
    out["etcd_p50_ms_1_via_follower"] = etcd.get("etcd_p50_ms_1_via_follower")
    out["etcd_p99_ms_1_via_follower"] = etcd.get("etcd_p99_ms_1_via_follower")

    failovers = _failovers(args.dir)
    out["failover_p50_ms"] = percentile(failovers, 50)
    out["failover_p99_ms"] = percentile(failovers, 99)
    out["failover_trials"] = len(failovers)
    out["failover_failed_trials"] = args.failover_failed
    out["etcd_failover_p50_ms"] = etcd.get("etcd_failover_p50_ms")
    out["etcd_failover_p99_ms"] = etcd.get("etcd_failover_p99_ms")
    out["etcd_failover_trials"] = etcd.get("etcd_failover_trials")
    # Kill -9 to a survivor naming itself leader: the election part of the
    # failover time (polled every ~10 ms, so a few ms late at worst).
    elected = _failovers(args.dir, "leader_ms")
    out["failover_leader_p50_ms"] = percentile(elected, 50)
    out["failover_leader_p99_ms"] = percentile(elected, 99)
    out["etcd_failover_leader_p50_ms"] = etcd.get("etcd_failover_leader_p50_ms")
    out["etcd_failover_leader_p99_ms"] = etcd.get("etcd_failover_leader_p99_ms")

    fs = _load_json(args.dir, "fsync.json") or {}
    out["fsync_p50_ms"] = fs.get("p50_ms")
    out["fsync_p99_ms"] = fs.get("p99_ms")
    after = _load_json(args.dir, "fsync_after.json") or {}
    out["fsync_after_uptime_p99_ms"] = after.get("p99_ms")
    fd = _load_json(args.dir, "fdatasync_prealloc.json") or {}
    out["fdatasync_prealloc_p50_ms"] = fd.get("p50_ms")
    out["fdatasync_prealloc_p99_ms"] = fd.get("p99_ms")
    # bench-etcd.sh's own probes, taken just before and after etcd's load.
    out["fsync_before_etcd_p99_ms"] = etcd.get("fsync_p99_ms")
    out["fsync_after_etcd_p99_ms"] = etcd.get("fsync_after_p99_ms")

    # Ratios are ours / etcd's: > 1 is better for throughput, < 1 is better
    # for latency and failover time.
    for c in args.levels:
        out[f"ratio_commits_{c}"] = _ratio(out[f"commits_per_s_{c}"], out[f"etcd_commits_per_s_{c}"])
        out[f"ratio_p50_{c}"] = _ratio(out[f"p50_ms_{c}"], out[f"etcd_p50_ms_{c}"])
        out[f"ratio_p99_{c}"] = _ratio(out[f"p99_ms_{c}"], out[f"etcd_p99_ms_{c}"])
    out["ratio_failover_p50"] = _ratio(out["failover_p50_ms"], out["etcd_failover_p50_ms"])
    out["ratio_failover_p99"] = _ratio(out["failover_p99_ms"], out["etcd_failover_p99_ms"])
    out["ratio_p99_1_vs_fsync_p99"] = _ratio(out["p99_ms_1"] if 1 in args.levels else None,
                                             out["fsync_p99_ms"])
    out["etcd_ratio_p99_1_vs_fsync_p99"] = _ratio(out.get("etcd_p99_ms_1"), out["fsync_p99_ms"])

    # The targets, reported, not asserted.
    def verdict(ok):
        return None if ok is None else bool(ok)
    r256 = out.get("ratio_commits_256")
    rf = out["ratio_p99_1_vs_fsync_p99"]
    fo = out["failover_p50_ms"]
    out["target_commits_256_ge_etcd"] = verdict(None if r256 is None else r256 >= 1.0)
    out["target_p99_1_within_2x_fsync_p99"] = verdict(None if rf is None else rf <= 2.0)
    out["target_failover_p50_lt_1s"] = verdict(None if fo is None else fo < 1000)

    w = 14
    print()
    print(f"=== uptime-cluster {args.uptime_version or ''} vs etcd "
          f"{out['etcd_version'] or '(skipped)'}: 3 nodes on 127.0.0.1, fsync on, "
          f"1 KiB puts, {args.bench_seconds}s per level ===")
    print(f"{'':<26}{'uptime':>{w}}{'etcd':>{w}}{'ratio u/e':>{w}}")
    for c in args.levels:
        for label, key, rkey in (("commits/s", "commits_per_s", "ratio_commits"),
                                 ("p50 ms", "p50_ms", "ratio_p50"),
                                 ("p99 ms", "p99_ms", "ratio_p99")):
            print(f"{f'{c:>3} proposers {label}':<26}{_fmt(out[f'{key}_{c}']):>{w}}"
                  f"{_fmt(out[f'etcd_{key}_{c}']):>{w}}{_fmt(out[f'{rkey}_{c}']):>{w}}")
        print(f"{f'{c:>3} proposers errors':<26}{_fmt(out[f'errors_{c}']):>{w}}"
              f"{_fmt(out[f'etcd_errors_{c}']):>{w}}")
    def where(on):
        return "-" if on is None else ("leader" if on else "follower")
    print(f"{'  1 proposer wrote via':<26}{where(out.get('proposer_1_on_leader')):>{w}}"
          f"{where(out.get('etcd_proposer_1_on_leader')):>{w}}")
    print(f"{'  1 via follower p50 ms':<26}{_fmt(out['p50_ms_1_via_follower']):>{w}}"
          f"{_fmt(out['etcd_p50_ms_1_via_follower']):>{w}}")
    print(f"{'  1 via follower p99 ms':<26}{_fmt(out['p99_ms_1_via_follower']):>{w}}"
          f"{_fmt(out['etcd_p99_ms_1_via_follower']):>{w}}")
    print(f"{'failover p50 ms':<26}{_fmt(out['failover_p50_ms']):>{w}}"
          f"{_fmt(out['etcd_failover_p50_ms']):>{w}}{_fmt(out['ratio_failover_p50']):>{w}}")
    print(f"{'failover p99 ms':<26}{_fmt(out['failover_p99_ms']):>{w}}"
          f"{_fmt(out['etcd_failover_p99_ms']):>{w}}{_fmt(out['ratio_failover_p99']):>{w}}")
    print(f"{'  new leader seen p50':<26}{_fmt(out['failover_leader_p50_ms']):>{w}}"
          f"{_fmt(out['etcd_failover_leader_p50_ms']):>{w}}")
    print(f"{'  new leader seen p99':<26}{_fmt(out['failover_leader_p99_ms']):>{w}}"
          f"{_fmt(out['etcd_failover_leader_p99_ms']):>{w}}")
    print(f"{'failover trials':<26}{_fmt(out['failover_trials']):>{w}}"
          f"{_fmt(out['etcd_failover_trials']):>{w}}")
    if failovers:
        print(f"  uptime failover min {min(failovers)} ms, max {max(failovers)} ms")
    print(f"disk append+fsync 1 KiB: p50 {_fmt(out['fsync_p50_ms'])} ms, "
          f"p99 {_fmt(out['fsync_p99_ms'])} ms (before any load); p99 after uptime's "
          f"load {_fmt(out['fsync_after_uptime_p99_ms'])} ms, before/after etcd's "
          f"{_fmt(out['fsync_before_etcd_p99_ms'])}/{_fmt(out['fsync_after_etcd_p99_ms'])} ms")
    print(f"disk preallocated overwrite+fdatasync: p50 {_fmt(out['fdatasync_prealloc_p50_ms'])} ms, "
          f"p99 {_fmt(out['fdatasync_prealloc_p99_ms'])} ms")
    print(f"p99 at 1 proposer / disk fsync p99: uptime {_fmt(out['ratio_p99_1_vs_fsync_p99'])}, "
          f"etcd {_fmt(out['etcd_ratio_p99_1_vs_fsync_p99'])}")

    def mark(ok):
        return "n/a" if ok is None else ("met" if ok else "NOT met")
    print("targets (reported, not asserted):")
    print(f"  throughput at 256 proposers >= etcd's      ratio {_fmt(r256):>8}   "
          f"{mark(out['target_commits_256_ge_etcd'])}")
    print(f"  p99 at 1 proposer <= 2x disk fsync p99     ratio {_fmt(rf):>8}   "
          f"{mark(out['target_p99_1_within_2x_fsync_p99'])}")
    print(f"  failover p50 < 1000 ms                     {_fmt(fo, ' ms'):>14}   "
          f"{mark(out['target_failover_p50_lt_1s'])}")
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------

def main():
    # Turn SIGTERM into a normal exit so multiprocessing's exit handler
    # terminates our daemon worker processes instead of orphaning them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def target(p):
        p.add_argument("--endpoints", type=endpoints_arg, required=True)
        p.add_argument("--api", choices=sorted(APIS), default="etcd")
        p.add_argument("--token", default=None,
                       help="uptime API token (default: $UPTIMECTL_TOKEN)")

    p = sub.add_parser("free-ports", help="print N free 127.0.0.1 TCP ports")
    p.add_argument("count", type=int)
    p.set_defaults(func=cmd_free_ports)

    p = sub.add_parser("wait-healthy", help="wait until every member is healthy")
    target(p)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(func=cmd_wait_healthy)

    p = sub.add_parser("leader", help="print the index of the leader endpoint")
    target(p)
    p.add_argument("--timeout", type=float, default=15)
    p.set_defaults(func=cmd_leader)

    p = sub.add_parser("put", help="one put through the first endpoint")
    target(p)
    p.add_argument("--value-size", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=10)
    p.set_defaults(func=cmd_put)

    p = sub.add_parser("load", help="closed-loop put load at fixed concurrency")
    target(p)
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
    p.add_argument("--via", choices=["spread", "leader", "follower"], default="spread",
                   help="put clients round-robin on all members, or all on the leader or on a follower")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("failover", help="kill -9 a pid, time the next commit")
    target(p)
    p.add_argument("--kill-pid", type=int, required=True)
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

    p = sub.add_parser("report", help="summarise etcd result files, JSON last")
    p.add_argument("--dir", required=True)
    p.add_argument("--etcd-version", required=True)
    p.add_argument("--levels", type=int, nargs="+", default=[1, 16, 256])
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="uptime vs etcd table, JSON last")
    p.add_argument("--dir", required=True, help="uptime result files")
    p.add_argument("--etcd-json", default=None, help="bench-etcd.sh's last line")
    p.add_argument("--etcd-skipped", action="store_true")
    p.add_argument("--uptime-version", default=None)
    p.add_argument("--bench-seconds", type=float, default=None)
    p.add_argument("--failover-failed", type=int, default=0)
    p.add_argument("--levels", type=int, nargs="+", default=[1, 16, 256])
    p.set_defaults(func=cmd_compare)

    args = ap.parse_args()
    sys.exit(args.func(args) or 0)


if __name__ == "__main__":
    main()
