"""The stock push pipeline end to end: producer → Redis buffer → real Celery worker → sandbox over HTTP."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.support.processes import CeleryWorker, wait_for
from ymsync import InvalidInput, push_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.config.settings import Quota


@pytest.fixture()
def market():
    config = SandboxConfig(campaigns=(CampaignConfig(501), CampaignConfig(502)),
                           quotas={"updateStocks": Quota(100_000, 60), "getStocks": None,
                                   "generateStocksOnWarehousesReport": None, "getReportInfo": None})
    with MarketSandbox(config=config) as sandbox:
        yield sandbox


def sandbox_stocks(market, campaign: int) -> dict[str, int]:
    data = requests.get(f"{market.url}/_admin/stocks/{campaign}", timeout=5).json()
    return {sku: v["count"] for sku, v in data.items()}


def test_latest_value_wins_under_shuffled_arrival_and_coalesces(market, redis_server, clean_redis, tmp_path):
    base = datetime.now(timezone.utc) - timedelta(minutes=30)
    updates = [{"sku": f"SKU-{i % 100}", "count": n, "updatedAt": (base + timedelta(milliseconds=100 * n)).isoformat()}
               for n, i in enumerate(range(10_000))]
    latest = {}
    for u in updates:
        latest[u["sku"]] = u["count"]  # stamps increase with n, so the last one per SKU wins
    random.Random(7).shuffle(updates)
    buffer = StockBuffer(clean_redis)
    for start in range(0, len(updates), 500):
        push_stocks(501, updates[start:start + 500], buffer=buffer)

    env = {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": "sandbox-token",
           "YM_FLUSH_DELAY_MS": "50"}
    worker = CeleryWorker(env, concurrency=2, name="push", log_path=tmp_path / "worker.log").start()
    try:
        wait_for(lambda: sandbox_stocks(market, 501) == latest, 60, "sandbox to hold the latest values")
    finally:
        worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
    state = requests.get(f"{market.url}/_admin/state", timeout=5).json()
    assert state["stale_writes"] == 0
    # 10,000 updates over 100 SKUs cost about 100 SKU units, not 10,000.
    assert state["campaigns"]["501"]["sku_units"] <= 200
    assert not any(k.startswith("updateStocks 4") for k in state["requests"]), state["requests"]


def test_invalid_input_is_refused_before_anything_is_queued(clean_redis):
    buffer = StockBuffer(clean_redis)
    with pytest.raises(InvalidInput) as caught:
        push_stocks(501, [{"sku": "ok", "count": 1}, {"sku": " ", "count": 2}, {"sku": "x", "count": -5}],
                    buffer=buffer)
    assert caught.value.errors == [
        "item 1: sku: SKU is empty or blank: ''",
        'item 2 (SKU "x"): count: count must be between 0 and 2000000000, got -5',
    ]
    assert buffer.pending(501) == 0
