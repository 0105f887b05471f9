"""`ymsync push`, `status` and `dead-letters` as a user runs them: real processes end to end.

The CLI and a `celery -A tasks worker -Q stocks` run as child processes against a private
redis-server and the sandbox over HTTP.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from typing import Iterator

import pytest
import redis
import requests

from tests.support.processes import ROOT, CeleryWorker
from ymsync.engine.buffer import StockBuffer
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.config.settings import Quota

pytestmark = pytest.mark.integration

KNOWN, FOREIGN = 601, 699  # the sandbox's token may touch 601; 699 answers 403


@pytest.fixture()
def market() -> Iterator[MarketSandbox]:
    config = SandboxConfig(campaigns=(CampaignConfig(KNOWN),),
                           quotas={"updateStocks": Quota(100_000, 60), "getStocks": None,
                                   "generateStocksOnWarehousesReport": None, "getReportInfo": None})
    with MarketSandbox(config=config) as sandbox:
        yield sandbox


@pytest.fixture()
def env(redis_server, market) -> dict[str, str]:
    redis.Redis.from_url(redis_server.url).flushdb()
    return {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": "sandbox-token",
            "YM_FLUSH_DELAY_MS": "50"}


@pytest.fixture()
def worker(env, tmp_path) -> Iterator[CeleryWorker]:
    w = CeleryWorker(env, concurrency=2, name="cli", log_path=tmp_path / "worker.log").start()
    yield w
    w.kill()  # teardown: nothing here tests a graceful shutdown


def ymsync(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ymsync.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def sandbox_stocks(market: MarketSandbox, campaign: int) -> dict[str, int]:
    data = requests.get(f"{market.url}/_admin/stocks/{campaign}", timeout=10).json()
    return {sku: v["count"] for sku, v in data.items()}


def test_push_of_a_100k_line_file_with_wait_leaves_the_sandbox_equal_to_the_file(env, worker, market, tmp_path):
    rng = random.Random(3)
    expected = {f"SKU-{i:06d}": rng.randint(0, 5000) for i in range(100_000)}
    path = tmp_path / "stocks.csv"
    path.write_text("sku,count\n" + "".join(f"{sku},{count}\n" for sku, count in expected.items()))

    result = ymsync(env, "push", "--campaign", str(KNOWN), str(path), "--wait", "--timeout", "100")

    assert result.returncode == 0, result.stderr
    assert "delivered 100000 of 100000 SKU(s), 0 dead-lettered" in result.stdout
    assert sandbox_stocks(market, KNOWN) == expected
    state = requests.get(f"{market.url}/_admin/state", timeout=5).json()
    assert state["campaigns"][str(KNOWN)]["sku_units"] == 100_000  # each SKU sent once
    assert not any(k.startswith("updateStocks 4") for k in state["requests"]), state["requests"]

    # The same file again (a nightly full import, say): nothing changed, so nothing is sent.
    again = ymsync(env, "push", "--campaign", str(KNOWN), str(path), "--wait", "--timeout", "30")
    assert again.returncode == 0, again.stderr
    assert "0 accepted, 100000 unchanged" in again.stdout
    assert "delivered 100000 of 100000 SKU(s)" in again.stdout
    state = requests.get(f"{market.url}/_admin/state", timeout=5).json()
    assert state["campaigns"][str(KNOWN)]["sku_units"] == 100_000

    status = json.loads(ymsync(env, "status", "--json").stdout)
    # The window holds the 100,000 units sent, less what left it: on a busy machine the test may
    # outlast the quota's minute.
    used = status[0].pop("quota_used")
    assert 0 < used <= 100_000, used
    assert status == [{"campaign": KNOWN, "pending": 0, "in_flight": 0, "delivered": 100_000, "dead_letters": 0,
                       "quota_amount": 100_000, "paused_until": None,
                       "pause_reason": None, "target": f"c{KNOWN}", "campaigns": []}]


def test_invalid_lines_are_all_located_and_nothing_is_queued(env, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("sku,count,updatedAt\nA-1,5,\n  ,2,\nA-3,many,\nA-4,3,2099-01-01T00:00:00Z\nA-5,1\n")

    result = ymsync(env, "push", "--campaign", str(KNOWN), str(path))

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[:4] == [
        f"{path}: line 3: sku: SKU is empty or blank: ''",
        f"{path}: line 4: count: count must be an integer, got 'many'",
        f"{path}: line 5: updatedAt: updatedAt is in the future: 2099-01-01T00:00:00+00:00",
        f"{path}: line 6: expected 3 fields (sku,count,updatedAt), got 2",
    ]
    assert "4 invalid line(s); nothing queued" in lines[4]
    assert redis.Redis.from_url(env["REDIS_URL"]).keys("ymsync:*") == []


def test_skip_invalid_queues_the_valid_rest_from_json_lines_on_stdin(env, worker, market):
    stdin = '{"sku": "J-1", "count": 4}\n{"sku": "J-2", "count": -1}\nnot json\n\n{"sku": " J-3 ", "count": 0}\n'

    result = ymsync(env, "push", "--campaign", str(KNOWN), "-", "--skip-invalid", "--wait", "--timeout", "60",
                    stdin=stdin)

    assert result.returncode == 0, result.stderr
    assert "-: line 3: not valid JSON" in result.stderr
    assert "-: line 2: count: count must be between 0 and 2000000000, got -1" in result.stderr
    assert "delivered 2 of 2 SKU(s)" in result.stdout
    assert sandbox_stocks(market, KNOWN) == {"J-1": 4, "J-3": 0}  # SKUs are trimmed


def test_a_refused_campaign_halts_wait_keeps_the_backlog_and_dead_letters_are_listed_replayed_purged(
        env, worker, market, tmp_path):
    path = tmp_path / "foreign.csv"
    path.write_text("sku,count\nF-1,1\nF-2,2\n")

    # The token may not touch this campaign (403): the campaign halts, nothing is dead-lettered,
    # and --wait says so instead of waiting out its timeout.
    result = ymsync(env, "push", "--campaign", str(FOREIGN), str(path), "--wait", "--timeout", "60")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "delivered 0 of 2 SKU(s), 0 dead-lettered" in result.stdout
    assert f"campaign {FOREIGN} is halted: HTTP 403" in result.stderr and "are kept" in result.stderr
    status = json.loads(ymsync(env, "status", "--campaign", str(FOREIGN), "--json").stdout)[0]
    assert status["dead_letters"] == 0 and status["paused_until"] is not None
    assert status["pause_reason"].startswith("halted: HTTP 403")
    assert f"Access denied to campaignId {FOREIGN}" in status["pause_reason"]
    buffer = StockBuffer(redis.Redis.from_url(env["REDIS_URL"]))
    assert buffer.pending(FOREIGN) + buffer.in_flight(FOREIGN) == 2  # held back by the halt, not lost

    # Dead letters (made here as a refused request would leave them) list, replay and purge.
    batch = buffer.take(FOREIGN, 10, 10**6, 60)
    assert batch is not None and len(batch) == 2
    buffer.settle(batch, "dead", reason="refused by the Market")
    listed = [json.loads(line) for line in ymsync(env, "dead-letters", "list", "--json").stdout.splitlines()]
    assert sorted((d["campaign"], d["sku"], d["count"]) for d in listed) == [(FOREIGN, "F-1", 1), (FOREIGN, "F-2", 2)]
    assert ymsync(env, "dead-letters", "replay", "--campaign", str(FOREIGN), "--sku", "F-2").stdout.strip() == \
        f"replayed 1 dead letter(s) for campaign {FOREIGN}"
    assert buffer.pending(FOREIGN) + buffer.in_flight(FOREIGN) == 1  # held back by the halt, not lost
    assert ymsync(env, "dead-letters", "purge", "--campaign", str(FOREIGN), "--yes").stdout.strip() == \
        f"purged 1 dead letter(s) for campaign {FOREIGN}"
    assert buffer.dead_letters(FOREIGN) == []
