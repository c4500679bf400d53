#!/usr/bin/env python3
"""Live half of the domain benchmark (issue 4): a 3-node dev cluster probing N
TCP monitors at a fixed interval against a local nginx; per node CPU (% of one
core), RSS, and the Raft log's growth, sampled after a warm-up. Bounded in time;
stops everything it starts. Only 127.0.0.1 is targeted.

usage: bench_domain_live.py MONITORS INTERVAL_S WARMUP_S SAMPLE_S
Prints one JSON object on the last line.
"""
import concurrent.futures, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def api(url, token, method="GET", body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def proc_stat(pid):
    """(cpu seconds, rss MB) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def main():
    monitors, interval, warmup, sample = (int(a) for a in sys.argv[1:5])
    work = tempfile.mkdtemp(prefix="bench-domain-live.")
    cluster = os.path.join(work, "cluster")
    nginx = None
    try:
        ports = free_ports(4)
        listens = "".join(f"    listen 127.0.0.1:{p} backlog=65535;\n" for p in ports)
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 65535; }}
http {{
  access_log off;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
  uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{
{listens}    location / {{ return 200 "ok\\n"; }}
  }}
}}
""")
        nginx = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([os.path.join(ROOT, "scripts/dev-cluster.sh"), "up", "3", cluster], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        env = dict(l.strip().split("=", 1) for l in open(os.path.join(cluster, "env")) if "=" in l)
        token = env["UPTIMECTL_TOKEN"]
        urls = {k: open(os.path.join(cluster, f"node{k}", "api_url")).read().strip() for k in (1, 2, 3)}
        pids = {k: int(open(os.path.join(cluster, f"node{k}", "pid")).read()) for k in (1, 2, 3)}

        def create(i):
            body = {"name": f"m{i}", "kind": "tcp", "target": f"127.0.0.1:{ports[i % len(ports)]}",
                    "interval": f"{interval}s", "timeout": "5s"}
            api(urls[1 + i % 3] + "/api/v1/monitors", token, "POST", body, timeout=30)

        t = time.time()
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            list(pool.map(create, range(monitors)))
        created_s = time.time() - t
        print(f"created {monitors} monitors in {created_s:.1f} s", file=sys.stderr)
        time.sleep(warmup)  # a warm-up period, not synchronisation: the figures are rates over the sample

        status = api(urls[1] + "/api/v1/cluster", token)
        leader = status["leader"]
        log_file = {k: os.path.join(cluster, f"node{k}", "data", "raft-log.redb") for k in (1, 2, 3)}
        before = {k: proc_stat(pids[k]) for k in (1, 2, 3)}
        size0 = os.path.getsize(log_file[leader])
        idx0 = status["last_log_index"] if status["node_id"] == leader else api(urls[leader] + "/api/v1/cluster", token)["last_log_index"]
        t0 = time.time()
        time.sleep(sample)
        elapsed = time.time() - t0
        after = {k: proc_stat(pids[k]) for k in (1, 2, 3)}
        size1 = os.path.getsize(log_file[leader])
        idx1 = api(urls[leader] + "/api/v1/cluster", token)["last_log_index"]
        cpu = {k: 100 * (after[k][0] - before[k][0]) / elapsed for k in (1, 2, 3)}
        followers = [k for k in (1, 2, 3) if k != leader]
        states = api(urls[leader] + "/api/v1/monitors", token)
        up = sum(1 for m in states if m["state"] == "up")
        snap = os.path.join(cluster, f"node{leader}", "data", "state", "snapshot.bin")
        row = {
            "monitors": monitors,
            "interval_s": interval,
            "monitors_up": up,
            "cpu_pct_leader_10k": round(cpu[leader], 1),
            "cpu_pct_follower_10k": round(max(cpu[k] for k in followers), 1),
            "rss_mb_10k": round(max(after[k][1] for k in (1, 2, 3)), 1),
            "log_bytes_per_s_10k": round((size1 - size0) / elapsed),
            "log_entries_per_s_10k": round((idx1 - idx0) / elapsed, 1),
            "snapshot_mb_10k": round(os.path.getsize(snap) / 1e6, 2) if os.path.exists(snap) else None,
            "create_s": round(created_s, 1),
        }
        print(f"leader node {leader}: cpu {row['cpu_pct_leader_10k']}% of one core; followers up to "
              f"{row['cpu_pct_follower_10k']}%; rss up to {row['rss_mb_10k']} MB; log file growth "
              f"{row['log_bytes_per_s_10k']} B/s, {row['log_entries_per_s_10k']} entries/s; {up}/{monitors} up", file=sys.stderr)
        print(json.dumps(row))
    finally:
        subprocess.run([os.path.join(ROOT, "scripts/dev-cluster.sh"), "down", cluster],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        if nginx:
            nginx.send_signal(signal.SIGTERM)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
