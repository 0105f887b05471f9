"""The business-level (v3) request rules of ymsync.market.schemas_v3, on the exact texts a user sees."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from ymsync.market import MarketClient, WarehouseStockLevel
from ymsync.market.errors import ApiError, MarketBadRequest, MarketForbidden, MarketWrongApiMode, error_for_status
from ymsync.market.schemas import InvalidRequest, flatten_errors
from ymsync.market.schemas_v3 import (
    GenerateBusinessStocksReportSchema,
    GetPartnerWarehousesQuerySchema,
    GetStocksOnWarehouseQuerySchema,
    UpdateStocksOnWarehousesRequestSchema,
)
from ymsync.config.settings import Credentials, Secret

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc)


def errors(schema, payload) -> list[str]:
    with pytest.raises(ValidationError) as info:
        schema.load(payload)
    return flatten_errors(info.value.messages)


def update(*items) -> UpdateStocksOnWarehousesRequestSchema:
    return UpdateStocksOnWarehousesRequestSchema(now=lambda: NOW)


def item(sku="a", warehouse=5, count=1, **extra):
    return {"sku": sku, "partnerWarehouseId": warehouse, "count": count, **extra}


def test_update_accepts_the_same_sku_on_two_warehouses_and_trims():
    loaded = update().load({"skuItems": [item(" a "), item("a", 6, 0, updatedAt="2026-11-22T12:59:00+03:00")]})
    assert [(i["sku"], i["partnerWarehouseId"]) for i in loaded["skuItems"]] == [("a", 5), ("a", 6)]
    assert loaded["skuItems"][1]["updatedAt"] == datetime(2026, 11, 22, 9, 59, tzinfo=timezone.utc)


def test_update_refuses_a_repeated_pair_with_the_markets_text():
    assert errors(update(), {"skuItems": [item("a", 5), item("b", 5), item(" a", 5, 3)]}) == [
        "skuItems[2].sku: Duplicate shop-sku 'a' for warehouse '5' (also item 0)"]


def test_update_stamp_rules_use_the_v2_texts():
    ahead, old = (NOW + timedelta(seconds=1)).isoformat(), (NOW - timedelta(days=1, seconds=1)).isoformat()
    assert errors(update(), {"skuItems": [item("a", updatedAt=ahead), item("b", updatedAt=old)]}) == [
        "skuItems[0].updatedAt: Stock for 'a' should not be in the future (2026-11-22T10:00:01+00:00)",
        "skuItems[1].updatedAt: Stock for 'b' should not be older than a day (2026-11-21T09:59:59+00:00)"]
    assert errors(update(), {"skuItems": [item(updatedAt="2026-11-22T10:00:00")]}) == [
        "skuItems[0].updatedAt: updatedAt must be an ISO 8601 date-time with a UTC offset "
        "(e.g. 2026-11-22T10:00:00+03:00), got '2026-11-22T10:00:00'"]


def test_update_sizes_and_fields():
    assert errors(update(), {"skuItems": []}) == ["skuItems: skuItems holds 0 items, 1 to 2000 allowed"]
    assert errors(update(), {"skuItems": [item(f"s{i}") for i in range(2001)]}) == [
        "skuItems: skuItems holds 2001 items, 1 to 2000 allowed"]
    assert len(update().load({"skuItems": [item(f"s{i}") for i in range(2000)]})["skuItems"]) == 2000
    assert errors(update(), {"skuItems": [item(warehouse=0, count=-1)]}) == [
        "skuItems[0].partnerWarehouseId: partnerWarehouseId must be at least 1, got 0",
        "skuItems[0].count: count must be between 0 and 2000000000, got -1"]
    assert errors(update(), {"skuItems": [{"sku": "a", "count": 1}]}) == [
        "skuItems[0].partnerWarehouseId: Missing data for required field."]
    assert errors(update(), {"skuItems": [item(warehouse="5")]}) == [
        "skuItems[0].partnerWarehouseId: partnerWarehouseId must be an integer, got '5'"]
    big = {"skuItems": [item("x" * 250 + f"{i:05d}", i % 7 + 1) for i in range(2000)]}
    assert errors(update(), big)[0].startswith("skuItems: The request is too big: ")


def test_stock_read_rules():
    schema = GetStocksOnWarehouseQuerySchema()
    assert schema.load({"partnerWarehouseId": 5, "limit": 100, "pageToken": "t"})["limit"] == 100
    assert errors(schema, {"partnerWarehouseId": 5, "limit": 101}) == ["limit: limit must be between 1 and 100, got 101"]
    assert errors(schema, {"limit": 5}) == ["partnerWarehouseId: Missing data for required field."]
    assert errors(schema, {"partnerWarehouseId": [5, 6]}) == [
        "partnerWarehouseId: partnerWarehouseId must be an integer, got [5, 6]"]
    assert errors(schema, {"partnerWarehouseId": 5, "offerIds": [f"s{i}" for i in range(501)]}) == [
        "offerIds: offerIds holds 501 items, at most 500 allowed"]
    assert errors(schema, {"partnerWarehouseId": 5, "offerIds": ["a"], "limit": 5, "archived": True}) == [
        "offerIds: offerIds cannot be combined with limit, archived"]


def test_warehouses_and_report_rules():
    assert errors(GetPartnerWarehousesQuerySchema(), {"limit": 31}) == ["limit: limit must be between 1 and 30, got 31"]
    assert GetPartnerWarehousesQuerySchema().load({"limit": 30}) == {"limit": 30}
    report = GenerateBusinessStocksReportSchema()
    assert report.load({"partnerWarehouseIds": [1, 2], "categoryIds": [9], "hasStocks": False}) == {
        "partnerWarehouseIds": [1, 2], "categoryIds": [9], "hasStocks": False}
    assert errors(report, {"partnerWarehouseIds": [1, 1]}) == ["partnerWarehouseIds: partnerWarehouseIds must be unique, repeated: 1"]
    assert errors(report, {"categoryIds": []}) == ["categoryIds: categoryIds must not be empty"]
    assert errors(report, {"hasStocks": "yes"}) == ["hasStocks: hasStocks must be true or false, got 'yes'"]
    assert errors(report, {"campaignId": 1}) == ["campaignId: Unknown field."]


def test_client_refuses_before_sending():
    client = MarketClient("http://127.0.0.1:9", Credentials(api_key=Secret("t")))  # nothing listens there
    with pytest.raises(InvalidRequest, match=r"Duplicate shop-sku 'a' for warehouse '5'"):
        client.update_stocks_v3(1, [WarehouseStockLevel("a", 5, 1), WarehouseStockLevel("a ", 5, 2)])
    with pytest.raises(InvalidRequest, match="limit must be between 1 and 100, got 200"):
        client.get_stocks_v3(1, 5, limit=200)
    with pytest.raises(InvalidRequest, match="limit must be between 1 and 30, got 50"):
        client.get_partner_warehouses(1, limit=50)
    with pytest.raises(InvalidRequest, match="format must be one of FILE, CSV, JSON, got 'XLSX'"):
        client.generate_stocks_report_v3(1, format="XLSX")


def test_warehouse_group_refusals_are_wrong_mode_not_poison():
    groups = (ApiError("BAD_REQUEST", "The method is not available for business 7: the cabinet has warehouse groups"),)
    assert error_for_status(400, groups) is MarketWrongApiMode
    assert error_for_status(400, (ApiError("BAD_REQUEST", "В кабинете есть группы складов"),)) is MarketWrongApiMode
    assert error_for_status(400, (ApiError("BAD_REQUEST", "Stock for 'a' cannot be updated"),)) is MarketBadRequest
    assert error_for_status(403, (ApiError("FORBIDDEN", "Access denied to businessId 7"),)) is MarketForbidden
    assert not MarketWrongApiMode("x").retryable and MarketWrongApiMode("x", status=400).status == 400
    assert MarketWrongApiMode("set YM_API_MODE=v2 now").mode_to_set == "v2"


def test_v3_schemas_build_on_public_names_only():
    """schemas_v3 shares schemas.py's helpers through their public names, never private ones."""
    import ast
    import inspect

    from ymsync.market import schemas_v3

    imported = [alias.name for node in ast.walk(ast.parse(inspect.getsource(schemas_v3)))
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ymsync")
                for alias in node.names]
    assert "RequestSchema" in imported and "id_list" in imported
    assert [name for name in imported if name.startswith("_")] == []
