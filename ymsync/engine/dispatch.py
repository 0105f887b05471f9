"""Draining the flush schedule: the loop of the flush scheduler, without Celery.

Producers write to the buffer and make the target due (``Schedule.activate``). Whichever process
holds the scheduler lock (renewed every second; any other takes over within ``LOCK_TTL_S`` when
its holder dies) sends one flush for each due target that has a free task slot, through the
``send_flush`` it is given (the Celery side passes one that sends ``ymsync.stocks.flush``), and
looks at targets whose ``check`` time has come for what a dead worker left: expired batch leases
(their SKUs go back to the buffer) and expired task slots.

Its work follows the due entries, not the number of targets: it reads only what is due, and
sleeps on a Redis list (``nudge``) until shortly before the next due time or a producer's nudge,
then sleeps the last stretch locally, so a wake-up lands within milliseconds of its due time.
Nothing it schedules lives in the broker with a countdown, so a SIGKILLed worker takes no
scheduled work with it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.schedule import Due, Schedule

log = logging.getLogger("ymsync.scheduler")
LOCK_TTL_S = 5.0
RENEW_S = 1.0  # the lock is renewed this often while held
MAX_SLEEP_S = 1.0  # the longest wait between turns (a turn renews the lock when RENEW_S has passed)
FINAL_APPROACH_S = 0.25  # the last stretch before a due time is slept locally, not in BLPOP
BATCH = 200  # due entries handled per turn

# (target, slot token, due time ms): sends one flush task for the target under that slot.
SendFlush = Callable[[str, str, int], None]


def run_flush_scheduler(schedule: Schedule, buffer: StockBuffer, send_flush: SendFlush, owner: str,
                        stopping: threading.Event) -> None:
    """Drain the schedule whenever ``owner`` holds the lock, until ``stopping`` is set; then hand
    the lock over at once (a warm shutdown does not make the others wait for its TTL)."""
    holding, renewed = False, 0.0
    while not stopping.is_set():
        try:
            # Renewed at most every RENEW_S while held (its TTL is five times that), not each turn:
            # under load a turn comes every few milliseconds.
            if not holding or time.monotonic() - renewed >= RENEW_S:
                if not schedule.lock(owner, LOCK_TTL_S):
                    if holding:
                        log.warning("flush scheduler: lost the lock to another worker")
                    holding = False
                    stopping.wait(MAX_SLEEP_S)
                    continue
                if not holding:
                    log.info("flush scheduler: draining the schedule (%s)", owner)
                holding, renewed = True, time.monotonic()
            # What is due, what is to be checked and when the next is, in one call a turn. New
            # due entries nudge (the wait below ends at once); a check set meanwhile waits at
            # most MAX_SLEEP_S.
            look, looked = schedule.look(BATCH), time.monotonic()
            drain_due(schedule, send_flush, look.due)
            drain_checks(schedule, buffer, look.checks)
            wait = None if look.next_in_s is None else max(0.0, look.next_in_s - (time.monotonic() - looked))
            if wait is not None and wait <= FINAL_APPROACH_S:
                # Redis checks blocking timeouts only on its ~100 ms cron: the last stretch is
                # slept here, so a wake-up lands within milliseconds of its due time.
                stopping.wait(wait)
                continue
            schedule.wait_for_nudge(MAX_SLEEP_S if wait is None else min(wait - FINAL_APPROACH_S, MAX_SLEEP_S))
        except Exception:  # the loop must outlive a Redis restart or a broker hiccup
            log.warning("flush scheduler: Redis or broker unavailable; retrying in 1s", exc_info=True)
            stopping.wait(1)
    try:
        schedule.unlock(owner)
    except redis.RedisError:
        pass


def drain_due(schedule: Schedule, send_flush: SendFlush, entries: list[Due] | None = None) -> int:
    """Send a flush for each due target (``entries``, else read now) with a free slot; how many
    entries were handled."""
    entries = schedule.due(BATCH) if entries is None else entries
    for entry in entries:
        # A slot, the entry gone and a look at the target for when the slot would expire (a task
        # dying before it ends, SIGKILLed with its message unacked, is not left to the broker's
        # visibility timeout): one round trip. No slot free: every slot is out, and each running
        # flush re-activates the target when it ends with work left, so dropping the entry
        # strands nothing.
        token = schedule.claim_due(entry)
        if token is None:
            continue
        try:
            send_flush(entry.target, token, entry.due_ms)
        except Exception:
            schedule.release(entry.target, token)
            schedule.activate(entry.target, 0)  # due again: the next turn retries
            raise
    return len(entries)


def drain_checks(schedule: Schedule, buffer: StockBuffer, entries: list[Due] | None = None) -> int:
    """Handle targets whose check time has come (``entries``, else read now); how many."""
    entries = schedule.checks(BATCH) if entries is None else entries
    for entry in entries:
        check_target(schedule, buffer, entry)
    return len(entries)


def check_target(schedule: Schedule, buffer: StockBuffer, entry: Due) -> None:
    campaign = entry.target  # a target name (c1001, b7): the buffer takes either kind
    reclaimed = buffer.reclaim_expired(campaign)
    if reclaimed:
        log.info("%s: %d SKU(s) back in the buffer: their lease ran out (a request of unknown outcome can no "
                 "longer land, or its worker died)", entry.target, reclaimed)
    live_until = schedule.slots_expiry(entry.target)
    if reclaimed or (live_until is None and buffer.takeable(campaign)):
        schedule.activate(entry.target, 0)
    schedule.checked(entry)
    # Still open: batches in flight or tasks out. Look again when the first of them could expire.
    later = [t for t in (buffer.lease_deadline_ms(campaign), live_until) if t is not None]
    if later:
        schedule.watch(entry.target, min(later) + 100)


def round_ended(schedule: Schedule, target: str, slot: str, next_in: float | None, *,
                freed: bool = False, takeable: bool = False) -> None:
    """A flush round of ``target`` ended, wanting to run again after ``next_in`` s (None: when
    there is work). Its slot is released first, then the decision: a producer that wrote
    meanwhile either saw a free slot (its due entry gets a task) or wrote before the check below
    (which then sees its work). Release and look go in one script (Schedule.release_and_look),
    or came in the round's last call already (``freed``, with what its look found: ``takeable``)."""
    if next_in is None:
        if takeable if freed else schedule.release_and_look(target, slot):
            schedule.activate(target, 0)
        return
    if not freed:
        schedule.release(target, slot)
    if next_in <= 0:
        schedule.activate(target, 0)
    else:
        schedule.defer(target, next_in)
