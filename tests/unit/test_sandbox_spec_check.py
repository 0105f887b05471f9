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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.spec import spec_check_missing, spec_path
from ymsync.market import MarketClient, StockLevel
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.config.settings import Credentials, Secret, SpecCheckSettings, load_spec_check

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


# --- the compiled body schema never accepts what openapi-core refuses ----------------------------

_STAMPS = st.sampled_from(["2026-08-01T10:00:00+03:00", "2026-08-01T10:00:00Z", "2026-08-01T10:00:00.123456+00:00",
                           "2026-08-01T10:00:00+0300", "2026-08-01 10:00:00Z", "2026-13-01T10:00:00Z", "yesterday",
                           "", None, 5])
_ITEM = st.fixed_dictionaries({"count": st.one_of(st.integers(-2, 3), st.integers(2_000_000_000 - 1, 1 << 64),
                                                  st.none(), st.floats(allow_nan=False), st.text(max_size=2))},
                              optional={"updatedAt": _STAMPS, "extra": st.integers()})
_SKU = st.one_of(st.text(max_size=5), st.text(min_size=250, max_size=260), st.sampled_from([" a", "a\n", "\t", " "]),
                 st.none(), st.integers())
_ENTRY = st.fixed_dictionaries({"sku": _SKU, "items": st.lists(_ITEM, max_size=2)}, optional={"note": st.text()})
_GOOD_ENTRY = st.fixed_dictionaries({
    "sku": st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True),
    "items": st.lists(st.fixed_dictionaries({"count": st.integers(0, 2_000_000_000)}, optional={
        "updatedAt": st.sampled_from(["2026-08-01T10:00:00+03:00", "2026-08-01T10:00:00Z"])}), min_size=1, max_size=1)})
_BODIES = st.one_of(st.fixed_dictionaries({"skus": st.lists(_ENTRY, max_size=3)}),
                    st.fixed_dictionaries({"skus": st.lists(_GOOD_ENTRY, min_size=1, max_size=3)}),
                    st.fixed_dictionaries({}, optional={"skus": st.none(), "offers": st.lists(st.integers())}),
                    st.lists(st.integers(), max_size=2))
_READ_BODIES = st.fixed_dictionaries({}, optional={
    "offerIds": st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=3)), "archived": st.one_of(
        st.booleans(), st.none(), st.integers()), "withTurnover": st.booleans(), "hasStocks": st.one_of(
        st.booleans(), st.none()), "stocksWarehouseId": st.one_of(st.integers(-1, 2), st.integers(1 << 62, 1 << 64))})
_REPORT_BODIES = st.fixed_dictionaries({}, optional={
    "campaignId": st.one_of(st.integers(-1, 2), st.none(), st.integers(1 << 62, 1 << 64)),
    "businessId": st.integers(0, 3), "campaignIds": st.lists(st.integers(0, 3), max_size=2),
    "warehouseIds": st.one_of(st.none(), st.lists(st.integers(0, 3), max_size=2)),
    "reportDate": st.sampled_from(["2026-08-01", "2026-8-1", "tomorrow", None]),
    "categoryIds": st.lists(st.integers(-1, 3), max_size=2), "hasStocks": st.one_of(st.booleans(), st.none())})


@pytest.fixture(scope="module")
def validator():
    from ymsync.sandbox.spec_check import load

    return load(str(spec_path()))


@pytest.mark.parametrize("method, path, bodies", [
    ("PUT", "/v2/campaigns/5/offers/stocks", _BODIES),
    ("POST", "/v2/campaigns/5/offers/stocks", _READ_BODIES),
    ("POST", "/v2/reports/stocks-on-warehouses/generate", _REPORT_BODIES)])
def test_compiled_body_schemas_agree_with_openapi_core(validator, method, path, bodies):
    """The shortcut may send a valid body on to openapi-core, never wave an invalid one through."""
    found = validator.finder.find(method.lower(), validator.server + path)
    operation = (found.operation / "operationId").read_str()
    fast = validator._compiled_body(operation, found.operation, "application/json")
    assert fast is not None, f"{operation}: its body schema was not compiled"
    agreed = {"valid": 0, "invalid": 0}

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def check(body):
        raw = json.dumps(body).encode()
        request = validator.request(method, path, [], {**HEADERS, "Content-Type": "application/json"}, raw)
        core = [e for e in validator._body.iter_errors(request)]
        try:
            fast(json.loads(raw))
        except Exception:  # noqa: BLE001 - any refusal: openapi-core is asked, which is always safe
            agreed["invalid"] += bool(core)  # else openapi-core accepts it: allowed, only slower
            return
        assert core == [], f"compiled schema accepted what openapi-core refuses: {body!r}: {core}"
        agreed["valid"] += 1

    check()
    assert agreed["valid"] and agreed["invalid"], agreed  # both verdicts were reached by both
