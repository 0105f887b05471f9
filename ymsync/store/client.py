"""The one place ymsync builds a Redis client for its state (:func:`state_client`, from the
settings: one Redis or a Redis Cluster), and the producers' kind: bounded waits, no retries, and a
record of what was sent.

redis-py retries connection errors (10 times in recent versions) and, by default, waits 5 s
for a reply (older versions the project allows wait forever). A producer runs inside a web
request: ``bounded_client`` waits at most its timeout for a connection and at most that for
each reply, and never retries, so a stopped or hung Redis ends the call after one timeout (a
hung server still completes TCP connects from its backlog, and the first reply never comes).
Healthy work is not cut short: a catalogue of 100,000 SKUs takes what it takes while replies
keep coming.

Inside ``with watch_sends()`` the connections record whether any command left this process: a
failure after that is ambiguous (the server may have run it), before it nothing was queued.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Protocol
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ymsync.store.cluster import StateClient, connect_cluster

_local = threading.local()
log = logging.getLogger(__name__)


@dataclass
class Sends:
    sent: bool = False  # some command was written to a socket while watched


@contextmanager
def watch_sends() -> Iterator[Sends]:
    """Record, on this thread, whether a :func:`bounded_client` sent anything."""
    outer = getattr(_local, "sends", None)
    current = _local.sends = Sends()
    try:
        yield current
    finally:
        _local.sends = outer


class _RecordsSends:
    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        super().send_packed_command(command, check_health)  # type: ignore[misc]
        current: Sends | None = getattr(_local, "sends", None)
        if current is not None:
            current.sent = True


class ProducerConnection(_RecordsSends, redis.Connection):
    pass


class ProducerSSLConnection(_RecordsSends, redis.SSLConnection):
    pass


class ProducerUnixConnection(_RecordsSends, redis.UnixDomainSocketConnection):
    pass


_CLASSES = {"redis": ProducerConnection, "rediss": ProducerSSLConnection, "unix": ProducerUnixConnection}


def bounded_client(url: str, timeout_s: float) -> redis.Redis:
    """A client for ``url`` that never retries and waits at most ``timeout_s`` to connect and
    at most that for each reply."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                connection_class=_CLASSES[urlsplit(url).scheme])


class _ClusterChoice(Protocol):
    cluster: bool
    failover_s: float


class StateSettings(Protocol):
    """What :func:`state_client` reads of :class:`ymsync.config.settings.Settings` (``store`` imports
    nothing else of ymsync's, so it names the fields instead of the class)."""

    redis_url: str
    producer_timeout_s: float
    redis_state: _ClusterChoice


def state_client(settings: StateSettings, *, timeout_s: float | None = None, connect_timeout_s: float | None = None,
                 client_name: str | None = None, health_check_interval: int = 0,
                 bounded: bool = False) -> StateClient:
    """A client for ymsync's state at ``settings.redis_url``: a :class:`FailoverCluster` when
    ``YM_REDIS_CLUSTER`` is set (the URL names any node), else one Redis. ``bounded``: a producer's
    client (:func:`bounded_client`; on a cluster it still rides out a failover, bounded by
    ``YM_REDIS_FAILOVER_S``, but never retries a command the client itself)."""
    url = settings.redis_url
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": connect_timeout_s}
    if client_name:
        options["client_name"] = client_name
    if health_check_interval:
        options["health_check_interval"] = health_check_interval
    if not settings.redis_state.cluster:
        if bounded:
            return bounded_client(url, settings.producer_timeout_s if timeout_s is None else timeout_s)
        return redis.Redis.from_url(url, **options)
    if bounded:
        wait = settings.producer_timeout_s if timeout_s is None else timeout_s
        options = {"socket_timeout": wait, "socket_connect_timeout": wait,
                   "connection_class": _CLASSES[urlsplit(url).scheme]}
    return connect_cluster(url, settings.redis_state.failover_s, **options)


def lasting_state_client(settings: StateSettings, stopping: threading.Event, what: str,
                         **options: Any) -> StateClient | None:
    """:func:`state_client` for a long-lived thread (a scheduler): tried again every second while
    Redis is unavailable (a cluster's client connects as it is built), None once ``stopping`` is set."""
    while True:
        try:
            return state_client(settings, **options)
        except redis.RedisError as exc:
            log.warning("%s: Redis unavailable (%s); trying again", what, exc)
            if stopping.wait(1.0):
                return None


__all__ = ["Sends", "bounded_client", "lasting_state_client", "state_client", "watch_sends"]
