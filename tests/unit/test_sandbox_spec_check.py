"""The sandbox's test mode: a request the official OpenAPI description refuses is answered 400,
recorded (admin API, violations file) and never applied; conforming traffic passes untouched.

These sandboxes get their own SpecCheckSettings (their own violations file), so the requests they
refuse on purpose do not reach the session's record that tests/conftest.py fails the run on.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from tests.support.spec import spec_check_missing, spec_path
from ymsync.market import MarketClient, StockLevel
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.settings import Credentials, Secret, SpecCheckSettings, load_spec_check

if spec_check_missing():
    pytest.skip(spec_check_missing(), allow_module_level=True)

TOKEN = "sandbox-token"
HEADERS = {"Api-Key": TOKEN}


@pytest.fixture(scope="module")
def log_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spec") / "violations.jsonl"


@pytest.fixture(scope="module")
def market(log_path):
    config = SandboxConfig(campaigns=(CampaignConfig(5),), quotas={})
    with MarketSandbox(config=config, spec_check=SpecCheckSettings(spec_path(), log_path)) as sandbox:
        yield sandbox


def violations(market) -> dict:
    response = requests.get(f"{market.url}/_admin/spec-violations", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def new_violations(market, before: dict) -> list[dict]:
    return violations(market)["violations"][len(before["violations"]):]


def test_get_stocks_with_limit_101_is_refused_and_recorded(market, log_path):
    before = violations(market)
    response = requests.post(f"{market.url}/v2/campaigns/5/offers/stocks?limit=101", json={}, headers=HEADERS)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["code"] == "BAD_REQUEST"
    assert error["message"].startswith("The request does not match the Market's OpenAPI description (getStocks): ")
    assert "101 is greater than the maximum of 100" in error["message"]
    (seen,) = new_violations(market, before)
    assert (seen["operation"], seen["method"], seen["path"]) == ("getStocks", "POST", "/v2/campaigns/5/offers/stocks")
    assert "limit" in seen["message"] and "maximum of 100" in seen["message"]
    logged = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert logged[-1] == seen
    # The same call within the limit passes; an empty page_token (the alias of pageToken) does not.
    assert requests.post(f"{market.url}/v2/campaigns/5/offers/stocks?limit=100", json={},
                         headers=HEADERS).status_code == 200
    empty = requests.post(f"{market.url}/v2/campaigns/5/offers/stocks?limit=100&page_token=", json={}, headers=HEADERS)
    assert empty.status_code == 400 and "pageToken query parameter cannot be empty" in empty.text


def test_a_bad_update_body_is_refused_before_it_touches_stock(market):
    before = violations(market)
    stamp = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    bodies = [
        {"skus": [{"sku": "a", "items": [{"count": -1}]}]},  # a negative count
        {"skus": [{"sku": "b", "items": [{"count": 1, "updatedAt": "yesterday"}]}]},  # not a date-time
        {"skus": [{"sku": "c" * 256, "items": [{"count": 1, "updatedAt": stamp}]}]},  # SKU over 255 characters
        {"skus": [{"sku": "d", "items": [{"count": 1}]}] * 2001},  # over 2000 SKUs
        {"offers": []},  # no skus at all
    ]
    for body in bodies:
        response = requests.put(f"{market.url}/v2/campaigns/5/offers/stocks", json=body, headers=HEADERS)
        assert response.status_code == 400 and "does not match the Market's OpenAPI description" in response.text
    found = new_violations(market, before)
    assert [v["operation"] for v in found] == ["updateStocks"] * len(bodies)
    assert "-1 is less than the minimum of 0" in found[0]["message"]
    assert "'yesterday' is not a 'date-time'" in found[1]["message"]
    assert "is too long" in found[2]["message"] and "is too long" in found[3]["message"]
    assert "'skus' is a required property" in found[4]["message"]
    assert requests.get(f"{market.url}/_admin/stocks/5", timeout=10).json() == {}
    counts = requests.get(f"{market.url}/_admin/state", timeout=10).json()["requests"]
    assert counts["updateStocks 400"] >= len(bodies)


def test_missing_credentials_unknown_paths_and_parameters_are_violations(market):
    before = violations(market)
    assert requests.post(f"{market.url}/v2/campaigns/5/offers/stocks", json={}).status_code == 400
    assert requests.post(f"{market.url}/v2/campaigns/5/offers/stocks?pageSize=5", json={},
                         headers=HEADERS).status_code == 400
    assert requests.get(f"{market.url}/v2/no/such/method", headers=HEADERS).status_code == 400
    assert requests.post(f"{market.url}/v2/reports/stocks-on-warehouses/generate?format=PDF",
                         json={"campaignId": 5}, headers=HEADERS).status_code == 400
    found = new_violations(market, before)
    assert [(v["operation"], v["message"].split(":")[0]) for v in found] == [
        ("getStocks", "no credentials for security schemes ApiKey or OAuth"),
        ("getStocks", "undeclared query parameter 'pageSize'"),
        (None, "PathNotFound"),
        ("generateStocksOnWarehousesReport", "InvalidParameter")]


def test_conforming_client_traffic_passes_and_is_counted(market):
    before = violations(market)
    now = datetime.now(timezone.utc)
    with MarketClient(market.url, Credentials(api_key=Secret(TOKEN))) as client:
        client.update_stocks(5, [StockLevel(f"sku-{i:04d}", i, now) for i in range(2000)])
        client.update_stocks(5, [StockLevel("Кроссовки «Бег» 42½", 3)])
        page = client.get_stocks(5, limit=100)
        client.get_stocks(5, page_token=page.next_page_token, limit=100)
        ticket = client.generate_stocks_on_warehouses_report({"campaignId": 5}, format="CSV")
        client.get_report_info(ticket.report_id)
    after = violations(market)
    assert after["violations"] == before["violations"]
    assert after["checked"] == before["checked"] + 6
    assert requests.get(f"{market.url}/_admin/stocks/5", timeout=10).json()["sku-1999"]["count"] == 1999


def test_violations_survive_an_admin_reset(market):
    requests.post(f"{market.url}/v2/campaigns/5/offers/stocks?limit=0", json={}, headers=HEADERS)
    before = violations(market)
    assert requests.post(f"{market.url}/_admin/reset", json={}).status_code == 200
    assert violations(market)["violations"] == before["violations"] != []


def test_the_mode_is_off_unless_asked_for(monkeypatch):
    monkeypatch.delenv("YM_SANDBOX_SPEC_CHECK", raising=False)
    assert load_spec_check() is None
    with MarketSandbox(config=SandboxConfig(quotas={})) as plain:
        assert plain.server.spec_check is None
        assert violations(plain) == {"enabled": False, "checked": 0, "violations": []}
        # The sandbox's own checks still answer a malformed request, with their own words.
        response = requests.post(f"{plain.url}/v2/campaigns/5/offers/stocks?limit=abc", json={}, headers=HEADERS)
        assert response.status_code == 400 and "OpenAPI" not in response.text
    monkeypatch.setenv("YM_SANDBOX_SPEC_CHECK", str(spec_path()))
    with MarketSandbox(config=SandboxConfig(quotas={}), spec_check=False) as opted_out:
        assert opted_out.server.spec_check is None


def test_a_full_update_body_is_checked_quickly(market):
    """The compiled body schema keeps the check cheap for 2000-SKU requests (openapi-core alone
    re-reads a $ref'd file per item: ~2 s a request)."""
    stamp = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    body = json.dumps({"skus": [{"sku": f"s-{i:05d}", "items": [{"count": i, "updatedAt": stamp}]}
                                for i in range(2000)]}).encode()
    check = market.server.spec_check
    check.validator.check_request("PUT", "/v2/campaigns/5/offers/stocks", [], {**HEADERS, "Content-Type":
                                  "application/json"}, body)  # compiles the schema once
    started = time.perf_counter()
    for _ in range(5):
        operation, errors, _ = check.validator.check_request(
            "PUT", "/v2/campaigns/5/offers/stocks", [], {**HEADERS, "Content-Type": "application/json"}, body)
    per_request = (time.perf_counter() - started) / 5
    assert (operation, errors) == ("updateStocks", [])
    assert per_request < 0.5, f"{per_request:.3f}s to check one 2000-SKU body"
