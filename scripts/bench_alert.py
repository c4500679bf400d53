#!/usr/bin/env python3
"""Alert latency, failover dispatch and a 1,000-monitor storm against a running
3-node dev cluster (scripts/bench-alert.sh starts it), optionally side by side
with the Prometheus blackbox exporter + Alertmanager. Prints progress on
stderr and one JSON object as the last line of stdout.

Everything listens on 127.0.0.1; every wait is bounded.
"""

import argparse
import concurrent.futures
import http.server
import json
import os
import random
import signal
import socketserver
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def log(*a):
    print("bench-alert:", *a, file=sys.stderr, flush=True)


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1)))))
    return round(v[k], 1)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a killed leader's connection breaks mid-request: expected here


class Target:
    """HTTP targets by path; each request's arrival time and source address is recorded."""

    def __init__(self):
        self.up = {}
        self.hits = []  # (t, ip, path, up)
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.split("?")[0]
                up = outer.up.get(name, True)
                with outer.lock:
                    outer.hits.append((time.time(), self.client_address[0], name, up))
                self.send_response(200 if up else 500)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = Server(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name):
        return f"http://127.0.0.1:{self.port}{name}"

    def set(self, name, up):
        self.up[name] = up

    def down_hits_since(self, name, t0):
        with self.lock:
            return [(t, ip) for (t, ip, n, up) in self.hits if n == name and t >= t0 and not up]


class Sink:
    """Records every POST with its arrival time; can hold requests (never answer
    until released) to leave a notification in flight."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.hold = False
        self.held = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(n)
                t = time.time()
                with outer.cond:
                    if outer.hold:
                        outer.held += 1
                        outer.cond.notify_all()
                        outer.cond.wait_for(lambda: not outer.hold, timeout=120)
                        outer.held -= 1
                        # A request held across a failover is the old leader's:
                        # it is not counted (the new leader's send is).
                        self.send_response(409)
                        self.send_header("content-length", "0")
                        self.end_headers()
                        return
                    try:
                        doc = json.loads(body or b"{}")
                    except ValueError:
                        doc = {}
                    outer.got.append({"t": t, "path": self.path, "key": self.headers.get("idempotency-key"),
                                      "token": self.headers.get("x-uptime-fencing-token"), "doc": doc})
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = Server(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, pred, limit, what):
        deadline = time.time() + limit
        with self.cond:
            while True:
                r = pred(self.got)
                if r:
                    return r
                left = deadline - time.time()
                if left <= 0:
                    raise SystemExit(f"bench-alert: timed out waiting for {what}")
                self.cond.wait(timeout=min(left, 1.0))

    def wait_held(self, limit):
        deadline = time.time() + limit
        with self.cond:
            while self.held == 0:
                left = deadline - time.time()
                if left <= 0:
                    raise SystemExit("bench-alert: no send reached the held sink")
                self.cond.wait(timeout=min(left, 1.0))

    def release(self):
        with self.cond:
            self.hold = False
            self.cond.notify_all()


class Api:
    def __init__(self, dev_dir):
        self.dir = dev_dir
        self.token = open(os.path.join(dev_dir, "token")).read().strip()

    def url(self, k):
        return open(os.path.join(self.dir, f"node{k}", "api_url")).read().strip()

    def call(self, method, path, body=None, node=None, timeout=10):
        nodes = [node] if node else [1, 2, 3]
        last = None
        for k in nodes:
            req = urllib.request.Request(self.url(k) + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"authorization": f"Bearer {self.token}",
                                                  "content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    data = r.read()
                    return json.loads(data) if data else None
            except Exception as e:  # try the next node
                last = e
        raise last

    def leader(self, not_=None, limit=30):
        deadline = time.time() + limit
        while time.time() < deadline:
            for k in (1, 2, 3):
                try:
                    s = self.call("GET", "/api/v1/cluster", node=k, timeout=2)
                    if s.get("leader") and s["leader"] != not_:
                        return s["leader"]
                except Exception:
                    pass
            time.sleep(0.1)
        raise SystemExit("bench-alert: no leader")

    def monitor_state(self, name):
        try:
            return self.call("GET", f"/api/v1/monitors/{name}", timeout=3)["state"]
        except Exception:
            return None

    def wait_state(self, name, state, limit):
        deadline = time.time() + limit
        while time.time() < deadline:
            if self.monitor_state(name) == state:
                return
            time.sleep(0.2)
        raise SystemExit(f"bench-alert: {name} never became {state}")


def alert_latency(api, target, sink, trials, interval, confirmations):
    name = "/t/lat"
    target.set(name, True)
    api.call("POST", "/api/v1/channels", {"name": "bench", "kind": "webhook", "url": sink.url("/lat")})
    api.call("POST", "/api/v1/monitors", {
        "name": "lat", "kind": "http", "target": target.url(name), "interval": f"{interval}s",
        "timeout": "2s", "confirmations": confirmations, "channels": ["bench"]})
    api.wait_state("lat", "up", 60)
    lat, over = [], []
    for i in range(trials):
        time.sleep(random.uniform(0, interval))  # a random phase against the check schedule
        before = len(sink.got)
        t0 = time.time()
        target.set(name, False)
        opened = sink.wait(lambda g: next((x for x in g[before:] if x["path"] == "/lat" and x["doc"].get("kind") == "open"), None),
                           confirmations * interval * 3 + 30, "an open alert")
        lat.append((opened["t"] - t0) * 1000)
        # The confirming check: the majority-th node's confirmations-th failing check.
        per_node = {}
        for t, ip in target.down_hits_since(name, t0):
            per_node.setdefault(ip, []).append(t)
        nth = sorted(ts[confirmations - 1] for ts in per_node.values() if len(ts) >= confirmations)
        if len(nth) >= 2:
            over.append((opened["t"] - nth[1]) * 1000)
        target.set(name, True)
        sink.wait(lambda g: next((x for x in g[before:] if x["path"] == "/lat" and x["doc"].get("kind") == "resolve"), None),
                  interval * 4 + 30, "a resolve alert")
        log(f"trial {i + 1}/{trials}: down→alert {lat[-1]:.0f} ms, confirming check→alert {over[-1] if over else float('nan'):.0f} ms")
    api.call("DELETE", "/api/v1/monitors/lat")
    return lat, over


def failover(api, target, sink, trials, dev_dir, script):
    name = "/t/fo"
    target.set(name, True)
    api.call("POST", "/api/v1/channels", {"name": "fo", "kind": "webhook", "url": sink.url("/fo")})
    api.call("POST", "/api/v1/monitors", {
        "name": "fo", "kind": "http", "target": target.url(name), "interval": "1s", "timeout": "1s",
        "confirmations": 1, "channels": ["fo"]})
    api.wait_state("fo", "up", 60)
    out = []
    for i in range(trials):
        leader = api.leader()
        before = len(sink.got)
        sink.hold = True
        target.set(name, False)
        sink.wait_held(30)  # the leader claimed the open notification and is sending it
        pid = int(open(os.path.join(dev_dir, f"node{leader}", "pid")).read())
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        sink.release()
        got = sink.wait(lambda g: next((x for x in g[before:] if x["path"] == "/fo" and x["doc"].get("kind") == "open"), None),
                        30, "the new leader's delivery")
        out.append((got["t"] - t_kill) * 1000)
        log(f"failover {i + 1}/{trials}: kill -9 of leader {leader} → delivery {out[-1]:.0f} ms")
        subprocess.run([script, "start", str(leader), dev_dir], check=True, stdout=subprocess.DEVNULL)
        target.set(name, True)
        sink.wait(lambda g: next((x for x in g[before:] if x["path"] == "/fo" and x["doc"].get("kind") == "resolve"), None),
                  30, "the resolve")
        api.wait_state("fo", "up", 30)
    api.call("DELETE", "/api/v1/monitors/fo")
    return out


def storm(api, target, sink, n, interval):
    name = "/t/storm"
    target.set(name, True)
    api.call("POST", "/api/v1/channels", {"name": "storm", "kind": "webhook", "url": sink.url("/storm")})

    def create(i):
        api.call("POST", "/api/v1/monitors", {
            "name": f"s{i}", "kind": "http", "target": target.url(name), "interval": f"{interval}s",
            "timeout": "2s", "channels": ["storm"]}, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(create, range(n)))
    deadline = time.time() + 120
    while time.time() < deadline:
        ms = [m for m in api.call("GET", "/api/v1/monitors", timeout=30) if m["name"].startswith("s")]
        if len(ms) == n and all(m["state"] == "up" for m in ms):
            break
        time.sleep(1)
    else:
        raise SystemExit("bench-alert: storm monitors never all up")
    log(f"storm: {n} monitors up; taking the target down")
    t0 = time.time()
    target.set(name, False)
    got = sink.wait(lambda g: [x for x in g if x["path"] == "/storm"] if len([x for x in g if x["path"] == "/storm"]) >= n else None,
                    120, f"{n} storm alerts")
    time.sleep(interval * 2)  # late duplicates would arrive here
    rows = [x for x in sink.got if x["path"] == "/storm"]
    keys = {x["key"] for x in rows}
    incidents = {x["doc"]["incident_id"]: x for x in rows}
    opened = {i["id"]: i["opened_at_ms"] / 1000.0 for i in api.call("GET", "/api/v1/incidents", timeout=30)}
    after_verdict = [x["t"] - opened[i] for i, x in incidents.items() if i in opened]
    last = max(x["t"] for x in rows)
    return {"delivered": len(keys), "duplicates": len(rows) - len(keys),
            "worst_after_verdict_s": round(max(after_verdict), 2) if after_verdict else None,
            "all_delivered_after_down_s": round(last - t0, 2)}


def alertmanager(target, sink, trials, interval, workdir):
    """The same down → webhook path through blackbox exporter + Prometheus + Alertmanager
    (Debian packages; Alertmanager's default group_wait/group_interval)."""
    names = [f"/t/am{i}" for i in range(trials)]
    for n in names:
        target.set(n, True)
    ports = {}
    for k in ("bb", "prom", "am"):
        s = socketserver.TCPServer(("127.0.0.1", 0), None, bind_and_activate=True)
        ports[k] = s.server_address[1]
        s.server_close()
    open(f"{workdir}/blackbox.yml", "w").write("modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n")
    targets = ", ".join(f'"{target.url(n)}"' for n in names)
    open(f"{workdir}/prometheus.yml", "w").write(f"""
global: {{scrape_interval: {interval}s, evaluation_interval: {interval}s}}
rule_files: ["{workdir}/rules.yml"]
alerting: {{alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{ports['am']}"]}}]}}]}}
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params: {{module: [http_2xx]}}
    static_configs: [{{targets: [{targets}]}}]
    relabel_configs:
      - {{source_labels: [__address__], target_label: __param_target}}
      - {{source_labels: [__param_target], target_label: instance}}
      - {{target_label: __address__, replacement: "127.0.0.1:{ports['bb']}"}}
""")
    # Two failing scrapes in a row, as confirmations 2 at the same interval.
    open(f"{workdir}/rules.yml", "w").write(f"""
groups:
  - name: bench
    rules:
      - alert: TargetDown
        expr: probe_success == 0
        for: {interval}s
""")
    open(f"{workdir}/alertmanager.yml", "w").write(f"""
route: {{receiver: sink, group_by: [instance]}}
receivers: [{{name: sink, webhook_configs: [{{url: "{sink.url('/am')}"}}]}}]
""")
    procs = [
        subprocess.Popen(["prometheus-blackbox-exporter", f"--config.file={workdir}/blackbox.yml",
                          f"--web.listen-address=127.0.0.1:{ports['bb']}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["prometheus-alertmanager", f"--config.file={workdir}/alertmanager.yml",
                          f"--web.listen-address=127.0.0.1:{ports['am']}", f"--storage.path={workdir}/am",
                          "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["prometheus", f"--config.file={workdir}/prometheus.yml", f"--storage.tsdb.path={workdir}/prom",
                          f"--web.listen-address=127.0.0.1:{ports['prom']}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        time.sleep(interval * 3)  # targets scraped up a few times first
        lat = []
        for i, n in enumerate(names):
            before = len(sink.got)
            time.sleep(random.uniform(0, interval))
            t0 = time.time()
            target.set(n, False)
            url = target.url(n)
            got = sink.wait(lambda g: next((x for x in g[before:] if x["path"] == "/am" and any(
                a.get("labels", {}).get("instance") == url and a.get("status") == "firing"
                for a in x["doc"].get("alerts", []))), None), 180, "Alertmanager's webhook")
            lat.append((got["t"] - t0) * 1000)
            log(f"alertmanager trial {i + 1}/{len(names)}: down→webhook {lat[-1]:.0f} ms")
        return lat
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev-dir", required=True)
    ap.add_argument("--script", required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--confirmations", type=int, default=2)
    ap.add_argument("--failover-trials", type=int, default=10)
    ap.add_argument("--storm", type=int, default=1000)
    ap.add_argument("--am-trials", type=int, default=5)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    random.seed(1)
    api = Api(a.dev_dir)
    target, sink = Target(), Sink()
    lat, over = alert_latency(api, target, sink, a.trials, a.interval, a.confirmations)
    fo = failover(api, target, sink, a.failover_trials, a.dev_dir, a.script) if a.failover_trials else []
    st = storm(api, target, sink, a.storm, a.interval) if a.storm else {}
    am = alertmanager(target, sink, a.am_trials, a.interval, a.workdir) if a.am_trials else []
    bound = a.confirmations * a.interval * 1000 + 1000
    fig = {
        "trials": len(lat),
        "interval_s": a.interval,
        "confirmations": a.confirmations,
        "alert_latency_p50_ms": pct(lat, 50),
        "alert_latency_p99_ms": pct(lat, 99),
        "alert_latency_bound_ms": bound,
        "alert_overhead_p50_ms": pct(over, 50),
        "alert_overhead_p99_ms": pct(over, 99),
        "failover_trials": len(fo),
        "failover_dispatch_p50_ms": pct(fo, 50),
        "failover_dispatch_p99_ms": pct(fo, 99),
        "storm_monitors": a.storm,
        "storm_delivered": st.get("delivered"),
        "storm_1000_delivered_s": st.get("worst_after_verdict_s"),
        "storm_all_delivered_after_down_s": st.get("all_delivered_after_down_s"),
        "storm_duplicates": st.get("duplicates"),
        "alertmanager_trials": len(am),
        "alertmanager_latency_p50_ms": pct(am, 50),
        "alertmanager_latency_max_ms": pct(am, 100),
        "ratio_alertmanager_vs_ours_p50": round(statistics.median(am) / statistics.median(lat), 2) if am and lat else None,
    }
    for k, v in fig.items():
        log(f"{k:36} {v}")
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
