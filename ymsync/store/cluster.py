"""Redis Cluster for ymsync's state: a client that rides out a failover, and replica acknowledgement.

Every script and pipeline ymsync runs touches one hash tag (a target's ``{c1001}``, ``{b7}``, which
also holds its quotas and parallel gate; a quota of no target's ``{q:...}``; ``{sched}``; a report
job's ``{id}``), so each runs on one node. What a cluster adds:

* A failover. For the seconds between a master's death and its replica's promotion, its slots
  answer CLUSTERDOWN, TRYAGAIN, MOVED or nothing. :class:`FailoverCluster` retries every command
  (a script call is one) with a growing pause and a refreshed slot map for at most
  ``failover_s``, then raises: a caller sees an error, never a silent loss.
* Asynchronous replication. A master acknowledges a write before its replica has it; killed
  then, the promoted replica never saw it. :func:`node_client` gives the plain client of the node
  that owns a key, so a producer can send its write and ``WAIT`` on that one connection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, Union

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (AskError, ClusterDownError, ClusterError, MovedError, ReadOnlyError,
                              RedisClusterUnreachableError, SlotNotCoveredError, TryAgainError)
from redis.retry import Retry

from ymsync.store import pipelines

StateClient = Union[redis.Redis, RedisCluster]
T = TypeVar("T")

# What a failing-over slot answers (or how the connection to its dead master fails). A MOVED the
# client cannot follow yet, or a write reaching a demoted master (READONLY), are part of it.
FAILOVER_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError, MovedError, AskError,
    SlotNotCoveredError, ClusterError, ReadOnlyError, RedisClusterUnreachableError)
_FIRST_PAUSE_S = 0.05
_LONGEST_PAUSE_S = 0.5


def connect_cluster(url: str, failover_s: float, **options: Any) -> "FailoverCluster":
    """A :class:`FailoverCluster` from ``url``, waiting up to ``failover_s`` for its node: unlike one
    Redis's client, a cluster's reads the slot map as it is built, and the node the URL names may be
    the master that is failing over right now."""
    return ride_out(failover_s, lambda: FailoverCluster.from_url(url, failover_s=failover_s, **options))


class FailoverTimeout(redis.ConnectionError):
    """The cluster did not answer for ``failover_s``: what was sent may or may not have been applied."""


def ride_out(failover_s: float, call: Callable[[], T], refresh: Callable[[], None] | None = None) -> T:
    """``call()``, retried after a failover error with a growing pause (and ``refresh()`` of the slot
    map) until it succeeds or ``failover_s`` has passed since the first error."""
    deadline: float | None = None
    pause = _FIRST_PAUSE_S
    while True:
        try:
            return call()
        except FAILOVER_ERRORS as exc:
            now = time.monotonic()
            deadline = now + failover_s if deadline is None else deadline
            if now >= deadline:
                raise FailoverTimeout(f"Redis Cluster unavailable for {failover_s:g} s: {type(exc).__name__}: {exc}") from exc
            time.sleep(min(pause, max(0.0, deadline - now)))
            pause = min(pause * 2, _LONGEST_PAUSE_S)
            if refresh is not None:
                try:
                    refresh()
                except redis.RedisError:
                    pass  # no node answered yet: the next attempt (or the deadline) decides


class FailoverCluster(RedisCluster):
    """A :class:`RedisCluster` whose every command rides out a failover for ``failover_s``.

    redis-py's own retry is kept short (3 tries, about a second): the time bound is ``ride_out``'s,
    and a long inner retry would stretch it. A pipeline gets only the inner retry; the callers of
    the worker's pipelines (a flush, the scheduler's loop) try again later anyway."""

    def __init__(self, *args: Any, failover_s: float = 20.0, **kwargs: Any) -> None:
        self.failover_s = failover_s
        kwargs.setdefault("retry", Retry(ExponentialBackoff(cap=_LONGEST_PAUSE_S, base=_FIRST_PAUSE_S), 3))
        super().__init__(*args, **kwargs)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        run = super().execute_command
        return ride_out(self.failover_s, lambda: run(*args, **kwargs), self.refresh_slots)

    def refresh_slots(self) -> None:
        self.nodes_manager.initialize()


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def node_client(client: StateClient, key: str) -> redis.Redis:
    """The plain client of the node that serves ``key`` now (``client`` itself for one Redis):
    commands sent through one pipeline of it share one connection, as ``WAIT`` needs."""
    if not is_cluster(client):
        return client  # type: ignore[return-value]
    node = client.get_node_from_key(key)  # type: ignore[union-attr]
    if node.redis_connection is None:
        client.nodes_manager.initialize()  # type: ignore[union-attr]
        node = client.get_node_from_key(key)  # type: ignore[union-attr]
    return node.redis_connection


class NotReplicated(redis.RedisError):
    """The master applied the write but too few replicas confirmed it in time: it may or may not
    survive a failover (not a ResponseError: the write did run)."""


@dataclass(frozen=True)
class ReplicaAck:
    """How a producer's write is acknowledged: after ``replicas`` replicas have it (``WAIT``), for at
    most ``timeout_ms``; a cluster call retried through a failover for at most ``failover_s``."""

    replicas: int = 0
    timeout_ms: int = 500
    failover_s: float = 0.0

    def pipeline(self, client: StateClient, key: str) -> redis.client.Pipeline:
        """A non-transactional pipeline on the one connection of the node that serves ``key``."""
        return node_client(client, key).pipeline(transaction=False)

    def execute(self, pipe: redis.client.Pipeline) -> list[Any]:
        """Run ``pipe``, then (when replicas are asked for) ``WAIT`` on its connection; the replies
        of ``pipe``'s own commands. Raises :class:`NotReplicated` when too few replicas answered."""
        wait = ("WAIT", self.replicas, self.timeout_ms) if self.replicas else None
        if wait is not None:
            pipe.execute_command(*wait)
        replies = pipelines.execute(pipe, then=wait)  # no SCRIPT EXISTS round trip before it
        if self.replicas:
            acked = replies.pop()
            if isinstance(acked, Exception):
                raise acked
            if int(acked) < self.replicas:
                raise NotReplicated(f"written on the master, but {acked} of {self.replicas} replica(s) confirmed it "
                                    f"within {self.timeout_ms} ms (WAIT): it may or may not be durable, a "
                                    f"failover now could lose it")
        return replies

    def run(self, client: StateClient, call: Callable[[], T]) -> T:
        """``call()``; on a cluster, ridden through a failover (its node looked up again each try)."""
        if not is_cluster(client):
            return call()
        return ride_out(self.failover_s, call, client.nodes_manager.initialize)  # type: ignore[union-attr]


__all__ = ["FAILOVER_ERRORS", "FailoverCluster", "connect_cluster", "FailoverTimeout", "NotReplicated", "ReplicaAck", "StateClient",
           "is_cluster", "node_client", "ride_out"]
