"""Per-process library objects for tasks, built lazily (after prefork) from the settings."""

from __future__ import annotations

from functools import lru_cache

import redis

from ymsync import connect
from ymsync.buffer import StockBuffer
from ymsync.cabinets import Cabinet
from ymsync.market import MarketClient
from ymsync.pipeline import Flusher
from ymsync.quota import QuotaLimiter
from ymsync.schedule import Schedule
from ymsync.settings import get_settings
from ymsync.market.errors import MarketForbidden
from ymsync.targets import Target


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, health_check_interval=30)


@lru_cache(maxsize=1)
def schedule() -> Schedule:
    s = get_settings()
    return Schedule(redis_client(), max_parallel=s.max_parallel, **slot_ttls())


def slot_ttls() -> dict[str, float]:
    """A flush-task slot waits up to a minute for its task to start, then each hold (before every
    request) keeps it for one request's hard deadline and a margin: a slow-but-alive task never
    shares its target with one slot too many, and a killed one frees its slot soon."""
    s = get_settings()
    return {"task_ttl_s": s.request_deadline_s + s.lease_margin_s, "queue_ttl_s": 60.0}


@lru_cache(maxsize=1)
def buffer() -> StockBuffer:
    return StockBuffer.from_settings(redis_client(), get_settings(), schedule())


@lru_cache(maxsize=1)
def limiter() -> QuotaLimiter:
    s = get_settings()
    return QuotaLimiter(redis_client(), s.quotas, max_parallel=s.max_parallel, lease_ttl_s=lease_seconds())


def lease_seconds() -> float:
    # A batch's lease outlives its request and the time the Market may still apply it after
    # (settings.lease_s), so a dead worker's batch comes back only once nothing of it can land.
    return get_settings().lease_s


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
    # Several cabinets: each campaign's push carries its own cabinet's token.
    client = connect.CampaignClients(s) if len(s.cabinets) > 1 else MarketClient.from_settings(s)

    def client_for(target: Target) -> MarketClient:
        # Business targets (v3) go with their cabinet's token; campaigns as above.
        if target.kind != "business":
            return client
        try:
            return client_for_business(target.id)
        except LookupError as exc:  # no cabinet serves it: like the Market's 403 (halt, keep the backlog)
            raise MarketForbidden(f"updateStocksOnPartnerWarehouses: {exc}", status=403,
                                  method="updateStocksOnPartnerWarehouses") from None

    return Flusher(buffer(), limiter(), client, retry_max_age_s=s.retry_max_age_s, lease_s=lease_seconds(),
                   schedule=schedule(), unknown_outcome_s=s.unknown_outcome_s, halt_s=s.halt_probe_s,
                   max_backoff_s=s.max_backoff_s, batch_wait_s=s.batch_wait_s, budget_s=s.flush_budget_s,
                   client_for=client_for)


# --- the read side (stock reads, reconciliation) -------------------------------------------

from ymsync.reads import StockReader  # noqa: E402  (appended section: kept next to its factories)
from ymsync.reconcile import Reconciler  # noqa: E402


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
    return Reconciler(buffer(), _reader(cabinet_name))


from ymsync.reads_v3 import WarehouseStockReader  # noqa: E402
from ymsync.reconcile_v3 import BusinessReconciler  # noqa: E402


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

from ymsync.warehouses import WarehouseDirectory  # noqa: E402


@lru_cache(maxsize=1)
def warehouse_directory() -> WarehouseDirectory:
    return WarehouseDirectory(redis_client(), client_for_business, limiter_for_business)


def warehouse_check():
    """The producer's enqueue check of a business's warehouses (the shared, cached directory)."""
    return warehouse_directory().refusals
