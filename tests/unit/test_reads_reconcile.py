"""Pure pieces of the read side: output formats, the Market view, the fix stamp, the table."""

from __future__ import annotations

import csv
import io
import json

import pytest

from ymsync.market import InvalidRequest, OfferStock
from ymsync.reads.campaign import ReadOptions, format_for, write_offers
from ymsync.reads.reconcile import DriftRow, MarketStock, ReconcileResult, fix_stamp_ms, market_view, render_table


def test_format_comes_from_the_extension() -> None:
    assert format_for("a/b.CSV") == "csv" and format_for("x.jsonl") == "jsonl"
    with pytest.raises(ValueError, match="use a .csv or .jsonl file name"):
        format_for("x.xlsx")


def test_offer_ids_and_archived_are_refused_together() -> None:
    with pytest.raises(InvalidRequest, match="offerIds cannot be combined with archived"):
        ReadOptions(offer_ids=("A",), archived=True)


def test_csv_keeps_unknown_stock_types_and_jsonl_shows_turnover_only_where_present() -> None:
    offers = [OfferStock("A", 1, {"FIT": 3, "AVAILABLE": 2, "NEW_TYPE": 9}, "LOW", 130.0, "2026-01-01T00:00:00+00:00"),
              OfferStock("B", 1, {"FIT": 0})]
    out = io.StringIO()
    assert write_offers(offers, out, "csv", with_turnover=True) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert (rows[0]["FIT"], rows[0]["AVAILABLE"], rows[0]["OTHER_STOCKS"], rows[0]["turnover"]) == ("3", "2", "NEW_TYPE=9", "LOW")
    assert (rows[1]["FIT"], rows[1]["AVAILABLE"], rows[1]["turnover"]) == ("0", "", "")
    out = io.StringIO()
    write_offers(offers, out, "jsonl")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["turnover"] == "LOW" and "turnover" not in second


def test_market_view_sums_warehouses_and_prefers_fit() -> None:
    view = market_view([OfferStock("A", 1, {"FIT": 3, "AVAILABLE": 1}, updated_at="2026-01-01T00:00:00+00:00"),
                        OfferStock("A", 2, {"FIT": 4}, updated_at="2026-01-01T00:00:01+00:00"),
                        OfferStock("B", 1, {"AVAILABLE": 5})])
    assert view["A"] == MarketStock(7, 1767225601000)
    assert view["B"] == MarketStock(5, None)


def test_fix_stamp_is_just_after_the_drift_never_after_now() -> None:
    assert fix_stamp_ms(1_000, 5_000, now_ms=9_000) == 5_001  # after the Market's drifted value
    assert fix_stamp_ms(6_000, 5_000, now_ms=9_000) == 6_001  # after what we delivered
    assert fix_stamp_ms(1_000, 20_000, now_ms=9_000) == 9_000  # a Market clock ahead of ours: now
    assert fix_stamp_ms(1_000, None, now_ms=9_000) == 9_000  # nothing to go by: now


def test_table_lists_rows_and_a_summary() -> None:
    result = ReconcileResult(7, checked=3, rows=[DriftRow("SKU-1", 5, 0, 0, 0, None, "drift", fixed=True),
                                                 DriftRow("SKU-22", 1, None, 0, 0, None, "missing")], requeued=1)
    text = render_table(result)
    assert text.splitlines()[0].split() == ["SKU", "OURS", "MARKET", "DELIVERED", "AT", "STATUS"]
    assert "drift, re-queued" in text and "SKU-22  1     -" in text
    assert text.endswith("campaign 7: 3 SKUs checked, 2 drifted, 1 re-queued")
