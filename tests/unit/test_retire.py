"""Retiring SKUs against a real Redis: records go, late updates lose, reconciliation leaves them
alone, and a value in flight settles without bringing records back (issue 21 item 6)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ymsync import InvalidInput, push_business_stocks, push_stocks, retire_business_stocks, retire_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.targets import item_key
from ymsync.reads.reconcile import Reconciler
from ymsync.reads.reconcile_core import MISSING
from ymsync.store import keys

C = 1001


def ago(minutes: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()


def deliver(buffer: StockBuffer, target) -> None:
    while (batch := buffer.take(target, 2000, 10**9, 60)) is not None:
        buffer.settle(batch, "delivered")


def test_retired_skus_lose_their_records_and_reconciliation_never_requeues_them(clean_redis) -> None:
    buffer = StockBuffer(clean_redis)
    push_stocks(C, [{"sku": s, "count": 5, "updatedAt": ago(10)} for s in ("GONE", "KEPT", "DEAD")], buffer=buffer)
    batch = buffer.take(C, 10, 10**9, 60)
    buffer.settle(batch, "delivered", ["GONE", "KEPT"])
    buffer.settle(batch, "dead", ["DEAD"], "400: no such offer")
    reconciler = Reconciler(buffer, reader=None, push=push_stocks)  # type: ignore[arg-type]
    before = reconciler.compare(C, {})  # the shop deleted GONE: the Market no longer lists it
    assert {r.sku: r.status for r in before.rows} == {"GONE": MISSING, "KEPT": MISSING}

    result = retire_stocks(C, ["GONE", "DEAD"], buffer=buffer)
    assert (result.retired, result.dead_letters_dropped) == (2, 1)
    assert set(buffer.delivered(C)) == {"KEPT"} and buffer.dead_letters(C) == []
    # A row read before the retirement is not re-queued by the fix that follows it...
    assert reconciler.fixer(C).requeue([r for r in before.rows if r.sku == "GONE"]) == 0
    # ...and a fresh reconciliation does not see the SKU at all.
    after = reconciler.compare(C, {}, fix=True)
    assert [r.sku for r in after.rows] == ["KEPT"] and after.requeued == 1
    assert buffer.pending(C) == 1  # KEPT only
    # An update stamped before the retirement (a late message) loses; a newer one (it is back) wins.
    assert push_stocks(C, [{"sku": "GONE", "count": 9, "updatedAt": ago(5)}], buffer=buffer).stale == 1
    assert push_stocks(C, [{"sku": "GONE", "count": 9}], buffer=buffer).accepted == 1


def test_a_final_count_is_sent_then_leaves_no_record_and_an_older_value_in_flight_leaves_none(clean_redis) -> None:
    buffer = StockBuffer(clean_redis)
    push_stocks(C, [{"sku": "A", "count": 7, "updatedAt": ago(10)}], buffer=buffer)
    in_flight = buffer.take(C, 10, 10**9, 60)  # A=7 on its way to the Market
    result = retire_stocks(C, ["A"], final_count=0, buffer=buffer)
    assert result.retired == 1 and buffer.pending(C) == 1
    buffer.settle(in_flight, "delivered")  # the older value lands: nothing recorded for it
    assert buffer.delivered(C) == {}
    final = buffer.take(C, 10, 10**9, 60)
    assert [(e.sku, e.count) for e in final.entries] == [("A", 0)]
    buffer.settle(final, "delivered")
    assert buffer.delivered(C) == {} and clean_redis.hlen(keys.campaign_keys(C)["retired"]) == 0


def test_a_returned_older_value_is_not_sent_again_after_retirement(clean_redis) -> None:
    buffer = StockBuffer(clean_redis)
    push_stocks(C, [{"sku": "A", "count": 7, "updatedAt": ago(10)}], buffer=buffer)
    in_flight = buffer.take(C, 10, 10**9, 60)
    retire_stocks(C, ["A"], buffer=buffer)
    buffer.settle(in_flight, "returned")  # a 5xx: it would be retried, but A is gone
    assert buffer.pending(C) == 0 and buffer.take(C, 10, 10**9, 60) is None


def test_business_form_and_invalid_input(clean_redis) -> None:
    buffer = StockBuffer(clean_redis)
    push_business_stocks(7, [{"sku": "A", "count": 1, "warehouse": 501}, {"sku": "A", "count": 2, "warehouse": 502}],
                         buffer=buffer)
    deliver(buffer, "b7")
    clean_redis.lpush(keys.target_keys("b7")["invalid"], json.dumps({"sku": "A", "warehouse": 501, "count": None, "reason": "invalid", "at_ms": 1}))
    result = retire_business_stocks(7, ["A"], warehouse=501, buffer=buffer)
    assert (result.retired, result.dead_letters_dropped) == (1, 1)
    assert set(buffer.delivered("b7")) == {item_key(502, "A")}
    with pytest.raises(InvalidInput) as caught:
        retire_stocks(C, ["ok", " "], final_count=-1, buffer=buffer)
    assert "final_count" in str(caught.value)
    with pytest.raises(InvalidInput) as caught:
        retire_business_stocks(7, [{"sku": "B"}], buffer=buffer)
    assert 'item 0 (SKU "B"): warehouse:' in str(caught.value)
