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
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Mapping, Sequence

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.group_target import campaign_stock_target, group_campaigns, group_target_of
from ymsync.engine.producer import push_stocks
from ymsync.market import OfferStock
from ymsync.market.schemas import parse_stamp
from ymsync.reads.campaign import ReadOptions, ReadStats, StockReader
from ymsync.reads.reconcile_core import (DRIFT, MISSING, PENDING, DriftFixer, MarketStock, Record, drifted,
                                         fix_stamp_ms, iso_ms, market_count, split_moved)


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
    def key(self) -> str:
        return self.sku

    @property
    def delivered_at(self) -> str:
        return iso_ms(self.delivered_at_ms)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["delivered_at"] = self.delivered_at
        d["market_updated_at"] = iso_ms(self.market_updated_ms) if self.market_updated_ms else None
        return d


@dataclass
class ReconcileResult:
    campaign_id: int
    checked: int = 0  # SKUs compared
    in_motion: int = 0  # delivered again while the Market was read: not comparable this time
    rows: list[DriftRow] = field(default_factory=list)
    requeued: int = 0
    read: ReadStats = field(default_factory=ReadStats)
    # Offers listed on a warehouse other than the campaign's own (the FBS returns warehouse): not compared.
    other_warehouse: int = 0
    warehouse_id: int | None = None  # the warehouse compared (given, or the one ymsync's values are on)
    # A warehouse group's campaigns: they share one stock, judged once through ``campaign_id``.
    campaigns: tuple[int, ...] = ()
    # How ``warehouse_id`` was chosen: given | market (getPagedWarehouses names the campaign's own)
    # | guess (:func:`own_warehouse`, when the Market's warehouse list is not to be had or omits it).
    warehouse_source: str = ""

    @property
    def drift(self) -> int:
        return len(self.rows)

    def as_dict(self) -> dict[str, object]:
        return {"campaign": self.campaign_id, "checked": self.checked, "in_motion": self.in_motion,
                "drift": self.drift, "requeued": self.requeued, "read": self.read.as_dict(),
                "warehouse": self.warehouse_id, "warehouse_source": self.warehouse_source,
                "other_warehouse": self.other_warehouse,
                "campaigns": list(self.campaigns or (self.campaign_id,)),
                "rows": [r.as_dict() for r in self.rows]}


def market_view(offers: Iterable[OfferStock], stock_type: str = "FIT") -> dict[str, MarketStock]:
    """sku -> MarketStock, summed over the warehouses listed. ``stock_type`` FIT ("годный") is
    what a stock update sets; offers without it fall back to AVAILABLE."""
    view: dict[str, MarketStock] = {}
    for offer in offers:
        count = market_count(offer.stocks, stock_type)
        stamp = parse_stamp(offer.updated_at) if offer.updated_at else None
        ms = int(stamp.timestamp() * 1000) if stamp else None
        old = view.get(offer.offer_id)
        if old is not None:
            count += old.count
            ms = max((x for x in (ms, old.updated_ms) if x is not None), default=None)
        view[offer.offer_id] = MarketStock(count, ms)
    return view


def own_warehouse(offers: Sequence[OfferStock], delivered: Mapping[str, Record],
                  stock_type: str = "FIT") -> int | None:
    """The warehouse ymsync's values land on, when the caller does not name it.

    An FBS campaign's stock update sets its one partner warehouse, which lists every SKU set on
    it; the Market's returns warehouse, which getStocks may list beside it, holds only the few
    returns left uncollected. So: the warehouse listing the most delivered SKUs; on a tie, the one
    showing ymsync's own count for more of them; then the smaller id (a stable choice)."""
    listed: Counter[int] = Counter()
    matching: Counter[int] = Counter()
    for offer in offers:
        record = delivered.get(offer.offer_id)
        if record is None:
            continue
        listed[offer.warehouse_id] += 1
        matching[offer.warehouse_id] += market_count(offer.stocks, stock_type) == record[0]
    if not listed:
        return None
    return min(listed, key=lambda w: (-listed[w], -matching[w], w))


class Reconciler:
    """``warehouses_of(campaign)``: the campaign's own warehouses as the Market lists them
    (getPagedWarehouses, reads/shared.py ``own_warehouses``); empty when not known."""

    def __init__(self, buffer: StockBuffer, reader: StockReader, *, stock_type: str = "FIT",
                 push: Callable[..., object] = push_stocks, clock: Callable[[], float] = time.time,
                 warehouses_of: Callable[[int], frozenset[int]] | None = None) -> None:
        self.buffer, self.reader = buffer, reader
        self.warehouses_of = warehouses_of
        self.stock_type = stock_type
        self.push = push
        self.clock = clock

    def run(self, campaign_id: int, *, fix: bool = False, warehouse_id: int | None = None) -> ReconcileResult:
        """Read the Market for every delivered SKU, list the drift, and re-queue it if ``fix``.

        Only the campaign's own warehouse is compared (``warehouse_id``; else the one the Market's
        warehouse list names for the campaign, ``warehouses_of``; else :func:`own_warehouse`'s
        guess): stock the Market lists on another one (its FBS returns warehouse) is not ymsync's.
        A campaign of a warehouse group stands for the group: its one stock (the group target's
        delivered values) is read once through this campaign and judged once."""
        c = int(campaign_id)
        result = self.new_result(c)
        before = self.buffer.delivered(campaign_stock_target(c))
        if not before:
            return result
        offers = list(self.reader.read(c, ReadOptions(offer_ids=tuple(sorted(before))), result.read))
        own, result.warehouse_source = self.own(c, offers, before, warehouse_id)
        mine = [o for o in offers if o.warehouse_id == own]
        result.warehouse_id, result.other_warehouse = own, len(offers) - len(mine)
        return self.compare(c, market_view(mine, self.stock_type), before, fix=fix, result=result)

    def own(self, campaign_id: int, offers: Sequence[OfferStock], delivered: Mapping[str, Record],
            given: int | None = None) -> tuple[int | None, str]:
        """(the warehouse to compare, how it was chosen). The Market's list is trusted even when the
        read shows nothing on that warehouse: a Market that lost every value must not make the
        returns warehouse, the only one left listed, look like ours."""
        if given is not None:
            return given, "given"
        known = self.warehouses_of(campaign_id) if self.warehouses_of is not None else frozenset()
        if not known:
            return own_warehouse(offers, delivered, self.stock_type), "guess"
        on_known = [o for o in offers if o.warehouse_id in known]
        # A campaign with several warehouses listed: the guess, among those only.
        chosen = own_warehouse(on_known, delivered, self.stock_type) if len(known) > 1 else None
        return (chosen if chosen is not None else min(known)), "market"

    def compare(self, campaign_id: int, market: Mapping[str, MarketStock],
                before: Mapping[str, tuple[int, int, int]] | None = None, *, fix: bool = False,
                result: ReconcileResult | None = None) -> ReconcileResult:
        """Compare a Market view (a stock read's, or a report's) with what ymsync delivered.

        ``before`` is the delivered snapshot taken before the Market was read; SKUs delivered
        again since then are skipped, because the read may have caught either value."""
        c = int(campaign_id)
        result = result or self.new_result(c)
        after = self.buffer.delivered(campaign_stock_target(c))
        stable, moved = split_moved(after if before is None else before, after)
        result.in_motion += moved
        result.checked += len(stable)
        for sku, (count, stamp_ms, delivered_at_ms), seen, status in drifted(stable, market):
            result.rows.append(DriftRow(sku, count, seen.count if seen else None, delivered_at_ms, stamp_ms,
                                        seen.updated_ms if seen else None, status))
        fixer = self.fixer(c)
        fixer.mark_pending(result.rows)
        if fix:
            result.requeued += fixer.requeue(result.rows)
        return result

    @staticmethod
    def new_result(campaign_id: int) -> ReconcileResult:
        group = group_campaigns(int(target[1:])) if (target := group_target_of(campaign_id)) else ()
        return ReconcileResult(campaign_id, campaigns=group)

    def fixer(self, campaign_id: int) -> DriftFixer[str]:
        """The shared pending/re-queue rules, wired to this campaign's buffer and ``push_stocks``."""
        def push(items: list[tuple[str, int, datetime]]) -> None:
            self.push(campaign_id, [{"sku": sku, "count": count, "updatedAt": at} for sku, count, at in items],
                      force=True, buffer=self.buffer)
        # push_stocks maps a campaign of a group to the group's target: the fix goes where the value lives.
        target = campaign_stock_target(campaign_id)
        return DriftFixer(lambda skus: self.buffer.latest_of(target, list(skus)), push, self.clock)


def render_table(result: ReconcileResult) -> str:
    """The drift as a plain-text table for people."""
    header = ("SKU", "OURS", "MARKET", "DELIVERED AT", "STATUS")
    lines = [(r.sku, str(r.ours), "-" if r.market is None else str(r.market), r.delivered_at,
              r.status + (", re-queued" if r.fixed else "")) for r in result.rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header)] + [fmt.format(*line) for line in lines]
    name = (f"group {'+'.join(map(str, result.campaigns))} (one stock shared by campaigns "
            f"{', '.join(map(str, result.campaigns))}; read and judged once, through {result.campaign_id})"
            if result.campaigns else f"campaign {result.campaign_id}")
    summary = (f"{name}: {result.checked} SKUs checked, {result.drift} drifted"
               f"{f', {result.requeued} re-queued' if result.requeued else ''}"
               f"{f', {result.in_motion} skipped (delivered during the read)' if result.in_motion else ''}"
               + (f", {result.other_warehouse} on another warehouse (FBS returns) ignored"
                  if result.other_warehouse else ""))
    return "\n".join(out + [summary]) if lines else summary


__all__ = ["DRIFT", "MISSING", "PENDING", "DriftRow", "MarketStock", "ReconcileResult", "Reconciler", "fix_stamp_ms",
           "market_view", "own_warehouse", "render_table"]
