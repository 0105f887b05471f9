"""A stock value's stamp as the Market will take it: clamped to the Market's clock.

The Market refuses stamps "in the future" (by its clock) and "older than a day"; neither is the
SKU's fault, so the Flusher clamps stamps before sending and, when the Market still refuses them,
sends once more at the clock's lower bound (isolation.py) rather than dead-letter good stock.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Iterable

from ymsync.engine.buffer import Entry
from ymsync.market.clock import MarketClock

# The Market refuses stamps older than a day; a margin covers clock skew and time in flight.
STALE_STAMP_MS = 23 * 3600 * 1000
# The Market's 400 texts for stamps it will not take: the clock's fault, not the SKU's.
_CLOCK = re.compile(r"should not be in the future|should not be older than", re.I)


def is_clock_refusal(message: str) -> bool:
    return bool(_CLOCK.search(message))


def levels(clock: MarketClock, entries: Iterable[Entry],
           strict: bool = False) -> list[tuple[str, int, datetime | None]]:
    """(key, count, stamp) per entry. Stamps are capped at the Market's clock as this process
    knows it from replies' Date headers (MarketClock.stamp_cap_ms): a clock running ahead
    would be "in the future". ``strict``: at its lower bound (after such a refusal)."""
    now_ms = clock.stamp_cap_ms(strict)
    out = []
    for e in entries:
        if now_ms - e.stamp_ms > STALE_STAMP_MS:
            stamp = None  # the Market refuses stamps older than a day; let it stamp "now"
        else:
            stamp = datetime.fromtimestamp(min(e.stamp_ms, now_ms) / 1000, timezone.utc)
        out.append((e.sku, e.count, stamp))
    return out
