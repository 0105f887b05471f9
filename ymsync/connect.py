"""Per-cabinet Market clients and quota limiters, built the same way by workers and the CLI.

A cabinet's client carries only that cabinet's token. Its limiter shares Redis (and so every
quota window, pause and parallel slot) with every other process; only the quota amounts differ
by the cabinet's subscription tier. Keys say what the Market counts: ``b<id>`` for business
paths (:attr:`Cabinet.quota_key`), the campaign for campaign paths.
"""

from __future__ import annotations

from typing import Iterable

import redis

from ymsync.config.cabinets import Cabinet, CabinetNotFound
from ymsync.market import MarketClient, MarketForbidden, StockLevel, UpdateResult
from ymsync.market.clock import MarketClock
from ymsync.engine.quota import QuotaLimiter
from ymsync.config.settings import Settings


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


class CampaignClients:
    """Looks like a MarketClient to campaign-path callers (the Flusher): each campaign's request
    goes out with the token of the cabinet that lists it. One Market clock is shared by all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = MarketClock()
        self._clients: dict[str, MarketClient] = {}

    def for_campaign(self, campaign_id: int) -> MarketClient:
        try:
            cabinet = self.settings.cabinets.by_campaign(int(campaign_id))
        except CabinetNotFound as exc:
            # No token for it: the engine treats this like the Market's 403 (halt the campaign,
            # keep its backlog, probe later) until the configuration lists it; never dead letters.
            raise MarketForbidden(f"updateStocks: {exc}", status=403, method="updateStocks") from None
        client = self._clients.get(cabinet.name)
        if client is None:
            client = self._clients[cabinet.name] = market_client(self.settings, cabinet)
            client.clock = self.clock
        return client

    def update_stocks(self, campaign_id: int, levels: Iterable[StockLevel], *, validate: bool = True) -> UpdateResult:
        return self.for_campaign(campaign_id).update_stocks(campaign_id, levels, validate=validate)

    def __repr__(self) -> str:
        return f"CampaignClients({len(self.settings.cabinets)} cabinets)"


__all__ = ["CampaignClients", "lease_seconds", "market_client", "quota_limiter"]
