"""The scheduler loops the library runs without Celery (ymsync.engine.dispatch, ymsync.reports.dispatch)
and the one lock both hold (ymsync.store.lock), against a real, private redis-server."""

from __future__ import annotations

import threading
import time

import pytest

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.dispatch import drain_due, run_flush_scheduler
from ymsync.engine.schedule import Schedule
from ymsync.reports.dispatch import run_report_scheduler
from ymsync.reports.jobs import ReportJobs
from ymsync.store import keys
from ymsync.store.lock import RedisLock


def test_the_lock_is_held_by_one_owner_and_released_only_by_it(clean_redis) -> None:
    lock = RedisLock(clean_redis, "ymsync:test-lock")
    assert lock.hold("a", 0.3)
    assert not lock.hold("b", 0.3)
    assert lock.hold("a", 0.3)  # renewal
    time.sleep(0.35)  # a dead holder's lock lapses
    assert lock.hold("b", 0.3)
    lock.release("a")  # a late release of the old holder does not free b's lock
    assert not lock.hold("a", 0.3)
    lock.release("b")
    assert lock.hold("a", 0.3)


def test_drain_due_sends_one_flush_per_due_target_under_a_claimed_slot(clean_redis) -> None:
    schedule = Schedule(clean_redis, max_parallel=1, task_ttl_s=5)
    schedule.activate("c1", 0)
    sent: list[tuple[str, str, int]] = []
    assert drain_due(schedule, lambda target, slot, due: sent.append((target, slot, due))) == 1
    [(target, slot, _)] = sent
    assert target == "c1" and schedule.tasks_out("c1") == 1 and schedule.due() == []
    schedule.release("c1", slot)


def test_sending_a_due_target_costs_the_scheduler_two_round_trips(clean_redis) -> None:
    # One to read what is due, one to claim a slot, drop the entry and set the look for a lost task.
    r = clean_redis
    schedule = Schedule(r, max_parallel=1, task_ttl_s=5, queue_ttl_s=7)
    schedule.activate("c1", 0)
    drain_due(schedule, lambda *_: None)  # the scripts load once
    r.delete(keys.target_keys("c1")["tasks"], keys.CHECK)
    schedule.activate("c1", 0)
    sent: list[tuple[str, str, int]] = []
    before = int(r.info("stats")["total_reads_processed"])
    assert drain_due(schedule, lambda *args: sent.append(args)) == 1
    assert int(r.info("stats")["total_reads_processed"]) - before == 3, "due, claim, and this INFO"
    [(target, slot, due_ms)] = sent
    assert schedule.tasks_out("c1") == 1 and schedule.due() == []
    [(watched, at_ms)] = r.zrange(keys.CHECK, 0, -1, withscores=True)
    assert watched == b"c1" and 7_000 < at_ms - due_ms < 8_000  # when the slot would expire


def test_a_failed_send_gives_its_slot_back_and_keeps_the_target_due(clean_redis) -> None:
    schedule = Schedule(clean_redis, max_parallel=1, task_ttl_s=5)
    schedule.activate("c1", 0)

    def broker_down(target: str, slot: str, due: int) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        drain_due(schedule, broker_down)
    assert schedule.tasks_out("c1") == 0
    assert [e.target for e in schedule.due()] == ["c1"]


def _run(loop, *args) -> tuple[threading.Thread, threading.Event]:
    stopping = threading.Event()
    thread = threading.Thread(target=loop, args=(*args, stopping), daemon=True)
    thread.start()
    return thread, stopping


def _until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_flush_scheduler_loop_sends_due_work_and_hands_its_lock_over_on_stop(clean_redis) -> None:
    schedule = Schedule(clean_redis, max_parallel=2, task_ttl_s=5)
    buffer = StockBuffer(clean_redis, schedule=schedule)
    sent: list[str] = []
    thread, stopping = _run(run_flush_scheduler, schedule, buffer, lambda t, s, d: sent.append(t), "w1")
    assert _until(lambda: clean_redis.get(keys.SCHEDULER_LOCK) == b"w1")
    schedule.activate("c7", 0)  # the nudge wakes it at once
    assert _until(lambda: sent == ["c7"])
    assert not RedisLock(clean_redis, keys.SCHEDULER_LOCK).hold("w2", 5)  # one drains at a time
    stopping.set()
    thread.join(5)
    assert not thread.is_alive() and clean_redis.get(keys.SCHEDULER_LOCK) is None


def test_the_report_scheduler_loop_holds_the_same_kind_of_lock_and_releases_it(clean_redis) -> None:
    store = ReportJobs(clean_redis)
    thread, stopping = _run(run_report_scheduler, clean_redis, store, lambda signature: None, "r1")
    assert _until(lambda: clean_redis.get(keys.REPORT_SCHEDULER_LOCK) == b"r1")
    assert not RedisLock(clean_redis, keys.REPORT_SCHEDULER_LOCK).hold("r2", 3)
    stopping.set()
    thread.join(5)
    assert not thread.is_alive() and clean_redis.get(keys.REPORT_SCHEDULER_LOCK) is None


def test_a_target_whose_flush_messages_the_broker_lost_is_sent_again_once_their_slots_expire(clean_redis) -> None:
    """A broker may lose a flush message after the scheduler sent it (a queue purged, a message
    dropped at a delivery limit, a broker without durable queues): its slot is then held by a task
    that will never run. Every slot of the target is taken here by such messages and the due entry
    is dropped (the "each running flush re-activates" case); the target must still be sent again
    once the slots' start time runs out, without any producer writing again."""
    schedule = Schedule(clean_redis, max_parallel=2, task_ttl_s=5, queue_ttl_s=0.5)
    buffer = StockBuffer(clean_redis, schedule=schedule, flush_delay_s=0)
    sent: list[float] = []  # every message is lost: nothing ever runs, holds or releases a slot
    thread, stopping = _run(run_flush_scheduler, schedule, buffer, lambda t, s, d: sent.append(time.monotonic()), "w1")
    try:
        for n in range(3):  # three writes: two take both slots, the third finds none and is dropped
            buffer.ingest(7, [(f"SKU-{n}", n + 1, None)])
            assert _until(lambda: len(sent) >= min(n + 1, 2) and not schedule.due())
        assert len(sent) == 2 and schedule.tasks_out("c7") == 2
        last_claim = sent[-1]
        assert _until(lambda: len(sent) >= 3, timeout=5.0), "the target stayed stuck behind its lost messages"
        waited = sent[2] - last_claim
        assert 0.4 <= waited <= 2.5, waited  # after the slots' start time, not before, and not much later
        assert schedule.tasks_out("c7") <= 2
    finally:
        stopping.set()
        thread.join(5)


def test_a_round_that_ends_releases_its_slot_and_makes_the_target_due_only_for_takeable_work(clean_redis) -> None:
    from ymsync.engine.dispatch import round_ended

    schedule = Schedule(clean_redis, max_parallel=2, task_ttl_s=5)
    buffer = StockBuffer(clean_redis, schedule=schedule)
    buffer.ingest("c1", [("A", 1, None), ("B", 1, None)])
    clean_redis.delete(keys.DUE)
    batch = buffer.take("c1", 10, 10_000, 60)  # A and B in flight
    buffer.ingest("c1", [("A", 2, None)])  # pending, but its older value is in flight
    clean_redis.delete(keys.DUE)
    slot = schedule.claim("c1")
    round_ended(schedule, "c1", slot, None)
    assert schedule.tasks_out("c1") == 0 and schedule.due() == []  # released; nothing takeable: not due
    slot = schedule.claim("c1")
    buffer.ingest("c1", [("C", 1, None)])  # takeable
    clean_redis.delete(keys.DUE)
    round_ended(schedule, "c1", slot, None)
    assert schedule.tasks_out("c1") == 0 and [d.target for d in schedule.due()] == ["c1"]
    buffer.settle(batch, "delivered")
