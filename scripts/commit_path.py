#!/usr/bin/env python3
"""Reads the commit-path stage events (tracing target `commit_path`, see
uptime_raft_store::COMMIT_PATH) from the node logs of a cluster that served
writes from one proposer on the leader, and prints where a commit's time goes:
one row per stage, p50/p90/p99 in microseconds, in the order a write passes
them. The stages chain: for each write, the rows add up to its total (the
follower is the one whose acknowledgement completed the quorum).

Usage: commit_path.py NODE_LOG [NODE_LOG ...]   (a node's id is the N in .../nodeN/log)
Prints the table, then one JSON object as the last line.
Standard library only.
"""

import collections
import json
import math
import re
import sys
from datetime import datetime

LINE = re.compile(r"^(\S+Z)\s+TRACE commit_path: (\w+) index=(\d+)(?: (?:to|us)=(\d+))?")


def micros(stamp):
    # 2026-11-22T04:36:35.971722Z; fromisoformat takes at most 6 fractional digits.
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1_000_000)


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def node_of(path):
    m = re.search(r"node(\d+)", path)
    if not m:
        raise SystemExit(f"cannot tell the node id from {path!r} (expected .../nodeN/log)")
    return int(m.group(1))


def load(paths):
    """events[index][(node, stage, to)] = (time_us, value) of the first occurrence."""
    events = collections.defaultdict(dict)
    for path in paths:
        node = node_of(path)
        with open(path, errors="replace") as f:
            for line in f:
                m = LINE.match(line)
                if not m:
                    continue
                stamp, stage, index, extra = m.groups()
                extra = int(extra) if extra is not None else None
                to = extra if stage.startswith("replicate_") else None
                key = (node, stage, to)
                events[int(index)].setdefault(key, (micros(stamp), extra))
    return events


STAGES = [
    "API and group-commit queue -> openraft",
    "openraft core -> leader log append",
    "leader: to a blocking thread",
    "leader: redb commit + fsync",
    "leader: back to openraft core",
    "core -> replication RPC sent",
    "network to follower (gRPC, mutual TLS)",
    "follower: openraft -> log append",
    "follower: to a blocking thread",
    "follower: redb commit + fsync",
    "follower: back, RPC answered",
    "network back to leader",
    "quorum ack -> apply starts",
    "leader: apply (redb, no fsync)",
    "apply -> client_write returns",
    "-> answer",
]


def chains(events):
    for index, ev in sorted(events.items()):
        done = [(k, v) for k, v in ev.items() if k[1] == "leader_op_done"]
        cw = [(k, v) for k, v in ev.items() if k[1] == "client_write_done"]
        if len(done) != 1 or len(cw) != 1:
            continue
        leader = done[0][0][0]
        if cw[0][0][0] != leader:
            continue  # forwarded: not the lone-proposer-on-the-leader case
        t_end, us = done[0][1]
        t_cw_end, cw_us = cw[0][1]
        g = lambda node, stage, to=None: ev.get((node, stage, to), (None,))[0]
        acks = [(v[0], k[2]) for k, v in ev.items() if k[0] == leader and k[1] == "replicate_ack"]
        if not acks:
            continue
        t_ack, f = min(acks)
        points = [
            t_end - us, t_cw_end - cw_us,
            g(leader, "log_append"), g(leader, "log_append_running"),
            g(leader, "log_append_durable"), g(leader, "log_append_done"),
            g(leader, "replicate_send", f), g(f, "append_rpc"),
            g(f, "log_append"), g(f, "log_append_running"), g(f, "log_append_durable"),
            g(f, "append_rpc_done"), t_ack,
            g(leader, "apply"), g(leader, "apply_done"), t_cw_end, t_end,
        ]
        if any(p is None for p in points):
            continue
        yield [b - a for a, b in zip(points, points[1:])], us


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    rows = collections.defaultdict(list)
    totals = []
    for deltas, total in chains(load(sys.argv[1:])):
        for name, d in zip(STAGES, deltas):
            rows[name].append(d)
        totals.append(total)
    if not totals:
        raise SystemExit("no complete commit paths found: was commit_path=trace on, and did a "
                         "lone proposer write to the leader?")
    p50_sum = sum(percentile(rows[s], 50) for s in STAGES)
    print(f"commit path of {len(totals)} writes from one proposer on the leader (microseconds):")
    print(f"  {'stage':42s} {'p50':>6s} {'p90':>6s} {'p99':>6s}  share of p50s")
    for s in STAGES:
        v = rows[s]
        p50 = percentile(v, 50)
        print(f"  {s:42s} {p50:6d} {percentile(v, 90):6d} {percentile(v, 99):6d}  {100 * p50 / p50_sum:5.1f} %")
    print(f"  {'total (server side)':42s} {percentile(totals, 50):6d} {percentile(totals, 90):6d} "
          f"{percentile(totals, 99):6d}")
    fsyncs = [s for s in STAGES if "commit + fsync" in s]
    print(json.dumps({
        "writes": len(totals),
        "total_p50_us": percentile(totals, 50),
        "total_p99_us": percentile(totals, 99),
        "stages_p50_us": {s: percentile(rows[s], 50) for s in STAGES},
        "stages_p99_us": {s: percentile(rows[s], 99) for s in STAGES},
        "log_commit_share_of_p50": round(sum(percentile(rows[s], 50) for s in fsyncs) / p50_sum, 3),
    }))


if __name__ == "__main__":
    main()
