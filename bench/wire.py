"""Micro-benchmark: the worker's per-request body work, the old per-SKU path against the bulk one,
in the same run: ``.venv/bin/python -m bench.wire [REDIS_URL]``.

old: a datetime per SKU (stamps.levels before issue 18), a StockLevel per SKU, ``isoformat()`` per
SKU, the standard library's JSON encoder. new: ymsync.market.wire (stamps from epoch ms through a
per-second cache, dicts from tuples, orjson). ``take_*``: from a take's reply (``sku,
b"count|stamp|first"`` pairs) to the bytes sent, the general path (Entry tuples, clamped levels,
dicts, orjson) against ``wire.campaign_stock_bytes`` (the Flusher's path since it was added). With
a Redis URL it also times redis-py reading a 2000-entry reply with its pure-Python parser and with
hiredis.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Callable

from ymsync.engine.batch import entries_of
from ymsync.engine.stamps import STALE_STAMP_MS
from ymsync.market import wire
from ymsync.market.client import _stock_entry
from ymsync.market.models import StockLevel

SKUS = 2000
NOW_MS = 1765004400000


def entries() -> list[tuple[str, int, int]]:
    # A backlog's batch: stamps spread over the last minute, SKUs of a usual length.
    return [(f"SKU-{i:08d}", i % 500, NOW_MS - (i * 37) % 60_000) for i in range(SKUS)]


def old_body(batch: list[tuple[str, int, int]]) -> bytes:
    levels = [(sku, count, datetime.fromtimestamp(ms / 1000, timezone.utc)) for sku, count, ms in batch]
    return wire.encode_body_stdlib({"skus": [_stock_entry(StockLevel(*level)) for level in levels]})


def new_body(batch: list[tuple[str, int, int]]) -> bytes:
    return wire.encode_body(wire.campaign_stock_body(batch))


def new_body_stdlib(batch: list[tuple[str, int, int]]) -> bytes:
    return wire.encode_body_stdlib(wire.campaign_stock_body(batch))


def best(fn: Callable[[], object], rounds: int = 7, inner: int = 20) -> float:
    """Best mean seconds per call over ``rounds`` of ``inner`` calls (CPU time)."""
    times = []
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(inner):
            fn()
        times.append((time.process_time() - t) / inner)
    return min(times)


def bodies() -> dict[str, float]:
    batch = entries()
    assert old_body(batch) == new_body(batch) == new_body_stdlib(batch)
    old = best(lambda: old_body(batch))
    stdlib = best(lambda: new_body_stdlib(batch))
    new = best(lambda: new_body(batch))
    body = wire.campaign_stock_body(batch)
    enc_std = best(lambda: wire.encode_body_stdlib(body))
    enc_new = best(lambda: wire.encode_body(body))
    return {"old_us_per_sku": old / SKUS * 1e6, "bulk_stdlib_us_per_sku": stdlib / SKUS * 1e6,
            "bulk_orjson_us_per_sku": new / SKUS * 1e6, "old_over_new": old / new,
            "encode_stdlib_us_per_sku": enc_std / SKUS * 1e6, "encode_orjson_us_per_sku": enc_new / SKUS * 1e6,
            "encode_ratio": enc_std / enc_new}


def take_reply() -> list[bytes]:
    raw: list[bytes] = []
    for sku, count, ms in entries():
        raw += [sku.encode(), b"%d|%d|%d" % (count, ms, ms - 5000)]
    return raw


def from_take_general(raw: list[bytes]) -> bytes:
    now_ms, oldest_ms = NOW_MS - 10_000, NOW_MS - 10_000 - STALE_STAMP_MS  # some stamps capped
    levels = [(e.sku, e.count, None if e.stamp_ms < oldest_ms else min(e.stamp_ms, now_ms))
              for e in entries_of(raw, 0)]
    return wire.encode_body(wire.campaign_stock_body(levels))


def from_take_bytes(raw: list[bytes]) -> bytes:
    body = wire.campaign_stock_bytes(raw, NOW_MS - 10_000, NOW_MS - 10_000 - STALE_STAMP_MS)
    assert body is not None
    return body.data


def takes() -> dict[str, float]:
    raw = take_reply()
    assert from_take_general(raw) == from_take_bytes(raw)
    general = best(lambda: from_take_general(raw))
    direct = best(lambda: from_take_bytes(raw))
    return {"take_general_us_per_sku": general / SKUS * 1e6, "take_bytes_us_per_sku": direct / SKUS * 1e6,
            "take_ratio": general / direct}


def replies(url: str) -> dict[str, float]:
    import redis
    from redis._parsers import _HiredisParser, _RESP2Parser

    fields = {f"SKU-{i:08d}": f"{i % 500}|{NOW_MS - i}" for i in range(SKUS)}
    setup = redis.Redis.from_url(url)
    setup.delete("bench:wire:reply")
    setup.hset("bench:wire:reply", mapping=fields)
    out = {}
    for name, parser in (("python", _RESP2Parser), ("hiredis", _HiredisParser)):
        client = redis.Redis.from_url(url, parser_class=parser)
        client.hgetall("bench:wire:reply")
        out[f"hgetall_{name}_us_per_entry"] = best(lambda: client.hgetall("bench:wire:reply"), inner=10) / SKUS * 1e6
    setup.delete("bench:wire:reply")
    out["parse_ratio"] = out["hgetall_python_us_per_entry"] / out["hgetall_hiredis_us_per_entry"]
    return out


def main() -> None:
    figures = bodies()
    figures.update(takes())
    if len(sys.argv) > 1:
        figures.update(replies(sys.argv[1]))
    for name, value in figures.items():
        print(f"{name:32} {value:8.3f}")


if __name__ == "__main__":
    main()
