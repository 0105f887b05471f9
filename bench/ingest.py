"""Micro-benchmark: Redis's CPU per update of the producer's ingest (issue 18 item 4), the INGEST
script before this change against the current one, in the same run:
``.venv/bin/python -m bench.ingest [--rounds R] [--updates N]``.

A private redis-server (nothing else talks to it) takes N updates over 10 campaigns through the
real producer API (``push_stocks`` with a ``StockBuffer``), in calls of 10,000 items, campaigns
round robin. Four cases, run as one chain per round (the state each leaves is the next one's
starting point; only the delivery between them is not measured):

- ``fresh``: every SKU's first write (empty Redis);
- ``coalesce``: a re-push with new counts while the first values are still pending;
- ``unchanged``: after every value was delivered (TAKE/SETTLE, not measured), a re-push of the
  counts the Market was given: all dropped as "unchanged";
- ``update``: a re-push with new counts over those delivered records (nothing pending).

Figures per update: redis-server's CPU (utime+stime from /proc/<pid>/stat, 10 ms ticks), the
scripts' wall time (INFO commandstats, evalsha: on a busy machine it includes time the kernel
gave to others, so read the CPU) and the client's CPU (``time.process_time``: the producer's
validation and packing). The old and new scripts alternate chain by chain (old first in even
rounds), so a busy machine's noise falls on both alike; the IngestResult totals of both must
agree, case by case, or the run stops.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field

import redis

from ymsync.embedded import EmbeddedRedis
from ymsync.engine.buffer import StockBuffer
from ymsync.store import ingest_lua

from .ingest_before import INGEST as INGEST_BEFORE

CAMPAIGNS = [30_001 + c for c in range(10)]
CALL = 10_000  # items per push_stocks call
CASES = ["fresh", "coalesce", "unchanged", "update"]
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def server_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14 and 15)


def script_usec(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in ("evalsha", "eval"))


@dataclass
class Figures:
    server_us: list[float] = field(default_factory=list)
    script_us: list[float] = field(default_factory=list)
    client_us: list[float] = field(default_factory=list)


def calls(n: int, counts: list[int]) -> list[tuple[int, list[dict]]]:
    """The push_stocks calls for one case: SKU i of campaign c gets counts[i]; round robin."""
    per = n // len(CAMPAIGNS)
    out = []
    for start in range(0, per, CALL):
        for c in CAMPAIGNS:
            out.append((c, [{"sku": f"SKU-{i:07d}", "count": counts[i]} for i in range(start, min(start + CALL, per))]))
    return out


def deliver_all(buf: StockBuffer) -> None:
    for c in CAMPAIGNS:
        while (batch := buf.take(c, 2000, 10**9, 60.0)) is not None:
            buf.settle(batch, "delivered")


def measure(client: redis.Redis, pid: int, buf: StockBuffer, pushes: list[tuple[int, list[dict]]], n: int,
            into: Figures) -> tuple[int, int, int, int]:
    from ymsync import push_stocks

    client.config_resetstat()
    s0, c0, t0 = server_cpu_s(pid), time.process_time(), script_usec(client)
    totals = [0, 0, 0, 0]
    for campaign, items in pushes:
        r = push_stocks(campaign, items, buffer=buf)
        for i, v in enumerate((r.accepted, r.stale, r.unchanged, r.too_old)):
            totals[i] += v
    c1, s1, t1 = time.process_time(), server_cpu_s(pid), script_usec(client)
    into.server_us.append((s1 - s0) * 1e6 / n)
    into.client_us.append((c1 - c0) * 1e6 / n)
    into.script_us.append((t1 - t0) / n)
    return tuple(totals)  # type: ignore[return-value]


def chain(client: redis.Redis, pid: int, buf: StockBuffer, n: int, figures: dict[str, Figures]) -> dict[str, tuple]:
    per = n // len(CAMPAIGNS)
    client.flushall()
    results = {}
    results["fresh"] = measure(client, pid, buf, calls(n, [i % 100 for i in range(per)]), n, figures["fresh"])
    second = [i % 100 + 1 for i in range(per)]
    results["coalesce"] = measure(client, pid, buf, calls(n, second), n, figures["coalesce"])
    deliver_all(buf)
    results["unchanged"] = measure(client, pid, buf, calls(n, second), n, figures["unchanged"])
    results["update"] = measure(client, pid, buf, calls(n, [i % 100 + 2 for i in range(per)]), n, figures["update"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=300_000)
    parser.add_argument("--only", choices=["before", "after"], help="measure one script only")
    args = parser.parse_args()
    os.environ.pop("YM_CABINETS", None)
    scripts = {"before": INGEST_BEFORE, "after": ingest_lua.INGEST}
    if args.only:
        scripts = {args.only: scripts[args.only]}
    with EmbeddedRedis() as server:
        assert server.process is not None
        client = redis.Redis.from_url(server.url)
        buffers = {}
        for name, text in scripts.items():
            buffers[name] = StockBuffer(client)
            buffers[name]._ingest = client.register_script(text)  # the only difference between them
        figures = {name: {case: Figures() for case in CASES} for name in scripts}
        for r in range(args.rounds):
            order = list(scripts) if r % 2 == 0 else list(reversed(scripts))
            seen = {}
            for name in order:
                seen[name] = chain(client, server.process.pid, buffers[name], args.updates, figures[name])
                print(f"round {r + 1} {name}: " + ", ".join(
                    f"{case} {figures[name][case].server_us[-1]:.2f}" for case in CASES), flush=True)
            first = next(iter(seen.values()))
            assert all(v == first for v in seen.values()), f"the scripts disagree: {seen}"
        print(f"\n{args.updates:,} updates per case over {len(CAMPAIGNS)} campaigns, calls of {CALL:,}; "
              f"{args.rounds} rounds; µs per update, median (min-max)")
        print(f"{'case':10} {'script':7} {'redis-server CPU':>24} {'script wall time':>24} {'client CPU':>24}")
        for case in CASES:
            for name in scripts:
                f = figures[name][case]
                cells = [f"{statistics.median(v):6.2f} ({min(v):.2f}-{max(v):.2f})"
                         for v in (f.server_us, f.script_us, f.client_us)]
                print(f"{case:10} {name:7} {cells[0]:>24} {cells[1]:>24} {cells[2]:>24}")
        print("IngestResult totals (accepted, stale, unchanged, too_old): "
              + ", ".join(f"{case} {v}" for case, v in first.items()))


if __name__ == "__main__":
    main()
