"""Per-process library objects for tasks, built lazily (after prefork) from the settings."""

from __future__ import annotations

from functools import lru_cache

import redis

from ymsync.buffer import StockBuffer
from ymsync.market import MarketClient
from ymsync.pipeline import Flusher
from ymsync.quota import QuotaLimiter
from ymsync.schedule import Schedule
from ymsync.settings import get_settings


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
    return {"task_ttl_s": get_settings().request_deadline_s + 10, "queue_ttl_s": 60.0}


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


@lru_cache(maxsize=1)
def flusher() -> Flusher:
    s = get_settings()
    client = MarketClient.from_settings(s)
    return Flusher(buffer(), limiter(), client, retry_max_age_s=s.retry_max_age_s, lease_s=lease_seconds(),
                   schedule=schedule(), unknown_outcome_s=s.unknown_outcome_s, halt_s=s.halt_probe_s)


# --- the read side (stock reads, reconciliation) -------------------------------------------

from ymsync.reads import StockReader  # noqa: E402  (appended section: kept next to its factories)
from ymsync.reconcile import Reconciler  # noqa: E402


@lru_cache(maxsize=1)
def reader() -> StockReader:
    return StockReader(limiter(), MarketClient.from_settings(get_settings()))


@lru_cache(maxsize=1)
def reconciler() -> Reconciler:
    return Reconciler(buffer(), reader())
