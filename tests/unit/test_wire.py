"""Stock bodies in bulk (ymsync.market.wire): the same bytes the per-SKU path sent, and a body the
Market's official description accepts."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ymsync.market import wire
from ymsync.market.business import _warehouse_stock_entry
from ymsync.market.client import _stock_entry
from ymsync.market.models import StockLevel, WarehouseStockLevel
from tests.support.spec import spec_check_missing, spec_path

EPOCH_MS = st.integers(0, 4102444800000)  # 1970 .. 2100

STAMPS = st.one_of(st.none(), EPOCH_MS)


def old_stamp(stamp_ms: int) -> datetime:
    """How the Flusher made a stamp before: a datetime per SKU."""
    return datetime.fromtimestamp(stamp_ms / 1000, timezone.utc)


@pytest.mark.parametrize("stamp_ms, text", [
    (1765004400123, "2025-12-06T07:00:00.123000+00:00"),
    (1765004400000, "2025-12-06T07:00:00+00:00"),  # a whole second: no fraction, as isoformat() wrote it
    (1765004400001, "2025-12-06T07:00:00.001000+00:00"),
    (1765004400999, "2025-12-06T07:00:00.999000+00:00"),
    (0, "1970-01-01T00:00:00+00:00"),
])
def test_stamps_read_as_they_always_did(stamp_ms, text):
    assert wire.iso_stamp(stamp_ms) == text == old_stamp(stamp_ms).isoformat()


@given(st.lists(EPOCH_MS, max_size=50))
def test_every_stamp_is_byte_for_byte_the_old_isoformat(stamps):
    fmt = wire.StampFormatter()
    for stamp_ms in stamps:
        assert fmt(stamp_ms) == old_stamp(stamp_ms).isoformat()


def test_the_second_cache_stays_bounded():
    fmt = wire.StampFormatter()
    base = 1765004400000
    for i in range(3 * wire._SECONDS_CACHED):
        assert fmt(base + i * 1000 + 7) == old_stamp(base + i * 1000 + 7).isoformat()
        assert fmt.encoded(base + i * 1000 + 7) == old_stamp(base + i * 1000 + 7).isoformat().encode()
    assert len(fmt._seconds) <= wire._SECONDS_CACHED


@settings(max_examples=200)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=30), st.integers(0, 10**9), STAMPS), max_size=30))
def test_campaign_body_equals_the_per_sku_path_in_bytes(entries):
    old = {"skus": [_stock_entry(StockLevel(sku, count, None if ms is None else old_stamp(ms)))
                    for sku, count, ms in entries]}
    new = wire.campaign_stock_body(entries)
    assert new == old
    assert wire.encode_body(new) == wire.encode_body_stdlib(old)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=30), st.integers(1, 10**12), st.integers(0, 10**9), STAMPS),
                max_size=30))
def test_business_body_equals_the_per_item_path_in_bytes(entries):
    old = {"skuItems": [_warehouse_stock_entry(WarehouseStockLevel(sku, wh, count, None if ms is None else old_stamp(ms)))
                        for sku, wh, count, ms in entries]}
    new = wire.business_stock_body(entries)
    assert new == old
    assert wire.encode_body(new) == wire.encode_body_stdlib(old)


PLAIN_SKUS = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.one_of(PLAIN_SKUS, st.text(min_size=1, max_size=30), st.text(st.characters(blacklist_categories=('Cs', 'Cc')), min_size=1, max_size=30)), st.integers(0, 10**9), EPOCH_MS),
                max_size=30), EPOCH_MS, st.integers(0, 10**10))
def test_a_body_written_from_a_takes_reply_is_the_general_paths_bytes(entries, now_ms, age_ms):
    # The take's reply (sku, b"count|stamp|first") written straight to bytes, against the general
    # path: tuples clamped as stamps.levels clamps them, the dict body, the encoder.
    oldest_ms = now_ms - age_ms
    pairs = []
    for sku, count, stamp_ms in entries:
        pairs += [sku.encode(), b"%d|%d|%d" % (count, stamp_ms, stamp_ms - 5)]
    clamped = [(sku, count, None if ms < oldest_ms else min(ms, now_ms)) for sku, count, ms in entries]
    expected = wire.encode_body(wire.campaign_stock_body(clamped))
    body = wire.campaign_stock_bytes(pairs, now_ms, oldest_ms)
    if any(c < " " or c in '"\\' for sku, _, _ in entries for c in sku):
        assert body is None  # the caller sends those the general way
        return
    assert body is not None and body.data == expected and body.count == len(entries)
    assert dict(body) == json.loads(expected)  # it reads as the dict it encodes
    assert wire.encode_body(body) == expected


def test_a_body_from_a_takes_reply_names_clamped_and_dropped_stamps():
    pairs = [b" A-1 ", b"7|2000|1", b"A-2", b"0|500|1", b"A-3", b"3|1000|1"]
    body = wire.campaign_stock_bytes(pairs, now_ms=1500, oldest_ms=800)
    assert body is not None and json.loads(body.data) == {"skus": [
        {"sku": "A-1", "items": [{"count": 7, "updatedAt": "1970-01-01T00:00:01.500000+00:00"}]},  # capped
        {"sku": "A-2", "items": [{"count": 0}]},  # older than the Market takes: it stamps it
        {"sku": "A-3", "items": [{"count": 3, "updatedAt": "1970-01-01T00:00:01+00:00"}]}]}
    assert wire.campaign_stock_bytes([b'Q"1', b"1|1|1"], 2, 0) is None
    assert wire.campaign_stock_bytes([b"Q\\1", b"1|1|1"], 2, 0) is None
    assert wire.campaign_stock_bytes(["\u00a0Ю-1\u3000".encode(), b"1|1|1"], 3, 2).data == \
        '{"skus":[{"sku":"Ю-1","items":[{"count":1}]}]}'.encode()  # trimmed as text


@settings(max_examples=300)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
                    max_leaves=20))
def test_the_fast_encoder_gives_the_standard_librarys_bytes(payload):
    try:
        expected = wire.encode_body_stdlib(payload)
    except UnicodeEncodeError:  # a lone surrogate: neither encoder sends it
        with pytest.raises((UnicodeEncodeError, TypeError)):
            wire.encode_body(payload)
        return
    assert wire.encode_body(payload) == expected


def test_values_the_fast_encoder_refuses_go_through_the_standard_library():
    payload = {1: 2**70, "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)}
    assert wire.encode_body(payload) == wire.encode_body_stdlib(payload)
    assert json.loads(wire.encode_body(payload)) == {"1": 2**70, "at": "2026-01-02 03:04:05+00:00"}


@pytest.mark.skipif(bool(spec_check_missing()), reason=spec_check_missing() or "")
def test_the_markets_description_accepts_both_bodies():
    from ymsync.sandbox.spec_check import load

    validator = load(str(spec_path()))
    headers = {"Api-Key": "x", "Content-Type": "application/json"}
    entries = [("A-1", 5, 1765004400123), ("A-2", 0, 1765004400000), (" A-3 ", 7, None)]
    v2 = wire.encode_body(wire.campaign_stock_body(entries))
    operation, errors, _ = validator.check_request("PUT", "/v2/campaigns/1001/offers/stocks", [], headers, v2)
    assert (operation, errors) == ("updateStocks", [])
    v3 = wire.encode_body(wire.business_stock_body([(sku, 501, count, ms) for sku, count, ms in entries]))
    operation, errors, _ = validator.check_request("POST", "/v3/businesses/7/offers/stocks/update", [], headers, v3)
    assert operation == "updateStocksOnPartnerWarehouses" and errors == []
