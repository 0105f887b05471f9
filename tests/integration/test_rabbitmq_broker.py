"""The push pipeline with Celery's broker on RabbitMQ while ymsync's state stays on Redis.

CELERY_BROKER_URL names a private RabbitMQ node (started here, never the machine's own); REDIS_URL
a private Redis that keeps the stock buffer, quotas and leases, and Celery's results. Stocks pushed
into the buffer reach the sandbox through real workers, and the broker traffic provably went through
RabbitMQ: its queues exist there, and the state Redis holds none of Celery's broker keys.
"""

from __future__ import annotations

import pytest
import requests

from tests.support.processes import CeleryWorker, wait_for
from tests.support.rabbitmq_server import RabbitMQServer, rabbitmq_missing
from ymsync import push_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(rabbitmq_missing() is not None, reason=f"no private RabbitMQ: {rabbitmq_missing()}")]

CAMPAIGN = 811


@pytest.fixture(scope="module")
def rabbitmq():
    server = RabbitMQServer().start()
    yield server
    server.stop()


def test_push_pipeline_with_a_rabbitmq_broker_and_state_on_redis(rabbitmq, redis_server, clean_redis, tmp_path):
    ours = {f"RQ-{i:04d}": i % 23 for i in range(3000)}
    buffer = StockBuffer(clean_redis)
    with MarketSandbox(config=SandboxConfig(campaigns=(CampaignConfig(CAMPAIGN),))) as market:
        env = {"REDIS_URL": redis_server.url, "CELERY_BROKER_URL": rabbitmq.url, "YM_API_URL": market.url,
               "YM_API_KEY": "sandbox-token", "YM_FLUSH_DELAY_MS": "50", "YM_REPORTS_DIR": str(tmp_path / "r")}
        workers = [CeleryWorker(env, queues="stocks", concurrency=2, name=f"rq{i}",
                                log_path=tmp_path / f"worker{i}.log").start() for i in range(2)]
        try:
            wait_for(lambda: "stocks" in rabbitmq.ctl("list_queues", "name").split(), 90,
                     "the workers to declare their queue on RabbitMQ")
            for start in range(0, len(ours), 500):  # a shop pushing in several calls
                chunk = list(ours.items())[start:start + 500]
                push_stocks(CAMPAIGN, [{"sku": k, "count": v} for k, v in chunk], buffer=buffer)

            def market_holds_ours() -> bool:
                got = requests.get(f"{market.url}/_admin/stocks/{CAMPAIGN}", timeout=10).json()
                return {sku: v["count"] for sku, v in got.items()} == ours

            wait_for(market_holds_ours, 120, "the sandbox to hold every pushed value", interval=0.5)
            wait_for(lambda: buffer.pending(CAMPAIGN) == 0 and buffer.in_flight(CAMPAIGN) == 0, 30, "a settled buffer")
            assert len(buffer.delivered(CAMPAIGN)) == len(ours)
        finally:
            for worker in workers:
                worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
        logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
        assert f"amqp://guest:**@127.0.0.1:{rabbitmq.port}//" in logs  # Celery's banner names its transport
        assert "ymsync.stocks.flush" in logs and "succeeded" in logs
        state = requests.get(f"{market.url}/_admin/state", timeout=10).json()
        assert state["stale_writes"] == 0 and state["requests"].get("updateStocks 420", 0) == 0
    # ymsync's state is on Redis, Celery's messages never were: no kombu bindings, no queue lists.
    names = {k.decode() for k in clean_redis.scan_iter(count=1000)}
    assert not {n for n in names if n.startswith("_kombu") or n in ("stocks", "reports", "unacked", "unacked_index")}
    assert any(n.startswith("ymsync:") for n in names)
