#!/usr/bin/env python3
"""Snapshot half of the domain benchmark (issue 4): snapshot size and build time,
and a new node's catch-up, at MONITORS monitors with DAYS days of history.

1. A one-node dev cluster is created (certificates, config), stopped, and its
   data directory rebuilt by `seed-history`: MONITORS monitors and DAYS days of
   history written through Raft with simulated leader times, then a snapshot,
   with the log purged behind it.
2. Node 1 runs again (a real `uptime-node` process); a fresh node 2 starts with
   join = true and is added with the admin API. Catch-up is the time from the
   add-node request until node 2 has applied everything node 1 had applied at
   that moment (it gets the snapshot in 1 MiB chunks over mutual TLS, then the
   log after it); promotion is until node 1 lists it as a voter.
3. The two state hashes are compared at an equal applied index, and the peak
   RSS of both processes is read from /proc.

Bounded in time; stops everything it starts; only 127.0.0.1 is targeted.
usage: bench_snapshot_catchup.py MONITORS DAYS
Prints one JSON object on the last line.
"""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(ROOT, "scripts", "dev-cluster.sh")
BIN = os.path.join(ROOT, "target", "release")


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_domain_live import api, free_ports  # noqa: E402  (shared with the live benchmark)


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def wait(what, limit_s, f, every=0.2):
    deadline = time.monotonic() + limit_s
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"bench-snapshot: timed out waiting for {what}")
        time.sleep(every)


def try_api(*a, **k):
    try:
        return api(*a, **k)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def main():
    monitors, days = int(sys.argv[1]), int(sys.argv[2])
    work = tempfile.mkdtemp(prefix="bench-snapshot.")
    cluster = os.path.join(work, "cluster")
    try:
        subprocess.run([DEV, "up", "1", cluster], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([DEV, "down", cluster], check=True)
        node1 = os.path.join(cluster, "node1")
        shutil.rmtree(os.path.join(node1, "data"))
        config1 = open(os.path.join(node1, "config.toml")).read()
        peer1 = re.search(r'peer_listen = "([^"]+)"', config1).group(1)
        url1 = open(os.path.join(node1, "api_url")).read().strip()
        token = open(os.path.join(cluster, "token")).read().strip()

        seed = subprocess.run([os.path.join(BIN, "seed-history"), os.path.join(node1, "data"), peer1, url1,
                               str(monitors), str(days)], check=True, capture_output=True, text=True, timeout=3600)
        sys.stdout.write(seed.stdout.rsplit("\n", 2)[0] + "\n")
        seeded = json.loads(seed.stdout.strip().splitlines()[-1])

        subprocess.run([DEV, "start", "1", cluster], check=True)
        wait("node 1 to lead", 120, lambda: (try_api(f"{url1}/api/v1/cluster", token) or {}).get("leader") == 1)

        # Node 2: a fresh node waiting to be added.
        node2 = os.path.join(cluster, "node2")
        os.makedirs(node2)
        subprocess.run([os.path.join(BIN, "uptime-node"), "certs", "node", "--id", "2", "--dir",
                        os.path.join(cluster, "certs"), "--host", "127.0.0.1"], check=True, stdout=subprocess.DEVNULL)
        peer_port, api_port = free_ports(2)
        peer2, api2 = f"127.0.0.1:{peer_port}", f"127.0.0.1:{api_port}"
        url2 = f"http://{api2}"
        with open(os.path.join(node2, "config.toml"), "w") as f:
            f.write(f'''node_id = 2
data_dir = "data"
api_listen = "{api2}"
peer_listen = "{peer2}"
api_token_file = "../token"
join = true
peers = []

[tls]
ca = "../certs/ca.pem"
cert = "../certs/node2.pem"
key = "../certs/node2.key"
''')
        with open(os.path.join(node2, "api_url"), "w") as f:
            f.write(url2 + "\n")
        subprocess.run([DEV, "start", "2", cluster], check=True)

        target = try_api(f"{url1}/api/v1/cluster", token)["last_applied"]
        t0 = time.monotonic()
        # 200 once node 2 votes, 202 while it is still catching up as a learner.
        added = api(f"{url1}/api/v1/cluster/nodes", token, "POST",
                    {"id": 2, "peer_addr": peer2, "api_addr": url2}, timeout=30)
        add_s = time.monotonic() - t0
        code = 200 if any(m["id"] == 2 and m["voter"] for m in added["members"]) else 202
        wait("node 2 to catch up", 1800,
             lambda: (try_api(f"{url2}/api/v1/cluster", token, timeout=5) or {}).get("last_applied", 0) >= target,
             every=0.1)
        catch_up_s = time.monotonic() - t0

        def voter():
            s = try_api(f"{url1}/api/v1/cluster", token) or {}
            return any(m["id"] == 2 and m["voter"] for m in s.get("members", []))
        wait("node 2 to be promoted", 600, voter, every=0.1)
        promoted_s = time.monotonic() - t0

        # Equal hashes at an equal applied index (the leader keeps ticking).
        equal = None
        for _ in range(20):
            h1 = try_api(f"{url1}/api/v1/cluster/state-hash", token, timeout=120)
            h2 = try_api(f"{url2}/api/v1/cluster/state-hash", token, timeout=120)
            if h1 and h2 and h1["applied_index"] == h2["applied_index"]:
                equal = h1["hash"] == h2["hash"]
                break
        pids = [int(open(os.path.join(cluster, f"node{k}", "pid")).read()) for k in (1, 2)]
        rss = [peak_rss_mb(p) for p in pids]
        print(f"catch-up of a new node: add-node answered {code} in {add_s:.1f} s; "
              f"caught up to index {target} in {catch_up_s:.1f} s; voter after {promoted_s:.1f} s; "
              f"state hashes {'equal' if equal else 'DIFFERENT' if equal is False else 'not compared'}; "
              f"peak RSS leader {rss[0]} MB, new node {rss[1]} MB")
        row = {
            "monitors": monitors, "days": days,
            "snapshot_mb": seeded["snapshot_mb"], "snapshot_build_s": seeded["snapshot_build_s"],
            "state_file_mb": seeded["state_file_mb"], "seed_s": seeded["seed_s"],
            "add_node_http": code, "add_node_s": round(add_s, 2),
            "catch_up_s": round(catch_up_s, 2), "promoted_s": round(promoted_s, 2),
            "hashes_equal": equal, "peak_rss_mb_leader": rss[0], "peak_rss_mb_new_node": rss[1],
        }
        print(json.dumps(row))
        if equal is not True:
            sys.exit(1)
    finally:
        subprocess.run([DEV, "down", cluster], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.environ.get("KEEP_WORK") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
