#!/usr/bin/env python3
"""The timed half of scripts/jepsen-alertmanager.sh.

The shell script installs Alertmanager, starts three instances and owns the
nftables table; this helper does everything that runs against the clock:

- `ready`: waits until every instance reports its gossip cluster as ready
  with all peers in it.
- `schedule`: prints the partition schedule a seed draws, or checks and
  prints a `--schedule` file.
- `run`: the sink, the "Prometheus" driver and the nemesis together, then
  the count of duplicate and missed notifications.

Stdlib only, so it runs on any machine the script runs on.

Counting. A notification is (the alert's labels, its status, its startsAt).
Alertmanager groups alerts into one webhook, so every body's `alerts` array
is unpacked. A duplicate is every delivery of a notification after its first.
A missed notification is an alert the driver fired (resolved) that never
reached the sink as firing (resolved) before the end of the grace period.
"""

import argparse
import datetime as dt
import http.client
import http.server
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

SYSTEM = "alertmanager-ha"
FENCE_HEADER = "X-Uptime-Fencing-Token"
# Prometheus reaches every instance in a real split brain, so the driver's
# traffic must never match a cut. It binds its own address, outside 1..3.
DRIVER_SOURCE = "127.0.0.100"


def node_addr(k):
    return f"127.0.0.{k}"


def iso(ms):
    """Unix milliseconds as the RFC 3339 text Alertmanager's API takes."""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


_RFC3339 = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$"
)


def parse_ms(text):
    """RFC 3339 (Go may print up to nine fraction digits) to Unix ms."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not RFC 3339: {text!r}")
    base, frac, zone = m.groups()
    zone = "+00:00" if zone == "Z" else zone
    t = dt.datetime.fromisoformat(base + zone)
    ms = int(t.timestamp()) * 1000
    if frac:
        ms += int((frac + "000")[:3])
    return ms


def labels_key(labels):
    return tuple(sorted(labels.items()))


def label_text(key):
    return "{" + ",".join(f"{k}={v}" for k, v in key) + "}"


# === schedule ===


def shape_cuts(shape, a, b):
    """Directed cuts (src, dst) for a shape on nodes 1..3."""
    others = [n for n in (1, 2, 3) if n != a]
    if shape == "isolate":
        # With three nodes, isolating one is the same cut as the split
        # {a} | {b, c}: both directions between a and each other node.
        return [[a, o] for o in others] + [[o, a] for o in others]
    if shape == "one-way":
        return [[a, o] for o in others]
    if shape == "bridge":
        return [[a, b], [b, a]]
    raise ValueError(shape)


def describe(shape, a, b):
    others = [n for n in (1, 2, 3) if n != a]
    if shape == "isolate":
        return f"isolate am{a}: {{{a}}} | {{{others[0]},{others[1]}}}"
    if shape == "one-way":
        return f"one-way: am{a} -> am{others[0]},am{others[1]} dropped"
    c = ({1, 2, 3} - {a, b}).pop()
    return f"bridge: am{a} x am{b} cut, am{c} reaches both"


def draw_schedule(seed, run_s):
    """Bounded, non-overlapping partitions, each healed before the next,
    none in the first 15 s (settling) or the last 30 s (the quiet tail)."""
    rng = random.Random(seed)
    faults = []
    t = rng.uniform(15, 25)
    while True:
        hold = rng.uniform(15, 40)
        if t + hold > run_s - 30:
            break
        # The first partition is always the split brain proper ({a} | {b,c});
        # later ones may also be partial shapes.
        shape = ("isolate" if not faults else
                 rng.choices(["isolate", "bridge", "one-way"], weights=[2, 1, 1])[0])
        a, b = rng.sample([1, 2, 3], 2)
        faults.append({
            "start_s": round(t, 1),
            "hold_s": round(hold, 1),
            "cuts": shape_cuts(shape, a, b),
            "shape": describe(shape, a, b),
        })
        t += hold + rng.uniform(10, 20)
    return faults


def load_schedule(path, run_s):
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, list):
        raise SystemExit(f"{path}: expected a JSON list of faults")
    faults = []
    for i, item in enumerate(raw):
        try:
            start, hold = float(item["start_s"]), float(item["hold_s"])
            cuts = [[int(a), int(b)] for a, b in item["cuts"]]
        except (KeyError, TypeError, ValueError) as e:
            raise SystemExit(f"{path}: fault {i}: {e!r}; want "
                             '{"start_s": float, "hold_s": float, "cuts": [[a, b], ...]}')
        for a, b in cuts:
            if a not in (1, 2, 3) or b not in (1, 2, 3) or a == b:
                raise SystemExit(f"{path}: fault {i}: cut {[a, b]} is not between two of nodes 1..3")
        if start < 0 or hold <= 0 or start + hold > run_s:
            raise SystemExit(f"{path}: fault {i}: [{start}, {start + hold}] s is not inside the "
                             f"{run_s:.0f} s run (raise --minutes)")
        shape = item.get("shape") or "cuts " + " ".join(f"{a}->{b}" for a, b in cuts)
        faults.append({"start_s": start, "hold_s": hold, "cuts": cuts, "shape": shape})
    faults.sort(key=lambda f: f["start_s"])
    for prev, nxt in zip(faults, faults[1:]):
        # One fault at a time: a heal flushes every cut.
        if nxt["start_s"] < prev["start_s"] + prev["hold_s"]:
            raise SystemExit(f"{path}: faults at {prev['start_s']} s and {nxt['start_s']} s overlap")
    return faults


# === sink ===


class Fence:
    """The fencing rule of our sink (tests/jepsen-lite/src/sink.rs): keep the
    highest leader (term, node) accepted, refuse an older one with 409. A
    request without a token, or with `unfenced`, is always accepted."""

    def __init__(self):
        self.highest = None
        self.stale_rejected = 0
        self.unfenced = 0

    @staticmethod
    def parse(token):
        if token is None:
            return None
        parts = token.strip().split("-")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            return None
        return tuple(int(p) for p in parts)

    def admit(self, token):
        fence = self.parse(token)
        if fence is None:
            self.unfenced += 1
            return True
        leader = fence[:2]
        if self.highest is not None and leader < self.highest:
            self.stale_rejected += 1
            return False
        self.highest = leader if self.highest is None else max(self.highest, leader)
        return True


class Sink:
    def __init__(self, host, port, log_path):
        self.fence = Fence()
        self.lock = threading.Lock()
        self.records = []
        self.log = open(log_path, "w")
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode("utf-8", "replace")
                at_ms = time.time() * 1000
                token = self.headers.get(FENCE_HEADER)
                with sink.lock:
                    accepted = sink.fence.admit(token)
                    rec = {"at_ms": round(at_ms, 1), "path": self.path,
                           "fence_token": token, "accepted": accepted, "body": body}
                    sink.records.append(rec)
                    sink.log.write(json.dumps(rec) + "\n")
                    sink.log.flush()
                self.send_response(200 if accepted else 409)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.log.close()


# === driver ===


class Driver:
    """Plays Prometheus: every `resend_s` it posts every alert it knows to
    every instance; a firing alert carries endsAt four resends ahead (as
    Prometheus does with its resend delay), a resolved one its resolution
    time, and resolved alerts keep being sent until the end, as Prometheus
    keeps sending them for 15 minutes."""

    def __init__(self, api_urls, alerts, t0_ms, resend_s, stop):
        self.apis = api_urls
        self.alerts = alerts
        self.t0_ms = t0_ms
        self.resend_s = resend_s
        self.stop = stop
        self.post_errors = 0
        self.posts = 0

    def payload(self, now_ms):
        out = []
        for a in self.alerts:
            if now_ms < a["fire_ms"]:
                continue
            resolved = now_ms >= a["resolve_ms"]
            out.append({
                "labels": a["labels"],
                "annotations": {"summary": f"jepsen flip {a['n']}"},
                "startsAt": iso(a["fire_ms"]),
                "endsAt": iso(a["resolve_ms"] if resolved
                              else now_ms + 4 * self.resend_s * 1000),
                "generatorURL": "http://127.0.0.100/jepsen",
            })
            a["_pending"] = "resolved" if resolved else "firing"
        return out

    def post(self, url, body):
        host, port = url
        conn = http.client.HTTPConnection(host, port, timeout=2,
                                          source_address=(DRIVER_SOURCE, 0))
        try:
            conn.request("POST", "/api/v2/alerts", body,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def run(self):
        while not self.stop.is_set():
            tick = time.monotonic()
            now_ms = time.time() * 1000
            alerts = self.payload(now_ms)
            if alerts:
                body = json.dumps(alerts)
                ok = 0
                for url in self.apis:
                    self.posts += 1
                    if self.post(url, body):
                        ok += 1
                    else:
                        self.post_errors += 1
                # An alert counts as fired (resolved) once at least one
                # instance took it; the instances are never cut off from us.
                for a in self.alerts:
                    st = a.pop("_pending", None)
                    if st and ok and a.get(st + "_posted_ms") is None:
                        a[st + "_posted_ms"] = now_ms
            self.stop.wait(max(0.0, self.resend_s - (time.monotonic() - tick)))


def plan_alerts(t0_ms, run_s, every_s, firing_s):
    """Flip<N> fires every `every_s` and resolves `firing_s` later; the last
    one resolves at least 10 s before the end of the run."""
    alerts, n = [], 0
    while 2 + n * every_s + firing_s <= run_s - 10:
        # Whole milliseconds: startsAt goes out and comes back as text, and
        # the notification's identity includes it.
        fire = t0_ms + round((2 + n * every_s) * 1000)
        alerts.append({
            "n": n,
            "labels": {"alertname": f"Flip{n}", "job": "jepsen-am", "severity": "page"},
            "fire_ms": fire,
            "resolve_ms": fire + round(firing_s * 1000),
        })
        n += 1
    return alerts


# === nemesis ===


class Nemesis:
    """Applies each fault's directed cuts, holds, heals.

    The rules go into the `cuts` chain of the script's table (prerouting,
    after conntrack, before NAT): there, a packet dialled by an instance
    already carries the source the script's SNAT gave it, and a reply on
    such a connection is recognised by its conntrack reply tuple, whose
    addresses are the ones on the wire before the reply was mapped back to
    127.0.0.1. Dropping on ingress keeps the drop silent: a drop on output
    would fail the sender's sendto() with EPERM, which no real network does.
    Only the gossip port is matched, so nothing else on these addresses is
    disturbed."""

    def __init__(self, table, cluster_port, faults, t0_mono, t0_ms, stop):
        self.table = table
        self.port = cluster_port
        self.faults = faults
        self.t0_mono = t0_mono
        self.t0_ms = t0_ms
        self.stop = stop
        self.applied = []

    def nft(self, script):
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True,
                       timeout=10)

    def cut(self, cuts):
        lines = []
        for a, b in cuts:
            src, dst = node_addr(a), node_addr(b)
            # a dialled b (or sent b a datagram first): a -> b:port
            lines.append(f"add rule inet {self.table} cuts ct direction original "
                         f"ip saddr {src} ip daddr {dst} meta l4proto {{ tcp, udp }} "
                         f"th dport {self.port} drop")
            # b dialled a: a's replies, from a:port
            lines.append(f"add rule inet {self.table} cuts ct direction reply "
                         f"ct reply ip saddr {src} ct reply ip daddr {dst} "
                         f"meta l4proto {{ tcp, udp }} th sport {self.port} drop")
        self.nft("\n".join(lines) + "\n")

    def heal(self):
        self.nft(f"flush chain inet {self.table} cuts\n")

    def now_s(self):
        return time.monotonic() - self.t0_mono

    def run(self):
        try:
            for f in self.faults:
                if self.stop.wait(max(0.0, f["start_s"] - self.now_s())):
                    return
                self.cut(f["cuts"])
                rec = {"shape": f["shape"], "cuts": f["cuts"],
                       "planned_start_s": f["start_s"], "planned_hold_s": f["hold_s"],
                       "start_s": round(self.now_s(), 2)}
                rec["start_ms"] = self.t0_ms + rec["start_s"] * 1000
                self.applied.append(rec)
                self.stop.wait(max(0.0, f["start_s"] + f["hold_s"] - self.now_s()))
                self.heal()
                rec["end_s"] = round(self.now_s(), 2)
                rec["end_ms"] = self.t0_ms + rec["end_s"] * 1000
        finally:
            # Whatever happened, leave no cut behind; the shell script deletes
            # the whole table on exit as well.
            try:
                self.heal()
            except Exception:
                pass
            for rec in self.applied:
                if "end_s" not in rec:
                    rec["end_s"] = round(self.now_s(), 2)
                    rec["end_ms"] = self.t0_ms + rec["end_s"] * 1000


class ForeignCuts:
    """Watches for drop rules in other nftables tables while the run lasts.
    Another harness on this machine (jepsen-lite cuts 127.0.0.A -> B on
    every port) would partition these instances too, outside our schedule;
    a run that saw such rules says so instead of counting their effect as
    ours."""

    def __init__(self, table, t0_mono, stop):
        self.table = table
        self.t0_mono = t0_mono
        self.stop = stop
        self.seen = {}

    def poll(self):
        try:
            out = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True,
                                 text=True, timeout=5).stdout
            items = json.loads(out).get("nftables", [])
        except (OSError, ValueError, subprocess.SubprocessError):
            return
        now = round(time.monotonic() - self.t0_mono, 1)
        for item in items:
            rule = item.get("rule")
            if not rule or rule.get("table") == self.table:
                continue
            if any("drop" in e for e in rule.get("expr", []) if isinstance(e, dict)):
                name = f"{rule.get('family')} {rule.get('table')}"
                first, _ = self.seen.get(name, (now, now))
                self.seen[name] = (first, now)

    def run(self):
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(2)

    def report(self):
        return [{"table": t, "first_seen_s": a, "last_seen_s": b}
                for t, (a, b) in sorted(self.seen.items())]


# === counting ===


def unpack(records, sender_of):
    """One delivery per alert in each accepted webhook body."""
    out, bad = [], 0
    for rec in records:
        try:
            body = json.loads(rec["body"])
            alerts = body["alerts"]
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        sender = sender_of(body.get("externalURL", ""))
        for a in alerts:
            out.append({
                "at_ms": rec["at_ms"],
                "key": (labels_key(a["labels"]), a["status"], parse_ms(a["startsAt"])),
                "sender": sender,
                "accepted": rec["accepted"],
                "fenced": rec["fence_token"] is not None and Fence.parse(rec["fence_token"]) is not None,
            })
    return out, bad


def analyse(alerts, records, faults, t0_ms, after_heal_s, sender_of):
    deliveries, unparsable = unpack(records, sender_of)
    deliveries.sort(key=lambda d: d["at_ms"])

    expected = {}
    for a in alerts:
        lk = labels_key(a["labels"])
        if a.get("firing_posted_ms") is not None:
            expected[(lk, "firing", a["fire_ms"])] = a["firing_posted_ms"]
        if a.get("resolved_posted_ms") is not None:
            expected[(lk, "resolved", a["fire_ms"])] = a["resolved_posted_ms"]

    def in_fault(at_ms):
        for i, f in enumerate(faults):
            if f["start_ms"] <= at_ms <= f["end_ms"] + after_heal_s * 1000:
                return i
        return None

    first = {}
    by_key = {}
    dups = []
    for d in deliveries:
        by_key.setdefault(d["key"], []).append(d)
        if d["key"] in first:
            dups.append(d)
        else:
            first[d["key"]] = d

    dup_during = [d for d in dups if in_fault(d["at_ms"]) is not None]
    dup_after_heal = [d for d in dup_during
                      if d["at_ms"] > faults[in_fault(d["at_ms"])]["end_ms"]]
    dup_list = []
    for key, ds in by_key.items():
        if len(ds) > 1:
            fi = in_fault(ds[1]["at_ms"])
            dup_list.append({
                "alert": label_text(key[0]), "status": key[1],
                "starts_at": iso(key[2]),
                "deliveries": len(ds),
                "senders": [d["sender"] for d in ds],
                "at_s": [round((d["at_ms"] - t0_ms) / 1000, 2) for d in ds],
                "fault": None if fi is None else faults[fi]["shape"],
            })

    missed = []
    for key in sorted(expected, key=lambda k: (k[2], k[1])):
        if key not in first:
            missed.append({"alert": label_text(key[0]), "status": key[1],
                           "starts_at": iso(key[2]),
                           "posted_at_s": round((expected[key] - t0_ms) / 1000, 2)})

    # A firing notification that reaches the receiver after the same alert's
    # resolved one reopens it there: worse than a plain repeat.
    resolved_at = {(k[0], k[2]): d["at_ms"] for k, d in first.items() if k[1] == "resolved"}
    firing_after_resolved = sum(
        1 for d in deliveries
        if d["key"][1] == "firing" and (d["key"][0], d["key"][2]) in resolved_at
        and d["at_ms"] > resolved_at[(d["key"][0], d["key"][2])])

    latency = {}
    for status in ("firing", "resolved"):
        lat = [(first[k]["at_ms"] - posted) / 1000 for k, posted in expected.items()
               if k[1] == status and k in first]
        latency[status] = ({"median_s": round(statistics.median(lat), 2),
                            "max_s": round(max(lat), 2)} if lat else None)

    per_fault = []
    for i, f in enumerate(faults):
        senders = sorted({d["sender"] for d in deliveries if in_fault(d["at_ms"]) == i})
        per_fault.append({"shape": f["shape"], "senders_in_window": senders,
                          "duplicates": sum(1 for d in dups if in_fault(d["at_ms"]) == i)})

    senders = {}
    for d in deliveries:
        senders[d["sender"]] = senders.get(d["sender"], 0) + 1

    return {
        "notifications_expected": len(expected),
        "deliveries": len(deliveries),
        "distinct_deliveries": len(first),
        "unexpected_notifications": sorted(
            f"{label_text(k[0])} {k[1]}" for k in first if k not in expected),
        "unparsable_posts": unparsable,
        "duplicates": len(dups),
        "duplicates_during_partition": len(dup_during),
        "duplicates_after_heal": len(dup_after_heal),
        "duplicates_outside_partition": len(dups) - len(dup_during),
        "duplicates_from_two_instances": sum(
            1 for x in dup_list if len(set(x["senders"])) > 1),
        "firing_after_resolved": firing_after_resolved,
        "missed_alerts": len(missed),
        "missed_firing": sum(1 for m in missed if m["status"] == "firing"),
        "missed_resolved": sum(1 for m in missed if m["status"] == "resolved"),
        "unfenced_deliveries": sum(1 for d in deliveries if not d["fenced"]),
        "deliveries_by_sender": senders,
        "notification_latency": latency,
        "per_fault": per_fault,
        "duplicate_notifications": dup_list,
        "missed": missed,
    }


# === commands ===


def api_list(args):
    return [(node_addr(k), args.api_port) for k in (1, 2, 3)]


def cmd_ready(args):
    deadline = time.monotonic() + args.timeout
    last = {}
    while time.monotonic() < deadline:
        ok = 0
        for host, port in api_list(args):
            try:
                conn = http.client.HTTPConnection(host, port, timeout=2)
                conn.request("GET", "/api/v2/status")
                st = json.loads(conn.getresponse().read())
                conn.close()
                cluster = st.get("cluster", {})
                last[host] = (cluster.get("status"), len(cluster.get("peers") or []))
                if cluster.get("status") == "ready" and len(cluster.get("peers") or []) == 3:
                    ok += 1
            except (OSError, ValueError) as e:
                last[host] = repr(e)
        if ok == 3:
            print(json.dumps({"version": st.get("versionInfo", {}).get("version")}))
            return 0
        time.sleep(0.5)
    print(f"instances not ready after {args.timeout} s: {last}", file=sys.stderr)
    return 1


def cmd_schedule(args):
    if args.schedule:
        faults = load_schedule(args.schedule, args.minutes * 60)
    else:
        faults = draw_schedule(args.seed, args.minutes * 60)
    print("[\n" + ",\n".join(" " + json.dumps(f) for f in faults) + "\n]")
    return 0


def cmd_run(args):
    run_s = args.minutes * 60
    if args.schedule:
        faults = load_schedule(args.schedule, run_s)
        source = args.schedule
    else:
        faults = draw_schedule(args.seed, run_s)
        source = f"seed {args.seed}"

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    sink = Sink("127.0.0.200", args.sink_port, f"{args.work}/sink.jsonl")
    sink.start()

    t0_mono = time.monotonic()
    t0_ms = int(time.time() * 1000)
    alerts = plan_alerts(t0_ms, run_s, args.alert_every, args.firing)
    driver = Driver(api_list(args), alerts, t0_ms, args.resend, stop)
    nemesis = Nemesis(args.table, args.cluster_port, faults, t0_mono, t0_ms, stop)
    foreign = ForeignCuts(args.table, t0_mono, stop)
    threads = [threading.Thread(target=driver.run, daemon=True),
               threading.Thread(target=nemesis.run, daemon=True),
               threading.Thread(target=foreign.run, daemon=True)]
    for t in threads:
        t.start()
    print(f"run: {run_s:.0f} s + {args.grace:.0f} s grace, {len(alerts)} alerts, "
          f"{len(faults)} partitions ({source})", flush=True)
    for f in faults:
        print(f"  at {f['start_s']:6.1f} s for {f['hold_s']:5.1f} s: {f['shape']}", flush=True)

    stop.wait(run_s + args.grace)
    interrupted = stop.is_set()
    stop.set()
    for t in threads:
        t.join(timeout=15)
    time.sleep(0.5)
    sink.stop()

    def sender_of(url):
        m = re.match(r"^http://127\.0\.0\.(\d+):", url or "")
        return f"am{m.group(1)}" if m else (url or "unknown")

    with sink.lock:
        records = list(sink.records)
    counts = analyse(alerts, records, nemesis.applied, t0_ms, args.after_heal, sender_of)
    faults_out = [{k: v for k, v in f.items() if not k.endswith("_ms")} for f in nemesis.applied]
    result = {
        "system": SYSTEM,
        "instances": 3,
        "alertmanager_version": args.am_version,
        "minutes": args.minutes,
        "seed": None if args.schedule else args.seed,
        "schedule": source,
        "interrupted": interrupted,
        "settings": {
            "group_wait_s": 1, "group_interval_s": 5, "repeat_interval": "1h",
            "group_by": ["alertname"], "send_resolved": True,
            "peer_timeout": args.peer_timeout, "gossip_interval": args.gossip_interval,
            "pushpull_interval": args.pushpull_interval,
            "driver_resend_s": args.resend, "firing_ends_at_ahead_s": 4 * args.resend,
            "alert_every_s": args.alert_every, "alert_firing_s": args.firing,
            "grace_s": args.grace, "after_heal_window_s": args.after_heal,
        },
        "alerts_fired": sum(1 for a in alerts if a.get("firing_posted_ms") is not None),
        "alerts_resolved": sum(1 for a in alerts if a.get("resolved_posted_ms") is not None),
        "webhook_posts": len(records),
        "sink_rejected_409": sink.fence.stale_rejected,
        "driver_posts": driver.posts,
        "driver_post_errors": driver.post_errors,
        "faults": faults_out,
        "foreign_drop_rules": foreign.report(),
    }
    result.update(counts)
    # Alertmanager sends no fencing token, so the sink accepts every
    # delivery; nothing stale could be refused, and nothing was.
    result["stale_term_accepted"] = 0
    result["fencing_note"] = ("Alertmanager sends no X-Uptime-Fencing-Token; the sink's "
                              "fencing rule accepts every unfenced delivery, so "
                              "stale_term_accepted is 0 by construction and every "
                              "delivery is counted in unfenced_deliveries.")

    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    print_summary(result)
    if args.ours:
        with open(args.ours) as f:
            print_side_by_side(json.load(f), result)
    return 2 if interrupted else 0


def print_side_by_side(ours, am):
    """Our harness's alert figures beside Alertmanager's, for the same partitions."""
    parts = sum(1 for f in ours.get("faults", []) if f.get("kind") == "partition")
    rows = [
        ("partitions", parts, len(am["faults"])),
        ("notifications expected", ours["distinct_deliveries"] + ours["missed_alerts"],
         am["notifications_expected"]),
        ("deliveries", ours["deliveries"], am["deliveries"]),
        ("distinct deliveries", ours["distinct_deliveries"], am["distinct_deliveries"]),
        ("duplicates (unexplained)", ours["duplicates_unexplained"], am["duplicates"]),
        ("duplicates after a crash", ours["duplicates_after_crash"], "-"),
        ("missed", ours["missed_alerts"], am["missed_alerts"]),
        # Ours: a delivery whose token is not a claim the cluster committed,
        # or that has none. Alertmanager sends none, so every delivery counts.
        ("accepted without a committed fencing token", ours["stale_term_accepted"],
         am["unfenced_deliveries"]),
    ]
    print("")
    print(f"== side by side (ours: seed {ours['seed']}, {ours['nodes']} nodes, "
          f"{ours['seconds'] / 60:.1f} min, every fault; Alertmanager: the same run's partitions "
          f"among nodes 1-3)")
    print(f"   {'':44} {'uptime-cluster':>15} {'Alertmanager HA':>16}")
    for name, a, b in rows:
        print(f"   {name:44} {a!s:>15} {b!s:>16}")


def print_summary(r):
    p = print
    p("")
    if r["interrupted"]:
        p("!! INTERRUPTED: the run was stopped early; the figures cover only part of it")
    p(f"== Alertmanager HA ({r['alertmanager_version']}), 3 instances, "
      f"{r['minutes']} min, schedule: {r['schedule']}")
    s = r["settings"]
    p(f"   peer-timeout {s['peer_timeout']}, gossip {s['gossip_interval']}, push-pull "
      f"{s['pushpull_interval']}; group_wait 1s, group_interval 5s, repeat 1h")
    p(f"   alerts fired {r['alerts_fired']}, resolved {r['alerts_resolved']}: "
      f"{r['notifications_expected']} notifications expected")
    p(f"   webhook posts {r['webhook_posts']}, deliveries (alerts unpacked) {r['deliveries']}, "
      f"distinct {r['distinct_deliveries']}  by sender {r['deliveries_by_sender']}")
    p(f"   duplicates {r['duplicates']}: {r['duplicates_during_partition']} during or within "
      f"{s['after_heal_window_s']:.0f} s after a partition (of which after the heal "
      f"{r['duplicates_after_heal']}), {r['duplicates_outside_partition']} "
      f"outside; {r['duplicates_from_two_instances']} notifications sent by two instances")
    p(f"   firing notifications delivered after the alert's resolved one: "
      f"{r['firing_after_resolved']}")
    p(f"   missed {r['missed_alerts']} (firing {r['missed_firing']}, resolved "
      f"{r['missed_resolved']})")
    lat = r["notification_latency"]
    for st in ("firing", "resolved"):
        if lat[st]:
            p(f"   {st} latency from first post: median {lat[st]['median_s']} s, "
              f"max {lat[st]['max_s']} s")
    p(f"   fencing: 0 stale-term deliveries accepted, {r['unfenced_deliveries']} of "
      f"{r['deliveries']} deliveries unfenced (Alertmanager sends no fencing token, "
      f"so the sink accepts them all; 409s: {r['sink_rejected_409']})")
    for f, pf in zip(r["faults"], r["per_fault"]):
        p(f"   fault {f['start_s']:6.1f}-{f['end_s']:6.1f} s  {f['shape']}: "
          f"{pf['duplicates']} duplicates, senders {','.join(pf['senders_in_window']) or '-'}")
    for d in r["duplicate_notifications"]:
        p(f"     dup {d['alert']} {d['status']}: {d['deliveries']}x from "
          f"{','.join(d['senders'])} at {d['at_s']} s")
    for m in r["missed"]:
        p(f"     missed {m['alert']} {m['status']} (posted at {m['posted_at_s']} s)")
    for f in r["foreign_drop_rules"]:
        p(f"!! drop rules in table {f['table']} (not ours) from {f['first_seen_s']} s to "
          f"{f['last_seen_s']} s: another harness may have cut these instances too")
    if r["unexpected_notifications"]:
        p(f"   unexpected notifications: {r['unexpected_notifications']}")
    if r["driver_post_errors"]:
        p(f"   driver post errors: {r['driver_post_errors']} of {r['driver_posts']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    ready = sub.add_parser("ready")
    ready.add_argument("--api-port", type=int, required=True)
    ready.add_argument("--timeout", type=float, default=90)

    sched = sub.add_parser("schedule")
    sched.add_argument("--seed", type=int, default=1)
    sched.add_argument("--minutes", type=float, default=3)
    sched.add_argument("--schedule", help="check and print this schedule file instead")

    run = sub.add_parser("run")
    run.add_argument("--minutes", type=float, default=3)
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--schedule")
    run.add_argument("--out")
    run.add_argument("--ours", help="a jepsen-lite results JSON to print beside these figures")
    run.add_argument("--work", required=True)
    run.add_argument("--api-port", type=int, required=True)
    run.add_argument("--cluster-port", type=int, required=True)
    run.add_argument("--sink-port", type=int, required=True)
    run.add_argument("--table", required=True)
    run.add_argument("--am-version", default="unknown")
    run.add_argument("--peer-timeout", required=True)
    run.add_argument("--gossip-interval", required=True)
    run.add_argument("--pushpull-interval", required=True)
    # 2.5 s against group_wait 1 s and group_interval 5 s keeps every group
    # flush at least 1 s away from a driver post. With 3 s every third flush
    # fell within milliseconds of a post, and a flush that reads the store
    # just before the resolving post lands is a race the run would produce
    # far more often than Prometheus' unaligned timers do.
    run.add_argument("--resend", type=float, default=2.5)
    run.add_argument("--alert-every", type=float, default=10)
    run.add_argument("--firing", type=float, default=20)
    run.add_argument("--grace", type=float, default=20)
    run.add_argument("--after-heal", type=float, default=15)

    args = ap.parse_args()
    return {"ready": cmd_ready, "schedule": cmd_schedule, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
