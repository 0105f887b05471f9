"""Latest wins over one record per SKU, wherever its newest value is (keys.py): pending, in flight,
delivered, or an ``hwm`` record of a value that left otherwise (dead-lettered, retired).

Ingest writes no latest-wins field per accepted update any more (issue 18: it was a third of its
Redis time); these tests hold the verdicts to what they were when it did, state by state. The
property tests of test_buffer.py cover the interleavings.
"""

from __future__ import annotations

import time

import pytest
import redis

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.retire import retire_target
from ymsync.store import keys

C = 1001
BASE = (int(time.time()) - 3600) * 1000


@pytest.fixture
def buf(clean_redis: redis.Redis) -> StockBuffer:
    return StockBuffer(clean_redis)


def hwm_fields(r: redis.Redis) -> int:
    return sum(r.hlen(k) for k in r.scan_iter("ymsync:{c1001}:hwm:*"))


def verdict(buf: StockBuffer, sku: str, count: int, stamp: int) -> str:
    res = buf.ingest(C, [(sku, count, stamp)])
    return "accepted" if res.accepted else "unchanged" if res.unchanged else "stale"


def test_a_push_is_judged_against_the_value_in_flight(buf, clean_redis) -> None:
    buf.ingest(C, [("s", 5, BASE + 10)])
    batch = buf.take(C, 10, 10**6, 60)
    assert hwm_fields(clean_redis) == 0  # nothing but the value itself, now in flight
    assert verdict(buf, "s", 4, BASE + 9) == "stale"  # older than the value in flight
    assert verdict(buf, "s", 5, BASE + 10) == "stale"  # that very value again
    assert verdict(buf, "s", 6, BASE + 10) == "accepted"  # the same stamp, another count: it wins
    assert buf.latest_of(C, ["s"]) == [(BASE + 10, 6)]  # pending outranks in flight at equal stamps
    assert buf.stats(C)["stale"] == 2
    buf.settle(batch, "delivered")
    assert [(e.sku, e.count) for e in buf.take(C, 10, 10**6, 60).entries] == [("s", 6)]


def test_a_push_is_judged_against_the_delivered_record(buf, clean_redis) -> None:
    buf.ingest(C, [("s", 5, BASE + 10)])
    buf.settle(buf.take(C, 10, 10**6, 60), "delivered")
    assert verdict(buf, "s", 7, BASE + 9) == "stale"
    assert verdict(buf, "s", 5, BASE + 10) == "stale"
    assert verdict(buf, "s", 5, BASE + 11) == "unchanged"  # the Market holds 5: its record's stamp moves on
    assert verdict(buf, "s", 7, BASE + 10) == "stale"  # so this one is now older than it
    assert buf.latest_of(C, ["s"]) == [(BASE + 11, 5)]
    assert hwm_fields(clean_redis) == 0


def test_a_dead_letter_leaves_the_newest_record_and_older_pushes_stay_stale(buf, clean_redis) -> None:
    buf.ingest(C, [("s", 5, BASE + 10), ("t", 1, BASE + 10)])
    batch = buf.take(C, 10, 10**6, 60)
    buf.ingest(C, [("t", 2, BASE + 20)])  # pending behind t's value in flight
    buf.settle(batch, "dead", reason="refused")
    g = buf.generations()[-1]
    # s's own value; for t the value pending behind it, the newer of the two.
    assert clean_redis.hgetall(keys.hwm("c1001", g)) == {b"s": f"{BASE + 10}|5".encode(),
                                                        b"t": f"{BASE + 20}|2".encode()}
    assert verdict(buf, "s", 9, BASE + 9) == "stale"
    assert verdict(buf, "s", 5, BASE + 10) == "stale"
    assert buf.replay(C, ["s"]) == 1  # still the newest: sent again
    assert buf.replay(C, ["t"]) == 0  # t's newer value is pending: its letter goes
    assert verdict(buf, "s", 6, BASE + 10) == "accepted"  # same stamp, another count: it wins ...
    assert clean_redis.hget(keys.hwm("c1001", g), "s") == f"{BASE + 10}|6".encode()  # ... and is the record


def test_a_retirement_is_stamped_after_the_value_in_flight(buf, clean_redis) -> None:
    ahead = int(time.time() * 1000) + 60_000  # a producer clock a minute ahead of the server's
    buf.ingest(C, [("s", 5, ahead)])
    batch = buf.take(C, 10, 10**6, 60)
    retire_target(buf, "c1001", ["s"], None, "test")
    mark = int(clean_redis.hget(keys.target_keys("c1001")["retired"], "s"))
    assert mark > ahead
    buf.settle(batch, "delivered")  # sent before the retirement: it leaves no record
    assert buf.delivered(C) == {}
    assert verdict(buf, "s", 3, ahead) == "stale"
    assert buf.latest_of(C, ["s"]) == [(mark, 0)]


def test_a_batch_an_older_release_took_is_judged_by_hwm_and_at_settling(buf, clean_redis) -> None:
    """A batch a release before the flight hash took lives in its own key, where ingest does not
    look: that release's ingest wrote an hwm record for the value, which judges pushes; without
    one, settling drops an older value found behind the value delivered."""
    g = buf.generations()[-1]
    buf.ingest(C, [("s", 5, BASE + 10), ("t", 5, BASE + 10)])
    batch = buf.take(C, 10, 10**6, 60)
    flight = keys.target_keys("c1001")["flight"]  # as the old release left it ...
    clean_redis.set(keys.inflight("c1001", batch.batch_id), clean_redis.hget(flight, batch.batch_id))
    clean_redis.delete(flight)
    clean_redis.hset(keys.hwm("c1001", g), "s", f"{BASE + 10}|5")  # ... with s's record (t's lost)
    assert verdict(buf, "s", 4, BASE + 9) == "stale"
    assert verdict(buf, "t", 4, BASE + 9) == "accepted"  # nothing here says it is older
    buf.settle(batch, "delivered")  # ... but the value delivered before it does
    assert buf.pending(C) == 0 and buf.stats(C)["stale"] == 2
    assert buf.delivered(C)["t"][:2] == (5, BASE + 10)
