"""The one place Market clients and quota limiters are built, for workers, the CLI, metrics and the demo.
Callers cache what they build (tasks/runtime.py per worker process); nothing else constructs them.

A cabinet's client carries only that cabinet's token. Its limiter shares Redis (and so every
quota window, pause and parallel slot) with every other process; only the quota amounts differ
by the cabinet's subscription tier. Keys say what the Market counts: ``b<id>`` for business
paths (:attr:`Cabinet.quota_key`), the campaign for campaign paths.
"""

from __future__ import annotations

from typing import Callable, Iterable

import redis

from ymsync.config.cabinets import Cabinet, CabinetNotFound
from ymsync.market import MarketClient, MarketForbidden, StockLevel, UpdateResult
from ymsync.market.clock import MarketClock
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.targets import Target
from ymsync.config.settings import Settings


def lease_seconds(settings: Settings) -> float:
    # A parallel slot (and an unsettled grant, and a batch) outlives its request and the time the
    # Market may still apply it (settings.lease_s), so a dead worker's comes back only once nothing
    # of it can land any more.
    return settings.lease_s


def no_cabinet(method: str, exc: LookupError) -> MarketForbidden:
    """No configured cabinet serves the target, so there is no token for it: the engine treats this
    like the Market's 403 (halt the target, keep its backlog, probe later) until the configuration
    lists it; it never dead-letters the backlog."""
    return MarketForbidden(f"{method}: {exc}", status=403, method=method)


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
            raise no_cabinet("updateStocks", exc) from None
        client = self._clients.get(cabinet.name)
        if client is None:
            client = self._clients[cabinet.name] = market_client(self.settings, cabinet)
            client.clock = self.clock
        return client

    def update_stocks(self, campaign_id: int, levels: Iterable[StockLevel], *, validate: bool = True) -> UpdateResult:
        return self.for_campaign(campaign_id).update_stocks(campaign_id, levels, validate=validate)

    def __repr__(self) -> str:
        return f"CampaignClients({len(self.settings.cabinets)} cabinets)"


def client_for_target(settings: Settings, campaigns: CampaignClients,
                      client_for_cabinet: Callable[[Cabinet], MarketClient]) -> Callable[[Target], MarketClient]:
    """The Flusher's client per target: a business target (v3) goes with its cabinet's token (the
    client ``client_for_cabinet`` gives, so callers can cache it), a campaign through ``campaigns``."""

    def client_for(target: Target) -> MarketClient:
        if target.kind != "business":
            return campaigns  # type: ignore[return-value]  (campaign-path callers use update_stocks only)
        try:
            cabinet = settings.cabinets.by_business(target.id)
        except LookupError as exc:
            raise no_cabinet("updateStocksOnPartnerWarehouses", exc) from None
        return client_for_cabinet(cabinet)

    return client_for


__all__ = ["CampaignClients", "client_for_target", "lease_seconds", "market_client", "no_cabinet", "quota_limiter"]
