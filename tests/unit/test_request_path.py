"""A stock request's Redis work in two scripts (issue 18 item 2): BEGIN and END against a real,
private redis-server, each outcome checked against the state the parts' own calls leave, and the
one-call path checked against the by-parts path it replaces on a Cluster."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import redis

from ymsync.config.settings import Quota
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.flusher import Flusher
from ymsync.engine.producer import push_stocks
from ymsync.engine.quota import MarketCount, QuotaLimiter
from ymsync.engine.request_path import Next, RequestPath
from ymsync.engine.targets import target
from ymsync.market.clock import MarketClock
from ymsync.store import keys

T = target("c1001")


def path_of(r: redis.Redis, quota: Quota | None, *, one_script: bool, **options) -> RequestPath:
    buffer = StockBuffer(r)
    market = SimpleNamespace(clock=MarketClock())  # no request is sent: only its clock is asked
    flusher = Flusher(buffer, QuotaLimiter(r, {"update_stocks": quota}, max_parallel=2), market,  # type: ignore[arg-type]
                      min_batch=1, **options)
    path = flusher.path
    if not one_script:
        path._one_script = lambda _t: False  # type: ignore[method-assign]  # as on a Cluster across slots
    return path


def next_request(path: RequestPath, slot: str | None = None, max_values: int = 2000) -> Next:
    return Next(T, path.parts.call(T, max_values, 1), slot, max_values, 1 << 20, 0)


def begin(path: RequestPath, slot: str | None = None, max_values: int = 2000):
    return path.begin(next_request(path, slot, max_values))


def open_entries(r: redis.Redis) -> list[bytes]:
    return [m for m in r.zrange(keys.quota("update_stocks", T.quota_key), 0, -1) if m.startswith(b"o:")]


@pytest.fixture(params=[True, False], ids=["one script", "by parts"])
def one_script(request) -> bool:
    return request.param


def test_a_request_begins_and_ends_in_one_call_each(clean_redis, one_script) -> None:
    r = clean_redis
    push_stocks(1001, [{"sku": f"S{i}", "count": i} for i in range(30)], buffer=StockBuffer(r))
    path = path_of(r, Quota(20, 10.0), one_script=one_script)
    begun = begin(path)
    assert begun.status == "batch" and begun.batch is not None and begun.ticket is not None
    assert len(begun.batch) == 20 and begun.pending == 10  # the quota's 20 of 30, 10 left pending
    assert begun.ticket.grant.granted == 20 and begun.ticket.grant.remaining == 0
    assert begun.now_ms > 0
    assert len(open_entries(r)) == 1 and path.parts.limiter.leases_in_use(T.gate) == 1
    assert path.parts.buffer.in_flight(1001) == 20

    # The quota is spent: the next request waits for it, and nothing is taken or leased meanwhile.
    refused = begin(path)
    assert refused.status == "quota" and refused.wait_s > 0
    assert path.parts.buffer.in_flight(1001) == 20 and path.parts.limiter.leases_in_use(T.gate) == 1

    n, nothing = path.end(T, begun.ticket, begun.batch, 20, MarketCount(limit=20, remaining=0, until_s=9.0))
    assert n == 20 and nothing is None
    assert open_entries(r) == [] and path.parts.limiter.usage("update_stocks", T.quota_key) == (20, 20)
    assert path.parts.limiter.leases_in_use(T.gate) == 0 and path.parts.buffer.in_flight(1001) == 0
    assert path.parts.limiter.market_view("update_stocks", T.quota_key)["limit"] == 20
    assert path.parts.buffer.stats(1001).get("delivered") == 20


def test_a_pause_a_halt_or_a_backoff_holds_the_request_and_keeps_nothing(clean_redis, one_script) -> None:
    r = clean_redis
    push_stocks(1001, [{"sku": "A", "count": 1}], buffer=StockBuffer(r))
    path = path_of(r, Quota(100, 10.0), one_script=one_script)
    for key in (keys.pause("update_stocks", T.quota_key), keys.target_keys(T.name)["halt"],
                keys.target_keys(T.name)["backoff"]):
        r.set(key, "1", px=5000)
        held = begin(path)
        assert held.status in ("held", "quota") and 4 < held.wait_s <= 5  # by parts, acquire sees the pause
        assert open_entries(r) == [] and path.parts.limiter.leases_in_use(T.gate) == 0
        assert path.parts.buffer.in_flight(1001) == 0
        r.delete(key)
    assert begin(path).status == "batch"


def test_every_parallel_slot_taken_gives_the_grant_back(clean_redis, one_script) -> None:
    r = clean_redis
    push_stocks(1001, [{"sku": f"S{i}", "count": i} for i in range(5)], buffer=StockBuffer(r))
    path = path_of(r, Quota(100, 10.0), one_script=one_script)
    lim = path.parts.limiter
    held = [lim.lease(T.gate), lim.lease(T.gate)]  # max_parallel=2, both taken by reads of the campaign
    assert all(held)
    refused = begin(path)
    assert refused.status in ("lease", "quota") and refused.wait_s > 0
    assert open_entries(r) == [] and lim.usage("update_stocks", T.quota_key) == (0, 100)
    assert path.parts.buffer.in_flight(1001) == 0


def test_a_lost_task_slot_or_an_empty_buffer_begins_nothing(clean_redis, one_script) -> None:
    r = clean_redis
    path = path_of(r, None, one_script=one_script)
    assert begin(path).status == "empty"
    push_stocks(1001, [{"sku": "A", "count": 1}], buffer=StockBuffer(r))
    assert begin(path, slot="not-held").status == "slot"
    slot = path.parts.schedule.claim(T.name)
    begun = begin(path, slot=slot)
    assert begun.status == "batch" and begun.ticket is not None and begun.ticket.grant.granted == 1
    assert begin(path, slot=slot).status in ("empty", "none")  # A is in flight: nothing else to take


def test_the_one_script_path_and_the_parts_path_leave_the_same_state(clean_redis) -> None:
    """The same requests, through one script each (a settlement beginning the next request in the
    same call) and through the parts' calls: the same batches, grants and settled state (besides
    ids and times)."""
    outcomes = []
    for one_script in (True, False):
        clean_redis.flushdb()
        buffer = StockBuffer(clean_redis)
        push_stocks(1001, [{"sku": f"S{i:03d}", "count": i} for i in range(250)], buffer=buffer)
        path = path_of(clean_redis, Quota(100, 10.0), one_script=one_script)
        seen = []
        begun = begin(path, max_values=60)
        for _ in range(4):
            seen.append((begun.status, len(begun.batch) if begun.batch else 0, begun.pending,
                         begun.ticket.grant.granted if begun.ticket else 0))
            if begun.status != "batch":
                break
            assert begun.ticket is not None and begun.batch is not None
            _, begun = path.end(T, begun.ticket, begun.batch, len(begun.batch), None,
                                next_request(path, max_values=60))
            assert begun is not None
        outcomes.append((seen, buffer.pending(1001), buffer.stats(1001).get("delivered"),
                         path.parts.limiter.usage("update_stocks", T.quota_key),
                         path.parts.limiter.leases_in_use(T.gate)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == [("batch", 60, 190, 60), ("batch", 40, 150, 40), ("quota", 0, 0, 0)]
    assert outcomes[0][1:] == (150, 100, (100, 100), 0)


def test_a_round_starts_with_one_round_trip_that_renews_its_slot_and_counts_its_lateness(clean_redis) -> None:
    r = clean_redis
    push_stocks(1001, [{"sku": f"S{i}", "count": i} for i in range(5)], buffer=StockBuffer(r))
    path = path_of(r, None, one_script=True, lease_s=0.05)
    schedule = path.parts.schedule
    expired = path.parts.buffer.take(1001, 2, 1 << 20, 0.001)
    live = path.parts.buffer.take(1001, 2, 1 << 20, 60)
    assert expired is not None and live is not None
    slot = schedule.claim(T.name)
    assert slot is not None
    seconds, micros = r.time()
    server_ms = int(seconds) * 1000 + int(micros) // 1000
    path.start_round(T, slot, due_ms=server_ms)  # the first loads the scripts (redis-py's path, on a miss)
    reads = r.info("stats")["total_reads_processed"]
    start = path.start_round(T, slot, due_ms=server_ms - 5_000)  # sent 5 s late (the server's clock)
    assert r.info("stats")["total_reads_processed"] - reads == 2, "one read for the round, one for INFO"
    assert not start.slot_lost and start.now_ms >= server_ms
    # A look at the target for when a batch of this round could be left by a dead worker.
    [(watched, at_ms)] = r.zrange(keys.CHECK, 0, -1, withscores=True)
    assert watched == T.name.encode() and server_ms + 150 <= at_ms <= start.now_ms + 150
    assert start.expired == [expired.batch_id]  # the live batch's lease still runs
    stats = schedule.stats()
    assert stats["flush_tasks"] == 2 and stats.get("late_le_10ms", 0) + stats.get("late_le_50ms", 0) == 1
    assert stats["late_gt_250ms"] == 1 and 5_000 <= stats["late_ms_sum"] < 7_000
    # A slot that expired (its message waited too long) starts nothing, whatever the target holds.
    r.zrem(keys.target_keys(T.name)["tasks"], slot)
    assert path.start_round(T, slot).slot_lost
    flusher_result = Flusher(path.parts.buffer, path.parts.limiter, SimpleNamespace(clock=MarketClock()),  # type: ignore[arg-type]
                             min_batch=1).flush(T.name, slot=slot)
    assert flusher_result.slot_lost and flusher_result.requests == 0
    assert path.parts.buffer.in_flight(1001) == 4  # nothing reclaimed by a round that was not its to run


def test_a_request_that_does_not_begin_frees_the_rounds_slot_in_the_same_call(clean_redis) -> None:
    r = clean_redis
    path = path_of(r, None, one_script=True)
    schedule, tasks = path.parts.schedule, keys.target_keys(T.name)["tasks"]
    push_stocks(1001, [{"sku": "A", "count": 1}], buffer=StockBuffer(r))

    def begin_ending(slot: str | None):
        return path.begin(dataclasses.replace(next_request(path, slot), end_round=True))

    slot = schedule.claim(T.name)
    assert slot is not None
    taken = begin_ending(slot)
    assert taken.status == "batch" and not taken.freed and r.zscore(tasks, slot) is not None  # a batch keeps it
    push_stocks(1001, [{"sku": "A", "count": 2}], buffer=StockBuffer(r))  # waits behind the A in flight
    nothing = begin_ending(slot)
    assert nothing.status == "none" and nothing.freed and not nothing.takeable
    assert r.zscore(tasks, slot) is None
    path.parts.buffer.settle(taken.batch, "delivered")  # type: ignore[arg-type]
    slot = schedule.claim(T.name)
    assert begin_ending(slot).status == "batch"  # A's newer value
    gone = begin_ending(slot)
    assert gone.status == "empty" and gone.freed and not gone.takeable and r.zscore(tasks, slot) is None
    # Without a slot (tools, tests) or without end_round, nothing is freed.
    assert begin_ending(None).status == "empty" and not begin_ending(None).freed
    slot = schedule.claim(T.name)
    assert begin(path, slot=slot).status == "empty" and r.zscore(tasks, slot) is not None
