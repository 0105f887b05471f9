"""How ymsync reaches its state store: one Redis, or a Redis Cluster (``YM_REDIS_CLUSTER``).

Parsed from the environment mapping :func:`ymsync.config.settings.load_settings` is given (this
module reads nothing itself). With a cluster, ``REDIS_URL`` names any one node (the client
discovers the rest), and Celery's broker and result backend must live elsewhere: Kombu's Redis
transport and Celery's Redis backend speak to one server and would silently write keys of
several slots to whichever node the URL names, so such a configuration is refused at start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from ymsync.config.values import SettingsError


@dataclass(frozen=True)
class RedisState:
    cluster: bool = False
    # A producer's write is acknowledged once this many replicas have it (Redis WAIT on the
    # connection that wrote it); 0 acknowledges on the master's reply alone. Default: 1 with a
    # cluster (a master's failover must not lose an acknowledged update), 0 for one Redis.
    ack_replicas: int = 0
    # How long a producer waits for those replicas before raising ymsync.Unavailable (the update
    # may or may not survive a failover then).
    ack_timeout_ms: int = 500
    # A call that meets a failing-over slot (CLUSTERDOWN, TRYAGAIN, MOVED, a dead connection)
    # retries with backoff for at most this long, then raises. A replica is promoted after
    # cluster-node-timeout (Redis's default 15 s; the README's example uses 5 s) plus an election.
    failover_s: float = 20.0


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise SettingsError(f"{name}: expected an integer of at least {minimum}, got {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise SettingsError(f"{name}: expected a number of seconds of at least 0, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _server(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return None
    host = (parts.hostname or "").lower()
    return ("127.0.0.1" if host == "localhost" else host, parts.port or 6379)


def redis_state(env: Mapping[str, str], redis_url: str, broker_url: str, result_backend: str) -> RedisState:
    """``YM_REDIS_CLUSTER``, ``YM_REDIS_ACK_REPLICAS``, ``YM_REDIS_ACK_TIMEOUT_MS``, ``YM_REDIS_FAILOVER_S``;
    refuses a cluster that Celery's broker or result backend would use (given or defaulted to REDIS_URL)."""
    cluster = _flag(env, "YM_REDIS_CLUSTER")
    if cluster:
        if urlsplit(redis_url).scheme not in ("redis", "rediss"):
            raise SettingsError("YM_REDIS_CLUSTER: REDIS_URL must name a cluster node as redis:// or rediss://")
        node = _server(redis_url)
        for name, url in (("CELERY_BROKER_URL", broker_url), ("CELERY_RESULT_BACKEND", result_backend)):
            if not env.get(name, "").strip() or _server(url) == node:
                raise SettingsError(f"YM_REDIS_CLUSTER: {name} must point Celery elsewhere than the cluster "
                                    f"(a RabbitMQ broker, a plain Redis), not {url!r}")
    return RedisState(
        cluster=cluster,
        ack_replicas=_int(env, "YM_REDIS_ACK_REPLICAS", 1 if cluster else 0, 0),
        ack_timeout_ms=_int(env, "YM_REDIS_ACK_TIMEOUT_MS", RedisState.ack_timeout_ms, 1),
        failover_s=_seconds(env, "YM_REDIS_FAILOVER_S", RedisState.failover_s),
    )


__all__ = ["RedisState", "redis_state"]
