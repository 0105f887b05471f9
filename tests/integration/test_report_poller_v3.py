"""The v3 business stocks report through ReportPoller against the sandbox: its own quota counted
per business (and the Medium tier's shorter window), the groups refusal as a clear outcome."""

from __future__ import annotations

import csv
import time

import pytest
import redis
import requests

from ymsync.config.cabinets import Cabinet
from ymsync.market import MarketClient
from ymsync.engine.quota import QuotaLimiter
from ymsync.reports.poller import GENERATE, GENERATE_V3, PollState, ReportPoller
from ymsync.reports.request import ReportRequest
from ymsync.sandbox import MarketSandbox, SandboxConfig
from ymsync.config.settings import Credentials, Quota, Secret


@pytest.fixture()
def market():
    with MarketSandbox(config=SandboxConfig(report_delay_s=0.2, quotas={"generateStocksReport": None})) as sandbox:
        admin = f"{sandbox.url}/_admin"
        requests.post(f"{admin}/businesses", timeout=5, json=[
            {"id": 7, "warehouses": [{"id": 11, "name": "Север"}, {"id": 12, "name": "Юг"}]},
            {"id": 8, "groups": True, "warehouses": [{"id": 21}]}]).raise_for_status()
        requests.post(f"{admin}/business/7/stocks", json={"11": {"A": 1, "B": 0}, "12": {"C": 3}},
                      timeout=5).raise_for_status()
        yield sandbox


@pytest.fixture()
def rclient(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    return client


def poller(market, rclient, tmp_path, tier: str = "basic") -> tuple[ReportPoller, QuotaLimiter]:
    cabinet = Cabinet("c", 7, Credentials(api_key=Secret("sandbox-token")), "v3", tier)
    base = {GENERATE: Quota(1, 120), GENERATE_V3: Quota(1, 120), "report_info": Quota(100, 60)}
    limiter = QuotaLimiter(rclient, cabinet.quotas(base))
    client = MarketClient(market.url, cabinet.credentials)
    return ReportPoller(client, limiter, rclient, tmp_path, min_poll_s=0.05, max_poll_s=0.5), limiter


def test_business_report_counts_its_own_quota_per_business(market, rclient, tmp_path):
    p, limiter = poller(market, rclient, tmp_path)
    request = ReportRequest.business_stocks(7, "CSV", warehouse_ids=[11])
    outcome = p.run(PollState.new(request), sleep=time.sleep)
    assert outcome.status == "DONE", outcome.reason
    assert outcome.sheets == ["stocks_business"]
    with open(outcome.rows_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert outcome.rows == 2 and {r["SHOP_SKU"] for r in rows} == {"A", "B"}  # warehouse 11 only
    assert limiter.usage(GENERATE_V3, "b7") == (1, 1)
    assert limiter.usage(GENERATE, "all")[0] == 0  # the v2 report quota is untouched
    # A second, different v3 report of the same business waits for the window (1 per 2 minutes).
    state = PollState.new(ReportRequest.business_stocks(7, "JSON"))
    step = p.step(state)
    assert step.outcome is None and step.state.phase == "generate" and step.state.last_status == "waiting-quota"


def test_medium_subscription_halves_the_report_window(market, rclient, tmp_path):
    _, limiter = poller(market, rclient, tmp_path, tier="medium")
    assert limiter.quotas[GENERATE_V3] == Quota(1, 60)


def test_cabinet_with_groups_ends_with_the_mode_to_set(market, rclient, tmp_path):
    p, limiter = poller(market, rclient, tmp_path)
    outcome = p.run(PollState.new(ReportRequest.business_stocks(8, "CSV")), sleep=time.sleep)
    assert outcome.status == "ERROR"
    assert "warehouse groups" in outcome.reason and "v2" in outcome.reason
    assert limiter.usage(GENERATE_V3, "b8")[0] == 1  # a 4xx reply is counted (the Market's rule, README)
