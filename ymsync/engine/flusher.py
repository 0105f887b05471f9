"""The stock push pipeline: take a batch from the buffer under the shared quota, send it, settle.

``Flusher.flush`` does one bounded round of work for a stock target (a campaign, v2; a business,
v3: see targets.py) and says when it wants to run again (``FlushResult.next_in``); the task layer
writes that back as the target's due time in the schedule (see schedule.py), so waiting for quota
never holds a worker slot, never consumes a retry and never leaves a countdown message in a
broker. The Flusher never sleeps. While a backlog remains and the quota has room for more than
this round takes, the round makes the target due again at once, so the scheduler sends a sibling
flush (up to ``max_parallel``): one task per request, about.

This module holds the round loop and the fan-out; the rest is one concern a module:
- call_policy.py: quota, parallel lease, the call, what a reply means, what it costs; a 420's
  Until on the Market's clock;
- flush_failure.py: what a failed request means for its values (halt, 420, unknown outcome,
  backoff, dead letters);
- isolation.py: splitting a batch the Market refused with a 400, parked when the quota says wait;
- stamps.py: stamps clamped to the Market's clock;
- flush_parts.py: the options (:class:`FlushOptions`) and collaborators every part shares.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ymsync.engine.buffer import Batch, Entry, StockBuffer
from ymsync.engine.call_policy import CallPolicy, Ticket
from ymsync.engine.flush_failure import failed, succeeded
from ymsync.engine.flush_parts import FlushOptions, FlushParts, Tally
from ymsync.engine.group_move import GroupMove
from ymsync.engine.isolation import Isolation
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.schedule import Schedule
from ymsync.engine.stamps import STALE_STAMP_MS, levels
from ymsync.engine.targets import Target, target
from ymsync.market import MarketBadRequest, MarketClient
from ymsync.market.schemas import MAX_BODY_BYTES, MAX_SKUS_PER_UPDATE

if TYPE_CHECKING:
    import redis

__all__ = ["FlushOptions", "FlushResult", "Flusher", "STALE_STAMP_MS"]


@dataclass(frozen=True)
class FlushResult:
    delivered: int = 0
    dead: int = 0
    requests: int = 0
    next_in: float | None = None  # None: nothing takeable seen; 0: run again now; else after this many s
    fanned_out: bool = False  # made the target due again at once for a parallel sibling


class Flusher:
    def __init__(self, buffer: StockBuffer, limiter: QuotaLimiter, client: MarketClient,
                 options: FlushOptions | None = None, *, schedule: Schedule | None = None,
                 client_for: Callable[[Target], MarketClient] | None = None, **overrides: Any) -> None:
        """``client_for``: the Market client of a target's cabinet (default: ``client`` for all).
        ``overrides``: single options over ``options`` (``lease_s=0.5``), for tests and tools."""
        self.options = dataclasses.replace(options or FlushOptions(), **overrides)
        self.client = client
        self.client_for = client_for or (lambda _target: client)
        # No per-flush state lives here: one Flusher serves every thread of a worker (-P threads),
        # so what one flush needs (its keep_going, its slot) travels down its own calls.
        self.parts = FlushParts(buffer, limiter, CallPolicy(limiter),
                                schedule if schedule is not None else buffer.schedule, self.client_for,
                                self.options)
        self.isolation = Isolation(self.parts)
        self.groups = GroupMove(buffer)  # a campaign found in a group hands its values over

    @property
    def buffer(self) -> StockBuffer:
        return self.parts.buffer

    @property
    def limiter(self) -> QuotaLimiter:
        return self.parts.limiter

    @property
    def redis(self) -> "redis.Redis":
        return self.parts.redis

    def flush(self, target_name: str | int, keep_going: Callable[[], bool] = lambda: True) -> FlushResult:
        """One bounded round for a target (a name like ``c1001``/``b7``, or a campaign id).
        ``keep_going`` is asked before each request (the task layer answers whether its task
        slot is still held)."""
        p, o = self.parts, self.options
        t = p.bound(target(target_name))  # a warehouse group: through which of its campaigns
        c = t.name
        p.buffer.reclaim_expired(c)
        gate = self.groups.gate(t)  # a campaign now in a group moves its values; a group waits for them
        if gate.stop:
            return FlushResult(next_in=gate.next_in)
        held = p.held_off(t)
        if held > 0:
            return FlushResult(next_in=held)
        tally, fanned_out = Tally(), False
        deadline = time.monotonic() + o.budget_s

        def result(next_in: float | None) -> FlushResult:
            return FlushResult(tally.delivered, tally.dead, tally.requests, next_in, fanned_out)

        # Isolation a quota wait parked goes first: its batch is leased and holds its SKUs back.
        while time.monotonic() < deadline and keep_going():
            resumed = self.isolation.resume(t, keep_going)
            if resumed is None:
                break
            if tally.add(resumed).wait is not None:
                return result(tally.wait)

        while time.monotonic() < deadline:
            if not keep_going():
                return result(None)
            pending = p.buffer.pending(c)
            if pending == 0:
                return result(None)
            if t.per_request and pending < MAX_SKUS_PER_UPDATE:
                # The quota counts requests: a part-filled one waits a little for company (a full
                # one never does), so a backlog goes out in full requests and an idle update in
                # about batch_wait_s.
                waited = p.buffer.oldest_pending_age_s(c)
                if waited < o.batch_wait_s:
                    return result(o.batch_wait_s - waited)
            want = p.cost(t, min(MAX_SKUS_PER_UPDATE, pending))
            # Quota, then one of the target's parallel slots (shared with reads of the same
            # campaign or business); a wait is written back as the due time, never slept.
            slot = p.policy.admit(p.call(t, want, p.cost(t, min(want, o.min_batch))))
            if not isinstance(slot, Ticket):
                return result(slot)
            grant = slot.grant
            try:
                # A 420 may have paused everyone since the grant (or a 401 halted the campaign, a
                # 5xx started a backoff): a slot is only freed after its holder has set that, so
                # checking here, holding a slot, lets no request through the gap.
                paused = p.held_off(t)
                if paused > 0:
                    p.limiter.settle(grant, 0)
                    return result(paused)
                batch = p.buffer.take(c, MAX_SKUS_PER_UPDATE if t.per_request else grant.granted,
                                      MAX_BODY_BYTES - 1024, o.lease_s, self.client_for(t).clock.stamp_cap_ms())
                if batch is None:
                    p.limiter.settle(grant, 0)
                    return result(None)
                p.watch_lease(t, o.lease_s)
                enough = MAX_SKUS_PER_UPDATE if t.per_request else o.min_batch
                if not fanned_out and grant.remaining >= p.cost(t, o.min_batch) \
                        and p.buffer.pending(c) >= enough:
                    # The quota has room for another request now: a sibling sends it in parallel.
                    p.schedule.activate(c, 0)
                    fanned_out = True
                outcome = self._send(t, batch, slot, keep_going)
            finally:
                p.policy.release(slot)
            if tally.add(outcome).wait is not None:
                return result(tally.wait)
        return result(0.0)

    def _send(self, t: Target, batch: Batch, slot: Ticket, keep_going: Callable[[], bool]) -> Tally:
        """One request for the batch and its consequences."""
        p = self.parts
        sent = time.monotonic()
        reply = p.policy.send(slot, lambda _units: t.send(self.client_for(t), self._levels(t, batch.entries,
                                                                                          cap_ms=batch.cap_ms)),
                              units=p.cost(t, len(batch)))
        if isinstance(reply.error, MarketBadRequest):
            outcome = self.isolation.start(batch, reply.error, slot, keep_going)
            outcome.requests += 1
            return outcome
        if not reply.ok:
            dead, wait = failed(p, batch, [e.sku for e in batch.entries], reply, slot, sent)
            return Tally(0, dead, 1, wait)
        return Tally(succeeded(p, batch), 0, 1, None)

    def _levels(self, t: Target, entries: tuple[Entry, ...] | list[Entry], strict: bool = False,
                cap_ms: int | None = None) -> list[tuple[str, int, int | None]]:
        """(key, count, stamp in epoch ms) per entry, stamps clamped to the target's Market clock (stamps.py)."""
        return levels(self.client_for(t).clock, entries, strict, cap_ms)
