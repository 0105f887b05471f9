"""Micro-benchmark: Redis's time per SKU of taking a batch and settling it delivered (issue 18),
this checkout's scripts against another git ref's, in the same run:
``.venv/bin/python -m bench.take_settle [--ref REF] [--rounds R] [--skus N]``.

A private redis-server (nothing else talks to it) holds N pending SKUs of one campaign, pushed
with ``push_stocks``; then batches of 2,000 are taken and settled delivered until none is left,
as a flush does under a backlog. REF's ``ymsync/store/buffer_lua.py`` (``git show``) is loaded
into the same ``StockBuffer`` in place of this checkout's TAKE and SETTLE; each settles the way
its release's flusher did: REF names the batch's SKUs when it settles (the releases before the
packed batch did), this checkout names none (the script settles the batch it holds). Figures
per SKU: the scripts' server time (``INFO commandstats``, evalsha ``usec``: on an otherwise idle
server it is CPU) for the takes and for the settlements apart, and redis-server's CPU for both
(``/proc``, 10 ms ticks). The two alternate run by run, REF first in even rounds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import types
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import msgpack
import redis

from ymsync.embedded import EmbeddedRedis
from ymsync.engine.buffer import StockBuffer
from ymsync.store import buffer_lua

from .ingest import server_cpu_s, script_usec
from .rig import ROOT

CAMPAIGN = 41_001


@dataclass
class Figures:
    take_us: list[float] = field(default_factory=list)
    settle_us: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)


def scripts_of(ref: str) -> types.SimpleNamespace:
    """TAKE and SETTLE as ``ref`` wrote them."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:ymsync/store/buffer_lua.py"], check=True,
                          capture_output=True, text=True).stdout
    if key_layouts(text) != key_layouts(Path(buffer_lua.__file__).read_text()):
        # This checkout's StockBuffer passes the keys: scripts laid out otherwise would read and write
        # the wrong ones, and the figures would mean nothing.
        raise SystemExit(f"{ref}'s TAKE and SETTLE take other KEYS than this checkout's (the flight hash came "
                         f"after 1cb403b): compare whole releases with `python -m bench.redis_cost --ref {ref}`")
    namespace: dict[str, object] = {}
    exec(compile(text, f"{ref}:buffer_lua.py", "exec"), namespace)  # Lua texts only: no imports of note
    return types.SimpleNamespace(TAKE=namespace["TAKE"], SETTLE=namespace["SETTLE"])


def key_layouts(text: str) -> list[str]:
    """The ``# KEYS:`` layout comments of a buffer_lua.py, in order (the first two are TAKE's and SETTLE's)."""
    return [line for line in text.splitlines() if line.startswith("# KEYS:")][:2]


def packed_reply(take: Callable[..., Any]) -> Callable[..., Any]:
    """``take`` answering as this checkout's TAKE does: a release before the packed reply answered
    ``sku, value, ..., floor`` (its last element a string, where the packed reply's is a count);
    that is packed here, in the client, outside the server time measured."""
    def call(keys: list[str], args: list[object]) -> Any:
        raw = take(keys=keys, args=args)
        if not raw or isinstance(raw[-1], int):
            return raw
        floor = raw.pop()
        return [msgpack.packb(raw), floor, len(raw) // 2]
    return call


def run(client: redis.Redis, pid: int, scripts: types.SimpleNamespace, names_skus: bool, skus: int,
        into: Figures) -> int:
    from ymsync import push_stocks

    client.flushall()
    buf = StockBuffer(client)
    buf._take, buf._settle = packed_reply(client.register_script(scripts.TAKE)), client.register_script(scripts.SETTLE)
    for start in range(0, skus, 10_000):
        push_stocks(CAMPAIGN, [{"sku": f"SKU-{i:07d}", "count": i % 500} for i in range(start, min(start + 10_000, skus))],
                    buffer=buf)
    take_us = settle_us = 0
    settled = 0
    s0 = server_cpu_s(pid)
    while True:
        u0 = script_usec(client)
        batch = buf.take(CAMPAIGN, 2000, 10**9, 60.0)
        u1 = script_usec(client)
        if batch is None:
            break
        settled += buf.settle(batch, "delivered", [e.sku for e in batch.entries] if names_skus else None)
        u2 = script_usec(client)
        take_us, settle_us = take_us + u1 - u0, settle_us + u2 - u1
    into.server_us.append((server_cpu_s(pid) - s0) * 1e6 / skus)
    into.take_us.append(take_us / skus)
    into.settle_us.append(settle_us / skus)
    return settled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="294df5d", help="the git ref to compare with (default: the release "
                                                          "before the packed batch)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--ref-settles-whole", action="store_true",
                        help="REF's flusher settles a batch naming no SKUs, as this checkout's does (from 8f09f46 on)")
    args = parser.parse_args()
    variants = {args.ref: (scripts_of(args.ref), not args.ref_settles_whole),
                "this checkout": (types.SimpleNamespace(TAKE=buffer_lua.TAKE, SETTLE=buffer_lua.SETTLE), False)}
    figures = {name: Figures() for name in variants}
    with EmbeddedRedis() as server:
        assert server.process is not None
        client = redis.Redis.from_url(server.url)
        for r in range(args.rounds):
            for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
                scripts, names_skus = variants[name]
                settled = run(client, server.process.pid, scripts, names_skus, args.skus, figures[name])
                assert settled == args.skus, f"{name} settled {settled} of {args.skus}"
                f = figures[name]
                print(f"round {r + 1} {name}: take {f.take_us[-1]:.2f}, settle {f.settle_us[-1]:.2f} µs/SKU", flush=True)
                time.sleep(0.2)
    print(f"\n{args.skus:,} SKUs of one campaign, batches of 2,000; {args.rounds} rounds; µs per SKU, median (min-max)")
    print(f"{'scripts':16} {'take (script time)':>22} {'settle (script time)':>22} {'redis-server CPU':>22}")
    for name, f in figures.items():
        cells = [f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in (f.take_us, f.settle_us, f.server_us)]
        print(f"{name:16} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22}")


if __name__ == "__main__":
    main()
