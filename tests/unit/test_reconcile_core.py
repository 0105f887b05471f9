"""The drift core both reconcilers share, the v3 reconciler's Redis cost, and the v2
reconciler's FBS returns warehouse (real Redis: the session's private redis-server)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import redis

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.targets import business_target, item_key
from ymsync.market import OfferStock
from ymsync.market.models import WarehouseOfferStock
from ymsync.reads.campaign import ReadOptions, ReadStats
from ymsync.reads.reconcile import Reconciler, own_warehouse, render_table
from ymsync.reads.reconcile_business import BusinessReconciler
from ymsync.reads.reconcile_core import (DRIFT, MISSING, PENDING, DriftFixer, MarketStock, drifted, split_moved,
                                         stamp_datetime)

HOUR_AGO_MS = int((time.time() - 3600) * 1000)


def deliver(buffer: StockBuffer, target: int | str, updates: list[tuple[str, int]]) -> None:
    """What a flush leaves behind after a 200: delivered records for every update."""
    buffer.ingest(target, [(key, count, HOUR_AGO_MS) for key, count in updates])
    while (batch := buffer.take(target, 2000, 10_000_000, 60)) is not None and batch.entries:
        buffer.settle(batch, "delivered")


# --- the core --------------------------------------------------------------------------------

def test_drifted_lists_drift_and_missing_in_key_order() -> None:
    delivered = {"b": (2, 10, 11), "a": (1, 10, 11), "c": (3, 10, 11)}
    market = {"a": MarketStock(1), "b": MarketStock(5, 99)}
    assert [(k, status, seen) for k, _, seen, status in drifted(delivered, market)] == [
        ("b", DRIFT, MarketStock(5, 99)), ("c", MISSING, None)]


def test_split_moved_counts_changed_and_vanished_records() -> None:
    before = {"a": (1, 1, 1), "b": (2, 2, 2), "c": (3, 3, 3)}
    stable, moved = split_moved(before, {"a": (1, 1, 1), "b": (9, 4, 4)})
    assert (stable, moved) == ({"a": (1, 1, 1)}, 2)


def test_fixer_requeues_only_the_newest_and_lets_the_buffer_decide() -> None:
    class Row:
        def __init__(self, key: str, ours: int, stamp_ms: int) -> None:
            self.key, self.ours, self.stamp_ms = key, ours, stamp_ms
            self.market_updated_ms, self.status, self.fixed = 5_000, DRIFT, False

    newest = {"same": (1_000, 4), "moved_on": (2_000, 9), "raced": (1_000, 6)}
    pushed: list[tuple[str, int, datetime]] = []

    def push(items: list[tuple[str, int, datetime]]) -> None:
        pushed.extend(items)
        for key, count, at in items:
            if key != "raced":  # a newer shop update beat the fix to the buffer
                newest[key] = (int(at.timestamp() * 1000), count)

    rows = [Row("same", 4, 1_000), Row("moved_on", 3, 1_000), Row("raced", 6, 1_000)]
    fixer = DriftFixer(lambda keys: [newest.get(k) for k in keys], push, clock=lambda: 9.0)
    fixer.mark_pending(rows)
    assert [r.status for r in rows] == [DRIFT, PENDING, DRIFT]
    assert fixer.requeue(rows) == 1
    assert pushed == [("same", 4, stamp_datetime(5_001)), ("raced", 6, stamp_datetime(5_001))]
    assert [(r.status, r.fixed) for r in rows] == [(DRIFT, True), (PENDING, False), (PENDING, False)]


# --- v3: the reconciler's Redis cost follows the SKUs, not warehouses x SKUs ----------------------

class MarketAsDelivered:
    """A v3 reader whose Market holds exactly what was delivered (no drift, so nothing is pushed)."""

    def __init__(self, stock: dict[tuple[int, str], int]) -> None:
        self.stock = stock

    def read(self, business_id: int, warehouse_id: int, skus, stats: ReadStats | None = None):
        return [WarehouseOfferStock(sku, warehouse_id, {"FIT": self.stock[(warehouse_id, sku)]}, None)
                for sku in skus if (warehouse_id, sku) in self.stock]


def _commands(client: redis.Redis, name: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def _full_reads_for(clean_redis: redis.Redis, business: int, warehouses: int, skus: int = 200) -> int:
    """HGETALL calls (each reads every delivered record of the business) of one reconciliation."""
    buffer = StockBuffer(clean_redis)
    stock = {(100 + i % warehouses, f"S{i}"): i for i in range(skus)}
    deliver(buffer, business_target(business), [(item_key(w, s), c) for (w, s), c in stock.items()])
    clean_redis.config_resetstat()
    result = BusinessReconciler(buffer, MarketAsDelivered(stock), grace_s=0).run(business)  # type: ignore[arg-type]
    assert (result.checked, result.drift, len(result.warehouses)) == (skus, 0, warehouses)
    return _commands(clean_redis, "hgetall")


def test_v3_reconcile_reads_the_business_records_once_whatever_the_warehouse_count(clean_redis) -> None:
    one, five = _full_reads_for(clean_redis, 7, 1), _full_reads_for(clean_redis, 8, 5)
    assert one > 0
    # Before: every warehouse read all of the business's records twice (2 x warehouses + 1 reads).
    assert five == one


# --- v2: the FBS returns warehouse is not drift --------------------------------------------------

class CampaignMarket:
    def __init__(self, offers: list[OfferStock]) -> None:
        self.offers = offers
        self.options: list[ReadOptions] = []

    def read(self, campaign_id: int, options: ReadOptions, stats: ReadStats | None = None):
        self.options.append(options)
        return [o for o in self.offers if options.offer_ids is None or o.offer_id in options.offer_ids]


PARTNER, RETURNS = 555, 900


def test_v2_reconcile_ignores_the_fbs_returns_warehouse(clean_redis) -> None:
    buffer = StockBuffer(clean_redis)
    deliver(buffer, 1001, [("A", 5), ("B", 6), ("C", 7)])
    market = CampaignMarket([OfferStock("A", PARTNER, {"FIT": 5}), OfferStock("B", PARTNER, {"FIT": 6}),
                             OfferStock("C", PARTNER, {"FIT": 2}),  # real drift
                             OfferStock("A", RETURNS, {"FIT": 1}),  # returns left uncollected
                             OfferStock("C", RETURNS, {"FIT": 1})])
    result = Reconciler(buffer, market).run(1001)  # type: ignore[arg-type]
    assert (result.checked, result.warehouse_id, result.other_warehouse) == (3, PARTNER, 2)
    assert [(r.sku, r.ours, r.market, r.status) for r in result.rows] == [("C", 7, 2, DRIFT)]
    assert "2 on another warehouse (FBS returns) ignored" in render_table(result)
    assert result.as_dict()["other_warehouse"] == 2

    named = Reconciler(buffer, market).run(1001, warehouse_id=PARTNER)  # type: ignore[arg-type]
    assert [r.sku for r in named.rows] == ["C"] and named.other_warehouse == 2


def test_own_warehouse_is_the_one_listing_most_delivered_skus_then_matching_counts() -> None:
    delivered = {"A": (5, 1, 1), "B": (6, 1, 1)}
    assert own_warehouse([OfferStock("A", RETURNS, {"FIT": 1}), OfferStock("A", PARTNER, {"FIT": 4}),
                          OfferStock("B", PARTNER, {"FIT": 6})], delivered) == PARTNER
    # A tie on SKUs listed: the warehouse showing ymsync's own counts.
    assert own_warehouse([OfferStock("A", 1, {"FIT": 1}), OfferStock("A", 2, {"FIT": 5})], delivered) == 2
    assert own_warehouse([], delivered) is None


def test_v2_missing_everywhere_is_still_missing(clean_redis) -> None:
    buffer = StockBuffer(clean_redis)
    deliver(buffer, 1002, [("A", 5)])
    result = Reconciler(buffer, CampaignMarket([])).run(1002)  # type: ignore[arg-type]
    assert [(r.sku, r.status) for r in result.rows] == [("A", MISSING)]
    assert result.rows[0].delivered_at == datetime.fromtimestamp(
        result.rows[0].delivered_at_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
