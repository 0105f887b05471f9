"""Business (v3) pushes: items addressed by warehouse, checked before anything is queued."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ymsync import InvalidInput, push_business_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.producer import check_business_updates
from ymsync.engine.targets import business_target, item_key, split_key, target


def test_keys_split_back_whatever_the_sku_holds() -> None:
    for sku in ("A", "a b", "x:y|z", "Ω-42", "1"):
        assert split_key(item_key(501, sku)) == (501, sku)
    t = target("b7")
    assert (t.kind, t.id, t.per_request, t.method, t.quota_key, t.gate) == \
        ("business", 7, True, "update_stocks_v3", "b7", "b7")
    c = target(1001)
    assert (c.name, c.per_request, c.method, c.quota_key, c.gate) == \
        ("c1001", False, "update_stocks", "1001", "c1001")
    assert t.label(item_key(501, "SKU-1")) == "SKU-1@501"


def test_warehouse_from_the_item_or_the_default_and_every_problem_located() -> None:
    stamp = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    items = [{"sku": "A", "count": 1, "warehouse": 501},
             {"sku": "B", "count": 2},                       # the default warehouse
             {"sku": "C", "count": 3, "warehouse": 0},
             {"sku": "D", "count": "x", "warehouse": 502},
             {"sku": "E", "count": 5, "warehouse": "9"},
             "nope",
             {"sku": "F", "count": 6, "warehouse": 503, "updatedAt": stamp}]
    checked = check_business_updates(items, warehouse=502)
    assert [u[:2] for u in checked.updates] == [(item_key(501, "A"), 1), (item_key(502, "B"), 2),
                                                (item_key(503, "F"), 6)]
    assert sorted(checked.errors) == sorted([
        "item 2: warehouse: warehouse must be a positive integer (the partnerWarehouseId), got 0",
        "item 3: count: count must be an integer, got 'x'",
        "item 4: warehouse: warehouse must be a positive integer (the partnerWarehouseId), got '9'",
        "item 5: expected an object with sku, count, warehouse and updatedAt, got 'nope'",
    ])
    missing = check_business_updates([{"sku": "A", "count": 1}])
    assert missing.errors == ["item 0: warehouse: warehouse must be a positive integer (the partnerWarehouseId), "
                              "got none (a warehouse field or column, or --warehouse)"]


def test_the_warehouse_directory_refuses_unknown_and_unavailable_warehouses() -> None:
    def directory(business: int, ids):
        assert business == 7
        return {9: "warehouse 9 is not a warehouse of business 7", 8: "warehouse 8 has no AVAILABLE model"}

    items = [{"sku": "A", "count": 1, "warehouse": 9}, {"sku": "B", "count": 1, "warehouse": 8},
             {"sku": "C", "count": 1, "warehouse": 5}]
    checked = check_business_updates(items, business_id=7, warehouses=directory)
    assert [u[0] for u in checked.updates] == [item_key(5, "C")]
    assert checked.errors == ["item 0: warehouse: warehouse 9 is not a warehouse of business 7",
                              "item 1: warehouse: warehouse 8 has no AVAILABLE model"]


def test_latest_wins_per_warehouse_and_sku(clean_redis) -> None:
    buf = StockBuffer(clean_redis)
    now = datetime.now(timezone.utc)
    older, newer = (now - timedelta(minutes=2)).isoformat(), (now - timedelta(minutes=1)).isoformat()
    push_business_stocks(7, [{"sku": "A", "warehouse": 1, "count": 5, "updatedAt": newer},
                             {"sku": "A", "warehouse": 2, "count": 6, "updatedAt": older}], buffer=buf)
    result = push_business_stocks(7, [{"sku": "A", "warehouse": 1, "count": 1, "updatedAt": older},   # older: loses
                                      {"sku": "A", "warehouse": 2, "count": 7, "updatedAt": newer}],  # newer: wins
                                  buffer=buf)
    assert (result.accepted, result.stale) == (1, 1)
    batch = buf.take(business_target(7), 10, 10**6, 60)
    assert {e.sku: e.count for e in batch.entries} == {item_key(1, "A"): 5, item_key(2, "A"): 7}
    with pytest.raises(InvalidInput, match="warehouse must be a positive integer"):
        push_business_stocks(7, [{"sku": "B", "count": 1}], buffer=buf)
    assert buf.businesses() == [7] and buf.campaigns() == []
