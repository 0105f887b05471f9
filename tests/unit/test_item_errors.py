"""Validation errors are data: each names its item's index, SKU, warehouse, field and message,
and the tasks and the CLI use those, never the text (a label or SKU may contain ": ")."""

from __future__ import annotations

import pickle

import pytest
import redis

import tasks.stocks as stock_tasks
from ymsync import InvalidInput, push_business_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.producer import Checked, ItemError, check_business_updates, check_updates
from ymsync.engine.targets import business_target, item_key


def test_a_label_with_a_colon_keys_each_value_to_its_own_warehouse() -> None:
    items = [{"sku": "a: b", "count": -1, "warehouse": 11}, {"sku": "a: b", "count": 5, "warehouse": 22}]
    checked = check_business_updates(items, ["row 1: north", "row 2: south"])
    assert checked.updates == [(item_key(22, "a: b"), 5, None)]
    [error] = checked.errors
    assert (error.index, error.label, error.sku, error.warehouse, error.field) == (0, "row 1: north", "a: b", 11,
                                                                                  "count")
    assert error.message == "count must be between 0 and 2000000000, got -1"
    assert error == "row 1: north: count: count must be between 0 and 2000000000, got -1"  # still its line


def test_errors_point_at_the_item_in_the_callers_list() -> None:
    items = ["not an object", {"sku": "x", "count": 1}, {"sku": "y: z", "count": "many", "warehouse": 3},
             {"sku": "w", "count": 2, "warehouse": 4}]
    checked = check_business_updates(items, warehouse=None, warehouses=lambda _b, _ids: {4: "warehouse 4 is gone"},
                                     business_id=7)
    by_index = {e.index: e for e in checked.errors}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert by_index[0].field is None and by_index[0].sku is None
    assert (by_index[1].field, by_index[1].sku, by_index[1].warehouse) == ("warehouse", "x", None)
    assert (by_index[2].field, by_index[2].sku, by_index[2].warehouse) == ("count", "y: z", 3)
    assert (by_index[3].field, by_index[3].message, by_index[3].warehouse) == ("warehouse", "warehouse 4 is gone", 4)
    assert checked.updates == []


def test_invalid_input_carries_the_errors_as_data_and_survives_pickling() -> None:
    with pytest.raises(InvalidInput) as caught:
        push_business_stocks(7, [{"sku": "ok", "count": 1, "warehouse": 1}, {"sku": "k: v", "count": -2}],
                             warehouse=None)
    [error] = caught.value.errors
    assert (error.index, error.sku, error.field) == (1, "k: v", "warehouse")
    again = pickle.loads(pickle.dumps(caught.value))
    assert [e.as_dict() for e in again.errors] == [error.as_dict()] and str(again) == str(caught.value)
    assert "1 invalid stock update(s), nothing queued: item 1: warehouse:" in str(caught.value)


def test_the_update_task_dead_letters_each_invalid_item_by_its_index(clean_redis: redis.Redis, monkeypatch) -> None:
    """A SKU with ": " and a custom-labelled error: the reasons land on the right item, with its
    warehouse (the old task re-parsed "item N: reason" lines and knew no warehouse)."""
    buffer = StockBuffer(clean_redis)
    monkeypatch.setattr(stock_tasks.runtime, "buffer", lambda: buffer)
    items = [{"sku": "a: 1", "count": 3, "warehouse": 11}, {"sku": "b: 2", "count": -1, "warehouse": 22}]
    error = ItemError(1, "the second: row", "count", "count must be between 0 and 2000000000, got -1", sku="b: 2",
                      warehouse=22)
    stock_tasks._ingest("task-1", business_target(7), items, Checked([(item_key(11, "a: 1"), 3, None)], [error]))
    [letter] = buffer.dead_letters(business_target(7))
    assert (letter["sku"], letter["count"], letter["warehouse"]) == ("b: 2", -1, 22)
    assert letter["reason"] == "invalid input: count: count must be between 0 and 2000000000, got -1"
    assert buffer.pending(business_target(7)) == 1


def test_campaign_updates_number_their_errors_from_zero() -> None:
    checked = check_updates([{"sku": "p: q", "count": 1}, {"sku": "r", "count": 1, "updatedAt": "yesterday"}])
    assert [(e.index, e.sku, e.field) for e in checked.errors] == [(1, "r", "updatedAt")]


def test_invalid_input_rebuilt_from_its_message_keeps_it_whole() -> None:
    """Celery's JSON result rebuilds an exception from its message alone."""
    again = InvalidInput("items must be a list")
    assert [str(e) for e in again.errors] == ["items must be a list"] and again.errors[0].index is None
