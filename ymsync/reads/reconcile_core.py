"""The drift core both reconcilers share: campaign (v2, :mod:`ymsync.reads.reconcile`, keyed by
SKU) and business (v3, :mod:`ymsync.reads.reconcile_business`, keyed by (warehouse, SKU)).

A *record* is what ymsync delivered for one key: ``(count, stamp_ms, delivered_at_ms)``. The
core knows keys only as opaque hashable values, so it does not care which target kind they
belong to; each reconciler brings its own row type (its JSON shape is its own) and its own way
to read the buffer and to push.

The three shared rules:

* **Drift** (:func:`drifted`): a record whose count the Market does not show for its key is
  ``drift``, or ``missing`` when the Market does not list the key at all.
* **In motion** (:func:`split_moved`): a record delivered again while the Market was read is not
  comparable this time (the read may have caught either value).
* **Re-queue** (:class:`DriftFixer`): only a value that is still the newest the buffer ever
  accepted for its key is re-queued (else the row is ``pending``: the shop has moved on), stamped
  with :func:`fix_stamp_ms`, the smallest stamp that still wins. The buffer decides the race: a
  row counts as fixed only when its fix became the key's newest value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Generic, Hashable, Iterator, Mapping, Protocol, Sequence, TypeVar

DRIFT, PENDING, MISSING = "drift", "pending", "missing"
FIXABLE = (DRIFT, MISSING)
PUSH_CHUNK = 1000  # items per push call: the producer validates and writes a thousand at a time

K = TypeVar("K", bound=Hashable)
Record = tuple[int, int, int]  # (count, stamp_ms, delivered_at_ms)
Newest = tuple[int, int]  # (stamp_ms, count): the buffer's high-water mark for a key


@dataclass(frozen=True)
class MarketStock:
    """The Market's view of one key: its count and its newest ``updatedAt`` (ms), if given."""

    count: int
    updated_ms: int | None = None


class FixableRow(Protocol[K]):
    """What the fixer needs of a reconciler's row."""

    @property
    def key(self) -> K: ...

    ours: int
    stamp_ms: int
    market_updated_ms: int | None
    status: str
    fixed: bool


def stamp_datetime(ms: int) -> datetime:
    """A millisecond stamp as an aware UTC datetime, exact to the millisecond."""
    return datetime.fromtimestamp(ms // 1000, timezone.utc).replace(microsecond=(ms % 1000) * 1000)


def iso_ms(ms: int | None) -> str:
    """ISO 8601 with milliseconds; empty for no stamp."""
    return stamp_datetime(ms).isoformat(timespec="milliseconds") if ms is not None else ""


def stamp_ms_of(at: datetime | None) -> int | None:
    return int(at.timestamp() * 1000) if at is not None else None


def market_count(stocks: Mapping[str, int], stock_type: str = "FIT") -> int:
    """FIT ("годный") is what a stock update sets; AVAILABLE where the Market gives no FIT.
    Reserved units (FREEZE) are why AVAILABLE may be lower without any drift."""
    return stocks.get(stock_type, stocks.get("AVAILABLE", 0))


def fix_stamp_ms(delivered_stamp_ms: int, market_updated_ms: int | None, now_ms: int) -> int:
    """The smallest stamp that beats both the delivered value and the drifted one.

    After the Market's stamp, so a Market that orders by ``updatedAt`` takes the fix; no later
    than needed, so a shop update stamped after the drift still beats the fix."""
    if market_updated_ms is None:
        return max(now_ms, delivered_stamp_ms + 1)  # nothing to position after: now
    return max(delivered_stamp_ms + 1, min(market_updated_ms + 1, now_ms))


def split_moved(before: Mapping[K, Record], after: Mapping[K, Record | None]) -> tuple[dict[K, Record], int]:
    """(records unchanged between the two reads, how many changed or vanished)."""
    stable = {k: v for k, v in before.items() if after.get(k) == v}
    return stable, len(before) - len(stable)


def drifted(delivered: Mapping[K, Record],
            market: Mapping[K, MarketStock]) -> Iterator[tuple[K, Record, MarketStock | None, str]]:
    """``(key, record, seen, status)`` for each record the Market does not show, in key order."""
    for key in sorted(delivered):  # type: ignore[type-var]
        record = delivered[key]
        seen = market.get(key)
        if seen is not None and seen.count == record[0]:
            continue
        yield key, record, seen, DRIFT if seen is not None else MISSING


class DriftFixer(Generic[K]):
    """The pending rule and the re-queue of one target.

    ``newest(keys)`` gives the buffer's high-water mark ``(stamp_ms, count)`` of each key (None:
    no record); ``push(items)`` queues ``(key, count, stamp)`` triples with ``force`` through
    the normal producer, at most :data:`PUSH_CHUNK` a call."""

    def __init__(self, newest: Callable[[Sequence[K]], Sequence[Newest | None]],
                 push: Callable[[list[tuple[K, int, datetime]]], object],
                 clock: Callable[[], float] = time.time) -> None:
        self.newest, self.push, self.clock = newest, push, clock

    def _newest(self, keys: list[K]) -> dict[K, Newest | None]:
        # Absent (idle past the horizon): treated as "something else is going on".
        return dict(zip(keys, self.newest(keys))) if keys else {}

    def mark_pending(self, rows: Sequence[FixableRow[K]]) -> None:
        """Rows whose value is no longer the newest the buffer accepted become ``pending``."""
        newest = self._newest([r.key for r in rows])
        for row in rows:
            if newest.get(row.key) != (row.stamp_ms, row.ours):
                row.status = PENDING

    def requeue(self, rows: Sequence[FixableRow[K]]) -> int:
        """Re-queue the fixable rows; returns how many the buffer took (each marked ``fixed``)."""
        rows = [r for r in rows if r.status in FIXABLE]
        if not rows:
            return 0
        # Re-check right before queuing: keeps the window for a racing update as short as it can be.
        newest = self._newest([r.key for r in rows])
        now_ms = int(self.clock() * 1000)
        items: list[tuple[K, int, datetime]] = []
        stamps: dict[K, int] = {}
        for row in rows:
            if newest.get(row.key) != (row.stamp_ms, row.ours):
                row.status = PENDING
                continue
            stamps[row.key] = fix_stamp_ms(row.stamp_ms, row.market_updated_ms, now_ms)
            items.append((row.key, row.ours, stamp_datetime(stamps[row.key])))
        for start in range(0, len(items), PUSH_CHUNK):
            self.push(items[start:start + PUSH_CHUNK])
        # The buffer decides: where a newer update won the race, the fix was (rightly) dropped.
        after = self._newest(list(stamps))
        requeued = 0
        for row in rows:
            if row.key not in stamps:
                continue
            if after.get(row.key) == (stamps[row.key], row.ours):
                row.fixed = True
                requeued += 1
            else:
                row.status = PENDING
        return requeued


__all__ = ["DRIFT", "FIXABLE", "MISSING", "PENDING", "DriftFixer", "FixableRow", "MarketStock", "Record",
           "drifted", "fix_stamp_ms", "iso_ms", "market_count", "split_moved", "stamp_datetime", "stamp_ms_of"]
