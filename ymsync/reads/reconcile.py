"""Reconciliation: what the Market holds against the last values ymsync delivered.

Drift appears when someone edits stock in the seller cabinet, another integration writes to
the same campaign, or a delivered update was lost on the Market's side. ``Reconciler.run``
reads the Market's stock for every SKU ymsync has delivered (by ``offerIds``, 500 at a time,
under the shared read quota: much cheaper than walking a whole catalogue), compares, and lists
each difference. With ``fix=True`` it queues ymsync's value again through ``push_stocks``,
the normal push path, so the usual quota, batching, retries and dead letters apply. That
covers SKUs the Market no longer lists at all (``missing``) as well as drifted ones: a Market
that lost what it was given (a restored or reset test cabinet, the compose sandbox restarted
without its state) gets it again.

Re-queuing is the delicate part. The buffer drops any update whose stamp is not newer than
the newest value it ever accepted for the SKU, so the delivered value cannot simply be sent
again with its old stamp. A fresh stamp, though, could bury a newer value. Two rules prevent it:

1. Only SKUs whose newest accepted value *is* the delivered one are re-queued. If anything
   newer was accepted (pending, in flight, or dead-lettered) the row is ``pending``: the shop
   has moved on, and re-sending the older delivered value would undo that.
2. The new stamp is the smallest that still wins: just after both the delivered value's stamp
   and the Market's own ``updatedAt`` for the drifted value (never later than now). Being after
   the Market's stamp makes the fix take on a Market that orders by ``updatedAt``; being no
   later than necessary means a shop update stamped after the drift still beats the fix, even
   if it reaches ymsync afterwards, and one that slips in between the check and the re-queue
   with such a stamp makes the buffer drop the fix rather than lose the update.

This module knows nothing about Celery.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

from ymsync.engine.buffer import StockBuffer
from ymsync.market import OfferStock
from ymsync.market.schemas import parse_stamp
from ymsync.engine.producer import push_stocks
from ymsync.reads.campaign import ReadOptions, ReadStats, StockReader

DRIFT, PENDING, MISSING = "drift", "pending", "missing"


@dataclass(frozen=True)
class MarketStock:
    """The Market's view of one SKU, summed over the warehouses that list it."""

    count: int
    updated_ms: int | None = None  # the Market's updatedAt, newest over warehouses


@dataclass
class DriftRow:
    sku: str
    ours: int
    market: int | None  # None: the Market does not list the SKU at all
    delivered_at_ms: int
    stamp_ms: int  # the stamp ymsync delivered the value with
    market_updated_ms: int | None
    status: str  # drift | missing (both fixable) | pending (a newer value is on its way)
    fixed: bool = False

    @property
    def delivered_at(self) -> str:
        return _iso(self.delivered_at_ms)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["delivered_at"] = self.delivered_at
        d["market_updated_at"] = _iso(self.market_updated_ms) if self.market_updated_ms else None
        return d


@dataclass
class ReconcileResult:
    campaign_id: int
    checked: int = 0  # SKUs compared
    in_motion: int = 0  # delivered again while the Market was read: not comparable this time
    rows: list[DriftRow] = field(default_factory=list)
    requeued: int = 0
    read: ReadStats = field(default_factory=ReadStats)

    @property
    def drift(self) -> int:
        return len(self.rows)

    def as_dict(self) -> dict[str, object]:
        return {"campaign": self.campaign_id, "checked": self.checked, "in_motion": self.in_motion,
                "drift": self.drift, "requeued": self.requeued, "read": self.read.as_dict(),
                "rows": [r.as_dict() for r in self.rows]}


def market_view(offers: Iterable[OfferStock], stock_type: str = "FIT") -> dict[str, MarketStock]:
    """sku -> MarketStock. ``stock_type`` FIT ("годный") is what a stock update sets; offers
    without it fall back to AVAILABLE. Reserved units (FREEZE) are why AVAILABLE may be lower
    than what ymsync sent without any drift."""
    view: dict[str, MarketStock] = {}
    for offer in offers:
        count = offer.stocks.get(stock_type, offer.stocks.get("AVAILABLE", 0))
        stamp = parse_stamp(offer.updated_at) if offer.updated_at else None
        ms = int(stamp.timestamp() * 1000) if stamp else None
        old = view.get(offer.offer_id)
        if old is not None:
            count += old.count
            ms = max((x for x in (ms, old.updated_ms) if x is not None), default=None)
        view[offer.offer_id] = MarketStock(count, ms)
    return view


def fix_stamp_ms(delivered_stamp_ms: int, market_updated_ms: int | None, now_ms: int) -> int:
    """The smallest stamp that beats both the delivered value and the drifted one (see above)."""
    if market_updated_ms is None:
        return max(now_ms, delivered_stamp_ms + 1)  # nothing to position after: now
    return max(delivered_stamp_ms + 1, min(market_updated_ms + 1, now_ms))


class Reconciler:
    def __init__(self, buffer: StockBuffer, reader: StockReader, *, stock_type: str = "FIT",
                 push: Callable[..., object] = push_stocks, clock: Callable[[], float] = time.time) -> None:
        self.buffer, self.reader = buffer, reader
        self.stock_type = stock_type
        self.push = push
        self.clock = clock

    def run(self, campaign_id: int, *, fix: bool = False) -> ReconcileResult:
        """Read the Market for every delivered SKU, list the drift, and re-queue it if ``fix``."""
        c = int(campaign_id)
        result = ReconcileResult(c)
        before = self.buffer.delivered(c)
        if not before:
            return result
        offers = self.reader.read(c, ReadOptions(offer_ids=tuple(sorted(before))), result.read)
        return self.compare(c, market_view(offers, self.stock_type), before, fix=fix, result=result)

    def compare(self, campaign_id: int, market: Mapping[str, MarketStock],
                before: Mapping[str, tuple[int, int, int]] | None = None, *, fix: bool = False,
                result: ReconcileResult | None = None) -> ReconcileResult:
        """Compare a Market view (a stock read's, or a report's) with what ymsync delivered.

        ``before`` is the delivered snapshot taken before the Market was read; SKUs delivered
        again since then are skipped, because the read may have caught either value."""
        c = int(campaign_id)
        result = result or ReconcileResult(c)
        after = self.buffer.delivered(c)
        before = after if before is None else before
        for sku in sorted(before):
            value = after.get(sku)
            if value != before[sku] or value is None:
                result.in_motion += 1
                continue
            result.checked += 1
            count, stamp_ms, delivered_at_ms = value
            seen = market.get(sku)
            if seen is not None and seen.count == count:
                continue
            result.rows.append(DriftRow(sku, count, seen.count if seen else None, delivered_at_ms, stamp_ms,
                                        seen.updated_ms if seen else None, DRIFT if seen else MISSING))
        self._mark_pending(c, result.rows)
        if fix:
            self._requeue(c, [r for r in result.rows if r.status in (DRIFT, MISSING)], result)
        return result

    # --- re-queuing -----------------------------------------------------------------------

    def _newest(self, campaign_id: int, skus: list[str]) -> dict[str, tuple[int, int] | None]:
        """sku -> (stamp_ms, count) of the newest value the buffer ever accepted (its high-water mark)."""
        if not skus:
            return {}
        # Absent (idle past the horizon): treat as "something else is going on".
        return dict(zip(skus, self.buffer.latest_of(campaign_id, skus)))

    def _mark_pending(self, campaign_id: int, rows: list[DriftRow]) -> None:
        newest = self._newest(campaign_id, [r.sku for r in rows])
        for row in rows:
            if newest.get(row.sku) != (row.stamp_ms, row.ours):
                row.status = PENDING

    def _requeue(self, campaign_id: int, rows: list[DriftRow], result: ReconcileResult) -> None:
        if not rows:
            return
        # Re-check right before queuing: keeps the window for a racing update as short as it can be.
        newest = self._newest(campaign_id, [r.sku for r in rows])
        now_ms = int(self.clock() * 1000)
        items, stamps = [], {}
        for row in rows:
            if newest.get(row.sku) != (row.stamp_ms, row.ours):
                row.status = PENDING
                continue
            stamps[row.sku] = fix_stamp_ms(row.stamp_ms, row.market_updated_ms, now_ms)
            items.append({"sku": row.sku, "count": row.ours, "updatedAt": _stamp(stamps[row.sku])})
        for start in range(0, len(items), 1000):
            self.push(campaign_id, items[start:start + 1000], force=True, buffer=self.buffer)
        # The buffer decides: where a newer update won the race, the fix was (rightly) dropped.
        after = self._newest(campaign_id, list(stamps))
        for row in rows:
            if row.sku in stamps and after.get(row.sku) == (stamps[row.sku], row.ours):
                row.fixed = True
                result.requeued += 1
            elif row.sku in stamps:
                row.status = PENDING


def _stamp(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, timezone.utc).replace(microsecond=(ms % 1000) * 1000)


def _iso(ms: int | None) -> str:
    return _stamp(ms).isoformat(timespec="milliseconds") if ms is not None else ""


def render_table(result: ReconcileResult) -> str:
    """The drift as a plain-text table for people."""
    header = ("SKU", "OURS", "MARKET", "DELIVERED AT", "STATUS")
    lines = [(r.sku, str(r.ours), "-" if r.market is None else str(r.market), r.delivered_at,
              r.status + (", re-queued" if r.fixed else "")) for r in result.rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header)] + [fmt.format(*line) for line in lines]
    summary = (f"campaign {result.campaign_id}: {result.checked} SKUs checked, {result.drift} drifted"
               f"{f', {result.requeued} re-queued' if result.requeued else ''}"
               f"{f', {result.in_motion} skipped (delivered during the read)' if result.in_motion else ''}")
    return "\n".join(out + [summary]) if lines else summary
