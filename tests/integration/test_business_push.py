"""Business (v3) stock targets end to end: real workers, a private Redis, the sandbox over HTTP.

The v3 update quota counts requests, not SKUs, so batching decides throughput: under a backlog
every request but the last must be (nearly) full; at idle a single update must still go out
within about the batch wait (YM_BATCH_WAIT_S, 1 s in production). Judged by what the sandbox saw.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import statistics
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.support.processes import wait_for
from tests.support.stock_harness import Bench
from ymsync import push_business_stocks
from ymsync.sandbox import MarketSandbox, SandboxConfig
from ymsync.sandbox.business_state import BusinessConfig, WarehouseConfig
from ymsync.config.settings import Quota
from ymsync.engine.targets import business_target, item_key

pytestmark = pytest.mark.integration

BUSINESS, WAREHOUSES = 7, (501, 502)
V3 = "updateStocksOnPartnerWarehouses"
CABINET = {"YM_BUSINESS_ID": str(BUSINESS), "YM_API_MODE": "v3"}  # the simple case: one v3 cabinet
# The shared worker's YM_BATCH_WAIT_S: how long a part-filled request waits for company (1 s in
# production, where an idle update so reaches the Market within about 1.5 s).
BATCH_WAIT_S = 0.3


def v3_config(quota: Quota | None = Quota(50, 60), **kwargs: Any) -> SandboxConfig:
    business = BusinessConfig(BUSINESS, tuple(WarehouseConfig(w, f"W{w}") for w in WAREHOUSES))
    return SandboxConfig(quotas={V3: quota, "updateStocks": None, "getStocks": None}, businesses=(business,), **kwargs)


def market_stock(bench) -> dict[tuple[int, str], int]:
    raw = bench.admin(f"business/{BUSINESS}/stocks")
    return {(int(w), sku): v["count"] for w, skus in raw.items() for sku, v in skus.items()}


def v3_calls(bench) -> list[dict[str, Any]]:
    return [e for e in bench.admin("log") if e["op"] == V3]


@pytest.fixture(scope="module")
def v3_shared(redis_server, tmp_path_factory):
    """One sandbox (v3_config()) and one worker for the tests below that need nothing else: each
    starts from a reset sandbox and an empty ymsync keyspace (see Bench.reset)."""
    market = MarketSandbox(config=v3_config()).start()
    bench = Bench(market, redis_server.url, tmp_path_factory.mktemp("v3-shared"))
    bench.redis.flushdb()
    try:
        bench.start_worker("v3shared", concurrency=2, YM_BATCH_WAIT_S=str(BATCH_WAIT_S), **CABINET).wait_ready(
            bench.redis_url)
        yield bench
    finally:
        bench.stop()  # SIGKILL: nothing here judges a graceful shutdown
        market.stop()


@pytest.fixture()
def shared(v3_shared):
    v3_shared.reset()
    return v3_shared


def stamps(n: int) -> list[str]:
    base = datetime.now(timezone.utc) - timedelta(minutes=10)
    return [(base + timedelta(milliseconds=i)).isoformat() for i in range(n)]


def test_a_shuffled_stream_over_two_warehouses_goes_out_in_full_requests_within_the_quota(bench_for):
    bench = bench_for(v3_config(Quota(5, 6)))
    rng = random.Random(3)
    skus = [f"V-{i:05d}" for i in range(6000)]
    # Two values per (warehouse, SKU), stamped in order, pushed in a shuffled order: latest wins.
    times = iter(stamps(2 * 2 * len(skus)))
    items = [{"sku": sku, "warehouse": w, "count": rng.randrange(1000), "updatedAt": next(times)}
             for _round in range(2) for w in WAREHOUSES for sku in skus]
    final = {(item["warehouse"], item["sku"]): item["count"] for item in items}  # the later stamp of each
    rng.shuffle(items)
    for start in range(0, len(items), 5000):
        push_business_stocks(BUSINESS, items[start:start + 5000], buffer=bench.buffer)
    env = {"YM_QUOTA_UPDATE_STOCKS_V3": "5/6", **CABINET}
    for name in ("v3a", "v3b", "v3c"):
        bench.start_worker(name, concurrency=1, **env)
    wait_for(lambda: bench.buffer.pending(business_target(BUSINESS)) == 0
             and bench.buffer.in_flight(business_target(BUSINESS)) == 0
             and market_stock(bench) == final, 90, "the Market to hold the newest value of every item", interval=0.5)
    calls = v3_calls(bench)
    ok = [e for e in calls if e["status"] == 200]
    state = bench.state()["businesses"][str(BUSINESS)]
    assert not [e for e in calls if e["status"] == 420], calls
    assert state["stale_writes"] == 0
    # 12,000 items: six requests, every one full.
    assert len(ok) == 6, [(e["status"], e.get("cost")) for e in calls]
    assert state["item_units"] == 12_000
    # Within the quota: no 6-second window held more than 5 requests.
    times_ok = sorted(e["t"] for e in ok)
    assert all(b - a >= 6 - 0.05 for a, b in zip(times_ok, times_ok[5:])), times_ok
    assert bench.buffer.dead_letters(business_target(BUSINESS)) == []


def test_an_idle_update_reaches_the_market_within_the_batch_wait_and_half_a_second(shared):
    """At idle a part-filled request waits YM_BATCH_WAIT_S for company, then goes: with the
    production 1 s an update reaches the Market within a second and a half."""
    bench = shared
    latencies = []
    for i in range(7):
        sku = f"IDLE-{i}"
        pushed = time.time()
        push_business_stocks(BUSINESS, [{"sku": sku, "warehouse": WAREHOUSES[i % 2], "count": i + 1}],
                             buffer=bench.buffer)
        wait_for(lambda: market_stock(bench).get((WAREHOUSES[i % 2], sku)) == i + 1, 10, f"{sku} at the Market",
                 interval=0.02)
        latencies.append(time.time() - pushed)
    assert statistics.median(latencies) <= BATCH_WAIT_S + 0.5, latencies
    assert len([e for e in v3_calls(bench) if e["status"] == 200]) == 7


def test_a_poison_item_is_isolated_per_warehouse_and_the_rest_delivered(shared):
    bench = shared
    bench.admin(f"business/{BUSINESS}/poison", {"skus": ["BAD"], "warehouse": 502})
    items = [{"sku": sku, "warehouse": w, "count": 3} for w in WAREHOUSES for sku in ("A", "B", "BAD", "C")]
    push_business_stocks(BUSINESS, items, buffer=bench.buffer)
    target = business_target(BUSINESS)
    wait_for(lambda: bench.buffer.pending(target) == 0 and bench.buffer.in_flight(target) == 0
             and bench.buffer.dead_letters(target), 30, "isolation to finish")
    letters = bench.buffer.dead_letters(target)
    assert [d["sku"] for d in letters] == [item_key(502, "BAD")]
    assert market_stock(bench) == {(w, s): 3 for w in WAREHOUSES for s in ("A", "B", "BAD", "C")
                                   if (w, s) != (502, "BAD")}


def test_ymsync_push_business_with_a_warehouse_column_and_wait(shared, tmp_path):
    bench = shared
    path = tmp_path / "stock.csv"
    path.write_text("sku,count,updatedAt,warehouse\nP-1,4,,501\nP-2,0,,\nP-1,9,,502\n")
    env = {**os.environ, **bench.env(**CABINET)}
    done = subprocess.run([sys.executable, "-m", "ymsync.cli", "push", "--business", str(BUSINESS), "--warehouse", "502",
                           str(path), "--wait", "--timeout", "60"], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "queued 3 update(s) for business 7: 3 accepted" in done.stdout
    assert "delivered 3 of 3" in done.stdout
    assert market_stock(bench) == {(501, "P-1"): 4, (502, "P-2"): 0, (502, "P-1"): 9}
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,count,warehouse\nP-3,1,x\n")
    refused = subprocess.run([sys.executable, "-m", "ymsync.cli", "push", "--business", str(BUSINESS), str(bad)],
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "line 2: warehouse: warehouse must be a positive integer (the partnerWarehouseId), got 'x'" in refused.stderr


def test_an_unknown_warehouse_is_refused_at_enqueue_or_dead_lettered_with_the_markets_message(shared, tmp_path):
    bench = shared
    env = {**os.environ, **bench.env(**CABINET)}
    path = tmp_path / "unknown.csv"
    path.write_text("sku,count,warehouse\nU-1,1,999\nU-2,2,501\n")
    refused = subprocess.run([sys.executable, "-m", "ymsync.cli", "push", "--business", str(BUSINESS), str(path)],
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "line 2: warehouse: warehouse 999: not a warehouse of business 7" in refused.stderr
    # A producer that skipped the check (or a warehouse removed since): the Market refuses the
    # item, which is dead-lettered with its message; the rest of the request is delivered.
    push_business_stocks(BUSINESS, [{"sku": "U-1", "warehouse": 999, "count": 1},
                                    {"sku": "U-2", "warehouse": 501, "count": 2}], buffer=bench.buffer)
    target = business_target(BUSINESS)
    letters = wait_for(lambda: bench.buffer.dead_letters(target), 30, "the refused item's dead letter")
    assert [d["sku"] for d in letters] == [item_key(999, "U-1")]
    assert "warehouse 999" in letters[0]["reason"]
    wait_for(lambda: market_stock(bench) == {(501, "U-2"): 2}, 30, "the rest delivered")
