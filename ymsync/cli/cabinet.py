"""What every command that addresses a cabinet needs: settings, Redis, the cabinet's client and
limiter, and one-line errors (a configuration problem, an unknown business, a wrong API mode)."""

from __future__ import annotations

from functools import lru_cache

import click
import redis

from ymsync import connect
from ymsync.config.cabinets import Cabinet, CabinetModeError, CabinetNotFound
from ymsync.market import MarketClient
from ymsync.engine.quota import QuotaLimiter
from ymsync.config.settings import Settings, SettingsError, get_settings
from ymsync.store.client import state_client


@lru_cache(maxsize=1)
def settings() -> Settings:
    try:
        s = get_settings()
        s.require_cabinets()
        return s
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return state_client(settings(), timeout_s=30)


def cabinet(business_id: int, *, mode: str | None = None, what: str = "") -> Cabinet:
    """The business's cabinet; with ``mode``, refused here (naming the setting) if it differs."""
    try:
        found = settings().cabinets.by_business(business_id)
        if mode is not None:
            found.require_mode(mode, what)
        return found
    except (CabinetNotFound, CabinetModeError) as exc:
        raise click.ClickException(str(exc)) from None


@lru_cache(maxsize=None)
def client(business_id: int) -> MarketClient:
    return connect.market_client(settings(), cabinet(business_id))


@lru_cache(maxsize=None)
def limiter(business_id: int) -> QuotaLimiter:
    return connect.quota_limiter(redis_client(), settings(), cabinet(business_id))


__all__ = ["cabinet", "client", "limiter", "redis_client", "settings"]
