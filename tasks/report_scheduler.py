"""The report scheduler: a thread in each reports worker's main process.

Report jobs wait in Redis (``ymsync.reports.jobs``) with a due time, indexed in the
``keys.REPORT_DUE`` zset. One thread at a time, across all reports workers, holds
``keys.REPORT_SCHEDULER_LOCK`` (renewed every turn; a dead holder's lapses in a few seconds and
another worker's thread takes over) and sends each due job's stored signature: the job's own
task id and chord linkage, as ``Task.retry`` would, but only when the job is due rather than as
a countdown message a killed worker takes with it.

It sleeps until the earliest due time (at most a second, so a job added meanwhile is seen),
and a job that sets a due time less than a second and a half away pushes ``keys.REPORT_WAKE``
to cut that sleep short: wake-ups land within tens of milliseconds of their due time.
"""

from __future__ import annotations

import logging
import threading
import uuid

import redis

from ymsync.store import keys
from ymsync.reports.jobs import ReportJobs
from ymsync.config.settings import get_settings

from .app import app

log = logging.getLogger("ymsync.report_scheduler")
LOCK_TTL_MS = 3000
MAX_SLEEP_S = 1.0
BATCH = 200

# Extend the lock only while we still hold it.
_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ReportScheduler(threading.Thread):
    def __init__(self, resend_after_s: float = 60.0) -> None:
        super().__init__(name="ymsync-report-scheduler", daemon=True)
        self.stopping = threading.Event()
        self.resend_after_s = resend_after_s
        self.identity = uuid.uuid4().hex
        self.holding = False

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        r = redis.Redis.from_url(get_settings().redis_url, socket_timeout=10)
        store = ReportJobs(r, resend_after_s=self.resend_after_s)
        renew, release = r.register_script(_RENEW_LOCK), r.register_script(_RELEASE_LOCK)
        while not self.stopping.is_set():
            try:
                if self.holding:
                    self.holding = bool(renew(keys=[keys.REPORT_SCHEDULER_LOCK], args=[self.identity, LOCK_TTL_MS]))
                else:
                    self.holding = bool(r.set(keys.REPORT_SCHEDULER_LOCK, self.identity, nx=True, px=LOCK_TTL_MS))
                    if self.holding:
                        log.info("report scheduler: this worker dispatches report jobs now")
                if not self.holding:
                    self.stopping.wait(MAX_SLEEP_S)
                    continue
                sleep_s = self.turn(store)
                if sleep_s >= 0.02:
                    # Sleep on the wake list so a job due sooner than we planned cuts the nap short.
                    # (Redis 6+ keeps blocking timeouts to the millisecond.)
                    if r.blpop([keys.REPORT_WAKE], timeout=sleep_s):
                        continue
                elif sleep_s > 0:
                    self.stopping.wait(sleep_s)
            except Exception:  # the thread must outlive a Redis restart or a broker hiccup
                log.warning("report scheduler: Redis or broker unavailable; retrying in 1s", exc_info=True)
                self.holding = False
                self.stopping.wait(1)
        if self.holding:
            try:
                release(keys=[keys.REPORT_SCHEDULER_LOCK], args=[self.identity])
            except redis.RedisError:
                pass

    def turn(self, store: ReportJobs) -> float:
        """Send every due job; how long to sleep before the next turn."""
        now, due, earliest = store.due(BATCH)
        for job_id in due:
            result = store.dispatch(job_id)
            if result.verdict == "send" and result.signature is not None:
                app.signature(result.signature).apply_async()
                log.debug("report scheduler: sent job %s (%d ms after due)", job_id, result.lateness_ms)
        if len(due) >= BATCH:
            return 0.0
        if due:  # the index moved: look again at once for what is next
            now, _, earliest = store.due(0)
        if earliest is None:
            return MAX_SLEEP_S
        return max(0.0, min(MAX_SLEEP_S, (earliest - now) / 1000))
