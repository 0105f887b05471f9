"""Every request rule of ymsync.market.schemas, asserted on the exact text a user sees."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from ymsync.market.schemas import (
    GenerateStocksReportSchema,
    GetStocksQuerySchema,
    StockUpdateSchema,
    UpdateStocksRequestSchema,
    check_report_format,
    flatten_errors,
)

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc)
OFFICIAL_SKU = re.compile(r"^(?=.*\S.*)[^\x00-\x08\x0A-\x1f\x7f]{1,255}$")  # ShopSku.yaml, verbatim


def errors(schema, payload) -> list[str]:
    with pytest.raises(ValidationError) as info:
        schema.load(payload)
    return flatten_errors(info.value.messages)


def producer(**fields):
    return StockUpdateSchema(now=lambda: NOW).load({"sku": "a", "count": 1, **fields})


def producer_errors(**fields) -> list[str]:
    return errors(StockUpdateSchema(now=lambda: NOW), {"sku": "a", "count": 1, **fields})


def entry(sku="a", count=1, **item):
    return {"sku": sku, "items": [{"count": count, **item}]}


def update(*entries, **extra) -> dict:
    return UpdateStocksRequestSchema(now=lambda: NOW).load({"skus": list(entries), **extra})


def update_errors(*entries, **extra) -> list[str]:
    return errors(UpdateStocksRequestSchema(now=lambda: NOW), {"skus": list(entries), **extra})


# --- SKU ---------------------------------------------------------------------------------


def test_sku_is_trimmed():
    assert producer(sku="  shoe-42\t ")["sku"] == "shoe-42"


@pytest.mark.parametrize("blank", ["", "   ", "\t \t"])
def test_blank_sku_refused(blank):
    assert producer_errors(sku=blank) == ["sku: SKU is empty or blank: ''"]


def test_sku_length_limit():
    assert producer(sku="a" * 255)["sku"] == "a" * 255
    assert producer_errors(sku="a" * 256) == [
        "sku: SKU is 256 characters long, at most 255 allowed: '" + "a" * 58 + "…"]


def test_sku_length_counts_after_trimming():
    assert producer(sku="  " + "a" * 255 + " ")["sku"] == "a" * 255


@pytest.mark.parametrize("sku, shown, char", [
    ("a\x00b", r"'a\x00b'", r"'\x00'"),
    ("a\x07b", r"'a\x07b'", r"'\x07'"),
    ("a\nb", r"'a\nb'", r"'\n'"),
    ("a\x7fb", r"'a\x7fb'", r"'\x7f'"),
    ("a\x1fb", r"'a\x1fb'", r"'\x1f'"),
])
def test_control_characters_refused(sku, shown, char):
    assert producer_errors(sku=sku) == [f"sku: SKU contains control character {char}: {shown}"]


def test_tab_inside_sku_allowed():
    assert producer(sku="a\tb")["sku"] == "a\tb"


def test_non_string_sku_refused():
    assert producer_errors(sku=42) == ["sku: SKU must be a string, got 42"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(" \t\n\r\x00\x07\x1c\x1f\x7f\x85\xa0\u2028ab"), max_size=12),
    st.builds(lambda n, pad: pad + "x" * n + pad, st.integers(250, 260), st.sampled_from(["", " ", "\t", "\n"])),
))
def test_sku_matches_official_pattern(raw):
    official = OFFICIAL_SKU.fullmatch(raw.strip()) is not None
    try:
        StockUpdateSchema(now=lambda: NOW).load({"sku": raw, "count": 0})
        ours = True
    except ValidationError:
        ours = False
    assert ours == official, repr(raw)


# --- count and updatedAt -------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 2_000_000_000])
def test_count_bounds_accepted(count):
    assert producer(count=count)["count"] == count


@pytest.mark.parametrize("count, message", [
    (-1, "count: count must be between 0 and 2000000000, got -1"),
    (2_000_000_001, "count: count must be between 0 and 2000000000, got 2000000001"),
    (True, "count: count must be an integer, got True"),
    (1.5, "count: count must be an integer, got 1.5"),
    ("5", "count: count must be an integer, got '5'"),
    (None, "count: Field may not be null."),
])
def test_bad_count_refused(count, message):
    assert producer_errors(count=count) == [message]


def test_count_required():
    assert errors(StockUpdateSchema(), {"sku": "a"}) == ["count: Missing data for required field."]


@pytest.mark.parametrize("stamp", ["2026-11-22T10:00:00", "2026-11-22", "yesterday", 1700000000])
def test_stamp_without_offset_refused(stamp):
    assert producer_errors(updatedAt=stamp) == [
        "updatedAt: updatedAt must be an ISO 8601 date-time with a UTC offset "
        f"(e.g. 2026-11-22T10:00:00+03:00), got {stamp!r}"]


def test_stamp_with_z_or_offset_accepted():
    assert producer(updatedAt="2026-11-22T09:00:00Z")["updatedAt"] == NOW - timedelta(hours=1)
    assert producer(updatedAt="2026-11-22T12:00:00+03:00")["updatedAt"] == NOW - timedelta(hours=1)


def test_producer_stamp_may_be_old_but_not_far_ahead():
    old = NOW - timedelta(days=30)
    assert producer(updatedAt=old.isoformat())["updatedAt"] == old
    assert producer(updatedAt=(NOW + timedelta(minutes=5)).isoformat())["updatedAt"] == NOW + timedelta(minutes=5)
    ahead = NOW + timedelta(minutes=5, seconds=1)
    assert producer_errors(updatedAt=ahead.isoformat()) == [f"updatedAt: updatedAt is in the future: {ahead.isoformat()}"]


def test_producer_unknown_field_refused():
    assert producer_errors(price=10) == ["price: Unknown field."]


# --- UpdateStocksRequestSchema -----------------------------------------------------------


def test_sku_count_limits():
    assert update_errors() == ["skus: skus holds 0 items, 1 to 2000 allowed"]
    many = [entry(f"sku-{i}") for i in range(2001)]
    assert update_errors(*many) == ["skus: skus holds 2001 items, 1 to 2000 allowed"]
    assert len(update(*many[:2000])["skus"]) == 2000


def test_duplicates_after_trimming_refused():
    assert update_errors(entry(" a"), entry("b"), entry("a")) == ["skus[2].sku: Duplicate shop-sku 'a' (also item 0)"]


def test_stamp_window():
    assert update(entry(updatedAt=NOW.isoformat()))["skus"][0]["items"][0]["updatedAt"] == NOW
    assert update(entry(updatedAt=(NOW - timedelta(days=1)).isoformat()))
    ahead = NOW + timedelta(seconds=1)
    assert update_errors(entry(updatedAt=ahead.isoformat())) == [
        f"skus[0].items[0].updatedAt: Stock for 'a' should not be in the future ({ahead.isoformat()})"]
    old = NOW - timedelta(days=1, seconds=1)
    assert update_errors(entry("b"), entry(updatedAt=old.isoformat())) == [
        f"skus[1].items[0].updatedAt: Stock for 'a' should not be older than a day ({old.isoformat()})"]


def test_every_problem_of_one_item_is_reported():
    ahead = NOW + timedelta(hours=1)
    lines = update_errors(entry(), entry(updatedAt=ahead.isoformat()))
    assert "skus[1].sku: Duplicate shop-sku 'a' (also item 0)" in lines


@pytest.mark.parametrize("items, shown", [([], "[]"), ([{"count": 1}, {"count": 2}], "[{'count': 1}, {'count': 2}]")])
def test_items_must_hold_exactly_one_entry(items, shown):
    assert update_errors({"sku": "a", "items": items}) == [f"skus[0].items: items must hold exactly one entry, got {shown}"]


def test_unknown_fields_refused_at_every_level():
    assert update_errors(entry(foo=1), extra=1) == ["skus[0].items[0].foo: Unknown field.", "extra: Unknown field."]
    assert update_errors({**entry(), "warehouseId": 5}) == ["skus[0].warehouseId: Unknown field."]


def test_body_over_512_kb_refused():
    skus = [entry(f"{i:05d}".ljust(255, "x")) for i in range(2000)]
    size = len(json.dumps({"skus": skus}, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    assert size > 512 * 1024
    assert update_errors(*skus) == [f"skus: The request is too big: {size} bytes, the Market accepts at most 524288"]


def test_body_size_counts_utf8_bytes():
    # 1400 Cyrillic SKUs of 200 letters: ~330 KB of characters, but ~600 KB of UTF-8 on the wire.
    skus = [entry(f"{i:04d}".ljust(200, "ж")) for i in range(1400)]
    text = json.dumps({"skus": skus}, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    assert len(text) < 512 * 1024 < size
    assert update_errors(*skus) == [f"skus: The request is too big: {size} bytes, the Market accepts at most 524288"]


# --- GenerateStocksReportSchema -------------------------------------------------------------


def report_errors(**body) -> list[str]:
    return errors(GenerateStocksReportSchema(), body)


def test_report_owner_is_exactly_one():
    assert report_errors() == ["campaignId: pass exactly one of campaignId and businessId"]
    assert report_errors(campaignId=1, businessId=2) == ["campaignId: pass exactly one of campaignId and businessId"]
    assert report_errors(campaignIds=[1]) == ["campaignId: pass exactly one of campaignId and businessId"]
    assert report_errors(campaignId=1, campaignIds=[1]) == [
        "campaignIds: campaignIds is only allowed together with businessId"]
    assert GenerateStocksReportSchema().load({"businessId": 2, "campaignIds": [1, 3]}) == {
        "businessId": 2, "campaignIds": [1, 3]}


@pytest.mark.parametrize("body, message", [
    ({"campaignId": 0}, "campaignId: campaignId must be at least 1, got 0"),
    ({"businessId": 0}, "businessId: businessId must be at least 1, got 0"),
    ({"campaignId": True}, "campaignId: campaignId must be an integer, got True"),
    ({"campaignId": 1, "warehouseIds": [0]}, "warehouseIds[0]: warehouseIds item must be at least 1, got 0"),
    ({"campaignId": 1, "categoryIds": [5, 0]}, "categoryIds[1]: categoryIds item must be at least 1, got 0"),
    ({"businessId": 1, "campaignIds": [0]}, "campaignIds[0]: campaignIds item must be at least 1, got 0"),
    ({"campaignId": 1, "warehouseIds": [1, 2, 1]}, "warehouseIds: warehouseIds must be unique, repeated: 1"),
    ({"campaignId": 1, "categoryIds": [7, 7]}, "categoryIds: categoryIds must be unique, repeated: 7"),
    ({"businessId": 1, "campaignIds": [3, 3]}, "campaignIds: campaignIds must be unique, repeated: 3"),
    ({"campaignId": 1, "warehouseIds": []}, "warehouseIds: warehouseIds must not be empty"),
    ({"campaignId": 1, "categoryIds": []}, "categoryIds: categoryIds must not be empty"),
    ({"businessId": 1, "campaignIds": []}, "campaignIds: campaignIds must not be empty"),
    ({"campaignId": 1, "hasStocks": "yes"}, "hasStocks: hasStocks must be true or false, got 'yes'"),
    ({"campaignId": 1, "format": "CSV"}, "format: Unknown field."),
])
def test_report_request_rules(body, message):
    assert report_errors(**body) == [message]


def test_report_null_lists_accepted():
    body = {"campaignId": 1, "warehouseIds": None, "categoryIds": None, "campaignIds": None}
    assert GenerateStocksReportSchema().load(body) == body


@pytest.mark.parametrize("raw", ["2026-13-01", "22.11.2026", "2026-11-22T10:00:00", ""])
def test_report_date_must_be_a_date(raw):
    assert report_errors(campaignId=1, reportDate=raw) == ["reportDate: reportDate must be a date like 2026-11-22"]


def test_report_date_accepted():
    assert GenerateStocksReportSchema().load({"campaignId": 1, "reportDate": "2026-11-22"})["reportDate"].isoformat() == "2026-11-22"


@pytest.mark.parametrize("fmt", ["FILE", "CSV", "JSON"])
def test_report_format_accepted(fmt):
    assert check_report_format(fmt) == fmt


@pytest.mark.parametrize("fmt", ["XLSX", "csv", "", None])
def test_report_format_refused(fmt):
    with pytest.raises(ValidationError) as info:
        check_report_format(fmt)
    assert info.value.field_name == "format"
    assert flatten_errors(info.value.messages) == [f"format must be one of FILE, CSV, JSON, got {fmt!r}"]


# --- GetStocksQuerySchema --------------------------------------------------------------------


def stocks_errors(**query) -> list[str]:
    return errors(GetStocksQuerySchema(), query)


def test_offer_ids_bounds_and_trimming():
    ids = [f" sku-{i} " for i in range(500)]
    assert GetStocksQuerySchema().load({"offerIds": ids})["offerIds"] == [i.strip() for i in ids]
    assert stocks_errors(offerIds=[f"s{i}" for i in range(501)]) == ["offerIds: offerIds holds 501 items, at most 500 allowed"]
    assert stocks_errors(offerIds=[]) == ["offerIds: offerIds must not be empty"]
    assert stocks_errors(offerIds=[" a", "b", "a "]) == ["offerIds: offerIds must be unique, repeated: 'a'"]
    assert stocks_errors(offerIds=["ok", "bad\x00"]) == [r"offerIds[1]: SKU contains control character '\x00': 'bad\x00'"]
    assert GetStocksQuerySchema().load({"offerIds": None, "page_token": "t"}) == {"offerIds": None, "page_token": "t"}


@pytest.mark.parametrize("extra, clash", [
    ({"page_token": "abc"}, "page_token"),
    ({"limit": 10}, "limit"),
    ({"archived": False}, "archived"),
    ({"limit": 10, "archived": True}, "limit, archived"),
])
def test_offer_ids_exclude_paging_and_archived(extra, clash):
    assert stocks_errors(offerIds=["a"], **extra) == [f"offerIds: offerIds cannot be combined with {clash}"]


@pytest.mark.parametrize("limit, message", [
    (0, "limit: limit must be between 1 and 100, got 0"),
    (101, "limit: limit must be between 1 and 100, got 101"),
    ("10", "limit: limit must be an integer, got '10'"),
])
def test_limit_bounds(limit, message):
    assert stocks_errors(limit=limit) == [message]
    assert GetStocksQuerySchema().load({"limit": 100}) == {"limit": 100}


def test_has_stocks_needs_warehouse():
    assert stocks_errors(hasStocks=True) == ["hasStocks: hasStocks is only allowed together with stocksWarehouseId"]
    assert GetStocksQuerySchema().load({"hasStocks": False, "stocksWarehouseId": 7}) == {"hasStocks": False, "stocksWarehouseId": 7}


@pytest.mark.parametrize("query, message", [
    ({"stocksWarehouseId": 0}, "stocksWarehouseId: stocksWarehouseId must be at least 1, got 0"),
    ({"withTurnover": 1}, "withTurnover: withTurnover must be true or false, got 1"),
    ({"page_token": ""}, "page_token: page_token must not be empty"),
    ({"pageSize": 5}, "pageSize: Unknown field."),
])
def test_other_stock_query_rules(query, message):
    assert stocks_errors(**query) == [message]


def test_a_sku_with_a_lone_surrogate_is_refused_before_it_reaches_redis() -> None:
    from ymsync.engine.producer import check_updates

    assert check_updates([{"sku": "ab\udc80", "count": 1}]).errors == [
        "item 0: sku: SKU is not valid Unicode text (lone surrogate): 'ab\\udc80'"]
