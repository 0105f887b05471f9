"""Per-process library objects for tasks, built lazily (after prefork) from the settings and cached.

Market clients and quota limiters are built by ``ymsync.connect`` (the one place); this module
only keeps one of each per process (per cabinet where they differ)."""

from __future__ import annotations

import logging
from functools import lru_cache

import redis

from ymsync import connect
from ymsync.engine.buffer import StockBuffer
from ymsync.config.cabinets import Cabinet
from ymsync.market import MarketClient
from ymsync.engine.flusher import Flusher, FlushOptions
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.schedule import Schedule
from ymsync.config.settings import get_settings
from ymsync.store.client import state_client

_log = logging.getLogger("ymsync.groups")


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return state_client(get_settings(), health_check_interval=30)


@lru_cache(maxsize=1)
def schedule() -> Schedule:
    s = get_settings()
    return Schedule(redis_client(), max_parallel=s.max_parallel, **slot_ttls())


def slot_ttls() -> dict[str, float]:
    """A flush-task slot waits up to ``YM_FLUSH_START_S`` for its task to start, then each hold
    (before every request) keeps it for one request's hard deadline and a margin: a slow-but-alive
    task never shares its target with one slot too many, and a killed one frees its slot soon."""
    s = get_settings()
    return {"task_ttl_s": s.request_deadline_s + s.lease_margin_s, "queue_ttl_s": s.flush_start_s}


@lru_cache(maxsize=1)
def buffer() -> StockBuffer:
    return StockBuffer.from_settings(redis_client(), get_settings(), schedule())


@lru_cache(maxsize=1)
def limiter() -> QuotaLimiter:
    return connect.quota_limiter(redis_client(), get_settings())


# --- per cabinet (business): one client with its own token, one limiter with its tier's quotas ---

def cabinet_for_business(business_id: int) -> Cabinet:
    """Raises CabinetNotFound (a message for people) if no cabinet serves the business."""
    return get_settings().cabinets.by_business(int(business_id))


def cabinet_for_campaign(campaign_id: int) -> Cabinet:
    return get_settings().cabinets.by_campaign(int(campaign_id))


@lru_cache(maxsize=None)
def client_for_cabinet(cabinet_name: str) -> MarketClient:
    cabinet = next(c for c in get_settings().cabinets if c.name == cabinet_name)
    return connect.market_client(get_settings(), cabinet)


@lru_cache(maxsize=None)
def limiter_for_cabinet(cabinet_name: str) -> QuotaLimiter:
    cabinet = next(c for c in get_settings().cabinets if c.name == cabinet_name)
    return connect.quota_limiter(redis_client(), get_settings(), cabinet)


def client_for_business(business_id: int) -> MarketClient:
    return client_for_cabinet(cabinet_for_business(business_id).name)


def client_for_campaign(campaign_id: int) -> MarketClient:
    return client_for_cabinet(cabinet_for_campaign(campaign_id).name)


def limiter_for_business(business_id: int) -> QuotaLimiter:
    """The shared limiter as this business's subscription tier sees it (report quotas differ)."""
    return limiter_for_cabinet(cabinet_for_business(business_id).name)


@lru_cache(maxsize=1)
def flusher() -> Flusher:
    s = get_settings()
    # Each campaign's push carries the token of the cabinet that lists it, one cabinet or many: a
    # campaign no cabinet lists is never sent with some other cabinet's token (it halts instead).
    client = connect.CampaignClients(s)
    client_for = connect.client_for_target(s, client, lambda cabinet: client_for_cabinet(cabinet.name))
    return Flusher(buffer(), limiter(), client, FlushOptions.from_settings(s, connect.lease_seconds(s)),
                   schedule=schedule(), client_for=client_for)


# --- the read side (stock reads, reconciliation) -------------------------------------------

from ymsync.reads.campaign import StockReader  # noqa: E402  (appended section: kept next to its factories)
from ymsync.reads.reconcile import Reconciler  # noqa: E402


def reader(campaign_id: int) -> StockReader:
    """A campaign read with the token of the cabinet that lists the campaign."""
    return _reader(cabinet_for_campaign(campaign_id).name)


@lru_cache(maxsize=None)
def _reader(cabinet_name: str) -> StockReader:
    return StockReader(limiter(), client_for_cabinet(cabinet_name))


def reconciler(campaign_id: int) -> Reconciler:
    return _reconciler(cabinet_for_campaign(campaign_id).name)


@lru_cache(maxsize=None)
def _reconciler(cabinet_name: str) -> Reconciler:
    from ymsync.reads.shared import v2_business, warehouses_from

    # A campaign's own warehouse from the Market's warehouse list (getPagedWarehouses), when it has one.
    return Reconciler(buffer(), _reader(cabinet_name),
                      warehouses_of=warehouses_from(group_directory(), lambda c: v2_business(get_settings().cabinets, c)))


from ymsync.reads.business import WarehouseStockReader  # noqa: E402
from ymsync.reads.reconcile_business import BusinessReconciler  # noqa: E402


def business_reconciler(business_id: int) -> BusinessReconciler:
    """Raises CabinetNotFound, or CabinetModeError unless the business's cabinet is in mode v3."""
    cabinet = cabinet_for_business(business_id)
    cabinet.require_mode("v3", "a business reconciliation (getStocksOnPartnerWarehouses)")
    return _business_reconciler(cabinet.name)


@lru_cache(maxsize=None)
def _business_reconciler(cabinet_name: str) -> BusinessReconciler:
    reader = WarehouseStockReader(limiter_for_cabinet(cabinet_name), client_for_cabinet(cabinet_name))
    return BusinessReconciler(buffer(), reader, grace_s=get_settings().reconcile_grace_s)


# --- business warehouses (v3): the producer's enqueue check and the CLI share one cache ---------

from ymsync.reads.warehouses import WarehouseDirectory  # noqa: E402


@lru_cache(maxsize=1)
def warehouse_directory() -> WarehouseDirectory:
    return WarehouseDirectory(redis_client(), client_for_business, limiter_for_business)


from ymsync.reads.warehouse_groups import GroupDirectory  # noqa: E402


@lru_cache(maxsize=1)
def group_directory() -> GroupDirectory:
    """A v2 cabinet's warehouse groups from the Market (getPagedWarehouses), the same shared cache."""
    # A flush asks it: never wait long for the 100-an-hour quota (a stale copy is served meanwhile).
    return GroupDirectory(redis_client(), client_for_business, limiter_for_business, max_wait_s=2.0)


def refresh_groups(target: str) -> None:
    """Before a flush of a campaign target of a v2 cabinet that configures no groups: the Market's
    groups, fetched when the cached copy is older than the directory's TTL (else one Redis read),
    so a campaign the Market reports in a group is routed to its group from then on. A refresh
    that cannot be made (quota, the Market failing) keeps the cached copy; the flush goes on."""
    if not (target.startswith("c") and target[1:].isdigit()):
        return
    from ymsync.config.cabinets import CabinetNotFound
    from ymsync.market import MarketError
    from ymsync.reads.warehouses import WarehousesUnavailable

    try:
        cabinet = cabinet_for_campaign(int(target[1:]))
    except CabinetNotFound:
        return
    if cabinet.mode != "v2" or cabinet.warehouse_groups or cabinet.business_id is None:
        return
    try:
        group_directory().get(cabinet.business_id)
    except (MarketError, WarehousesUnavailable) as exc:
        _log.warning("warehouse groups of business %s not refreshed: %s", cabinet.business_id, exc)


def warehouse_check():
    """The producer's enqueue check of a business's warehouses (the shared, cached directory)."""
    return warehouse_directory().refusals
