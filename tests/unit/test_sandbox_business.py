"""The sandbox's business-level (v3) methods, driven by MarketClient over HTTP (the sandbox checks
every request against the official description: tests/conftest.py turns its spec check on)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from ymsync.market import (MarketBadRequest, MarketClient, MarketForbidden, MarketNetworkError,
                           MarketParallelLimitExceeded, MarketQuotaExceeded, MarketWrongApiMode, StockLevel,
                           WarehouseStockLevel as W)
from ymsync.reports.columns import STOCKS_BUSINESS
from ymsync.reports.parse import read_rows
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.sandbox.business_state import BusinessConfig, TokenScope, WarehouseConfig
from ymsync.config.settings import Credentials, Secret

BUSINESS = BusinessConfig(7, (WarehouseConfig(11, "Склад Север"), WarehouseConfig(12, "Склад Юг", (("EXPRESS", "AVAILABLE"),)),
                              WarehouseConfig(13, "Закрытый", (("DBS", "DISABLED_BY_INACTIVITY"),))))
GROUPS = BusinessConfig(8, (WarehouseConfig(21),), groups=True)
CAMPAIGNS = (CampaignConfig(71, 7, "FBS"), CampaignConfig(72, 7, "FBY"), CampaignConfig(81, 8, "FBS"))


@pytest.fixture
def market():
    config = SandboxConfig(businesses=(BUSINESS, GROUPS), campaigns=CAMPAIGNS, report_delay_s=0.2,
                           tokens=("sandbox-token", "only-8"), token_scopes={"only-8": TokenScope(campaigns=frozenset({81}))})
    with MarketSandbox(config=config) as sandbox:
        yield sandbox


def client_for(market, token="sandbox-token", **kwargs) -> MarketClient:
    return MarketClient(market.url, Credentials(api_key=Secret(token)), **kwargs)


@pytest.fixture
def client(market):
    with client_for(market) as c:
        yield c


def admin(market, route, payload=None):
    response = requests.post(f"{market.url}/_admin/{route}", json=payload) if payload is not None else \
        requests.get(f"{market.url}/_admin/{route}")
    assert response.status_code == 200, response.text
    return response.json()


def test_update_reaches_each_warehouse_and_reads_back(client, market):
    stamp = datetime.now(timezone.utc) - timedelta(minutes=1)
    result = client.update_stocks_v3(7, [W("a", 11, 3, stamp), W("a", 12, 5), W("b", 11, 0)])
    assert result.sku_count == 3 and result.rate_limit.limit == 50 and result.rate_limit.remaining == 49
    stored = admin(market, "business/7/stocks")
    assert {w: {sku: r["count"] for sku, r in skus.items()} for w, skus in stored.items()} == {
        "11": {"a": 3, "b": 0}, "12": {"a": 5}}
    assert datetime.fromisoformat(stored["11"]["a"]["updatedAt"]) == stamp
    page = client.get_stocks_v3(7, 11)
    assert [(o.offer_id, o.warehouse_id, o.available, o.updated_at is not None) for o in page.offers] == [
        ("a", 11, 3, True), ("b", 11, 0, True)] and page.next_page_token is None
    state = admin(market, "state")
    assert state["businesses"]["7"]["item_units"] == 3 and state["quotas"]["updateStocksOnPartnerWarehouses:7"]["used"] == 1


def test_stale_writes_are_counted_per_warehouse_and_sku(client, market):
    now = datetime.now(timezone.utc)
    client.update_stocks_v3(7, [W("a", 11, 1, now), W("a", 12, 1, now - timedelta(minutes=5))])
    client.update_stocks_v3(7, [W("a", 12, 2, now - timedelta(minutes=1))])  # newer on 12: not stale
    assert admin(market, "state")["stale_writes"] == 0
    client.update_stocks_v3(7, [W("a", 11, 9, now - timedelta(minutes=1))])  # older than 11's value
    state = admin(market, "state")
    assert state["stale_writes"] == 1 and state["businesses"]["7"]["stale_writes"] == 1
    assert admin(market, "business/7/stocks")["11"]["a"]["count"] == 9  # applied in arrival order, as the Market does


def test_unknown_or_closed_warehouse_is_refused_naming_the_item(client, market):
    with pytest.raises(MarketBadRequest) as info:
        client.update_stocks_v3(7, [W("ok", 11, 1), W("x", 99, 1), W("y", 13, 1)])
    assert [e.message for e in info.value.errors] == [
        "Stock for 'x' cannot be updated: warehouse 99 is not a warehouse of business 7",
        "Stock for 'y' cannot be updated: warehouse 13 has no work model available through the API "
        "(DBS: DISABLED_BY_INACTIVITY)"]
    assert admin(market, "business/7/stocks") == {}  # the whole request was refused


def test_sandbox_refuses_duplicates_and_stamps_with_the_markets_texts(client, market):
    ahead = datetime.now(timezone.utc) + timedelta(hours=1)
    with pytest.raises(MarketBadRequest) as info:
        client.update_stocks_v3(7, [W("a", 11, 1), W("a", 11, 2), W("b", 12, 1, ahead)], validate=False)
    messages = [e.message for e in info.value.errors]
    assert messages[0] == "Duplicate shop-sku 'a' for warehouse '11' (also item 0)"
    assert messages[1].startswith("Stock for 'b' should not be in the future (")


def test_poisoned_item_refuses_the_request(client, market):
    admin(market, "business/7/poison", {"skus": ["bad"], "warehouse": 12})
    client.update_stocks_v3(7, [W("bad", 11, 1)])  # another warehouse: fine
    with pytest.raises(MarketBadRequest, match="Stock for 'bad' cannot be updated on warehouse 12: the offer is blocked"):
        client.update_stocks_v3(7, [W("good", 11, 1), W("bad", 12, 1)])


def test_cabinet_with_groups_refuses_v3_stock_calls_and_keeps_v2(client, market):
    for call in (lambda: client.update_stocks_v3(8, [W("a", 21, 1)]), lambda: client.get_stocks_v3(8, 21),
                 lambda: client.generate_stocks_report_v3(8)):
        with pytest.raises(MarketWrongApiMode) as info:
            call()
        assert info.value.mode_to_set == "v2" and "warehouse groups" in str(info.value)
        assert not info.value.retryable
    assert [w.id for w in client.get_partner_warehouses(8).warehouses] == [21]  # individual warehouses still listed
    client.update_stocks(81, [StockLevel("a", 4)])
    assert admin(market, "stocks/81") and admin(market, "stocks/81")["a"]["count"] == 4


def test_groupless_cabinet_refuses_v2_update_for_its_own_warehouses(client, market):
    with pytest.raises(MarketWrongApiMode) as info:
        client.update_stocks(71, [StockLevel("a", 1)])
    assert info.value.mode_to_set == "v3" and "YM_API_MODE=v3" in str(info.value)
    client.update_stocks(72, [StockLevel("a", 1)])  # FBY: the Market's warehouses, still campaign-level
    admin(market, "business/7/groups", {"groups": True})
    client.update_stocks(71, [StockLevel("a", 1)])
    with pytest.raises(MarketWrongApiMode):
        client.update_stocks_v3(7, [W("a", 11, 1)])


def test_restricted_token_is_403_outside_its_scope(market):
    with client_for(market, "only-8") as restricted:
        with pytest.raises(MarketForbidden, match="Access denied to businessId 7"):
            restricted.update_stocks_v3(7, [W("a", 11, 1)])
        with pytest.raises(MarketForbidden, match="Access denied to campaignId 71"):
            restricted.update_stocks(71, [StockLevel("a", 1)])
        restricted.update_stocks(81, [StockLevel("a", 1)])
        assert restricted.get_partner_warehouses(8).warehouses  # its campaign's business
    admin(market, "tokens", {"token": "only-7", "businesses": [7]})
    with client_for(market, "only-7") as other:
        other.update_stocks_v3(7, [W("a", 11, 1)])
        with pytest.raises(MarketForbidden):
            other.get_stocks_v3(8, 21)
    with client_for(market) as full, pytest.raises(MarketForbidden, match="Access denied to businessId 9"):
        full.get_partner_warehouses(9)  # businesses are configured: an unknown one is not ours


def test_update_quota_counts_requests_per_business(client, market):
    admin(market, "quotas", {"updateStocksOnPartnerWarehouses": "2/60"})
    client.update_stocks_v3(7, [W(f"s{i}", 11, i) for i in range(2000)])
    client.update_stocks_v3(7, [W("one", 12, 1)])
    with pytest.raises(MarketQuotaExceeded) as info:
        client.update_stocks_v3(7, [W("late", 12, 1)])
    assert info.value.resource == "updateStocksOnPartnerWarehouses" and info.value.until is not None
    assert admin(market, "state")["quotas"]["updateStocksOnPartnerWarehouses:7"]["admitted"] == 2


def test_at_most_four_in_flight_per_business(market):
    admin(market, "faults", {"latency_min_ms": 400, "latency_max_ms": 400})
    clients = [client_for(market) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(c.get_stocks_v3, 7, 11) for c in clients]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(type(f.result()).__name__)
            except MarketParallelLimitExceeded as exc:
                assert "parallel requests for businessId 7" in str(exc)
                outcomes.append("420")
    assert outcomes.count("420") == 2 and admin(market, "state")["parallel_peak"]["business:7"] == 4


def test_late_apply_fault_applies_v3_updates_after_the_client_gave_up(market):
    admin(market, "faults", {"late_apply_rate": 1.0, "late_apply_s": 1.0})
    with client_for(market, connect_timeout=0.2, read_timeout=0.3) as impatient:
        with pytest.raises(MarketNetworkError) as info:
            impatient.update_stocks_v3(7, [W("a", 11, 5)])
    assert info.value.outcome_unknown
    assert admin(market, "business/7/stocks") == {}
    deadline = time.monotonic() + 5
    while not admin(market, "business/7/stocks") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert admin(market, "business/7/stocks")["11"]["a"]["count"] == 5


def test_stock_reads_page_through_one_warehouse(client, market):
    admin(market, "business/7/stocks", {"11": {f"s{i:03d}": i for i in range(130)}, "12": {"other": 1}})
    admin(market, "business/7/archive", ["s005"])
    seen, token = [], None
    while True:
        page = client.get_stocks_v3(7, 11, page_token=token, limit=100)
        seen += [o.offer_id for o in page.offers]
        if not (token := page.next_page_token):
            break
    assert len(seen) == 129 and "s005" not in seen and seen == sorted(seen)
    assert [o.offer_id for o in client.get_stocks_v3(7, 11, archived=True).offers] == ["s005"]
    assert [o.offer_id for o in client.get_stocks_v3(7, 11, offer_ids=["s005", " s001 ", "nope"]).offers] == ["s005", "s001"]
    assert [o.offer_id for o in client.get_stocks_v3(7, 12).offers] == ["other"]
    with pytest.raises(MarketBadRequest, match="partnerWarehouseId 99 is not a warehouse of business 7"):
        client.get_stocks_v3(7, 99)


def test_warehouses_page_and_models(client, market):
    first = client.get_partner_warehouses(7, limit=2)
    assert [(w.id, w.name) for w in first.warehouses] == [(11, "Склад Север"), (12, "Склад Юг")]
    rest = client.get_partner_warehouses(7, page_token=first.next_page_token, limit=2)
    assert [w.id for w in rest.warehouses] == [13] and rest.next_page_token is None
    closed = rest.warehouses[0]
    assert not closed.available and closed.models[0].program == "DBS"
    assert first.warehouses[1].available and first.warehouses[1].models[0].program == "EXPRESS"
    assert first.rate_limit.limit == 100


@pytest.mark.parametrize("fmt", ["FILE", "CSV", "JSON"])
def test_business_report_in_each_format(client, market, tmp_path: Path, fmt):
    admin(market, "business/7/stocks", {"11": {"a": 3, "z": 0}, "12": {"a": 7}})
    ticket = client.generate_stocks_report_v3(7, format=fmt, warehouse_ids=[11, 12], has_stocks=True)
    deadline = time.monotonic() + 5
    while not (info := client.get_report_info(ticket.report_id)).finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert info.done, info
    path = client.download_report(info.file_url, tmp_path / ("r.xlsx" if fmt == "FILE" else "r.zip")).path
    sheets, rows = read_rows(path)
    assert [s.sheet for s in sheets] == [STOCKS_BUSINESS] and sheets[0].missing_columns == []
    assert [(r["SHOP_SKU"], r["WAREHOUSE_AND_SHOP"], r["COUNT"], r["PLACEMENT_TYPE"]) for r in rows] == [
        ("a", "Склад Север (ID 11)", 3, "FBS"), ("a", "Склад Юг (ID 12)", 7, "EXPRESS")]


def test_business_option_parses_and_refuses_with_the_reason():
    parsed = BusinessConfig.parse("7:11,12=EXPRESS,13=dbs/MANUALLY_DISABLED")
    assert parsed.id == 7 and not parsed.groups
    assert [(w.id, w.models, w.available) for w in parsed.warehouses] == [
        (11, (("FBS", "AVAILABLE"),), True), (12, (("EXPRESS", "AVAILABLE"),), True),
        (13, (("DBS", "MANUALLY_DISABLED"),), False)]
    assert BusinessConfig.parse("8:groups:21") == BusinessConfig(8, (WarehouseConfig(21),), groups=True)
    for bad, reason in [("7", "got '7'$"), ("7:1,1", "must not repeat"), ("7:1=XX", r"model \(XX, AVAILABLE\)")]:
        with pytest.raises(ValueError, match=reason):
            BusinessConfig.parse(bad)


def test_state_file_keeps_business_stock(tmp_path: Path):
    from ymsync.sandbox.persist import StateFile

    path = tmp_path / "state.json"
    config = SandboxConfig(businesses=(BUSINESS,))
    with MarketSandbox(config=config) as first:
        saver = StateFile(first.state, path, interval_s=0.05)
        assert saver.start() == 0
        with client_for(first) as client:
            stamp = datetime.now(timezone.utc) - timedelta(minutes=2)
            client.update_stocks_v3(7, [W("a", 11, 3, stamp), W("a", 12, 4)])
        admin(first, "business/7/archive", ["old"])
        saver.close()
        before = admin(first, "business/7/stocks")
    with MarketSandbox(config=config) as second:
        saver = StateFile(second.state, path)
        assert saver.start() == 2
        saver.close()
        assert admin(second, "business/7/stocks") == before
        assert second.state.business.stock(7).archived == {"old"}
        assert datetime.fromisoformat(before["11"]["a"]["updatedAt"]) == stamp
