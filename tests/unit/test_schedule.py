"""Schedule (due times, task slots, the scheduler lock) against a real, private redis-server."""

from __future__ import annotations

import time

import pytest
import redis

from ymsync.store import keys
from ymsync.engine.schedule import Schedule


@pytest.fixture
def sched(clean_redis: redis.Redis) -> Schedule:
    return Schedule(clean_redis, max_parallel=2, task_ttl_s=0.2)


def score(r: redis.Redis, target: str) -> float | None:
    return r.zscore(keys.DUE, target)


def test_activate_registers_and_makes_due_once(sched, clean_redis) -> None:
    sched.activate("c1", 0.5)
    first = score(clean_redis, "c1")
    sched.activate("c1", 0)  # already due: the earlier entry stands, no second nudge
    assert score(clean_redis, "c1") == first
    assert clean_redis.llen(keys.NUDGE) == 1
    assert sched.targets() == ["c1"]
    assert sched.due() == []  # not yet
    time.sleep(0.55)
    [entry] = sched.due()
    assert entry.target == "c1" and entry.due_ms == first


def test_a_wait_is_never_cut_short(sched, clean_redis) -> None:
    sched.defer("c1", 5)
    later = score(clean_redis, "c1")
    sched.activate("c1", 0)  # a producer writing during a quota wait does not pull it forward
    sched.defer("c1", 1)  # nor does a shorter wait
    assert score(clean_redis, "c1") == later
    sched.defer("c1", 6)
    assert score(clean_redis, "c1") > later


def test_done_removes_only_an_entry_nobody_moved(sched, clean_redis) -> None:
    sched.activate("c1", 0)
    [entry] = sched.due()
    sched.defer("c1", 3)  # moved meanwhile (a flush wrote its wait back)
    assert sched.done(entry) is False
    assert score(clean_redis, "c1") is not None
    assert sched.due() == []  # due in 3 s now, not at once


def test_at_most_max_parallel_slots_and_expired_ones_come_back(sched) -> None:
    a, b = sched.claim("c1"), sched.claim("c1")
    assert a and b and sched.claim("c1") is None
    assert sched.claim("c2") is not None  # slots are per target
    sched.release("c1", a)
    c = sched.claim("c1")
    assert c is not None and sched.tasks_out("c1") == 2
    time.sleep(0.25)  # both holders died
    assert sched.hold("c1", b) is False  # an expired slot is not its task's any more
    assert sched.slots_expiry("c1") is None
    assert sched.claim("c1") and sched.claim("c1") and sched.claim("c1") is None


def test_one_scheduler_at_a_time_and_any_can_take_over(sched) -> None:
    assert sched.lock("w1", 0.3)
    assert not sched.lock("w2", 0.3)
    assert sched.lock("w1", 0.3)  # renewal
    time.sleep(0.35)  # w1 died
    assert sched.lock("w2", 0.3)
    sched.unlock("w1")  # a late unlock of the old holder does not free w2's lock
    assert not sched.lock("w1", 0.3)
    sched.unlock("w2")
    assert sched.lock("w1", 0.3)


def test_checks_keep_the_earliest_time(sched, clean_redis) -> None:
    now = int(time.time() * 1000)
    sched.watch("c1", now + 5000)
    sched.watch("c1", now + 100)
    sched.watch("c1", now + 9000)
    assert clean_redis.zscore(keys.CHECK, "c1") == now + 100


def test_one_look_gives_what_is_due_what_to_check_and_how_long_until_the_next(sched, clean_redis) -> None:
    assert sched.look().due == [] and sched.look().next_in_s is None
    sched.activate("c1", 0)
    sched.activate("c2", 30)
    sched.watch("c3", 0)
    sched.watch("c4", int(sched.look().due[0].now_ms) + 10_000)
    look = sched.look()
    assert [d.target for d in look.due] == ["c1"] and [c.target for c in look.checks] == ["c3"]
    assert 9.0 < look.next_in_s <= 10.0  # c4's check comes before c2's due time
    # A full list: more may be due, so the next look is at once.
    for n in range(5):
        sched.activate(f"x{n}", 0)
    full = sched.look(limit=3)
    assert len(full.due) == 3 and full.next_in_s == 0


def test_waiting_for_a_nudge_takes_every_nudge_before_it(sched, clean_redis) -> None:
    for n in range(3):
        sched.activate(f"c{n}", 5)  # each new due entry nudges
    assert clean_redis.llen(keys.NUDGE) == 3
    assert sched.wait_for_nudge(0.5) is True
    assert clean_redis.llen(keys.NUDGE) == 0
    started = time.monotonic()
    assert sched.wait_for_nudge(0.2) is False and time.monotonic() - started >= 0.15
