"""The demo day's reconciliation phase: read the Market back and re-queue drift, the way
``ymsync reconcile`` and the reconcile task do it (a campaign's own warehouse from the Market's
warehouse list, cached in Redis; a v3 business warehouse by warehouse), on the day's own buffer
and limiter."""

from __future__ import annotations

from ymsync import connect
from ymsync.config.settings import Settings
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.quota import QuotaLimiter
from ymsync.reads.business import WarehouseStockReader
from ymsync.reads.campaign import StockReader
from ymsync.reads.reconcile import ReconcileResult, Reconciler
from ymsync.reads.reconcile_business import BusinessReconciler, BusinessReconcileResult
from ymsync.reads.shared import v2_business, warehouses_from
from ymsync.reads.warehouse_groups import GroupDirectory


def reconcile_campaign(settings: Settings, buffer: StockBuffer, limiter: QuotaLimiter,
                       campaign: int) -> ReconcileResult:
    """One v2 campaign (a warehouse group's: the group's one stock, read through it), drift re-queued.
    Its own warehouse comes from the Market's warehouse list, not guessed from the read."""
    cabinets = settings.cabinets
    client = connect.market_client(settings, cabinets.by_campaign(campaign))
    directory = GroupDirectory(buffer.redis,
                               lambda business: connect.market_client(settings, cabinets.by_business(business)),
                               lambda _business: limiter)
    reconciler = Reconciler(buffer, StockReader(limiter, client),
                            warehouses_of=warehouses_from(directory, lambda c: v2_business(cabinets, c)))
    return reconciler.run(campaign, fix=True)


def reconcile_business(settings: Settings, buffer: StockBuffer, limiter: QuotaLimiter, business: int,
                       grace_s: float) -> BusinessReconcileResult:
    """A v3 business, warehouse by warehouse, drift re-queued (values younger than ``grace_s`` skipped)."""
    client = connect.market_client(settings, settings.cabinets.by_business(business))
    return BusinessReconciler(buffer, WarehouseStockReader(limiter, client), grace_s=grace_s).run(business, fix=True)


__all__ = ["reconcile_business", "reconcile_campaign"]
