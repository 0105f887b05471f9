"""What a failed stock request (not a 400: isolation.py splits those) means for its values.

- 401/403: the target halts and keeps its backlog; after ``halt_s`` one request probes.
- 420 (any kind): the call policy has paused every worker; the values go back to the buffer.
- Another refusal (not retryable): the values are dead-lettered with the Market's message.
- Outcome unknown (timeout, dropped reply, 5xx, 423): the request may still land, so its values
  stay in flight until it no longer can (``unknown_outcome_s`` after it was sent), and the parallel
  slot is held as long; values failing longer than ``retry_max_age_s`` are dead-lettered; the
  target backs off exponentially with jitter.
"""

from __future__ import annotations

import logging
import random
import time

from ymsync.engine.batch import Batch
from ymsync.engine.call_policy import Kind, Reply, Ticket
from ymsync.engine.flush_parts import FlushParts
from ymsync.engine.targets import target
from ymsync.store import keys

log = logging.getLogger("ymsync.engine.flusher")

# The stats hash field of each kind of 420 (metrics.py exports them).
RATE_LIMITED_FIELDS = {Kind.PARALLEL: "rate_limited_parallel", Kind.QUOTA: "rate_limited_quota",
                       Kind.ACTIVE_REPORTS: "rate_limited_active_reports"}


def succeeded(parts: FlushParts, batch: Batch, skus: list[str] | None = None) -> int:
    """Settle delivered values; the Market works again, so the failure streak ends."""
    n = parts.buffer.settle(batch, "delivered", skus)
    parts.redis.hdel(keys.target_keys(batch.target)["stats"], "failstreak")
    return n


def failed(parts: FlushParts, batch: Batch, skus: list[str], reply: Reply, slot: Ticket,
           sent: float) -> tuple[int, float | None]:
    """Settle ``skus`` of a batch whose request failed (not with a 400); (dead, retry after or None).
    ``sent``: time.monotonic() when the request left."""
    t, k, o = target(batch.target), keys.target_keys(batch.target), parts.options
    c, exc, r = t.name, reply.error, parts.redis
    assert exc is not None
    if reply.kind is Kind.HALT and _next_carrier(parts, t.name, t.carriers(), slot, exc, o.halt_s):
        # A warehouse group: another of its campaigns carries the stock (the Market updates the
        # whole group through any one of them); this one is tried again after halt_s.
        parts.buffer.settle(batch, "returned", skus)
        r.hincrby(k["stats"], "carrier_refused", 1)
        return 0, 0.0
    if reply.kind is Kind.HALT:
        # The token is refused: nothing can be delivered, but nothing is wrong with the stock.
        # Keep the backlog; probe with one request after halt_s (status and metrics say why).
        r.set(k["halt"], f"HTTP {exc.status}: {exc.message}"[:500], px=int(o.halt_s * 1000))
        parts.buffer.settle(batch, "returned", skus)
        log.error("%s halted, backlog kept, probing again in %gs: %s", c, o.halt_s, exc.message)
        return 0, o.halt_s
    if reply.kind.rate_limited:  # the policy has paused every worker for reply.wait_s
        parts.buffer.settle(batch, "returned", skus)
        # Counted in all and by kind: a parallel 420 means another client holds slots, a quota 420
        # that the Market counted more than we did, and the remedies differ.
        r.hincrby(k["stats"], "rate_limited", 1)
        r.hincrby(k["stats"], RATE_LIMITED_FIELDS[reply.kind], 1)
        log.warning("%s: 420 (%s), waiting %.2fs: %s", c, reply.kind.value, reply.wait_s, exc.message)
        return 0, reply.wait_s
    if not exc.retryable:
        return parts.buffer.settle(batch, "dead", skus, reason=exc.message), None
    now_ms = time.time() * 1000
    mine = set(skus)
    expired = [e.sku for e in batch.entries
               if e.sku in mine and now_ms - e.first_ms > o.retry_max_age_s * 1000]
    dead = parts.buffer.settle(batch, "dead", expired, reason=f"gave up after {o.retry_max_age_s:g}s: "
                               f"{exc.message}") if expired else 0
    if exc.outcome_unknown:
        # The request may still land: its SKUs stay in flight until it no longer can, then
        # come back (unless a newer value is pending) when the lease runs out.
        doubt = max(0.05, o.unknown_outcome_s - (time.monotonic() - sent))
        if parts.buffer.extend(batch, doubt):
            parts.watch_lease(t, doubt)
            r.hincrby(k["stats"], "in_doubt", len(mine) - len(expired))
            slot.keep_s = max(slot.keep_s, doubt)
    else:
        parts.buffer.settle(batch, "returned", skus)
    streak = int(r.hincrby(k["stats"], "failstreak", 1))
    r.hincrby(k["stats"], "retries", 1)
    delay = min(o.max_backoff_s, 0.25 * 2 ** min(streak, 8)) * random.uniform(0.5, 1.5)
    r.set(k["backoff"], "1", px=int(delay * 1000))
    log.warning("%s: %s; retrying in %.1fs%s", c, exc.message, delay,
                " (its SKUs are held while the request may still land)" if exc.outcome_unknown else "")
    return dead, delay


def _next_carrier(parts: FlushParts, name: str, campaigns: tuple[int, ...], slot: Ticket, exc, halt_s: float) -> bool:
    """Mark the refused carrier (the campaign whose cap the request held) and say whether another
    campaign of the group is left to carry the stock."""
    if not campaigns:
        return False
    carrier = int(slot.call.gate[1:]) if slot.call.gate else campaigns[0]
    r = parts.redis
    r.set(keys.refused_carrier(name, carrier), f"HTTP {exc.status}: {exc.message}"[:500], px=int(halt_s * 1000))
    refused = r.mget([keys.refused_carrier(name, c) for c in campaigns])
    left = [c for c, x in zip(campaigns, refused) if x is None]
    if left:
        log.error("%s: campaign %d refused (HTTP %s: %s); campaign %d of the group carries its stock",
                  name, carrier, exc.status, exc.message, left[0])
    return bool(left)
