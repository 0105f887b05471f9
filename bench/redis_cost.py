"""Micro-benchmark: redis-server's CPU per update of the whole stock path, this checkout against
another git ref's code in the same run (issue 18's Redis target, without row 13's noise):
``.venv/bin/python -m bench.redis_cost [--ref REF] [--rounds R] [--updates N]``.

Row 13 measures Redis beside a worker, a producer and the sandbox on two shared cores, where one
run's figure swings by a third. Here one process does the same Redis work serially, with no HTTP:
``push_stocks`` writes N updates over 10 campaigns in calls of 10,000 (the producer's ingest),
then a ``Flusher`` drains each campaign as a worker does (its begin and end scripts, each end
beginning the next request) into a Market stand-in that accepts every body at once, quotas off.
Each code runs in its own subprocess (``PYTHONPATH`` at its checkout; REF's in a temporary git
worktree) against the same private redis-server, the two alternating round by round (REF first
in even rounds). Figures per update: redis-server's CPU (utime+stime, /proc/<pid>/stat, 10 ms
ticks) for the ingest and for the flushes, and the driver's own CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from ymsync.embedded import EmbeddedRedis

from .hotpath import checkout
from .rig import ROOT

CAMPAIGNS = 10

# The driver, run by ``python -c`` in the measured code's checkout: prints one JSON line.
DRIVER = r"""
import json, os, sys, time
import redis
from ymsync import push_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.flusher import Flusher
from ymsync.engine.quota import QuotaLimiter
from ymsync.market.clock import MarketClock
from ymsync.market.models import UpdateResult

url, pid, n, campaigns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def server_cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

class Market:
    clock = MarketClock()
    sent = 0
    def send_stocks_body(self, campaign_id, body):
        k = len(body["skus"]) if not hasattr(body, "count") else body.count
        self.sent += k
        return UpdateResult(k)

client = redis.Redis.from_url(url)
client.flushall()
buffer = StockBuffer(client)
market = Market()
flusher = Flusher(buffer, QuotaLimiter(client, {}), market, min_batch=1)
per = n // campaigns
chunks = [(1001 + c, [{"sku": f"SKU-{c}-{i:07d}", "count": i % 500} for i in range(s, min(s + 10_000, per))])
          for s in range(0, per, 10_000) for c in range(campaigns)]
c0, p0 = server_cpu(), time.process_time()
for campaign, items in chunks:
    push_stocks(campaign, items, buffer=buffer)
c1, p1 = server_cpu(), time.process_time()
for c in range(campaigns):
    while buffer.pending(1001 + c):
        flusher.flush(f"c{1001 + c}")
c2, p2 = server_cpu(), time.process_time()
assert market.sent == per * campaigns, (market.sent, per * campaigns)
print(json.dumps({"ingest": (c1 - c0) * 1e6 / n, "flush": (c2 - c1) * 1e6 / n,
                  "driver": (p2 - p0) * 1e6 / n}))
"""


def measure(code: Path, url: str, pid: int, updates: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", DRIVER, url, str(pid), str(updates), str(CAMPAIGNS)], env=env,
                         cwd=str(code), check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="81b0bd9", help="the git ref to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--updates", type=int, default=200_000)
    args = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {}
    with checkout(args.ref) as ref_code, EmbeddedRedis() as server:
        assert server.process is not None
        codes = {args.ref: ref_code, "this checkout": ROOT}
        for r in range(args.rounds):
            for name in list(codes) if r % 2 == 0 else list(reversed(codes)):
                got = measure(codes[name], server.url, server.process.pid, args.updates)
                got["redis"] = got["ingest"] + got["flush"]
                for key, value in got.items():
                    figures.setdefault(name, {}).setdefault(key, []).append(value)
                print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in got.items()), flush=True)
    print(f"\n{args.updates:,} updates over {CAMPAIGNS} campaigns; {args.rounds} rounds; µs per update, median (min-max)")
    print(f"{'code':16} {'redis: ingest':>20} {'redis: flushes':>20} {'redis: both':>20} {'driver CPU':>20}")
    for name, f in figures.items():
        cells = [f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in
                 (f["ingest"], f["flush"], f["redis"], f["driver"])]
        print(f"{name:16} " + " ".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
