"""The producer's ingest reads only what a SKU's verdict can depend on (issue 18 item 4).

Redis's work per update is the ingest script's reads and writes per SKU, so each structure it
does not need to read for a chunk is a saving on every update (``bench/redis_cost.py`` measures it).
Counted with INFO commandstats, which counts the commands a script runs. The verdicts themselves
are the other tests' business (test_buffer.py: latest wins, repeats, unchanged counts).
"""

from __future__ import annotations

import time

import pytest
import redis

from ymsync.engine.buffer import StockBuffer

C = 1001
BASE = (int(time.time()) - 3600) * 1000


@pytest.fixture
def buf(clean_redis: redis.Redis) -> StockBuffer:
    return StockBuffer(clean_redis)


def calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def reads_of(r: redis.Redis, push) -> tuple[int, int, int]:
    """(HMGET, SMISMEMBER, HVALS) calls made by ``push()``: a hash read for all the SKUs that need
    it, the in-flight set's, the values in flight (every batch, read only when a verdict needs one)."""
    r.config_resetstat()
    push()
    return calls(r, "hmget"), calls(r, "smismember"), calls(r, "hvals")


def test_first_writes_read_no_hash_that_does_not_exist(buf, clean_redis) -> None:
    r = clean_redis
    # An empty target: no latest-wins or delivered record, nothing pending or in flight.
    assert reads_of(r, lambda: buf.ingest(C, [(f"a{i}", 1, BASE) for i in range(50)])) == (0, 0, 0)
    # New SKUs beside pending ones: the pending values only. A value accepted is its own
    # latest-wins record (no ``hwm`` field is written for it), the delivered records do not exist
    # yet, and nothing is in flight.
    assert reads_of(r, lambda: buf.ingest(C, [(f"b{i}", 1, BASE) for i in range(50)])) == (1, 0, 0)
    assert buf.pending(C) == 100
    assert not list(r.scan_iter("ymsync:{c1001}:hwm:*"))


def test_a_repush_over_pending_values_reads_neither_what_is_in_flight_nor_the_delivered_records(
        buf, clean_redis) -> None:
    r = clean_redis
    buf.ingest(C, [(f"s{i}", 1, BASE) for i in range(50)])
    buf.settle(buf.take(C, 10, 10**6, 60), "delivered")  # s0..s9 have delivered records
    buf.take(C, 10, 10**6, 60)  # s10..s19 in flight
    buf.ingest(C, [(f"s{i}", 2, BASE + 1) for i in range(20)])  # s0..s19 pending again
    # Every SKU has a pending value: it alone decides (a newer stamp coalesces into it).
    result = []
    assert reads_of(r, lambda: result.append(buf.ingest(C, [(f"s{i}", 3, BASE + 2) for i in range(50)]))) == (1, 0, 0)
    assert (result[0].accepted, buf.pending(C)) == (50, 50)


def test_a_repush_after_delivery_reads_the_delivered_records_but_not_an_empty_in_flight_set(buf, clean_redis) -> None:
    r = clean_redis
    buf.ingest(C, [(f"s{i}", 1, BASE) for i in range(50)])
    buf.settle(buf.take(C, 100, 10**6, 60), "delivered")
    result = []
    # The delivered records alone: nothing pending or in flight, no other latest-wins record.
    assert reads_of(r, lambda: result.append(buf.ingest(C, [(f"s{i}", 1, BASE + 1) for i in range(50)]))) == (1, 0, 0)
    assert result[0].unchanged == 50
    # Under force too: the value goes whatever count they hold, but an older stamp still loses.
    assert reads_of(r, lambda: result.append(buf.ingest(C, [(f"s{i}", 1, BASE + 2) for i in range(50)],
                                                        force=True))) == (1, 0, 0)
    assert result[1].accepted == 50
    # One SKU in flight: the in-flight set is read for the SKUs with nothing pending, the values in
    # flight for the one in it (no other record judges it), the delivered records for the others.
    batch = buf.take(C, 1, 10**6, 60)
    buf.settle(buf.take(C, 100, 10**6, 60), "delivered")
    assert reads_of(r, lambda: buf.ingest(C, [(f"s{i}", 1, BASE + 3) for i in range(50)])) == (1, 1, 1)
    assert batch is not None and len(batch) == 1
