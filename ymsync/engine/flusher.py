"""The stock push pipeline: take a batch from the buffer under the shared quota, send it, settle.

``Flusher.flush`` does one bounded round of work for a stock target (a campaign, v2; a business,
v3: see targets.py) and says when it wants to run
again (``FlushResult.next_in``); the task layer writes that back as the target's due time in the
schedule (see schedule.py), so waiting for quota never holds a worker slot, never consumes a
retry and never leaves a countdown message in a broker. While a backlog remains and the quota
has room for more than this round takes, the round makes the target due again at once, so the
scheduler sends a sibling flush (up to ``max_parallel``): one task per request, about.

Failure policy:
- Outcome unknown (timeouts, dropped connections, 5xx, 423): the request may still land, so its
  SKUs stay in flight ("in doubt") until it no longer can: ``unknown_outcome_s`` after it was
  sent. Then the batch's lease runs out and its values go back to the buffer unless a newer one
  is pending, so the newest value is sent after any doubtful one could have landed. The parallel
  slot is kept as long (the Market may still count the request as in flight). The campaign backs
  off exponentially with jitter; values failing longer than ``retry_max_age_s`` are dead-lettered.
- 420: every worker pauses that quota key until the Market's ``X-RateLimit-Resource-Until``,
  measured against the Market's clock (``MarketClock``) and capped: the Market call policy
  (call_policy.py) takes the quota and the parallel lease, classifies the reply and settles the
  quota by the Market's cost rule; this module decides what each kind of reply means for a batch.
- 400: the Market refused the whole request; the batch is split to isolate the offenders, the
  rest is delivered, the offenders are dead-lettered with the Market's message. Stamps "in the
  future" or "older than a day" are the batch's clock problem, not poison: the stamps are
  clamped to the Market's clock and the batch is sent again (or returned), never dead-lettered.
- 401/403: the campaign halts (no traffic) and keeps its backlog; after ``halt_s`` the next
  flush sends one request, a probe, which resumes delivery once the token works again.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Callable
from datetime import datetime, timezone

from ymsync.store import keys
from ymsync.engine.buffer import Batch, Entry, StockBuffer
from ymsync.market import MarketBadRequest, MarketClient, MarketError
from ymsync.market.schemas import MAX_BODY_BYTES, MAX_SKUS_PER_UPDATE
from ymsync.engine.call_policy import Call, CallPolicy, Kind, Reply, Ticket
from ymsync.engine.quota import Grant, QuotaLimiter
from ymsync.engine.schedule import Schedule
from ymsync.engine.targets import Target, split_key, target

log = logging.getLogger("ymsync.engine.flusher")

# The Market refuses stamps older than a day; a margin covers clock skew and time in flight.
STALE_STAMP_MS = 23 * 3600 * 1000
_QUOTED = re.compile(r"'([^']*)'")
# The Market's 400 texts for stamps it will not take: the clock's fault, not the SKU's.
_CLOCK = re.compile(r"should not be in the future|should not be older than", re.I)


@dataclass(frozen=True)
class FlushResult:
    delivered: int = 0
    dead: int = 0
    requests: int = 0
    next_in: float | None = None  # None: nothing takeable seen; 0: run again now; else after this many s
    fanned_out: bool = False  # made the target due again at once for a parallel sibling


class Flusher:
    def __init__(self, buffer: StockBuffer, limiter: QuotaLimiter, client: MarketClient, *,
                 budget_s: float = 5.0, retry_max_age_s: float = 24 * 3600, halt_s: float = 900.0,
                 lease_s: float = 120.0, min_batch: int = 200, schedule: Schedule | None = None,
                 unknown_outcome_s: float = 110.0, batch_wait_s: float = 1.0, max_backoff_s: float = 60.0,
                 client_for: Callable[[Target], MarketClient] | None = None) -> None:
        """``client_for``: the Market client of a target's cabinet (default: ``client`` for all).
        ``batch_wait_s``: how long a target whose quota counts requests lets a part-filled request
        wait for more values (a full request goes at once)."""
        self.buffer, self.limiter, self.client = buffer, limiter, client
        self.client_for = client_for or (lambda _target: client)
        self.batch_wait_s, self.max_backoff_s = batch_wait_s, max_backoff_s
        self.unknown_outcome_s = min(unknown_outcome_s, lease_s)
        self.schedule = schedule if schedule is not None else buffer.schedule
        self.budget_s, self.retry_max_age_s, self.halt_s = budget_s, retry_max_age_s, halt_s
        self.lease_s, self.min_batch = lease_s, min_batch
        self.redis = buffer.redis
        self.policy = CallPolicy(limiter)
        # No per-flush state lives here: one Flusher serves every thread of a worker (-P threads),
        # so what one flush needs (its keep_going, its slot) travels down its own calls.

    def flush(self, target_name: str | int, keep_going: Callable[[], bool] = lambda: True) -> FlushResult:
        """One bounded round for a target (a name like ``c1001``/``b7``, or a campaign id).
        ``keep_going`` is asked before each request (the task layer answers whether its task
        slot is still held)."""
        t = target(target_name)
        c = t.name
        self.buffer.reclaim_expired(c)
        held = self._held_off(t)
        if held > 0:
            return FlushResult(next_in=held)
        delivered = dead = requests = 0
        fanned_out = False
        deadline = time.monotonic() + self.budget_s

        def result(next_in: float | None) -> FlushResult:
            return FlushResult(delivered, dead, requests, next_in, fanned_out)

        while time.monotonic() < deadline:
            if not keep_going():
                return result(None)
            pending = self.buffer.pending(c)
            if pending == 0:
                return result(None)
            if t.per_request and pending < MAX_SKUS_PER_UPDATE:
                # The quota counts requests: a part-filled one waits a little for company (a full
                # one never does), so a backlog goes out in full requests and an idle update in
                # about batch_wait_s.
                waited = self.buffer.oldest_pending_age_s(c)
                if waited < self.batch_wait_s:
                    return result(self.batch_wait_s - waited)
            want = 1 if t.per_request else min(MAX_SKUS_PER_UPDATE, pending)
            # Quota, then one of the target's parallel slots (shared with reads of the same
            # campaign or business); a wait is written back as the due time, never slept.
            slot = self.policy.admit(self._call(t, want, 1 if t.per_request else min(want, self.min_batch)))
            if not isinstance(slot, Ticket):
                return result(slot)
            grant = slot.grant
            try:
                # A 420 may have paused everyone since the grant (or a 401 halted the campaign, a
                # 5xx started a backoff): a slot is only freed after its holder has set that, so
                # checking here, holding a slot, lets no request through the gap.
                paused = self._held_off(t)
                if paused > 0:
                    self.limiter.settle(grant, 0)
                    return result(paused)
                batch = self.buffer.take(c, MAX_SKUS_PER_UPDATE if t.per_request else grant.granted,
                                         MAX_BODY_BYTES - 1024, self.lease_s)
                if batch is None:
                    self.limiter.settle(grant, 0)
                    return result(None)
                # If this worker dies holding the batch, the scheduler looks once its lease is out.
                self.schedule.watch(c, _server_ms(self.redis) + int(self.lease_s * 1000) + 100)
                enough = MAX_SKUS_PER_UPDATE if t.per_request else self.min_batch
                if not fanned_out and grant.remaining >= (1 if t.per_request else self.min_batch) \
                        and self.buffer.pending(c) >= enough:
                    # The quota has room for another request now: a sibling sends it in parallel.
                    self.schedule.activate(c, 0)
                    fanned_out = True
                outcome = self._send(batch, slot, keep_going)
            finally:
                self.policy.release(slot)
            delivered, dead, requests = delivered + outcome[0], dead + outcome[1], requests + outcome[2]
            if outcome[3] is not None:
                return result(outcome[3])
        return result(0.0)

    def _held_off(self, t: Target) -> float:
        """Seconds until the target may send again: the longest of pause, halt and backoff."""
        k = keys.target_keys(t.name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.pttl(keys.pause(t.method, t.quota_key))
        pipe.pttl(k["halt"])
        pipe.pttl(k["backoff"])
        return max(0, *pipe.execute()) / 1000

    # --- one request and its consequences -------------------------------------------------

    def _call(self, t: Target, want: int, minimum: int) -> Call:
        return Call(t.method, t.quota_key, t.gate, self.client_for(t).clock, want=want, minimum=minimum)

    def _send(self, batch: Batch, slot: Ticket,
              keep_going: Callable[[], bool]) -> tuple[int, int, int, float | None]:
        """(delivered, dead, requests, stop-and-retry-after or None)."""
        t, k = target(batch.target), keys.target_keys(batch.target)
        sent = time.monotonic()
        reply = self.policy.send(slot, lambda _units: t.send(self.client_for(t), self._levels(t, batch.entries)),
                                 units=1 if t.per_request else len(batch))
        if isinstance(reply.error, MarketBadRequest):
            delivered, dead, requests, wait = self._isolate(batch, list(batch.entries), reply.error, slot,
                                                            keep_going)
            return delivered, dead, requests + 1, wait
        if not reply.ok:
            dead, wait = self._fail(batch, [e.sku for e in batch.entries], reply, slot, sent)
            return 0, dead, 1, wait
        n = self.buffer.settle(batch, "delivered")
        self.redis.hdel(k["stats"], "failstreak")
        return n, 0, 1, None

    def _fail(self, batch: Batch, skus: list[str], reply: Reply, slot: Ticket,
              sent: float) -> tuple[int, float | None]:
        """Settle ``skus`` of a batch whose request failed (not with a 400); (dead, retry after or None)."""
        t, k = target(batch.target), keys.target_keys(batch.target)
        c, exc = t.name, reply.error
        assert exc is not None
        if reply.kind is Kind.HALT:
            # The token is refused: nothing can be delivered, but nothing is wrong with the stock.
            # Keep the backlog; probe with one request after halt_s (status and metrics say why).
            self.redis.set(k["halt"], f"HTTP {exc.status}: {exc.message}"[:500], px=int(self.halt_s * 1000))
            self.buffer.settle(batch, "returned", skus)
            log.error("%s halted, backlog kept, probing again in %gs: %s", c, self.halt_s, exc.message)
            return 0, self.halt_s
        if reply.kind.rate_limited:  # the policy has paused every worker for reply.wait_s
            self.buffer.settle(batch, "returned", skus)
            self.redis.hincrby(k["stats"], "rate_limited", 1)
            return 0, reply.wait_s
        if not exc.retryable:
            return self.buffer.settle(batch, "dead", skus, reason=exc.message), None
        now_ms = time.time() * 1000
        mine = set(skus)
        expired = [e.sku for e in batch.entries
                   if e.sku in mine and now_ms - e.first_ms > self.retry_max_age_s * 1000]
        dead = self.buffer.settle(batch, "dead", expired, reason=f"gave up after {self.retry_max_age_s:g}s: "
                                  f"{exc.message}") if expired else 0
        if exc.outcome_unknown:
            # The request may still land: its SKUs stay in flight until it no longer can, then
            # come back (unless a newer value is pending) when the lease runs out.
            doubt = max(0.05, self.unknown_outcome_s - (time.monotonic() - sent))
            if self.buffer.extend(batch, doubt):
                self.schedule.watch(c, _server_ms(self.redis) + int(doubt * 1000) + 100)
                self.redis.hincrby(k["stats"], "in_doubt", len(mine) - len(expired))
                slot.keep_s = max(slot.keep_s, doubt)
        else:
            self.buffer.settle(batch, "returned", skus)
        streak = int(self.redis.hincrby(k["stats"], "failstreak", 1))
        self.redis.hincrby(k["stats"], "retries", 1)
        delay = min(self.max_backoff_s, 0.25 * 2 ** min(streak, 8)) * random.uniform(0.5, 1.5)
        self.redis.set(k["backoff"], "1", px=int(delay * 1000))
        log.warning("%s: %s; retrying in %.1fs%s", c, exc.message, delay,
                    " (its SKUs are held while the request may still land)" if exc.outcome_unknown else "")
        return dead, delay

    def _isolate(self, batch: Batch, entries: list[Entry], exc: MarketBadRequest,
                 slot: Ticket, keep_going: Callable[[], bool],
                 clock_retry: bool = False) -> tuple[int, int, int, float | None]:
        """Deliver what the Market accepts out of ``entries``; dead-letter what it refuses.

        (delivered, dead, requests, stop-and-retry-after or None). Any other failure on the way
        (420, 5xx, 401...) gets the usual policy for its group, and the groups not yet tried
        go back to the buffer untouched: they must not be pushed into a Market that just said no.
        Stamps refused as "in the future" or "older than a day" are the clock's fault: the group is
        sent again with stamps clamped to the Market's clock (learnt from this very reply), and
        returned if even that fails; never dead-lettered.
        """
        t = target(batch.target)
        clock_errors = [e for e in exc.errors if _CLOCK.search(e.message)]
        poison = [e for e in exc.errors if not _CLOCK.search(e.message)]
        named = _named(t, entries, [err.message for err in poison])
        if clock_errors and not poison:
            if clock_retry:
                self.buffer.settle(batch, "returned", [e.sku for e in entries])
                log.error("%s: the Market refused our stamps twice (%s); returned to the buffer, check "
                          "this machine's clock", batch.target, clock_errors[0].message)
                return 0, 0, 0, 5.0
            dead, groups, clock_retry = 0, [entries], True
        elif len(entries) == 1 or named:
            culprits = [e for e in entries if e.sku in named] if named else entries
            reason = "; ".join(e.message for e in poison if any(t.sku_of(c.sku) in e.message for c in culprits)) \
                or exc.message
            dead = self.buffer.settle(batch, "dead", [e.sku for e in culprits], reason=reason)
            rest = [e for e in entries if e not in culprits]
            groups = [rest] if rest else []
        else:
            dead, half = 0, len(entries) // 2
            groups = [entries[:half], entries[half:]]
        delivered = requests = 0
        for i, group in enumerate(groups):
            grant = self._wait_for_quota(batch, 1 if t.per_request else len(group), slot, keep_going)
            if grant is None:
                # Our lease ran out while waiting and the batch was reclaimed: its SKUs are someone
                # else's now (maybe with newer values); sending ours could overwrite those.
                return delivered, dead, requests, None
            sent = time.monotonic()
            reply = self.policy.send(Ticket(slot.call, grant, slot.lease_id),
                                     lambda _units: t.send(self.client_for(t), self._levels(t, group, strict=clock_retry)))
            if isinstance(reply.error, MarketBadRequest):
                d, x, r, wait = self._isolate(batch, group, reply.error, slot, keep_going, clock_retry)
                delivered, dead, requests = delivered + d, dead + x, requests + r + 1
                if wait is None:
                    continue
            elif not reply.ok:
                x, wait = self._fail(batch, [e.sku for e in group], reply, slot, sent)
                dead, requests = dead + x, requests + 1
            else:
                delivered += self.buffer.settle(batch, "delivered", [e.sku for e in group])
                self.redis.hdel(keys.target_keys(batch.target)["stats"], "failstreak")  # the Market works
                requests += 1
                continue
            untried = [e.sku for g in groups[i + 1:] for e in g]
            if untried:
                self.buffer.settle(batch, "returned", untried)
            return delivered, dead, requests, wait
        return delivered, dead, requests, None

    def _wait_for_quota(self, batch: Batch, cost: int, slot: Ticket,
                        keep_going: Callable[[], bool]) -> Grant | None:
        """Quota for one isolation request, or None if the batch's lease was lost meanwhile."""
        # Isolation is rare and holds a batch already taken, so it waits here rather than give
        # the batch back (a restart would pay for the refused requests again). Before each sleep
        # the lease is renewed to cover the sleep and the request after it, or the sweeper would
        # hand the batch to another worker while this one still means to send it.
        while True:
            t = target(batch.target)
            grant = self.limiter.acquire(t.method, t.quota_key, cost, cost)
            nap = 0.0 if grant.granted else min(grant.wait_s, 5.0)
            if not self.buffer.extend(batch, self.lease_s + nap):
                self.limiter.settle(grant, 0)
                log.warning("%s: batch %s was reclaimed while isolating a refused SKU; "
                            "leaving it to whoever holds it now", batch.target, batch.batch_id)
                return None
            if grant.granted:
                if not keep_going():  # our task slot ran out: another task may own the target now
                    self.limiter.settle(grant, 0)
                    return None
                if self._hold_slot(slot, self.lease_s):
                    return grant
                self.limiter.settle(grant, 0)
                nap = 0.05  # our parallel slot expired and all four are taken: wait for one
            elif not self._hold_slot(slot, self.lease_s + nap):
                nap = min(nap, 0.05)
            time.sleep(nap)

    def _hold_slot(self, slot: Ticket, seconds: float) -> bool:
        """Keep (or, if it expired during a long wait, retake) our parallel slot; False if none is free."""
        gate = slot.call.gate
        assert gate is not None and slot.lease_id is not None
        if self.limiter.renew(gate, slot.lease_id, seconds):
            return True
        lease = self.limiter.lease(gate)
        if lease is None:
            return False
        slot.lease_id = lease
        return True

    def _levels(self, t: Target, entries: tuple[Entry, ...] | list[Entry],
                strict: bool = False) -> list[tuple[str, int, datetime | None]]:
        """(key, count, stamp) per entry. Stamps are capped at the Market's clock as this process
        knows it from replies' Date headers (MarketClock.stamp_cap_ms): a clock running ahead
        would be "in the future". ``strict``: at its lower bound (after such a refusal)."""
        now_ms = self.client_for(t).clock.stamp_cap_ms(strict)
        levels = []
        for e in entries:
            if now_ms - e.stamp_ms > STALE_STAMP_MS:
                stamp = None  # the Market refuses stamps older than a day; let it stamp "now"
            else:
                stamp = datetime.fromtimestamp(min(e.stamp_ms, now_ms) / 1000, timezone.utc)
            levels.append((e.sku, e.count, stamp))
        return levels


_WAREHOUSE = re.compile(r"warehouse '?(\d+)'?", re.I)


def _named(t: Target, entries: list[Entry], messages: list[str]) -> set[str]:
    """Keys of the entries a refusal names: its SKU quoted, and for a business target, when the
    message names warehouses, on one of them (the same SKU on another warehouse is innocent)."""
    out: set[str] = set()
    for message in messages:
        skus = set(_QUOTED.findall(message))
        warehouses = {int(w) for w in _WAREHOUSE.findall(message)} if t.per_request else set()
        for e in entries:
            if t.sku_of(e.sku) in skus and (not warehouses or split_key(e.sku)[0] in warehouses):
                out.add(e.sku)
    return out


def _server_ms(client) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


