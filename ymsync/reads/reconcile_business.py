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

:class:`BusinessReconciler` wires this to the stock engine: the delivered records are the
buffer's for the business target (``b<id>``, keys ``"<warehouse>\\x1f<sku>"``), every warehouse
ymsync delivered to is reconciled unless one is named, and ``fix`` re-queues drifted and missing
values through :func:`~ymsync.engine.producer.push_business_stocks` with ``force``, under the same two
rules as the campaign fix (:mod:`ymsync.reads.reconcile`): only a value that is still the newest the
buffer accepted for its (warehouse, SKU) is re-queued (else the row is ``pending``), stamped just
after both its delivered stamp and the Market's ``updatedAt`` (never later than now).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Mapping

from ymsync.engine.buffer import StockBuffer
from ymsync.market.models import WarehouseOfferStock
from ymsync.engine.producer import push_business_stocks
from ymsync.reads.campaign import ReadStats
from ymsync.reads.business import WarehouseStockReader
from ymsync.reads.reconcile import PENDING, _stamp, fix_stamp_ms
from ymsync.engine.targets import business_target, item_key, split_key

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
    status: str  # drift | missing (both fixable) | pending (a newer value is on its way)
    fixed: bool = False

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
    requeued: int = 0
    read: ReadStats = field(default_factory=ReadStats)

    @property
    def drift(self) -> int:
        return len(self.rows)

    def as_dict(self) -> dict[str, object]:
        return {"business": self.business_id, "warehouse": self.warehouse_id, "checked": self.checked,
                "in_motion": self.in_motion, "other_warehouse": self.other_warehouse, "drift": self.drift,
                "requeued": self.requeued, "read": self.read.as_dict(), "rows": [r.as_dict() for r in self.rows]}


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


def buffer_delivered(buffer: StockBuffer) -> Callable[[int, int], Delivered]:
    """``delivered_for`` from the stock engine: the business target's delivered records of one
    warehouse, keyed ``(warehouse_id, sku)``."""
    def delivered_for(business_id: int, warehouse_id: int) -> Delivered:
        out: dict[tuple[int, str], tuple[int, int, int]] = {}
        for key, record in buffer.delivered(business_target(business_id)).items():
            wid, sku = split_key(key)
            if wid == warehouse_id:
                out[(wid, sku)] = record
        return out
    return delivered_for


def delivered_warehouses(buffer: StockBuffer, business_id: int) -> list[int]:
    """The warehouses ymsync has delivered stock to (those it can reconcile)."""
    return sorted({split_key(key)[0] for key in buffer.delivered(business_target(business_id))})


@dataclass
class BusinessReconcileResult:
    business_id: int
    warehouses: list[WarehouseReconcileResult] = field(default_factory=list)

    checked = property(lambda self: sum(w.checked for w in self.warehouses))
    drift = property(lambda self: sum(w.drift for w in self.warehouses))
    requeued = property(lambda self: sum(w.requeued for w in self.warehouses))
    in_motion = property(lambda self: sum(w.in_motion for w in self.warehouses))

    def as_dict(self) -> dict[str, object]:
        return {"business": self.business_id, "checked": self.checked, "drift": self.drift,
                "requeued": self.requeued, "in_motion": self.in_motion,
                "warehouses": [w.as_dict() for w in self.warehouses]}


class BusinessReconciler:
    """Reconciles a business's warehouses against the buffer's delivered records; ``fix``
    re-queues drifted and missing values (see the module's docstring for the rules)."""

    def __init__(self, buffer: StockBuffer, reader: WarehouseStockReader, *, grace_s: float = DEFAULT_GRACE_S,
                 push: Callable[..., object] = push_business_stocks, clock: Callable[[], float] = time.time) -> None:
        self.buffer, self.push, self.clock = buffer, push, clock
        self.warehouse = WarehouseReconciler(reader, buffer_delivered(buffer), grace_s=grace_s, clock=clock)

    def run(self, business_id: int, warehouse_id: int | None = None, *, fix: bool = False) -> BusinessReconcileResult:
        b = int(business_id)
        result = BusinessReconcileResult(b)
        warehouses = [warehouse_id] if warehouse_id is not None else delivered_warehouses(self.buffer, b)
        for wid in warehouses:
            one = self.warehouse.run(b, int(wid))
            self._mark_pending(b, one.rows)
            if fix:
                self._requeue(b, one)
            result.warehouses.append(one)
        return result

    def _newest(self, business_id: int, rows: list[WarehouseDriftRow]) -> dict[tuple[int, str], tuple[int, int] | None]:
        """(warehouse, sku) -> (stamp_ms, count) of the newest value the buffer ever accepted."""
        if not rows:
            return {}
        keys = [(r.warehouse_id, r.sku) for r in rows]
        latest = self.buffer.latest_of(business_target(business_id), [item_key(w, s) for w, s in keys])
        return dict(zip(keys, latest))

    def _mark_pending(self, business_id: int, rows: list[WarehouseDriftRow]) -> None:
        newest = self._newest(business_id, rows)
        for row in rows:
            if newest.get((row.warehouse_id, row.sku)) != (row.stamp_ms, row.ours):
                row.status = PENDING

    def _requeue(self, business_id: int, result: WarehouseReconcileResult) -> None:
        rows = [r for r in result.rows if r.status in (DRIFT, MISSING)]
        if not rows:
            return
        # Re-check right before queuing: keeps the window for a racing update as short as it can be.
        newest = self._newest(business_id, rows)
        now_ms = int(self.clock() * 1000)
        items, stamps = [], {}
        for row in rows:
            key = (row.warehouse_id, row.sku)
            if newest.get(key) != (row.stamp_ms, row.ours):
                row.status = PENDING
                continue
            stamps[key] = fix_stamp_ms(row.stamp_ms, row.market_updated_ms, now_ms)
            items.append({"sku": row.sku, "warehouse": row.warehouse_id, "count": row.ours,
                          "updatedAt": _stamp(stamps[key])})
        for start in range(0, len(items), 1000):
            self.push(business_id, items[start:start + 1000], force=True, buffer=self.buffer)
        # The buffer decides: where a newer update won the race, the fix was (rightly) dropped.
        after = self._newest(business_id, [r for r in rows if (r.warehouse_id, r.sku) in stamps])
        for row in rows:
            key = (row.warehouse_id, row.sku)
            if key in stamps and after.get(key) == (stamps[key], row.ours):
                row.fixed = True
                result.requeued += 1
            elif key in stamps:
                row.status = PENDING


def render_table(result: WarehouseReconcileResult) -> str:
    header = ("SKU", "OURS", "MARKET", "STATUS")
    lines = [(r.sku, str(r.ours), "-" if r.market is None else str(r.market),
              r.status + (", re-queued" if r.fixed else "")) for r in result.rows]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    summary = (f"business {result.business_id} warehouse {result.warehouse_id}: {result.checked} SKUs checked, "
               f"{result.drift} drifted, "
               + (f"{result.requeued} re-queued, " if result.requeued else "")
               + f"{result.in_motion} in motion (delivered within the grace period)"
               + (f", {result.other_warehouse} on another warehouse (FBS returns) ignored"
                  if result.other_warehouse else ""))
    return "\n".join([fmt.format(*header)] + [fmt.format(*line) for line in lines] + [summary]) if lines else summary


__all__ = ["BusinessReconcileResult", "BusinessReconciler", "WarehouseReconciler", "WarehouseReconcileResult",
           "buffer_delivered", "compare", "delivered_warehouses", "render_table", "DEFAULT_GRACE_S"]
