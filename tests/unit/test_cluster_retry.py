"""ride_out: a call meeting a failing-over slot is retried with backoff for a bounded time, then
fails clearly; anything else is raised at once."""

from __future__ import annotations

import time

import pytest
import redis
from redis.exceptions import ClusterDownError, MovedError, TryAgainError

from ymsync.store.cluster import FailoverTimeout, ReplicaAck, ride_out


def failing(errors: list[Exception], then: object = "done"):
    calls = []

    def call() -> object:
        calls.append(time.monotonic())
        if errors:
            raise errors.pop(0)
        return then
    return call, calls


def test_a_failover_is_ridden_out() -> None:
    refreshed = []
    call, calls = failing([ClusterDownError("CLUSTERDOWN"), TryAgainError("TRYAGAIN"), MovedError("7 127.0.0.1:1"),
                           redis.ConnectionError("Connection refused")])
    assert ride_out(5.0, call, lambda: refreshed.append(1)) == "done"
    assert len(calls) == 5 and len(refreshed) == 4
    pauses = [b - a for a, b in zip(calls, calls[1:])]
    assert pauses[-1] > pauses[0]  # backs off


def test_an_outage_longer_than_the_bound_fails_clearly() -> None:
    call, calls = failing([ClusterDownError("CLUSTERDOWN The cluster is down")] * 1000)
    started = time.monotonic()
    with pytest.raises(FailoverTimeout, match="unavailable for 0.3 s: ClusterDownError") as caught:
        ride_out(0.3, call)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert isinstance(caught.value, redis.ConnectionError)  # producers turn it into ymsync.Unavailable
    assert len(calls) > 2


def test_other_errors_are_not_retried() -> None:
    call, calls = failing([redis.ResponseError("WRONGTYPE")])
    with pytest.raises(redis.ResponseError):
        ride_out(5.0, call)
    assert len(calls) == 1


def test_one_redis_is_never_retried_by_the_ack() -> None:
    """Without a cluster a producer keeps its one-try, bounded-wait behaviour."""
    call, calls = failing([redis.ConnectionError("refused")])
    with pytest.raises(redis.ConnectionError):
        ReplicaAck(failover_s=5.0).run(redis.Redis(port=1), call)
    assert len(calls) == 1
