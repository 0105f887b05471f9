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
rules as the campaign fix (both live in :mod:`ymsync.reads.reconcile_core`): only a value that is still the newest the
buffer accepted for its (warehouse, SKU) is re-queued (else the row is ``pending``), stamped just
after both its delivered stamp and the Market's ``updatedAt`` (never later than now).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Mapping, Sequence

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.producer import push_business_stocks
from ymsync.engine.targets import business_target, item_key, split_key
from ymsync.market.models import WarehouseOfferStock
from ymsync.reads.business import WarehouseStockReader
from ymsync.reads.campaign import ReadStats
from ymsync.reads.reconcile_core import (DRIFT, MISSING, PENDING, DriftFixer, MarketStock, Record, drifted,
                                         market_count, split_moved, stamp_ms_of)

DEFAULT_GRACE_S = 300.0

WarehouseKey = tuple[int, str]  # (warehouse_id, sku)
Delivered = Mapping[WarehouseKey, tuple[int, int, int]]
# Delivered records of the given keys read again (after the Market was read); absent: no record.
Recheck = Callable[[int, Sequence[WarehouseKey]], Delivered]


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

    @property
    def key(self) -> WarehouseKey:
        return (self.warehouse_id, self.sku)

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


def compare(business_id: int, warehouse_id: int, delivered: Delivered, offers: Iterable[WarehouseOfferStock], *,
            now_ms: int, grace_s: float = DEFAULT_GRACE_S, stock_type: str = "FIT",
            result: WarehouseReconcileResult | None = None) -> WarehouseReconcileResult:
    """Compare the records of ``warehouse_id`` in ``delivered`` with the Market's ``offers``."""
    result = result or WarehouseReconcileResult(business_id, warehouse_id)
    market: dict[WarehouseKey, MarketStock] = {}
    for offer in offers:
        if offer.warehouse_id != warehouse_id:
            result.other_warehouse += 1
            continue
        market[(warehouse_id, offer.offer_id)] = MarketStock(market_count(offer.stocks, stock_type),
                                                             stamp_ms_of(offer.updated_at))
    grace_ms = int(grace_s * 1000)
    settled = {}
    for key, record in delivered.items():
        if key[0] != warehouse_id:
            continue
        if now_ms - record[2] < grace_ms:
            result.in_motion += 1
        else:
            settled[key] = record
    result.checked += len(settled)
    for (wid, sku), (count, stamp_ms, delivered_at_ms), seen, status in drifted(settled, market):
        result.rows.append(WarehouseDriftRow(wid, sku, count, seen.count if seen else None, stamp_ms,
                                             delivered_at_ms, seen.updated_ms if seen else None, status))
    return result


class WarehouseReconciler:
    """Reads the Market for the SKUs ymsync delivered to one warehouse (by offerIds, 500 a
    request) and compares. ``delivered_for(business_id, warehouse_id)`` gives the records;
    ``recheck(business_id, keys)``, if given, reads just those records again after the Market
    was read (else ``delivered_for`` is asked again)."""

    def __init__(self, reader: WarehouseStockReader, delivered_for: Callable[[int, int], Delivered], *,
                 grace_s: float = DEFAULT_GRACE_S, clock: Callable[[], float] = time.time,
                 recheck: Recheck | None = None) -> None:
        self.reader, self.delivered_for, self.recheck = reader, delivered_for, recheck
        self.grace_s, self.clock = grace_s, clock

    def run(self, business_id: int, warehouse_id: int, *,
            delivered: Delivered | None = None) -> WarehouseReconcileResult:
        """``delivered``: the warehouse's records when the caller already read them (one read
        of the business serves every warehouse)."""
        source = self.delivered_for(business_id, warehouse_id) if delivered is None else delivered
        before = {k: v for k, v in source.items() if k[0] == warehouse_id}
        result = WarehouseReconcileResult(business_id, warehouse_id)
        skus = sorted({sku for _, sku in before})
        offers = list(self.reader.read(business_id, warehouse_id, skus, result.read)) if skus else []
        # Delivered records read again after the Market: one re-delivered meanwhile is in motion.
        after = (self.recheck(business_id, list(before)) if self.recheck is not None
                 else self.delivered_for(business_id, warehouse_id))
        stable, moved = split_moved(before, after)
        result.in_motion += moved
        return compare(business_id, warehouse_id, stable, offers, now_ms=int(self.clock() * 1000),
                       grace_s=self.grace_s, result=result)


def delivered_by_warehouse(buffer: StockBuffer, business_id: int) -> dict[int, dict[WarehouseKey, Record]]:
    """Every delivered record of the business target in one read, grouped by warehouse."""
    out: dict[int, dict[WarehouseKey, Record]] = {}
    for key, record in buffer.delivered(business_target(business_id)).items():
        wid, sku = split_key(key)
        out.setdefault(wid, {})[(wid, sku)] = record
    return out


def buffer_delivered(buffer: StockBuffer) -> Callable[[int, int], Delivered]:
    """``delivered_for`` from the stock engine: the business target's delivered records of one
    warehouse, keyed ``(warehouse_id, sku)``."""
    def delivered_for(business_id: int, warehouse_id: int) -> Delivered:
        return delivered_by_warehouse(buffer, business_id).get(warehouse_id, {})
    return delivered_for


def buffer_recheck(buffer: StockBuffer) -> Recheck:
    """``recheck`` from the stock engine: the given records only (cost follows the keys asked)."""
    def recheck(business_id: int, keys: Sequence[WarehouseKey]) -> Delivered:
        records = buffer.delivered_of(business_target(business_id), [item_key(w, s) for w, s in keys])
        return {k: r for k, r in zip(keys, records) if r is not None}
    return recheck


def delivered_warehouses(buffer: StockBuffer, business_id: int) -> list[int]:
    """The warehouses ymsync has delivered stock to (those it can reconcile)."""
    return sorted(delivered_by_warehouse(buffer, business_id))


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
    re-queues drifted and missing values (see the module's docstring for the rules).

    The business's delivered records are read once for every warehouse, and each warehouse's
    re-check reads only its own keys: the cost follows the SKUs, not warehouses x SKUs."""

    def __init__(self, buffer: StockBuffer, reader: WarehouseStockReader, *, grace_s: float = DEFAULT_GRACE_S,
                 push: Callable[..., object] = push_business_stocks, clock: Callable[[], float] = time.time) -> None:
        self.buffer, self.push, self.clock = buffer, push, clock
        self.warehouse = WarehouseReconciler(reader, buffer_delivered(buffer), grace_s=grace_s, clock=clock,
                                             recheck=buffer_recheck(buffer))

    def run(self, business_id: int, warehouse_id: int | None = None, *, fix: bool = False) -> BusinessReconcileResult:
        b = int(business_id)
        result = BusinessReconcileResult(b)
        records = delivered_by_warehouse(self.buffer, b)
        warehouses = [int(warehouse_id)] if warehouse_id is not None else sorted(records)
        fixer = self.fixer(b)
        for wid in warehouses:
            one = self.warehouse.run(b, wid, delivered=records.get(wid, {}))
            fixer.mark_pending(one.rows)
            if fix:
                one.requeued += fixer.requeue(one.rows)
            result.warehouses.append(one)
        return result

    def fixer(self, business_id: int) -> DriftFixer[WarehouseKey]:
        """The shared pending/re-queue rules, wired to the business target and ``push_business_stocks``."""
        target = business_target(business_id)

        def newest(keys: Sequence[WarehouseKey]) -> list[tuple[int, int] | None]:
            return self.buffer.latest_of(target, [item_key(w, s) for w, s in keys])

        def push(items: list[tuple[WarehouseKey, int, datetime]]) -> None:
            self.push(business_id, [{"sku": sku, "warehouse": wid, "count": count, "updatedAt": at}
                                    for (wid, sku), count, at in items], force=True, buffer=self.buffer)
        return DriftFixer(newest, push, self.clock)


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
           "buffer_delivered", "buffer_recheck", "compare", "delivered_by_warehouse", "delivered_warehouses",
           "render_table", "DEFAULT_GRACE_S", "DRIFT", "MISSING", "PENDING"]
