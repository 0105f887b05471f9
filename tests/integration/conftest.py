"""Fixtures shared by the integration tests of the stock pipeline."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from tests.support.stock_harness import Bench
from ymsync.sandbox import MarketSandbox, SandboxConfig


@pytest.fixture()
def bench_for(redis_server, tmp_path) -> Iterator[Callable[[SandboxConfig], Bench]]:
    """``bench_for(SandboxConfig)``: a running sandbox and a clean Redis; workers stopped after."""
    opened: list[tuple[MarketSandbox, Bench]] = []

    def make(config: SandboxConfig) -> Bench:
        market = MarketSandbox(config=config).start()
        bench = Bench(market, redis_server.url, tmp_path)
        bench.redis.flushdb()
        opened.append((market, bench))
        return bench

    yield make
    for market, bench in opened:
        bench.stop()
        market.stop()
