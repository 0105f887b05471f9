"""What every command that addresses a cabinet needs: settings, Redis, the cabinet's client and
limiter, and one-line errors (a configuration problem, an unknown business, a wrong API mode)."""

from __future__ import annotations


import click
import redis

from ymsync import connect
from ymsync.config.cabinets import Cabinet, CabinetModeError, CabinetNotFound
from ymsync.market import MarketClient
from ymsync.engine.quota import QuotaLimiter
from ymsync.config.settings import Settings, SettingsError, get_settings
from ymsync.store.client import state_client


def settings() -> Settings:
    # Not cached here: get_settings() is, and forgets when the settings change (configure()), so a
    # process that runs several commands (a test, an embedding app) never mixes two configurations.
    try:
        s = get_settings()
        s.require_cabinets()
        return s
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


# Built once per settings object (and business): it changes only when the configuration does.
_built: dict[tuple[int, str, int], object] = {}


def redis_client() -> redis.Redis:
    key = (id(settings()), "redis", 0)
    if key not in _built:
        _built[key] = state_client(settings(), timeout_s=30)
    return _built[key]  # type: ignore[return-value]


def cabinet(business_id: int, *, mode: str | None = None, what: str = "") -> Cabinet:
    """The business's cabinet; with ``mode``, refused here (naming the setting) if it differs."""
    try:
        found = settings().cabinets.by_business(business_id)
        if mode is not None:
            found.require_mode(mode, what)
        return found
    except (CabinetNotFound, CabinetModeError) as exc:
        raise click.ClickException(str(exc)) from None


def client(business_id: int) -> MarketClient:
    key = (id(settings()), "client", business_id)
    if key not in _built:
        _built[key] = connect.market_client(settings(), cabinet(business_id))
    return _built[key]  # type: ignore[return-value]


def limiter(business_id: int) -> QuotaLimiter:
    key = (id(settings()), "limiter", business_id)
    if key not in _built:
        _built[key] = connect.quota_limiter(redis_client(), settings(), cabinet(business_id))
    return _built[key]  # type: ignore[return-value]


__all__ = ["cabinet", "client", "limiter", "redis_client", "settings"]
