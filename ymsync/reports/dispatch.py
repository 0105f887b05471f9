"""Dispatching due report jobs: the loop of the report scheduler, without Celery.

Report jobs wait in Redis (:mod:`ymsync.reports.jobs`) with a due time, indexed in the
``keys.REPORT_DUE`` zset. One process at a time, across all reports workers, holds
``keys.REPORT_SCHEDULER_LOCK`` (the same :class:`~ymsync.store.lock.RedisLock` as the flush
scheduler's; renewed every turn, a dead holder's lapses in a few seconds and another takes over)
and sends each due job's stored signature through the ``send`` it is given: the job's own task id
and chord linkage, as ``Task.retry`` would, but only when the job is due rather than as a
countdown message a killed worker takes with it.

It sleeps until the earliest due time (at most a second, so a job added meanwhile is seen),
and a job that sets a due time less than a second and a half away pushes ``keys.REPORT_WAKE``
to cut that sleep short: wake-ups land within tens of milliseconds of their due time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import redis

from ymsync.reports.jobs import ReportJobs
from ymsync.store import keys
from ymsync.store.lock import RedisLock

log = logging.getLogger("ymsync.report_scheduler")
LOCK_TTL_S = 3.0
MAX_SLEEP_S = 1.0
BATCH = 200

# Sends one stored task signature (a dict, as Celery serialises it).
SendSignature = Callable[[dict[str, Any]], None]


def run_report_scheduler(client: redis.Redis, store: ReportJobs, send: SendSignature, owner: str,
                         stopping: threading.Event) -> None:
    """Send due jobs whenever ``owner`` holds the lock, until ``stopping`` is set; then release it."""
    lock = RedisLock(client, keys.REPORT_SCHEDULER_LOCK)
    holding = False
    while not stopping.is_set():
        try:
            was_holding, holding = holding, lock.hold(owner, LOCK_TTL_S)
            if holding and not was_holding:
                log.info("report scheduler: this worker dispatches report jobs now")
            if not holding:
                stopping.wait(MAX_SLEEP_S)
                continue
            sleep_s = dispatch_due(store, send)
            if sleep_s >= 0.02:
                # Sleep on the wake list so a job due sooner than we planned cuts the nap short.
                # (Redis 6+ keeps blocking timeouts to the millisecond.)
                if client.blpop([keys.REPORT_WAKE], timeout=sleep_s):
                    continue
            elif sleep_s > 0:
                stopping.wait(sleep_s)
        except Exception:  # the loop must outlive a Redis restart or a broker hiccup
            log.warning("report scheduler: Redis or broker unavailable; retrying in 1s", exc_info=True)
            holding = False
            stopping.wait(1)
    if holding:
        try:
            lock.release(owner)
        except redis.RedisError:
            pass


def dispatch_due(store: ReportJobs, send: SendSignature) -> float:
    """Send every due job; how long to sleep before the next turn."""
    now, due, earliest = store.due(BATCH)
    for job_id in due:
        result = store.dispatch(job_id)
        if result.verdict == "send" and result.signature is not None:
            send(result.signature)
            log.debug("report scheduler: sent job %s (%d ms after due)", job_id, result.lateness_ms)
    if len(due) >= BATCH:
        return 0.0
    if due:  # the index moved: look again at once for what is next
        now, _, earliest = store.due(0)
    if earliest is None:
        return MAX_SLEEP_S
    return max(0.0, min(MAX_SLEEP_S, (earliest - now) / 1000))


__all__ = ["dispatch_due", "run_report_scheduler"]
