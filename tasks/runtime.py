"""Per-process library objects for tasks, built lazily (after prefork) from the settings."""

from __future__ import annotations

from functools import lru_cache

import redis

from ymsync.buffer import StockBuffer
from ymsync.market import MarketClient
from ymsync.pipeline import Flusher
from ymsync.quota import QuotaLimiter
from ymsync.settings import get_settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, health_check_interval=30)


@lru_cache(maxsize=1)
def buffer() -> StockBuffer:
    return StockBuffer(redis_client())


@lru_cache(maxsize=1)
def limiter() -> QuotaLimiter:
    s = get_settings()
    return QuotaLimiter(redis_client(), s.quotas, max_parallel=s.max_parallel, lease_ttl_s=lease_seconds())


def lease_seconds() -> float:
    # A batch's lease must outlive its request, or a slow-but-alive worker's batch is reclaimed.
    s = get_settings()
    return s.connect_timeout + s.read_timeout + 10


@lru_cache(maxsize=1)
def flusher() -> Flusher:
    s = get_settings()
    client = MarketClient.from_settings(s)
    return Flusher(buffer(), limiter(), client, retry_max_age_s=s.retry_max_age_s, lease_s=lease_seconds(),
                   spawn=_spawn_flush)


def _spawn_flush(campaign_id: int) -> None:
    from .stocks import schedule_flush  # tasks.stocks imports this module

    schedule_flush(campaign_id, 0)


# --- the read side (stock reads, reconciliation) -------------------------------------------

from ymsync.reads import StockReader  # noqa: E402  (appended section: kept next to its factories)
from ymsync.reconcile import Reconciler  # noqa: E402


@lru_cache(maxsize=1)
def reader() -> StockReader:
    return StockReader(limiter(), MarketClient.from_settings(get_settings()))


@lru_cache(maxsize=1)
def reconciler() -> Reconciler:
    return Reconciler(buffer(), reader())
