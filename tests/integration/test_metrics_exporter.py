"""``ymsync metrics`` as a real process, scraped over HTTP after real pushes and deliveries."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Iterator

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ROOT, CeleryWorker, wait_for
from tests.support.redis_server import free_port
from ymsync import push_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.sandbox import MarketSandbox, SandboxConfig
from ymsync.config.settings import child_environ

pytestmark = pytest.mark.integration
A, B = 7101, 7102


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(url, timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture()
def exporter(redis_server, tmp_path) -> Iterator[str]:
    redis.Redis.from_url(redis_server.url).flushdb()
    port = free_port()
    env = child_environ({"REDIS_URL": redis_server.url, "YM_QUOTA_UPDATE_STOCKS": "5000/60"})
    proc = subprocess.Popen([sys.executable, "-m", "ymsync.cli", "metrics", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: proc.poll() is not None or _up(url), 20, "the exporter to answer")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def test_pending_then_delivered_quota_and_dead_letters(redis_server, exporter, tmp_path):
    buffer = StockBuffer(redis.Redis.from_url(redis_server.url))
    push_stocks(A, [{"sku": f"A-{i}", "count": i} for i in range(120)], buffer=buffer)
    push_stocks(B, [{"sku": f"B-{i}", "count": i} for i in range(30)], buffer=buffer)
    # A foreign producer's invalid item becomes a dead letter (as the update task does).
    buffer.dead_letter_raw(B, "invalid:t:0", {"sku": "B-bad", "count": None, "stamp_ms": None, "first_ms": None,
                                              "reason": "invalid input", "at_ms": 0})
    m = scrape(exporter)
    assert m[("ymsync_redis_up", ())] == 1
    assert m[("ymsync_pending_skus", (("campaign", str(A)),))] == 120
    assert m[("ymsync_pending_skus", (("campaign", str(B)),))] == 30
    assert m[("ymsync_updates_received_total", (("campaign", str(A)),))] == 120
    assert m[("ymsync_skus_delivered_total", (("campaign", str(A)),))] == 0
    assert m[("ymsync_quota_limit", (("method", "update_stocks"),))] == 5000
    assert m[("ymsync_quota_window_seconds", (("method", "update_stocks"),))] == 60

    with MarketSandbox(config=SandboxConfig()) as market:
        env = {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": "sandbox-token",
               "YM_FLUSH_DELAY_MS": "50", "YM_QUOTA_UPDATE_STOCKS": "5000/60"}
        worker = CeleryWorker(env, concurrency=1, name="metricsw", log_path=tmp_path / "worker.log").start()
        try:
            wait_for(lambda: scrape(exporter)[("ymsync_skus_delivered_total", (("campaign", str(A)),))] == 120
                     and scrape(exporter)[("ymsync_skus_delivered_total", (("campaign", str(B)),))] == 30,
                     45, "both campaigns delivered, as the exporter sees it", interval=0.3)
        finally:
            worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
    m = scrape(exporter)
    assert m[("ymsync_pending_skus", (("campaign", str(A)),))] == 0
    assert m[("ymsync_in_flight_skus", (("campaign", str(A)),))] == 0
    # The quota window (60 s) still holds what was just sent, as the limiter counts it.
    assert m[("ymsync_quota_used", (("key", str(A)), ("method", "update_stocks")))] == 120
    assert m[("ymsync_quota_used", (("key", str(B)), ("method", "update_stocks")))] == 30
    assert m[("ymsync_dead_letters", (("campaign", str(B)),))] == 1
    assert m[("ymsync_rate_limited_total", (("campaign", str(A)),))] == 0
    assert m[("ymsync_paused_seconds", (("campaign", str(A)),))] == 0


def test_redis_down_is_a_metric_not_an_error(tmp_path):
    port = free_port()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.Popen([sys.executable, "-m", "ymsync.cli", "metrics", "--port", str(port)], cwd=ROOT,
                            env=child_environ({"REDIS_URL": dead}), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _up(url), 20, "the exporter to answer")
        assert scrape(url)[("ymsync_redis_up", ())] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
