"""Per-cabinet Market clients and quota limiters, built the same way by workers and the CLI.

A cabinet's client carries only that cabinet's token. Its limiter shares Redis (and so every
quota window, pause and parallel slot) with every other process; only the quota amounts differ
by the cabinet's subscription tier. Keys say what the Market counts: ``b<id>`` for business
paths (:attr:`Cabinet.quota_key`), the campaign for campaign paths.
"""

from __future__ import annotations

import redis

from .cabinets import Cabinet
from .market import MarketClient
from .quota import QuotaLimiter
from .settings import Settings


def lease_seconds(settings: Settings) -> float:
    # A parallel slot (and an unsettled grant) outlives its request and the time the Market may
    # still apply it (settings.lease_s), as the workers' own limiter does (tasks/runtime.py).
    return settings.lease_s


def market_client(settings: Settings, cabinet: Cabinet) -> MarketClient:
    return MarketClient(settings.api_url, cabinet.credentials, connect_timeout=settings.connect_timeout,
                        read_timeout=settings.read_timeout, max_report_bytes=settings.max_report_bytes,
                        download_hosts=settings.download_hosts)


def quota_limiter(client: redis.Redis, settings: Settings, cabinet: Cabinet | None = None) -> QuotaLimiter:
    quotas = cabinet.quotas(settings.quotas) if cabinet is not None else settings.quotas
    return QuotaLimiter(client, quotas, max_parallel=settings.max_parallel, lease_ttl_s=lease_seconds(settings))


__all__ = ["lease_seconds", "market_client", "quota_limiter"]
