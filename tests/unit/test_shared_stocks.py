"""Warehouse groups on the read side, the parts that need no process: which campaigns share a
stock (reads/shared.py), the reconciler's own warehouse from the Market's warehouse list, and a
report snapshot's one part per group with its GROUP column (reports/snapshot.py)."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

from ymsync.market import MarketError, OfferStock
from ymsync.market.warehouse_groups import MarketWarehouse
from ymsync.reads.reconcile import Reconciler
from ymsync.reads.shared import SharedStock, own_warehouses, shared_stocks, warehouses_from
from ymsync.reads.warehouse_groups import GroupList
from ymsync.reports.poller import write_rows_csv
from ymsync.reports.snapshot import group_parts, merge_snapshot

GROUPS = {1001: (1001, 1002, 1003), 1002: (1001, 1002, 1003), 1003: (1001, 1002, 1003)}


def group(campaign: int) -> tuple[int, ...]:
    return GROUPS.get(campaign, ())


def test_campaigns_of_one_group_are_one_stock_read_through_the_first_named():
    stocks = shared_stocks([7, 1002, 1001, 7, 1003, 8], group)
    assert stocks == [SharedStock(7, (7,), (7,)), SharedStock(1002, (1001, 1002, 1003), (1002, 1001, 1003)),
                      SharedStock(8, (8,), (8,))]
    assert stocks[1].describe() == ("campaigns 1001, 1002, 1003 share one stock (warehouse group); "
                                    "read once, through 1002")
    assert (stocks[1].label, stocks[0].label, stocks[0].describe()) == ("1001,1002,1003", "", "campaign 7")
    assert shared_stocks([1003], group) == [SharedStock(1003, (1001, 1002, 1003), (1003,))]  # one asked: still named


def _listing() -> GroupList:
    return GroupList(100, (MarketWarehouse(11, "a", 1001, 5), MarketWarehouse(12, "b", 1002, 5),
                           MarketWarehouse(13, "c", 1004)), 0)


class _Directory:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.asked = fail, []

    def get(self, business_id: int) -> GroupList:
        self.asked.append(business_id)
        if self.fail:
            raise MarketError("quota spent, nothing cached")
        return _listing()


def test_a_campaigns_own_warehouses_come_from_the_markets_list_or_nothing():
    assert own_warehouses(_listing(), 1002) == {12} and own_warehouses(_listing(), 9) == frozenset()
    assert own_warehouses(None, 1002) == frozenset()
    directory = _Directory()
    of = warehouses_from(directory, lambda c: 100 if c != 7 else None)
    assert (of(1001), of(7), directory.asked) == ({11}, frozenset(), [100])  # 7: not a v2 cabinet's, not asked
    assert warehouses_from(_Directory(fail=True), lambda c: 100)(1001) == frozenset()  # the guess takes over


def test_reconcile_trusts_the_markets_warehouse_list_over_the_guess():
    # A Market that lost most of what it was given: the campaign's own warehouse (11) lists one
    # delivered SKU, its returns warehouse (900) two. The guess takes the returns warehouse.
    delivered = {"A": (5, 1, 1), "B": (6, 1, 1), "C": (7, 1, 1)}
    offers = [OfferStock("A", 11, {"FIT": 5}), OfferStock("B", 900, {"FIT": 1}), OfferStock("C", 900, {"FIT": 1})]
    guessing = Reconciler(None, None)  # type: ignore[arg-type]  # own() needs neither
    assert guessing.own(1001, offers, delivered) == (900, "guess")
    knowing = Reconciler(None, None, warehouses_of=lambda c: own_warehouses(_listing(), c))  # type: ignore[arg-type]
    assert knowing.own(1001, offers, delivered) == (11, "market")
    assert knowing.own(1001, [], delivered) == (11, "market")  # nothing listed at all: still its own
    assert knowing.own(1003, offers, delivered) == (900, "guess")  # the list omits it
    assert knowing.own(1001, offers, delivered, given=900) == (900, "given")


def test_a_snapshot_runs_one_report_per_group_and_marks_its_rows(tmp_path: Path):
    requests = [{"request": {"campaignId": 1001}, "format": "CSV"},
                {"request": {"campaignId": 1003}, "format": "CSV"},  # the same report of the group: dropped
                {"request": {"campaignId": 1002}, "format": "JSON"},  # another format: kept
                {"request": {"campaignId": 1002, "warehouseIds": [3]}, "format": "CSV"},  # other filters: kept
                {"request": {"campaignId": 7}, "format": "CSV"},
                {"request": {"businessId": 100, "campaignIds": [1001]}, "format": "CSV"},
                {"request": {"businessId": 100}, "format": "CSV", "api": "v3"}]
    kept, groups = group_parts(requests, group)
    assert [requests.index(r) for r in kept] == [0, 2, 3, 4, 5, 6]
    assert groups == ["1001,1002,1003", "1001,1002,1003", "1001,1002,1003", "", "", ""]

    parts = []
    for name, body in (("g", b"SHOP_SKU,AVAILABLE_FOR_ORDER,WAREHOUSE\nA,5,W1\nB,2,W1\n"),
                       ("lone", b"SHOP_SKU,AVAILABLE_FOR_ORDER,WAREHOUSE\nC,1,W2\n")):
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("stocks_on_warehouses.csv", body)
        rows_path = path.with_suffix(".rows.csv")
        parts.append({"status": "DONE", "rows_path": str(rows_path), **write_rows_csv(path, rows_path)})
    summary = merge_snapshot(parts, tmp_path / "snap", "s1", ["group", "lone"], ["1001,1002,1003", ""])
    assert [p["group"] for p in summary["parts"]] == ["1001,1002,1003", ""]
    with open(summary["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["SHOP_SKU"], r["GROUP"]) for r in rows] == [("A", "1001,1002,1003"), ("B", "1001,1002,1003"),
                                                           ("C", "")]
