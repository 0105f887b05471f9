"""StockBuffer against a real, private redis-server (never fakeredis, never the shared 6379)."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ymsync.store import keys
from ymsync.engine.buffer import Batch, StockBuffer
from ymsync.market.clock import MarketClock
from ymsync.market.schemas import MAX_BODY_BYTES, MAX_COUNT, MAX_SKU_LENGTH, encode_body, sku_problem
from ymsync.market.wire import campaign_stock_body
from ymsync.engine.flusher import Flusher
from ymsync.engine.targets import target

C = 1001
BASE = (int(time.time()) - 3600) * 1000  # stamps in ms: recent, the buffer drops stamps older than its horizon


@pytest.fixture
def r(clean_redis: redis.Redis) -> redis.Redis:
    return clean_redis


@pytest.fixture
def buf(r) -> StockBuffer:
    return StockBuffer(r)


def values(batch: Batch | None) -> dict[str, tuple[int, int]]:
    return {} if batch is None else {e.sku: (e.count, e.stamp_ms) for e in batch.entries}


def body_bytes(batch: Batch) -> int:
    """The exact request body the Flusher would send for this batch (see Flusher._send)."""
    stand_in = SimpleNamespace(client_for=lambda _t: SimpleNamespace(clock=MarketClock()))
    levels = Flusher._levels(stand_in, target(C), batch.entries)  # type: ignore[arg-type]
    return len(encode_body(campaign_stock_body(levels)))


# --- latest wins, under any interleaving --------------------------------------------------

SKUS = ("a", "b")
_ingest = st.tuples(st.just("ingest"), st.sampled_from(SKUS), st.integers(0, 2), st.integers(0, 3))
_take = st.tuples(st.just("take"), st.integers(1, 2), st.booleans())  # True: the worker dies (lease 0)
_settle = st.tuples(st.just("settle"), st.integers(0, 5), st.sampled_from(["delivered", "returned", "dead"]))
_reclaim = st.tuples(st.just("reclaim"))
_replay = st.tuples(st.just("replay"))


def run_interleaving(r: redis.Redis, ops: list[tuple]) -> None:
    """Every value taken for sending is the newest accepted one, never one already delivered;
    the newest value is never lost."""
    r.flushdb()
    buf = StockBuffer(r)
    latest: dict[str, tuple[int, int]] = {}  # sku -> (count, stamp) newest accepted, by the hwm rule
    accepted_n: dict[str, int] = {}  # sku -> acceptances so far (A, B, A again is a new value)
    delivered: dict[str, tuple[tuple[int, int], int]] = {}  # sku -> (value, acceptance it was)
    dead: set[str] = set()  # SKUs whose newest value is dead-lettered (only replay brings it back)
    open_batches: list[tuple[Batch, bool, dict[str, int]]] = []

    def accept(sku: str, count: int, stamp: int) -> bool:
        old = latest.get(sku)
        if old is not None and (stamp < old[1] or (stamp, count) == (old[1], old[0])):
            return False
        latest[sku] = (count, stamp)
        accepted_n[sku] = accepted_n.get(sku, 0) + 1
        dead.discard(sku)
        return True

    def check_taken(batch: Batch | None) -> dict[str, int]:
        for sku, value in values(batch).items():
            assert value == latest[sku], f"{sku}: sent {value} while the newest accepted is {latest[sku]}"
            assert delivered.get(sku) != (value, accepted_n[sku]), f"{sku}: {value} sent again after delivery"
        return {sku: accepted_n[sku] for sku in values(batch)}

    def deliver(batch: Batch, seen: dict[str, int]) -> None:
        for sku, value in values(batch).items():
            delivered[sku] = (value, seen[sku])
            # The same count pushed again while this one was in flight, and pending: the Market now
            # has it, so it is not sent; the delivered record carries the newer stamp.
            if accepted_n[sku] > seen[sku] and sku not in dead and latest[sku][0] == value[0]:
                delivered[sku] = (latest[sku], accepted_n[sku])

    for op in ops:
        if op[0] == "ingest":
            _, sku, count, stamp = op
            in_flight = {s for b, _, _ in open_batches for s in values(b)}
            was = latest.get(sku)
            settled = sku in dead or (was is not None and delivered.get(sku) == (was, accepted_n[sku]))
            # The Market was last given this count and nothing is pending or in flight: not resent.
            same = sku not in in_flight and settled and sku in delivered and delivered[sku][0][0] == count
            res = buf.ingest(C, [(sku, count, BASE + stamp)])
            ok = accept(sku, count, BASE + stamp)
            if ok and same:
                accepted_n[sku] -= 1  # not a new value to send: the delivered one now carries its stamp
                delivered[sku] = ((count, BASE + stamp), accepted_n[sku])
                assert (res.accepted, res.unchanged) == (0, 1)
            else:
                assert (res.accepted, res.unchanged) == (int(ok), 0)
        elif op[0] == "take":
            batch = buf.take(C, op[1], 10_000, 0 if op[2] else 60)
            seen = check_taken(batch)
            if batch is not None:
                assert not set(seen) & {sku for b, _, _ in open_batches for sku in values(b)}, "SKU in two batches"
                open_batches.append((batch, op[2], seen))
        elif op[0] == "settle" and open_batches:
            batch, _, seen = open_batches.pop(op[1] % len(open_batches))
            buf.settle(batch, op[2], reason="test")
            if op[2] == "delivered":
                deliver(batch, seen)
            elif op[2] == "dead":
                dead.update(sku for sku, value in values(batch).items() if latest[sku] == value)
        elif op[0] == "reclaim":
            buf.reclaim_expired(C)
            open_batches = [b for b in open_batches if not b[1]]
        elif op[0] == "replay":
            buf.replay(C)
            dead.clear()

    # Drain: the live workers deliver, dead ones are reclaimed, the rest is taken and delivered.
    buf.reclaim_expired(C)
    for batch, died, seen in open_batches:
        if not died:
            buf.settle(batch, "delivered")
            deliver(batch, seen)
    while (batch := buf.take(C, 10, 10_000, 60)) is not None:
        seen = check_taken(batch)
        buf.settle(batch, "delivered")
        deliver(batch, seen)
    assert buf.pending(C) == 0 and buf.in_flight(C) == 0
    got = {sku: (count, stamp) for sku, (count, stamp, _) in buf.delivered(C).items()}
    for sku, value in latest.items():
        if sku not in dead:
            assert got.get(sku) == value, f"{sku}: newest {value} lost (delivered {got.get(sku)})"


_FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FAST
@given(ops=st.lists(st.one_of(_ingest, _take, _settle, _reclaim), max_size=30))
def test_latest_wins_under_any_interleaving(r, ops: list[tuple]) -> None:
    run_interleaving(r, ops)


@_FAST
@example(ops=[("ingest", "b", 0, 0), ("take", 1, False), ("settle", 0, "dead"), ("ingest", "b", 1, 0),
              ("take", 1, False), ("replay",)])
@given(ops=st.lists(st.one_of(_ingest, _take, _settle, _reclaim, _replay), max_size=30))
def test_latest_wins_with_dead_letter_replays(r, ops: list[tuple]) -> None:
    run_interleaving(r, ops)


# --- repeats -------------------------------------------------------------------------------


def test_repeats_are_dropped_in_every_state(buf) -> None:
    assert buf.ingest(C, [("s", 5, BASE)]).accepted == 1
    assert buf.ingest(C, [("s", 5, BASE)]).stale == 1  # pending
    batch = buf.take(C, 10, 10_000, 60)
    assert values(batch) == {"s": (5, BASE)}
    assert buf.ingest(C, [("s", 5, BASE)]).stale == 1  # in flight
    buf.settle(batch, "delivered")
    assert buf.ingest(C, [("s", 5, BASE), ("s", 4, BASE - 1)]).stale == 2  # delivered; older
    assert buf.take(C, 10, 10_000, 60) is None
    # A newer stamp with the count the Market already has: nothing to send, but the stamp moves on.
    assert buf.ingest(C, [("s", 5, BASE + 1)]).unchanged == 1
    assert buf.take(C, 10, 10_000, 60) is None
    assert buf.delivered(C)["s"][:2] == (5, BASE + 1)
    assert buf.ingest(C, [("s", 4, BASE)]).stale == 1  # older than the refreshed stamp: still loses
    assert buf.ingest(C, [("s", 5, BASE + 2)], force=True).accepted == 1  # forced: sent again
    assert values(buf.take(C, 10, 10_000, 60)) == {"s": (5, BASE + 2)}


def test_an_unchanged_count_is_resent_when_a_different_value_is_pending_or_in_flight(buf) -> None:
    buf.ingest(C, [("s", 5, BASE)])
    buf.settle(buf.take(C, 10, 10_000, 60), "delivered")
    buf.ingest(C, [("s", 6, BASE + 1)])  # pending 6: a later 5 must replace it, not be skipped
    assert buf.ingest(C, [("s", 5, BASE + 2)]).accepted == 1
    batch = buf.take(C, 10, 10_000, 60)
    assert values(batch) == {"s": (5, BASE + 2)}
    buf.ingest(C, [("s", 7, BASE + 3)])
    buf.settle(batch, "delivered")  # 7 is pending; another 5 ...
    assert buf.ingest(C, [("s", 5, BASE + 4)]).accepted == 1  # ... must win over it
    assert values(buf.take(C, 10, 10_000, 60)) == {"s": (5, BASE + 4)}


def test_an_unchanged_count_pushed_while_in_flight_is_not_sent_again(buf, r) -> None:
    """A warehouse group's stock pushed through both its campaigns (the same count, the second
    stamp newer) while the first copy is in flight: once it is delivered the second is not sent.
    Before, it was queued and sent again: twice the group's SKUs over its quota, and a copy
    landing late could overwrite a cabinet edit made after the first (the demo's lost drift)."""
    buf.ingest(C, [("s", 5, BASE), ("t", 1, BASE)])
    batch = buf.take(C, 10, 10_000, 60)
    assert buf.ingest(C, [("s", 5, BASE + 1), ("t", 2, BASE + 1)]).accepted == 2  # in flight: queued
    buf.settle(batch, "delivered")
    assert values(buf.take(C, 10, 10_000, 60)) == {"t": (2, BASE + 1)}  # only the changed count goes
    assert buf.delivered(C)["s"][:2] == (5, BASE + 1)  # the delivered record carries the newer stamp
    assert buf.latest_of(C, ["s"]) == [(BASE + 1, 5)]  # ... so the SKU is settled, not "pending"
    assert int(r.hget(keys.campaign_keys(C)["stats"], "unchanged")) == 1
    assert buf.ingest(C, [("s", 5, BASE)]).stale == 1  # the older stamp still loses
    # Returned (a retry) or dead-lettered, the in-flight copy did not reach the Market: the pending
    # copy goes.
    for n, action in enumerate(("returned", "dead")):
        buf.ingest(C, [(f"u{n}", 3, BASE + 10)])
        batch = buf.take(C, 10, 10_000, 60)
        buf.ingest(C, [(f"u{n}", 3, BASE + 11)])
        buf.settle(batch, action, reason="test")
        assert values(buf.take(C, 10, 10_000, 60)) == {f"u{n}": (3, BASE + 11)}, action


def test_a_repeat_behind_one_of_two_batches_in_flight_is_dropped_and_the_mark_goes_with_the_last(buf, r) -> None:
    """SETTLE looks at the pending values behind a batch only while ingest has marked one written
    behind an in-flight SKU (the stats field ``behind``); the mark goes when nothing is in flight."""
    stats = keys.campaign_keys(C)["stats"]
    buf.ingest(C, [("a", 1, BASE)])
    first = buf.take(C, 10, 10_000, 60)
    buf.ingest(C, [("b", 2, BASE)])
    second = buf.take(C, 10, 10_000, 60)
    assert r.hget(stats, "behind") is None  # nothing written behind an in-flight SKU yet
    buf.ingest(C, [("a", 1, BASE + 5), ("c", 3, BASE)])  # a: the same count, behind the first batch
    assert r.hget(stats, "behind") == b"1"
    buf.settle(second, "delivered")  # the first is still in flight: the mark stays
    assert r.hget(stats, "behind") == b"1"
    buf.settle(first, "delivered")
    assert r.hget(stats, "behind") is None
    assert values(buf.take(C, 10, 10_000, 60)) == {"c": (3, BASE)}  # a's repeat was dropped
    assert buf.delivered(C)["a"][:2] == (1, BASE + 5)


def test_settling_with_nothing_behind_reads_no_pending_value(buf, r) -> None:
    """Under a backlog of new SKUs nothing waits behind a batch: its settlement reads no pending
    value (before the mark, an HMGET of the batch's 2,000 SKUs each time)."""
    buf.ingest(C, [(f"s{i}", i, BASE) for i in range(30)])
    batch = buf.take(C, 10, 10_000, 60)
    r.config_resetstat()
    buf.settle(batch, "delivered")
    assert "cmdstat_hmget" not in r.info("commandstats")
    assert buf.pending(C) == 20 and len(buf.delivered(C)) == 10


def test_a_delivered_record_is_cut_right_whatever_the_lengths_of_its_times(buf, r) -> None:
    """SETTLE cuts ``count|stamp`` out of a value by position when both times have 13 digits (epoch
    ms) and by pattern otherwise: a value of other lengths (written by hand, or far in the past or
    future) still records its own count and stamp."""
    values_in = {"ms": b"7|1765050000123|1765050000999", "short": b"8|12|3", "long": b"9|17650500001234|12345678901234",
                 "tricky": b"1|2|123456789012"}  # "1|2|": a '|' 14 places from the end, first not 13 digits
    k = keys.campaign_keys(C)
    r.hset(k["flight"], "b1", msgpack.packb([x for sku, v in values_in.items() for x in (sku.encode(), v)],
                                            use_bin_type=False))  # as str: what cmsgpack reads
    r.sadd(k["busy"], *values_in)
    r.zadd(k["batches"], {"b1": int(time.time() * 1000) + 60_000})
    buf.settle(Batch(buf.target(C), "b1", ()), "delivered")
    got = {sku: rec[:2] for sku, rec in buf.delivered(C).items()}
    assert got == {"ms": (7, 1765050000123), "short": (8, 12), "long": (9, 17650500001234), "tricky": (1, 2)}


def test_many_updates_coalesce_into_one(buf) -> None:
    buf.ingest(C, [("s", n, BASE + n) for n in range(50)] + [("s", 0, BASE)])
    assert buf.pending(C) == 1
    assert values(buf.take(C, 10, 10_000, 60)) == {"s": (49, BASE + 49)}


# --- take: max_skus and max_bytes ----------------------------------------------------------

_HOSTILE = [
    '"' * MAX_SKU_LENGTH,
    "\\" * MAX_SKU_LENGTH,
    ('"\\' * MAX_SKU_LENGTH)[:MAX_SKU_LENGTH],
    "a\tb" * 85,  # tabs inside a SKU are allowed and escape to two bytes
    "я" * MAX_SKU_LENGTH,  # two UTF-8 bytes each
    "𝄞" * MAX_SKU_LENGTH,  # four UTF-8 bytes each
    "x",
]


def hostile_skus(n: int) -> list[str]:
    out = []
    for i in range(n):
        base = _HOSTILE[i % len(_HOSTILE)]
        tag = str(i)
        out.append(tag + base[len(tag):])
    assert all(sku_problem(s) is None for s in out), "the schema must allow these SKUs"
    return out


@pytest.mark.parametrize("max_bytes", [110, 200, 700, 3_000, 40_000, MAX_BODY_BYTES - 1024])
def test_take_respects_max_bytes_with_the_real_body(buf, max_bytes: int) -> None:
    now_ms = int(time.time() * 1000)
    stamp = now_ms - now_ms % 1000 - 877  # a fractional second: the longest ISO stamp
    skus = hostile_skus(2400)
    buf.ingest(C, [(s, MAX_COUNT, stamp) for s in skus])
    largest_entry = 4 * MAX_SKU_LENGTH + 100
    taken = 0
    while (batch := buf.take(C, 2000, max_bytes, 60)) is not None:
        size = body_bytes(batch)
        assert size <= max_bytes, f"{len(batch)} SKUs make a {size}-byte body, cap {max_bytes}"
        assert len(batch) <= 2000
        if buf.pending(C) and len(batch) < 2000:
            # Not absurdly timid either (the estimate may overshoot by a few bytes an entry).
            assert size >= 0.95 * max_bytes - 2 * largest_entry, f"{len(batch)} SKUs, {size} bytes"
        buf.settle(batch, "delivered")
        taken += len(batch)
    if max_bytes >= 11 + largest_entry:
        assert taken == 2400  # everything goes out eventually


def test_take_respects_max_skus(buf) -> None:
    buf.ingest(C, [(f"s{i}", i, BASE + i) for i in range(50)])
    sizes = []
    while (batch := buf.take(C, 7, 1 << 20, 60)) is not None:
        sizes.append(len(batch))
    assert sizes == [7] * 7 + [1]
    assert buf.in_flight(C) == 50 and buf.pending(C) == 0


def test_take_skips_skus_in_flight(buf) -> None:
    buf.ingest(C, [("s", 1, BASE)])
    first = buf.take(C, 10, 10_000, 60)
    buf.ingest(C, [("s", 2, BASE + 1)])
    assert buf.take(C, 10, 10_000, 60) is None  # never two requests racing for one SKU
    buf.settle(first, "delivered")
    assert values(buf.take(C, 10, 10_000, 60)) == {"s": (2, BASE + 1)}


# --- returned, reclaimed, dead letters -----------------------------------------------------


def test_returned_batch_does_not_override_newer_pending(buf) -> None:
    buf.ingest(C, [("s", 1, BASE), ("t", 1, BASE)])
    batch = buf.take(C, 10, 10_000, 60)
    buf.ingest(C, [("s", 2, BASE + 5)])
    assert buf.settle(batch, "returned") == 2
    assert values(buf.take(C, 10, 10_000, 60)) == {"t": (1, BASE), "s": (2, BASE + 5)}


def test_reclaim_returns_a_dead_workers_batch(buf) -> None:
    buf.ingest(C, [("s", 1, BASE), ("t", 1, BASE)])
    batch = buf.take(C, 10, 10_000, 0.05)
    buf.ingest(C, [("t", 9, BASE + 9)])
    assert buf.reclaim_expired(C) == 0  # the lease still runs
    time.sleep(0.06)
    assert buf.reclaim_expired(C) == 2
    assert buf.stats(C)["reclaimed"] == 2
    assert buf.settle(batch, "delivered") == 0  # the presumed-dead worker's late settle is void
    assert values(buf.take(C, 10, 10_000, 60)) == {"s": (1, BASE), "t": (9, BASE + 9)}
    assert buf.reclaim_expired(C) == 0


def test_a_batch_settled_in_pieces_stays_in_flight_until_its_last_piece(buf, r) -> None:
    # Isolation settles a refused batch piece by piece; what is not settled yet stays leased.
    buf.ingest(C, [(s, 1, BASE) for s in "abcd"])
    batch = buf.take(C, 10, 10_000, 60)
    batches, busy = keys.campaign_keys(C)["batches"], keys.campaign_keys(C)["busy"]
    assert buf.settle(batch, "delivered", ["a", "b", "zz"]) == 2  # zz is not in the batch
    assert buf.settle(batch, "delivered", ["a"]) == 0  # settled once only
    assert r.zscore(batches, batch.batch_id) is not None
    assert {m.decode() for m in r.smembers(busy)} == {"c", "d"}
    assert buf.settle(batch, "returned", ["c"]) == 1
    assert values(buf.take(C, 10, 10_000, 60)) == {"c": (1, BASE)}  # d is still in flight
    assert buf.settle(batch, "dead", ["d"], reason="x") == 1
    assert r.zscore(batches, batch.batch_id) is None
    assert not r.hexists(keys.campaign_keys(C)["flight"], batch.batch_id)
    assert buf.stats(C)["delivered"] == 2 and buf.stats(C)["dead"] == 1


@pytest.mark.parametrize("outcome", ["delivered", "reclaimed"])
def test_a_batch_taken_by_the_release_that_kept_a_hash_settles_and_reclaims(buf, r, outcome: str) -> None:
    # A deployment upgraded with batches in flight: a release before kept each in-flight value as
    # a field of a hash of its own (the layout of buf), not in the target's flight hash.
    buf.ingest(C, [("s", 1, BASE), ("t", 2, BASE)])
    batch = buf.take(C, 10, 10_000, 60 if outcome == "delivered" else 0.03)
    inflight, flight = keys.inflight(buf.target(C), batch.batch_id), keys.campaign_keys(C)["flight"]
    r.hdel(flight, batch.batch_id)
    r.hset(inflight, mapping={"s": f"1|{BASE}|{BASE}", "t": f"2|{BASE}|{BASE}"})
    if outcome == "delivered":
        assert buf.settle(batch, "delivered", ["s"]) == 1
        assert r.hexists(flight, batch.batch_id) and not r.exists(inflight)  # the rest, in this release's layout
        assert buf.settle(batch, "delivered") == 1
        assert buf.stats(C)["delivered"] == 2
    else:
        time.sleep(0.05)
        assert buf.reclaim_expired(C) == 2
        assert values(buf.take(C, 10, 10_000, 60)) == {"s": (1, BASE), "t": (2, BASE)}
    assert not r.exists(inflight) and not r.hexists(flight, batch.batch_id)
    assert r.zscore(keys.campaign_keys(C)["batches"], batch.batch_id) is None


def test_extend_keeps_a_live_batch(buf) -> None:
    buf.ingest(C, [("s", 1, BASE)])
    batch = buf.take(C, 10, 10_000, 0.05)
    buf.extend(batch, 60)
    time.sleep(0.06)
    assert buf.reclaim_expired(C) == 0


def test_replay_respects_newer_values(buf) -> None:
    buf.ingest(C, [("old", 1, BASE), ("pending", 1, BASE), ("busy", 1, BASE), ("sent", 1, BASE)])
    buf.settle(buf.take(C, 10, 10_000, 60), "dead", reason="boom")
    assert len(buf.dead_letters(C)) == 4
    buf.ingest(C, [("pending", 2, BASE + 1), ("busy", 2, BASE + 1), ("sent", 2, BASE + 1)])
    first = buf.take(C, 10, 10_000, 60)
    buf.settle(first, "delivered", ["sent"])  # "busy" stays in flight, "pending" too: re-pend it
    buf.settle(first, "returned", ["pending"])
    assert buf.replay(C) == 1  # only "old": every other SKU has a newer value
    assert buf.dead_letters(C) == []
    buf.settle(first, "delivered", ["busy"])
    assert values(buf.take(C, 10, 10_000, 60)) == {"old": (1, BASE), "pending": (2, BASE + 1)}


def test_replay_by_sku(buf) -> None:
    buf.ingest(C, [("a", 1, BASE), ("b", 1, BASE)])
    buf.settle(buf.take(C, 10, 10_000, 60), "dead", reason="boom")
    assert buf.replay(C, ["b", "nope"]) == 1
    assert [d["sku"] for d in buf.dead_letters(C)] == ["a"]


def test_replay_does_not_resend_a_value_superseded_at_the_same_stamp(buf) -> None:
    buf.ingest(C, [("s", 1, BASE)])
    buf.settle(buf.take(C, 10, 10_000, 60), "dead", reason="boom")
    assert buf.ingest(C, [("s", 2, BASE)]).accepted == 1  # same stamp, new count: accepted, newest
    buf.settle(buf.take(C, 10, 10_000, 60), "delivered")
    buf.replay(C)
    assert buf.take(C, 10, 10_000, 60) is None, "the older count 1 would overwrite the delivered 2"


def test_replay_all_keeps_raw_dead_letters(buf, r) -> None:
    buf.ingest(C, [("s", 1, BASE)])
    buf.settle(buf.take(C, 10, 10_000, 60), "dead", reason="boom")
    buf.dead_letter_raw(C, "invalid:1:item 0", {"sku": "item 0", "count": None, "stamp_ms": None,
                                                "first_ms": None, "reason": "invalid input", "at_ms": 1})
    assert buf.replay(C) == 1  # invalid input has no value to send: it stays a dead letter
    assert values(buf.take(C, 10, 10_000, 60)) == {"s": (1, BASE)}
    assert [d["reason"] for d in buf.dead_letters(C)] == ["invalid input"]


# --- every key has a bound -------------------------------------------------------------------

_PER_SKU = {"buf", "queue", "busy", "dead"}
_STATS = {"received", "stale", "coalesced", "delivered", "dead", "reclaimed", "retries", "rate_limited",
          "failstreak", "unchanged", "too_old"}


def test_every_key_is_bounded(buf, r) -> None:
    catalog = [f"sku-{i}" for i in range(40)]
    for round_ in range(6):
        buf.ingest(C, [(s, round_, BASE + round_) for s in catalog])
        buf.ingest(C + 1, [(s, round_, None) for s in catalog[:5]])
        for action in ("delivered", "returned", "dead"):
            batch = buf.take(C, 9, 100_000, 60)
            buf.settle(batch, action, reason="x")
        buf.take(C, 5, 100_000, 0)  # a worker dies holding this batch
        buf.reclaim_expired(C)
        buf.replay(C)
    r.delete(keys.NUDGE)  # the scheduler drains the nudges
    buf.ingest(C, [(s, 99, BASE + 99) for s in catalog])
    buf.ingest(C, [(s, 100, BASE + 100) for s in catalog])
    assert r.llen(keys.NUDGE) <= 1, "one nudge per new due entry, not one per write"
    assert r.zcard(keys.DUE) == 2, "one due entry per target"
    buf.take(C, 3, 100_000, 60)

    documented = keys.__doc__ or ""
    open_batches = {b.decode() for b in r.zrange(keys.campaign_keys(C)["batches"], 0, -1)}
    for raw in r.scan_iter("*"):
        key = raw.decode()
        match = re.match(r"ymsync:\{([^}]+)\}:([a-z-]+)", key)
        assert match, f"{key}: not of the form ymsync:{{tag}}:name"
        tag, name = match.groups()
        assert tag in ("sched", f"c{C}", f"c{C + 1}"), key
        assert re.search(rf"ymsync:\{{[a-z]+\}}:{re.escape(name)}\b", documented), f"{key} is not documented in keys.py"
        if r.pttl(key) > 0:
            continue
        assert name not in ("hwm", "delivered"), f"{key}: a per-SKU record generation without an expiry"
        kind = r.type(key).decode()
        size = {"hash": r.hlen, "zset": r.zcard, "set": r.scard, "list": r.llen}.get(kind, lambda k: 1)(key)
        if name in _PER_SKU or name == "inflight":
            assert size <= len(catalog), f"{key}: {size} entries for {len(catalog)} SKUs"
        if name == "inflight":
            assert key.rsplit(":", 1)[1] in open_batches, f"{key} is tracked by no lease: nothing reclaims it"
        elif name == "flight":
            assert {b.decode() for b in r.hkeys(key)} <= open_batches, f"{key}: a copy of a batch no lease tracks"
        elif name == "batches":
            assert size <= len(catalog)
        elif name == "stats":
            assert {f.decode() for f in r.hkeys(key)} <= _STATS, f"{key}: unexpected counters"
        elif name in ("targets", "due"):
            assert size == 2
        elif name not in _PER_SKU:
            pytest.fail(f"{key} ({kind}, {size}) has no TTL and no known bound")


def test_raw_dead_letters_are_bounded(buf, r) -> None:
    for n in range(200):
        buf.dead_letter_raw(C, f"invalid:{n}:item 0", {"sku": "item 0", "count": None, "stamp_ms": None,
                                                       "first_ms": None, "reason": "invalid", "at_ms": n})
    dead = keys.campaign_keys(C)["dead"]
    assert r.hlen(dead) <= 100 or r.pttl(dead) > 0


def test_the_queue_holds_each_pending_sku_once_in_arrival_order(buf, r) -> None:
    queue_key = keys.campaign_keys(C)["queue"]

    def queue() -> list[str]:
        return [x.decode() for x in r.lrange(queue_key, 0, -1)]

    buf.ingest(C, [(f"q{i:04d}", 1, BASE) for i in range(1200)])
    first = buf.take(C, 700, 10**9, 60)  # spans two popped pages: the rest of the second goes back
    assert [e.sku for e in first.entries] == [f"q{i:04d}" for i in range(700)]
    buf.ingest(C, [("q0001", 2, BASE + 1), ("q0000", 2, BASE + 1)])  # newer values while in flight
    assert queue() == [f"q{i:04d}" for i in range(700, 1200)] + ["q0001", "q0000"]
    second = buf.take(C, 600, 10**9, 60)  # q0001 and q0000 are busy: skipped, kept in place
    assert [e.sku for e in second.entries] == [f"q{i:04d}" for i in range(700, 1200)]
    assert queue() == ["q0001", "q0000"]
    buf.settle(first, "returned")  # the newer q0000/q0001 win; the rest come back, appended once
    assert queue() == ["q0001", "q0000"] + [f"q{i:04d}" for i in range(2, 700)]
    assert sorted(queue()) == sorted(k.decode() for k in r.hkeys(keys.campaign_keys(C)["buf"]))
    assert values(buf.take(C, 2, 10**9, 60)) == {"q0001": (2, BASE + 1), "q0000": (2, BASE + 1)}



def test_a_sku_queued_twice_is_taken_once(buf, r) -> None:
    # A value delivered while the same count waited behind it drops that copy as unchanged and
    # leaves its queue entry (taking drops an entry without a value); a new value then queues the
    # SKU again. Both entries can fall in one take: the Market refuses a request naming a SKU twice
    # ("Duplicate shop-sku"), which cost the value a dead letter.
    queue_key = keys.campaign_keys(C)["queue"]
    buf.ingest(C, [("X", 1, BASE), ("Y", 1, BASE)])
    sent = buf.take(C, 10, 10**9, 60)
    buf.ingest(C, [("X", 1, BASE + 1)])  # the same count again, behind the one in flight
    assert buf.settle(sent, "delivered") == 2
    assert buf.ingest(C, [("X", 2, BASE + 2), ("Z", 3, BASE + 2)]).accepted == 2
    assert [x.decode() for x in r.lrange(queue_key, 0, -1)] == ["X", "X", "Z"]
    batch = buf.take(C, 10, 10**9, 60)
    assert [e.sku for e in batch.entries] == ["X", "Z"] and values(batch)["X"] == (2, BASE + 2)
    assert r.llen(queue_key) == 0 and r.smembers(keys.campaign_keys(C)["busy"]) == {b"X", b"Z"}
    assert buf.settle(batch, "delivered") == 2 and buf.pending(C) == 0 and buf.in_flight(C) == 0


def test_settling_one_batch_keeps_the_other_batches_skus_in_flight(buf, r) -> None:
    # A batch alone in flight empties the busy set whole; beside another, only its own SKUs go.
    busy = keys.campaign_keys(C)["busy"]
    buf.ingest(C, [(f"a{i}", 1, BASE) for i in range(5)])
    first = buf.take(C, 3, 10**9, 60)
    second = buf.take(C, 3, 10**9, 60)
    assert len(first) == 3 and len(second) == 2 and r.scard(busy) == 5
    assert buf.settle(first, "delivered") == 3
    assert r.smembers(busy) == {e.sku.encode() for e in second.entries}
    buf.ingest(C, [(second.entries[0].sku, 9, BASE + 1)])  # a newer value waits for the one in flight
    assert buf.take(C, 10, 10**9, 60) is None
    assert buf.settle(second, "delivered") == 2 and not r.exists(busy)
    assert values(buf.take(C, 10, 10**9, 60)) == {second.entries[0].sku: (9, BASE + 1)}

# --- reclaim and extend are atomic ----------------------------------------------------------

def test_extend_refuses_a_lease_that_ran_out_even_before_it_is_reclaimed(buf, r) -> None:
    # The interleaving that raced when reclaiming took two steps: the sweeper found the batch
    # expired, a worker isolating a poison SKU extended it in the gap, the sweeper returned its
    # SKUs to the buffer, and the worker went on to send SKUs that were no longer its own.
    buf.ingest(C, [("s", 1, BASE), ("t", 1, BASE)])
    batch = buf.take(C, 10, 10_000, 0.05)
    time.sleep(0.08)
    assert buf.extend(batch, 60) is False  # ran out: not the worker's to send any more
    assert buf.reclaim_expired(C) == 2
    assert buf.extend(batch, 60) is False
    buf.ingest(C, [("s", 2, BASE + 1)])
    again = buf.take(C, 10, 10_000, 60)
    assert values(again) == {"s": (2, BASE + 1), "t": (1, BASE)}
    assert buf.settle(batch, "delivered") == 0  # the late worker's settle changes nothing


def test_reclaim_returns_every_expired_batch_in_one_step(buf, r) -> None:
    buf.ingest(C, [(f"s{i}", i, BASE) for i in range(30)])
    dead = [buf.take(C, 10, 10_000, 0.03) for _ in range(2)]
    live = buf.take(C, 10, 10_000, 60)
    time.sleep(0.05)
    assert buf.reclaim_expired(C) == 20
    batches = r.zrange(keys.campaign_keys(C)["batches"], 0, -1)
    assert [b.decode() for b in batches] == [live.batch_id]
    assert not any(r.hexists(keys.campaign_keys(C)["flight"], b.batch_id) for b in dead)
    assert r.scard(keys.campaign_keys(C)["busy"]) == 10
    assert buf.pending(C) == 20


# --- per-SKU records are bounded by the horizon ----------------------------------------------

def test_records_idle_past_the_horizon_cost_nothing(r) -> None:
    buf = StockBuffer(r, horizon_s=2.0)  # generations of 1 s; a record goes 2-3 s after its last write
    now = int(time.time() * 1000)
    buf.ingest(C, [(f"s{i}", i, now) for i in range(500)])
    buf.settle(buf.take(C, 500, 10**9, 60), "delivered")
    assert len(buf.delivered(C)) == 500
    assert buf.latest_of(C, ["s1"]) == [(now, 1)]
    time.sleep(3.1)
    leftovers = [k.decode() for k in r.scan_iter("ymsync:{c%d}:*" % C)]
    assert [k for k in leftovers if not k.endswith(":stats")] == []
    assert buf.delivered(C) == {} and buf.latest_of(C, ["s1"]) == [None]
    # Older than the horizon: dropped, whatever the records say (they are gone).
    old = buf.ingest(C, [("s1", 7, int(time.time() * 1000) - 2500)])
    assert (old.accepted, old.stale, old.too_old) == (0, 1, 1)
    assert buf.pending(C) == 0


def test_a_rewritten_record_moves_to_the_current_generation(r) -> None:
    buf = StockBuffer(r, horizon_s=2.0)
    buf.ingest(C, [("s", 1, int(time.time() * 1000))])
    buf.settle(buf.take(C, 10, 10_000, 60), "dead", reason="x")  # its record now lives in hwm ...
    for n in range(2, 6):  # ... each value accepted since rewrites it, every 0.7 s: never idle for a horizon
        time.sleep(0.7)
        buf.ingest(C, [("s", n, int(time.time() * 1000))])
    assert buf.latest_of(C, ["s"])[0][1] == 5
    copies = sum(r.hexists(k, "s") for k in r.scan_iter("ymsync:{c%d}:hwm:*" % C))
    assert copies == 1, "one record per SKU, not one per generation"


def test_clamped_stamps_never_go_backwards_between_processes_a_second_apart(buf) -> None:
    """Chaos case 10 under three test processes: every worker's clock runs ahead of the Market's,
    so stamps are clamped to what each process learnt of the Market's clock from whole-second Date
    headers, which two processes can know a second apart. A SKU's next value, sent by the process
    that knows less, must not carry an older stamp than the one the other process sent."""
    from email.utils import format_datetime
    from datetime import datetime, timezone

    local = time.time()
    market = local - 10.3  # the Market's clock: 10.3 s behind this machine's
    ahead, behind = MarketClock(), MarketClock()  # both know the Market is behind, a second apart
    date = format_datetime(datetime.fromtimestamp(int(market), timezone.utc), usegmt=True)
    ahead.observe(date, received_at=local, sent_at=local)
    behind.observe(date, received_at=local + 0.95, sent_at=local + 0.95)  # a slow reply: lower bound ~1 s less
    assert ahead.stamp_cap_ms() - behind.stamp_cap_ms() > 500  # the two caps differ by most of a second
    now_ms = int(local * 1000)  # the producer stamps "now" by this machine's clock: ahead of both caps
    sent: list[int] = []
    for n, clock in enumerate([ahead, behind, ahead, behind]):
        buf.ingest(C, [("s", n, now_ms + n)])
        batch = buf.take(C, 10, 10_000, 60, clock.stamp_cap_ms())
        assert batch is not None
        ((_sku, count, stamp),) = Flusher._levels(  # type: ignore[arg-type]
            SimpleNamespace(client_for=lambda _t, c=clock: SimpleNamespace(clock=c)), target(C), batch.entries,
            cap_ms=batch.cap_ms)
        assert count == n and stamp is not None
        sent.append(stamp)
        buf.settle(batch, "delivered")
    assert sent == sorted(sent), sent
    assert max(sent) <= ahead.stamp_cap_ms()  # never past what a process knows of the Market's clock


def test_a_strict_retry_never_stamps_below_a_cap_another_batch_took(buf) -> None:
    """Chaos case 10's other path: a process that had not seen the Market's clock yet sends a SKU's
    next value with its own clock (ahead), is refused "in the future", learns the clock from that
    reply (a second later than the process that sent the SKU's last value) and retries at its lower
    bound: that must not be older than the stamp the SKU's last value went out with."""
    from email.utils import format_datetime
    from datetime import datetime, timezone

    from ymsync.engine.stamps import levels

    local = time.time()
    market = local - 10.3
    date = format_datetime(datetime.fromtimestamp(int(market), timezone.utc), usegmt=True)
    ahead, late = MarketClock(), MarketClock()
    ahead.observe(date, received_at=local, sent_at=local)
    now_ms = int(local * 1000)
    buf.ingest(C, [("s", 1, now_ms)])
    first = buf.take(C, 10, 10_000, 60, ahead.stamp_cap_ms())
    assert first is not None and first.floor_ms == first.cap_ms
    ((_sku, _count, sent),) = levels(ahead, first.entries, cap_ms=first.cap_ms)
    buf.settle(first, "delivered")
    buf.ingest(C, [("s", 2, now_ms + 1)])
    second = buf.take(C, 10, 10_000, 60, 0)  # a process that has not seen a Date header
    assert second is not None and second.cap_ms is None and second.floor_ms == first.cap_ms
    late.observe(date, received_at=local + 0.95, sent_at=local + 0.95)  # the refusal's Date, a slow reply
    assert late.stamp_cap_ms(strict=True) < sent  # its own lower bound lags the first process's
    ((_sku, count, stamp),) = levels(late, second.entries, strict=True, floor_ms=second.floor_ms)
    assert count == 2 and stamp is not None and stamp >= sent
    assert stamp <= ahead.stamp_cap_ms()  # still no later than what a process knows of the Market's clock


def test_a_push_and_its_wake_up_cost_one_round_trip(buf, r) -> None:
    buf.ingest(C, [("warm", 1, BASE)])  # the scripts load once
    r.delete(keys.DUE)
    before = int(r.info("stats")["total_reads_processed"])
    result = buf.ingest(C, [("s", 1, BASE), ("t", 2, BASE)])
    assert int(r.info("stats")["total_reads_processed"]) - before == 2, "the push and this INFO"
    assert result.accepted == 2 and result.woke
    assert r.zscore(keys.DUE, buf.target(C)) is not None  # due: its values go
    # A push that leaves nothing pending registers the target, and makes no task.
    batch = buf.take(C, 10, 10_000, 60)
    buf.settle(batch, "delivered")
    r.delete(keys.DUE, keys.TARGETS)
    again = buf.ingest(C, [("s", 1, BASE + 1)])  # the count the Market was given: unchanged
    assert again.unchanged == 1 and not again.woke
    assert r.zscore(keys.DUE, buf.target(C)) is None and r.zscore(keys.TARGETS, buf.target(C)) is not None
