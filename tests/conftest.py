from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis

from tests.support.redis_server import RedisServer
from tests.support.stock_harness import Bench
from ymsync.sandbox import MarketSandbox, SandboxConfig


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture()
def clean_redis(redis_server) -> Iterator[redis.Redis]:
    """A client of the session's private Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture()
def bench_for(redis_server, tmp_path: Path) -> Iterator[Callable[..., Bench]]:
    """``bench_for(SandboxConfig, redis_url=None)``: a running sandbox and a clean Redis (the
    session's, or ``redis_url``); workers and sandboxes stopped after the test."""
    opened: list[tuple[MarketSandbox, Bench]] = []

    def make(config: SandboxConfig, redis_url: str | None = None) -> Bench:
        market = MarketSandbox(config=config).start()
        bench = Bench(market, redis_url or redis_server.url, tmp_path)
        bench.redis.flushdb()
        opened.append((market, bench))
        return bench

    yield make
    for market, bench in opened:
        bench.stop()
        market.stop()
