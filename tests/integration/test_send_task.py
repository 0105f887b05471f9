"""A foreign producer (any Celery client, no ymsync import) sends `ymsync.stocks.update`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from typing import Iterator

import pytest
import redis
import requests
from celery import Celery

from tests.support.processes import CeleryWorker, wait_for
from ymsync.engine.buffer import StockBuffer
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig

pytestmark = pytest.mark.integration
CAMPAIGN = 611


@pytest.fixture()
def market() -> Iterator[MarketSandbox]:
    with MarketSandbox(config=SandboxConfig(campaigns=(CampaignConfig(CAMPAIGN),))) as sandbox:
        yield sandbox


def test_valid_items_are_delivered_and_invalid_ones_dead_lettered_with_the_reason(redis_server, market, tmp_path):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    env = {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": "sandbox-token",
           "YM_FLUSH_DELAY_MS": "50"}
    worker = CeleryWorker(env, concurrency=1, name="foreign", log_path=tmp_path / "worker.log").start()
    producer = Celery(broker=redis_server.url)
    items = [{"sku": "OK-1", "count": 3}, {"sku": "BAD-1", "count": "three"}, {"sku": "", "count": 1},
             {"sku": "OK-2", "count": 0, "updatedAt": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()}, "not an object"]
    try:
        # The message says when it was enqueued: items without their own updatedAt take that time.
        producer.send_task("ymsync.stocks.update", args=[CAMPAIGN, items], queue="stocks",
                           kwargs={"stamped_at": datetime.now(timezone.utc).isoformat()})
        # Without either, the task cannot know when the value was current: refused, with the reason.
        producer.send_task("ymsync.stocks.update", args=[CAMPAIGN, [{"sku": "NO-STAMP", "count": 1}]], queue="stocks")
        buffer = StockBuffer(client)
        wait_for(lambda: requests.get(f"{market.url}/_admin/stocks/{CAMPAIGN}", timeout=5).json().keys()
                 == {"OK-1", "OK-2"}, 30, "the valid items to reach the sandbox")
        letters = wait_for(lambda: len(buffer.dead_letters(CAMPAIGN)) == 4 and buffer.dead_letters(CAMPAIGN),
                           10, "four dead letters")
    finally:
        worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
    by_sku = {d["sku"]: d for d in letters}
    assert set(by_sku) == {"BAD-1", "", "item 4", "NO-STAMP"}
    assert by_sku["NO-STAMP"]["reason"].startswith("invalid input: updatedAt: updatedAt is required here")
    assert by_sku["BAD-1"]["reason"] == "invalid input: count: count must be an integer, got 'three'"
    assert by_sku[""]["reason"] == "invalid input: sku: SKU is empty or blank: ''"
    assert by_sku["item 4"]["reason"].startswith("invalid input: expected an object")
    # Invalid input has no value to send: replaying leaves it a dead letter rather than failing.
    assert buffer.replay(CAMPAIGN) == 0
    assert len(buffer.dead_letters(CAMPAIGN)) == 4
