"""A stock value's stamp as the Market will take it: clamped to the Market's clock.

The Market refuses stamps "in the future" (by its clock) and "older than a day"; neither is the
SKU's fault, so the Flusher clamps stamps before sending and, when the Market still refuses them,
sends once more at the clock's lower bound (isolation.py) rather than dead-letter good stock.
"""

from __future__ import annotations

import re
from typing import Iterable

from ymsync.engine.batch import Entry
from ymsync.market.clock import MarketClock

# The Market refuses stamps older than a day; a margin covers clock skew and time in flight.
STALE_STAMP_MS = 23 * 3600 * 1000
# The Market's 400 texts for stamps it will not take: the clock's fault, not the SKU's.
_CLOCK = re.compile(r"should not be in the future|should not be older than", re.I)


def is_clock_refusal(message: str) -> bool:
    return bool(_CLOCK.search(message))


def stamp_bounds(clock: MarketClock, strict: bool = False, cap_ms: int | None = None,
                 floor_ms: int | None = None) -> tuple[int, int]:
    """(the newest stamp a value may carry, the oldest that is still sent) in epoch ms: see :func:`levels`."""
    now_ms = cap_ms if cap_ms is not None and not strict else clock.stamp_cap_ms(strict)
    if strict and floor_ms:
        # Never below a cap another batch of the target took: those values may be at the Market
        # with stamps up to it, and this process's lower bound (from whole-second Date headers)
        # can lag another's by up to a second. Each cap is the Market's time at a bound, so the
        # floor is no later than now; a second "in the future" returns the values (isolation.py).
        now_ms = max(now_ms, floor_ms)
    return now_ms, now_ms - STALE_STAMP_MS


def levels(clock: MarketClock, entries: Iterable[Entry], strict: bool = False,
           cap_ms: int | None = None, floor_ms: int | None = None) -> list[tuple[str, int, int | None]]:
    """(key, count, stamp in epoch ms) per entry; the stamp becomes text only in the body
    (ymsync.market.wire, no datetime per SKU). Stamps are capped at the Market's clock as this
    process knows it from replies' Date headers (MarketClock.stamp_cap_ms): a clock running ahead
    would be "in the future". ``strict``: at its lower bound (after such a refusal). A stamp older
    than a day is None: the Market refuses those, so it stamps the value "now".
    ``cap_ms``: the batch's cap (Batch.cap_ms, shared by every process sending the target) instead
    of this process's; a strict retry ignores it and takes this process's lower bound, which the
    Market has just shown to be needed, but never below ``floor_ms`` (Batch.floor_ms: the highest
    cap any batch of the target took, which earlier values of these SKUs may carry)."""
    now_ms, oldest_ms = stamp_bounds(clock, strict, cap_ms, floor_ms)
    return [(e.sku, e.count, None if e.stamp_ms < oldest_ms else (e.stamp_ms if e.stamp_ms < now_ms else now_ms))
            for e in entries]
