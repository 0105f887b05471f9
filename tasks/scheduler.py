"""The flush scheduler: a thread in each worker's main process.

Producers write to the buffer without Celery; when a campaign gains work and has no flush
scheduled, the buffer pushes it onto the ``wake`` list. This thread turns wake-ups into flush
tasks (debounced by ``YM_FLUSH_DELAY_MS``) and, under a Redis lock so one worker does it at a
time, sweeps for what crashes leave behind: batches whose worker died (expired leases) and
pending work whose flush message was lost with its worker.

It also *kicks* every campaign with pending work (a flush now, whatever its flush marker says)
when it starts and whenever Redis or the broker comes back after an outage. A worker killed
with SIGKILL takes its countdown flushes with it (they live in its memory, and their broker
copies stay hidden for the visibility timeout), and a Redis restart drops every worker's; the
markers those flushes left would otherwise hold the work off for their whole TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis

from ymsync import keys
from ymsync.buffer import StockBuffer
from ymsync.settings import get_settings

from . import runtime

log = logging.getLogger("ymsync.scheduler")
SWEEP_EVERY_S = 1.0


class FlushScheduler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="ymsync-flush-scheduler", daemon=True)
        self.stopping = threading.Event()
        self.delay_s = get_settings().flush_delay_ms / 1000

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        from .stocks import schedule_flush

        r = redis.Redis.from_url(get_settings().redis_url, socket_timeout=10)
        buf = runtime.buffer()
        next_sweep = 0.0
        kick = True  # at start: whatever flushes a dead predecessor scheduled died with it
        woken: int | None = None  # popped from the wake list but not yet scheduled
        while not self.stopping.is_set():
            try:
                if kick:
                    kicked = self.kick(buf, schedule_flush)
                    kick = False
                    if kicked:
                        log.info("flush scheduler: kicked %d campaign(s) with pending work", kicked)
                if woken is None:
                    popped = r.blpop([keys.WAKE], timeout=1)
                    woken = int(popped[1]) if popped else None
                if woken is not None:
                    schedule_flush(woken, self.delay_s)
                    woken = None
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_EVERY_S
                    if r.set(keys.SWEEP_LOCK, "1", nx=True, px=int(SWEEP_EVERY_S * 900)):
                        for campaign in buf.campaigns():
                            # A reclaimed batch means a worker died holding it, and its flush
                            # messages (unacked, or waiting on a countdown) died with it for the
                            # broker's visibility timeout; its flush marker would hold off
                            # schedule_if_idle for up to its TTL. Flush now instead: a spare
                            # flush costs one idle task, a missing one leaves stock stale.
                            reclaimed = buf.reclaim_expired(campaign)
                            if buf.schedule_if_idle(campaign) or reclaimed:
                                schedule_flush(campaign, 0)
            except Exception:  # the thread must outlive a Redis restart or a broker hiccup
                # A wake-up popped before the failure is kept (``woken``) and scheduled on the
                # next turn, not dropped: its flush marker would hold the campaign off for its TTL.
                log.warning("flush scheduler: Redis or broker unavailable; retrying in 1s", exc_info=True)
                kick = True  # an outage (a Redis restart) may have dropped every scheduled flush
                self.stopping.wait(1)

    @staticmethod
    def kick(buf: StockBuffer, schedule_flush: Callable[[int, float], None]) -> int:
        """Schedule a flush now for every campaign with pending work; how many were kicked."""
        kicked = 0
        for campaign in buf.campaigns():
            if buf.pending(campaign) > 0:
                buf.touch_flush(campaign)
                schedule_flush(campaign, 0)
                kicked += 1
        return kicked
