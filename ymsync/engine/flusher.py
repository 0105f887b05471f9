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

from ymsync.engine.batch import Batch, Entry, TakenEntries
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.call_policy import CallPolicy, Ticket, market_count
from ymsync.engine.flush_failure import failed
from ymsync.engine.flush_parts import FlushOptions, FlushParts, Tally
from ymsync.engine.group_move import GroupMove
from ymsync.engine.group_target import GroupTarget
from ymsync.engine.isolation import Isolation
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.request_path import Begun, Next, RequestPath
from ymsync.engine.schedule import Schedule
from ymsync.engine.stamps import STALE_STAMP_MS, levels, stamp_bounds
from ymsync.engine.targets import Target, target
from ymsync.market import MarketBadRequest, MarketClient
from ymsync.market.wire import campaign_stock_bytes
from ymsync.market.schemas import MAX_BODY_BYTES, MAX_SKUS_PER_UPDATE

if TYPE_CHECKING:
    import redis

__all__ = ["FlushOptions", "FlushResult", "Flusher", "STALE_STAMP_MS"]

# A round whose quota frees within this long waits in place (its task slot kept) and begins again;
# ending it would cost the next request a flush task's trip (schedule, broker, pool: tens of ms),
# and under a sliding window each request's successor would inherit that delay, window after window.
QUOTA_WAIT_IN_ROUND_S = 0.1


@dataclass(frozen=True)
class FlushResult:
    delivered: int = 0
    dead: int = 0
    requests: int = 0
    next_in: float | None = None  # None: nothing takeable seen; 0: run again now; else after this many s
    fanned_out: bool = False  # made the target due again at once for a parallel sibling
    slot_lost: bool = False  # the task's slot had expired: the round did nothing, and ends nothing
    slot_freed: bool = False  # the round's last call freed its slot already (RequestPath: Next.end_round)
    takeable: bool = False  # with ``slot_freed``: work was takeable as it was freed (make the target due)


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
        self.path = RequestPath(self.parts)  # a request's Redis work in two calls

    @property
    def buffer(self) -> StockBuffer:
        return self.parts.buffer

    @property
    def limiter(self) -> QuotaLimiter:
        return self.parts.limiter

    @property
    def redis(self) -> "redis.Redis":
        return self.parts.redis

    def flush(self, target_name: str | int, keep_going: Callable[[], bool] | None = None,
              slot: str | None = None, due_ms: int = 0) -> FlushResult:
        """One bounded round for a target (a name like ``c1001``/``b7``, or a campaign id).
        ``slot``: the flush task's slot (schedule.py), renewed as the round starts and by each
        request's first Redis call; ``keep_going`` is asked before each request instead when there
        is no slot (tools, tests). ``due_ms``: when the task came due (server ms), for the
        scheduler's lateness figures."""
        p, o = self.parts, self.options
        if keep_going is None:
            keep_going = (lambda: p.schedule.hold(t.name, slot)) if slot else (lambda: True)
        t = p.bound(target(target_name))  # a warehouse group: through which of its campaigns
        c = t.name
        # A campaign no longer in a group (its group dissolved, its configuration changed) takes
        # batches again once its old group's state came back (the gate below: group_move.py rule 4).
        def next_request(parked_first: bool = False) -> Next:
            # Only a clock that has seen the Market's Date headers raises the target's stamp floor:
            # before that, the local clock is all a process knows, and it may run ahead.
            clock = self.client_for(t).clock
            # A request that does not begin ends the round: its slot is freed in the same call.
            return Next(t, p.call(t, MAX_SKUS_PER_UPDATE, p.cost(t, o.min_batch)), slot, MAX_SKUS_PER_UPDATE,
                        MAX_BODY_BYTES - 1024, clock.stamp_cap_ms() if clock.known() else 0, end_round=True,
                        parked_first=parked_first, keep_for_ms=int(QUOTA_WAIT_IN_ROUND_S * 1000))

        group = self.groups.group_of(t)
        # The round's first request begins in its first round trip, unless the target is a group's
        # or a campaign's in a group (their gate below decides first). Parked isolation work makes
        # it begin nothing: that work goes first.
        # Without a slot (tools, tests), only if keep_going says so, as before every request.
        first = None if group is not None or isinstance(t, GroupTarget) or not (slot or keep_going()) \
            else next_request(parked_first=True)
        start = self.path.start_round(t, slot, due_ms, forget=self.groups.stale_marks(t), first=first,
                                      mark=self.groups.mark_of(t, group))
        if start.slot_lost:
            return FlushResult(slot_lost=True)
        reclaimed = p.buffer.reclaim(c, start.expired)  # a dead worker's batch comes back first
        # A campaign now in a group moves its values; a group waits for them; a campaign whose group
        # dissolved takes the group's back first (its first request found nothing to take meanwhile).
        gate = self.groups.gate(t, group, moved=start.moved)
        if gate.stop:
            return FlushResult(next_in=gate.next_in)
        if start.begun is None and start.held_s > 0:
            return FlushResult(next_in=start.held_s)
        tally, fanned_out, last_request_s = Tally(), False, 0.0
        deadline = time.monotonic() + o.budget_s

        def result(next_in: float | None, begun: Begun | None = None) -> FlushResult:
            # Values a reclaim returned after the first request found nothing make the target due.
            freed = begun is not None and begun.freed
            return FlushResult(tally.delivered, tally.dead, tally.requests, next_in, fanned_out, slot_freed=freed,
                               takeable=freed and begun is not None and (begun.takeable or reclaimed > 0))

        # Isolation a quota wait parked goes first: its batch is leased and holds its SKUs back.
        parked: list[bytes] | None = start.parked
        while parked != [] and time.monotonic() < deadline and keep_going():
            resumed = self.isolation.resume(t, keep_going, parked)
            parked = None  # read again after each piece: a sibling may have parked or claimed some
            if resumed is None:
                break
            if tally.add(resumed).wait is not None:
                return result(tally.wait)

        # The next request, when the round's first look or the last one's settlement began it.
        begun: Begun | None = start.begun if start.begun is not None and start.begun.status != "parked" else None
        while True:
            if begun is None:
                if time.monotonic() >= deadline:
                    return result(0.0)
                if not slot and not keep_going():
                    return result(None)
                # Slot, pause/halt/backoff, quota, one of the target's parallel slots (shared with
                # reads of the same campaign or business) and the batch, in one call; a wait is
                # written back as the due time, never slept (but a quota's of at most
                # QUOTA_WAIT_IN_ROUND_S, below).
                begun = self.path.begin(next_request())
            if begun.status != "batch":
                if begun.status == "quota" and not begun.freed and 0 < begun.quota_ms <= QUOTA_WAIT_IN_ROUND_S * 1000 \
                        and time.monotonic() + begun.quota_ms / 1000 < deadline:
                    time.sleep(begun.quota_ms / 1000 + 0.001)  # the slot was kept for it (Next.keep_for_ms)
                    begun = None
                    continue
                return result(begun.wait_s if begun.wait_s > 0 else None, begun)
            ticket, batch = begun.ticket, begun.batch
            assert ticket is not None and batch is not None
            enough = MAX_SKUS_PER_UPDATE if t.per_request else o.min_batch
            # A sibling costs a flush task (a broker message, its events, a dozen Redis round
            # trips): worth it when the quota has room for another request now and the backlog
            # would keep this round busy for a while at its own pace (the last request's).
            busy_for = -(-begun.pending // MAX_SKUS_PER_UPDATE) * last_request_s
            if not fanned_out and ticket.grant.remaining >= p.cost(t, o.min_batch) and begun.pending >= enough \
                    and (o.fanout_after_s <= 0 or busy_for > o.fanout_after_s):
                p.schedule.activate(c, 0)
                fanned_out = True
            ended, begun = False, None
            try:
                # The settlement of a success begins the next request in the same call while the
                # round has time left (one round trip per request under a backlog); a request
                # begun is sent, even if the round's time runs out meanwhile.
                more = time.monotonic() < deadline and (bool(slot) or keep_going())
                sent = time.monotonic()
                outcome, ended, begun = self._send(t, batch, ticket, keep_going, next_request if more else None)
                last_request_s = time.monotonic() - sent
            finally:
                if not ended:
                    p.policy.release(ticket)
            if tally.add(outcome).wait is not None:
                assert begun is None  # only a success begins the next request
                return result(tally.wait)

    def _send(self, t: Target, batch: Batch, slot: Ticket, keep_going: Callable[[], bool],
              then: Callable[[], Next] | None) -> tuple[Tally, bool, Begun | None]:
        """One request for the batch and its consequences; True when its lease is released too, and
        the next request when ``then`` asked for it and the request succeeded."""
        p = self.parts
        sent = time.monotonic()
        units = p.cost(t, len(batch))
        reply = p.policy.send(slot, lambda _units: self._request(t, batch), units=units, settle_success=False)
        if isinstance(reply.error, MarketBadRequest):
            outcome = self.isolation.start(batch, reply.error, slot, keep_going)
            outcome.requests += 1
            return outcome, False, None
        if not reply.ok:
            dead, wait = failed(p, batch, [e.sku for e in batch.entries], reply, slot, sent)
            return Tally(0, dead, 1, wait), False, None
        # Values, failure streak, quota (with the reply's own count of it), lease, and the next
        # request: one call.
        delivered, begun = self.path.end(t, slot, batch, min(units, slot.grant.granted),
                                         market_count(slot.call, getattr(reply.value, "rate_limit", None)),
                                         then() if then is not None else None)
        return Tally(delivered, 0, 1, None), True, begun

    def _request(self, t: Target, batch: Batch) -> Any:
        """The batch's request, its stamps clamped to the target's Market clock (stamps.py). A
        campaign-level body is written straight from the take's reply where it can be (TakenEntries,
        plain SKUs: ``wire.campaign_stock_bytes``), the same bytes as the general path."""
        client = self.client_for(t)
        if t.campaign_body and isinstance(batch.entries, TakenEntries):
            body = campaign_stock_bytes(batch.entries.pairs, *stamp_bounds(client.clock, cap_ms=batch.cap_ms))
            if body is not None:
                return t.send_campaign_body(client, body)
        return t.send(client, levels(client.clock, batch.entries, cap_ms=batch.cap_ms))

    def _levels(self, t: Target, entries: tuple[Entry, ...] | list[Entry], strict: bool = False,
                cap_ms: int | None = None) -> list[tuple[str, int, int | None]]:
        """(key, count, stamp in epoch ms) per entry, stamps clamped to the target's Market clock (stamps.py)."""
        return levels(self.client_for(t).clock, entries, strict, cap_ms)
