"""One parallel cap per campaign and per business, across every method (issue 17, item 1).

The Market allows 4 requests in flight per campaign on campaign paths and per business on business
paths, whatever the method. A push and reads of the same business (or campaign) must share one cap:
judged by the sandbox, which answers 420 "parallel requests" past 4 and counts each refusal.
Real Celery workers push; reader threads in this process read the same business (or campaign)
at the same time, as `ymsync stocks` beside a running worker would. The sandbox's latency is raised
so requests overlap.

Lean on purpose: four readers keep the cap full on their own, so any push request sent while they
read is one too many unless it waits for their gate; a backlog of a few full requests and 60-120 ms
of latency are enough for that, and both tests share one sandbox and one worker (a cabinets file
with a v3 business and a v2 campaign). With the push and the reads on two gates (the old
``business:7`` vs ``b7`` bug), both tests draw parallel 420s.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterator

import pytest

from tests.integration.test_business_push import BUSINESS, WAREHOUSES, market_stock, v3_config
from tests.support.processes import wait_for
from tests.support.stock_harness import Bench
from ymsync import push_business_stocks
from ymsync.config.settings import Credentials, Quota, Secret
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.targets import business_target
from ymsync.market import MarketClient
from ymsync.reads.business import WarehouseStockReader
from ymsync.reads.campaign import ReadOptions, StockReader
from ymsync.sandbox import MarketSandbox

pytestmark = pytest.mark.integration

CAMPAIGN = 1001
LATENCY = {"latency_min_ms": 60, "latency_max_ms": 120}
READERS = 3  # with the push, one more than the cap can take: a push beside them must share it
# What the readers read: the same offers each time, a request (v3) or three pages of 100 (v2) a
# read, so a read takes as long however much the push has delivered.
SEEDED = {f"R-{i:04d}": i for i in range(300)}
# One worker serves both: business 7 (v3) and campaign 1001 (v2, business 1) as two cabinets.
CABINETS = ('[cabinets.v3]\nbusiness_id = 7\nmode = "v3"\ntoken_env = "YM_TOKEN_SHOP"\n'
            '[cabinets.v2]\nbusiness_id = 1\ncampaigns = [1001]\ntoken_env = "YM_TOKEN_SHOP"\n')


@pytest.fixture(scope="module")
def cap_bench(redis_server, tmp_path_factory) -> Iterator[Bench]:
    folder = tmp_path_factory.mktemp("parallel-cap")
    (folder / "cabinets.toml").write_text(CABINETS)
    # v3_config's quotas (v3 pushes 50 a minute) plus v2 pushes by SKU; reads unlimited.
    config = v3_config(Quota(50, 60))
    config.quotas["updateStocks"] = Quota(100_000, 60)
    market = MarketSandbox(config=config).start()
    bench = Bench(market, redis_server.url, folder)
    bench.redis.flushdb()
    try:
        bench.start_worker("cap", concurrency=4, YM_CABINETS_FILE=str(folder / "cabinets.toml"),
                           YM_TOKEN_SHOP="sandbox-token", YM_API_KEY="").wait_ready(bench.redis_url)
        yield bench
    finally:
        bench.stop()
        market.stop()


@pytest.fixture()
def bench(cap_bench: Bench) -> Bench:
    cap_bench.reset()
    cap_bench.admin("faults", LATENCY)
    return cap_bench


def read_beside(until: Callable[[], bool], read_once: Callable[[], None], readers: int = READERS) -> int:
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
        thread.join(60)
    assert not errors, errors
    return done[0]


def assert_one_cap(bench: Bench, gate: str) -> None:
    state = bench.state()
    assert state["parallel_peak"].get(gate, 0) == 4, state["parallel_peak"]  # the cap was used
    assert state["parallel_refused"] == {}, state["parallel_refused"]
    assert not [k for k in state["requests"] if k.endswith(" 420")], state["requests"]


def test_a_v3_push_and_reads_of_the_same_business_share_its_cap_of_four(bench):
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    reader = WarehouseStockReader(QuotaLimiter(bench.redis, {"get_stocks_v3": None}, max_parallel=4), client)
    target = business_target(BUSINESS)
    bench.admin(f"business/{BUSINESS}/stocks", {str(WAREHOUSES[0]): SEEDED})
    items = [{"sku": f"P-{i:05d}", "warehouse": w, "count": i % 97} for w in WAREHOUSES for i in range(4_000)]
    finished = lambda: bench.buffer.pending(target) == 0 and bench.buffer.in_flight(target) == 0  # noqa: E731
    started = threading.Event()

    def read_once() -> None:
        assert sum(1 for _ in reader.read(BUSINESS, WAREHOUSES[0], offer_ids=SEEDED)) == len(SEEDED)
        started.set()

    def push_when_reading() -> None:
        started.wait(10)  # the push meets readers that already fill the cap
        for start in range(0, len(items), 5000):
            push_business_stocks(BUSINESS, items[start:start + 5000], buffer=bench.buffer)

    pusher = threading.Thread(target=push_when_reading, daemon=True)
    pusher.start()
    reads = read_beside(lambda: not pusher.is_alive() and finished(), read_once)
    wait_for(lambda: len(market_stock(bench)) == len(items) + len(SEEDED), 30, "every item at the Market", interval=0.2)
    assert reads > 0
    assert_one_cap(bench, f"business:{BUSINESS}")


def test_a_v2_push_and_reads_of_the_same_campaign_share_its_cap_of_four(bench):
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    reader = StockReader(QuotaLimiter(bench.redis, {"get_stocks": None}, max_parallel=4), client, limit=100)
    bench.admin(f"stocks/{CAMPAIGN}", SEEDED)
    levels = [(f"V2-{i:05d}", i % 89) for i in range(8_000)]
    started = threading.Event()

    def read_once() -> None:
        assert sum(1 for _ in reader.read(CAMPAIGN, ReadOptions(offer_ids=tuple(SEEDED)))) == len(SEEDED)
        started.set()

    def push_when_reading() -> None:
        started.wait(10)
        bench.push(CAMPAIGN, levels)

    pusher = threading.Thread(target=push_when_reading, daemon=True)
    pusher.start()
    reads = read_beside(lambda: not pusher.is_alive() and bench.settled(CAMPAIGN), read_once)
    bench.wait_latest(CAMPAIGN, 30, {**SEEDED, **bench.latest[CAMPAIGN]})
    assert reads > 0
    assert_one_cap(bench, f"campaign:{CAMPAIGN}")
