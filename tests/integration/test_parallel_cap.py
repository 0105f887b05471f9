"""One parallel cap per campaign and per business, across every method (issue 17, item 1).

The Market allows 4 requests in flight per campaign on campaign paths and per business on business
paths, whatever the method. A push and reads of the same business (or campaign) must share one cap:
judged by the sandbox, which answers 420 "parallel requests" past 4 and counts each refusal.
Real Celery workers push; reader threads in this process read the same business (or campaign)
at the same time, as `ymsync stocks` beside a running worker would. The sandbox's latency is raised
so requests overlap.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from tests.integration.test_business_push import BUSINESS, CABINET, WAREHOUSES, market_stock, v3_config
from tests.support.processes import wait_for
from tests.support.stock_harness import sandbox_config
from ymsync import push_business_stocks
from ymsync.config.settings import Credentials, Quota, Secret
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.targets import business_target
from ymsync.market import MarketClient
from ymsync.reads.business import WarehouseStockReader
from ymsync.reads.campaign import ReadOptions, StockReader

pytestmark = pytest.mark.integration

CAMPAIGN = 1001
LATENCY = {"latency_min_ms": 150, "latency_max_ms": 250}


def read_beside(until: Callable[[], bool], read_once: Callable[[], None], readers: int = 6) -> int:
    """Run ``readers`` threads that read again and again until ``until()``; the reads done."""
    done, errors = [0], []

    def loop() -> None:
        try:
            while not until():
                read_once()
                done[0] += 1
        except BaseException as exc:  # a failed read fails the test, not a silent thread
            errors.append(exc)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return done[0]


def test_a_v3_push_and_reads_of_the_same_business_share_its_cap_of_four(bench_for):
    bench = bench_for(v3_config(Quota(50, 60)))
    bench.admin("faults", LATENCY)
    items = [{"sku": f"P-{i:05d}", "warehouse": w, "count": i % 97} for w in WAREHOUSES for i in range(12_000)]
    for start in range(0, len(items), 5000):
        push_business_stocks(BUSINESS, items[start:start + 5000], buffer=bench.buffer)
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    reader = WarehouseStockReader(QuotaLimiter(bench.redis, {"get_stocks_v3": None}, max_parallel=4), client)
    target = business_target(BUSINESS)
    bench.start_worker("cap-v3", concurrency=4, **CABINET)
    finished = lambda: bench.buffer.pending(target) == 0 and bench.buffer.in_flight(target) == 0  # noqa: E731
    reads = read_beside(finished, lambda: sum(1 for _ in reader.read(BUSINESS, WAREHOUSES[0])))
    wait_for(lambda: len(market_stock(bench)) == len(items), 30, "every item at the Market", interval=0.5)
    state = bench.state()
    assert reads > 0
    assert state["parallel_peak"].get(f"business:{BUSINESS}", 0) == 4, state["parallel_peak"]  # the cap was used
    assert state["parallel_refused"] == {}, state["parallel_refused"]
    assert not [k for k in state["requests"] if k.endswith(" 420")], state["requests"]


def test_a_v2_push_and_reads_of_the_same_campaign_share_its_cap_of_four(bench_for):
    bench = bench_for(sandbox_config(Quota(100_000, 60)))
    bench.admin("faults", LATENCY)
    bench.push(CAMPAIGN, [(f"V2-{i:05d}", i % 89) for i in range(14_000)])
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    reader = StockReader(QuotaLimiter(bench.redis, {"get_stocks": None}, max_parallel=4), client, limit=100)
    bench.start_worker("cap-v2", concurrency=4)
    finished = lambda: bench.settled(CAMPAIGN)  # noqa: E731
    reads = read_beside(finished, lambda: sum(1 for _ in reader.read(CAMPAIGN, ReadOptions(warehouse_id=None))))
    bench.wait_latest(CAMPAIGN, 60)
    state = bench.state()
    assert reads > 0
    assert state["parallel_peak"].get(f"campaign:{CAMPAIGN}", 0) == 4, state["parallel_peak"]
    assert state["parallel_refused"] == {}, state["parallel_refused"]
    assert not [k for k in state["requests"] if k.endswith(" 420")], state["requests"]
