"""Reconciliation of one business warehouse (v3): the Market's stock against what ymsync delivered.

The comparison (:func:`compare`) takes the delivered records as a plain mapping
``(warehouse_id, sku) -> (count, stamp_ms, delivered_at_ms)``, so it does not depend on how the
stock engine stores them. Two rules keep it from crying wolf:

* **Grace.** The Market takes up to several minutes to apply a catalogue update (its docs), so a
  value delivered less than ``grace_s`` ago is *in motion*, not drift: counted, not listed.
* **FBS returns.** For FBS the Market may report, beside the partner warehouse, its own returns
  warehouse (a return left at the seller's return point and not collected). That stock is not
  ymsync's to set, so offers reported on any warehouse other than the one reconciled are
  counted as ``other_warehouse`` and never compared.

The Market's count is FIT ("годный": what a stock update sets), AVAILABLE where FIT is absent;
reserved units (FREEZE) are why AVAILABLE may be lower without any drift.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Mapping

from .market.models import WarehouseOfferStock
from .reads import ReadStats
from .reads_v3 import WarehouseStockReader

DRIFT, MISSING = "drift", "missing"
DEFAULT_GRACE_S = 300.0

Delivered = Mapping[tuple[int, str], tuple[int, int, int]]


@dataclass
class WarehouseDriftRow:
    warehouse_id: int
    sku: str
    ours: int
    market: int | None  # None: the Market does not list the SKU on this warehouse
    stamp_ms: int
    delivered_at_ms: int
    market_updated_ms: int | None
    status: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class WarehouseReconcileResult:
    business_id: int
    warehouse_id: int
    checked: int = 0
    in_motion: int = 0  # delivered within the grace period: the Market may not show it yet
    other_warehouse: int = 0  # reported on another warehouse (FBS returns): not ours to compare
    rows: list[WarehouseDriftRow] = field(default_factory=list)
    read: ReadStats = field(default_factory=ReadStats)

    @property
    def drift(self) -> int:
        return len(self.rows)

    def as_dict(self) -> dict[str, object]:
        return {"business": self.business_id, "warehouse": self.warehouse_id, "checked": self.checked,
                "in_motion": self.in_motion, "other_warehouse": self.other_warehouse, "drift": self.drift,
                "read": self.read.as_dict(), "rows": [r.as_dict() for r in self.rows]}


def market_count(offer: WarehouseOfferStock, stock_type: str = "FIT") -> int:
    return offer.stocks.get(stock_type, offer.stocks.get("AVAILABLE", 0))


def compare(business_id: int, warehouse_id: int, delivered: Delivered, offers: Iterable[WarehouseOfferStock], *,
            now_ms: int, grace_s: float = DEFAULT_GRACE_S, stock_type: str = "FIT",
            result: WarehouseReconcileResult | None = None) -> WarehouseReconcileResult:
    """Compare the records of ``warehouse_id`` in ``delivered`` with the Market's ``offers``."""
    result = result or WarehouseReconcileResult(business_id, warehouse_id)
    market: dict[str, WarehouseOfferStock] = {}
    for offer in offers:
        if offer.warehouse_id != warehouse_id:
            result.other_warehouse += 1
            continue
        market[offer.offer_id] = offer
    grace_ms = int(grace_s * 1000)
    for (wid, sku), (count, stamp_ms, delivered_at_ms) in sorted(delivered.items()):
        if wid != warehouse_id:
            continue
        if now_ms - delivered_at_ms < grace_ms:
            result.in_motion += 1
            continue
        result.checked += 1
        seen = market.get(sku)
        seen_count = market_count(seen, stock_type) if seen is not None else None
        if seen_count == count:
            continue
        updated = int(seen.updated_at.timestamp() * 1000) if seen is not None and seen.updated_at else None
        result.rows.append(WarehouseDriftRow(wid, sku, count, seen_count, stamp_ms, delivered_at_ms, updated,
                                             DRIFT if seen is not None else MISSING))
    return result


class WarehouseReconciler:
    """Reads the Market for the SKUs ymsync delivered to one warehouse (by offerIds, 500 a
    request) and compares. ``delivered_for(business_id, warehouse_id)`` gives the records."""

    def __init__(self, reader: WarehouseStockReader, delivered_for: Callable[[int, int], Delivered], *,
                 grace_s: float = DEFAULT_GRACE_S, clock: Callable[[], float] = time.time) -> None:
        self.reader, self.delivered_for = reader, delivered_for
        self.grace_s, self.clock = grace_s, clock

    def run(self, business_id: int, warehouse_id: int) -> WarehouseReconcileResult:
        delivered = {k: v for k, v in self.delivered_for(business_id, warehouse_id).items() if k[0] == warehouse_id}
        result = WarehouseReconcileResult(business_id, warehouse_id)
        skus = sorted({sku for _, sku in delivered})
        offers = list(self.reader.read(business_id, warehouse_id, skus, result.read)) if skus else []
        # Delivered records read again after the Market: one re-delivered meanwhile is in motion.
        after = {k: v for k, v in self.delivered_for(business_id, warehouse_id).items() if k in delivered}
        moved = {k for k in delivered if after.get(k) != delivered[k]}
        result.in_motion += len(moved)
        stable = {k: v for k, v in delivered.items() if k not in moved}
        return compare(business_id, warehouse_id, stable, offers, now_ms=int(self.clock() * 1000),
                       grace_s=self.grace_s, result=result)


def render_table(result: WarehouseReconcileResult) -> str:
    header = ("SKU", "OURS", "MARKET", "STATUS")
    lines = [(r.sku, str(r.ours), "-" if r.market is None else str(r.market), r.status) for r in result.rows]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    summary = (f"business {result.business_id} warehouse {result.warehouse_id}: {result.checked} SKUs checked, "
               f"{result.drift} drifted, {result.in_motion} in motion (delivered within the grace period)"
               + (f", {result.other_warehouse} on another warehouse (FBS returns) ignored"
                  if result.other_warehouse else ""))
    return "\n".join([fmt.format(*header)] + [fmt.format(*line) for line in lines] + [summary]) if lines else summary


__all__ = ["WarehouseReconciler", "WarehouseReconcileResult", "compare", "render_table", "DEFAULT_GRACE_S"]
