"""Report requests, safe unpacking and parsing by column name (no network, no Redis)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from ymsync.market.schemas import InvalidRequest
from ymsync.reports.columns import MASS_SHARED_STOCKS, STOCKS_BUSINESS, STOCKS_ON_WAREHOUSES
from ymsync.reports.parse import ReportParseError, read_rows
from ymsync.reports.poller import write_rows_csv
from ymsync.reports.request import ReportRequest
from ymsync.reports.snapshot import merge_snapshot
from ymsync.reports.unpack import ArchiveLimits, SafeArchive, UnsafeArchive

# --- requests ------------------------------------------------------------------------------


def test_fingerprint_ignores_list_order_and_nulls_but_not_format():
    a = ReportRequest.build({"businessId": 7, "campaignIds": [3, 1, 2], "hasStocks": None}, "CSV")
    b = ReportRequest.build({"campaignIds": [1, 2, 3], "businessId": 7}, "CSV")
    assert a == b and a.fingerprint == b.fingerprint
    assert ReportRequest.build(a.body, "JSON").fingerprint != a.fingerprint
    assert ReportRequest.from_dict(a.to_dict()) == a
    assert a.describe() == "business=7 CSV campaignIds=3"


def test_invalid_requests_list_every_problem():
    with pytest.raises(InvalidRequest) as caught:
        ReportRequest.build({"campaignId": 1, "businessId": 2, "warehouseIds": [5, 5]}, "XML")
    text = str(caught.value)
    assert "format must be one of FILE, CSV, JSON, got 'XML'" in text
    assert "warehouseIds must be unique, repeated: 5" in text
    with pytest.raises(InvalidRequest, match="pass exactly one of campaignId and businessId"):
        ReportRequest.build({"campaignId": 1, "businessId": 2})
    with pytest.raises(InvalidRequest, match="warehouseIds: only allowed with campaignId"):
        ReportRequest.build({"businessId": 2, "warehouseIds": [5]})
    with pytest.raises(InvalidRequest, match="reportDate: 2999-01-01 is in the future"):
        ReportRequest.build({"campaignId": 1, "reportDate": "2999-01-01"})
    with pytest.raises(InvalidRequest, match="reportDate must be a date"):
        ReportRequest.build({"campaignId": 1, "reportDate": "yesterday"})


# --- unpacking -----------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../evil.csv", "a/../../evil.csv", "/etc/evil.csv", "..\\evil.csv", "C:/evil.csv"])
def test_archive_with_escaping_entry_is_refused(tmp_path, name):
    path = make_zip(tmp_path / "r.zip", {"stocks_on_warehouses.csv": b"SHOP_SKU\nA\n", name: b"x"})
    with pytest.raises(UnsafeArchive, match="refused"):
        SafeArchive(path)
    with pytest.raises(UnsafeArchive):
        read_rows(path)
    assert not (tmp_path.parent / "evil.csv").exists()


def test_archive_unpacking_past_the_cap_is_refused(tmp_path):
    path = make_zip(tmp_path / "big.zip", {"a.csv": b"0" * 600_000, "b.csv": b"0" * 600_000})
    with pytest.raises(UnsafeArchive, match="unpacks to more than 1000000 bytes"):
        SafeArchive(path, ArchiveLimits(max_unpacked_bytes=1_000_000))
    bomb = make_zip(tmp_path / "bomb.zip", {"stocks_on_warehouses.csv": b"\0" * 20_000_000})
    with pytest.raises(UnsafeArchive, match="inflates"):
        read_rows(bomb)
    many = make_zip(tmp_path / "many.zip", {f"{i}.csv": b"" for i in range(20)})
    with pytest.raises(UnsafeArchive, match="20 entries, at most 10"):
        SafeArchive(many, ArchiveLimits(max_entries=10))


def test_reads_are_capped_even_if_the_directory_lies(tmp_path):
    path = make_zip(tmp_path / "r.zip", {"a.csv": b"1" * 5000})
    with SafeArchive(path, ArchiveLimits(max_unpacked_bytes=10_000)) as archive:
        archive.limits = ArchiveLimits(max_unpacked_bytes=4000)  # as if the declared size were smaller
        with pytest.raises(UnsafeArchive, match="unpacked past the cap"):
            archive.open("a.csv").read()
    with SafeArchive(path) as archive:
        written = archive.extract_all(tmp_path / "out")
    assert [p.name for p in written] == ["a.csv"] and written[0].read_bytes() == b"1" * 5000


# --- parsing -------------------------------------------------------------------------------


def test_csv_with_extra_and_reordered_columns(tmp_path):
    text = "NEW_COLUMN,COUNT,SHOP_SKU,PRODUCT_NAME,WARNINGS,ERRORS\nx,12,A-1,Тест,,\ny,,A-2,,,\n"
    path = make_zip(tmp_path / "r.zip", {"mass_shared_stocks.csv": text.encode()})
    sheets, rows = read_rows(path)
    assert sheets[0].sheet is MASS_SHARED_STOCKS
    assert sheets[0].unknown_columns == ["NEW_COLUMN"] and sheets[0].missing_columns == []
    assert rows == [{"ERRORS": None, "WARNINGS": None, "SHOP_SKU": "A-1", "PRODUCT_NAME": "Тест", "COUNT": 12},
                    {"ERRORS": None, "WARNINGS": None, "SHOP_SKU": "A-2", "PRODUCT_NAME": None, "COUNT": None}]


def test_json_camel_case_and_sheet_told_by_columns(tmp_path):
    items = [{"shopSku": "S-1", "warehouseAndShop": "Склад 1", "count": 3, "placementType": "FBS", "extra": 1},
             {"shopSku": "S-2", "count": "4,0", "reserve": "lots"}]
    path = make_zip(tmp_path / "r.zip", {"report.json": json.dumps(items).encode()})
    sheets, rows = read_rows(path)
    assert sheets[0].sheet is STOCKS_BUSINESS and sheets[0].unknown_columns == ["extra"]
    assert [r["COUNT"] for r in rows] == [3, 4]
    assert rows[1]["RESERVE"] == "lots" and "RESERVE is not an integer: 'lots'" in sheets[0].problems[0]


def test_xlsx_russian_captions_title_block_and_turnover_period(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.title = STOCKS_ON_WAREHOUSES.xlsx_title
    ws.append(["Отчёт по остаткам на складах"])
    ws.append([])
    ws.append(["Склад", "SSKU", "Доступно для заказа", "Оборачиваемость за 01.11.26-30.11.26", "Вес, кг", "Новое поле"])
    ws.append(["Софьино", 12345, 7, "HIGH", 1.5, "?"])
    ws.append([None, None, None, None, None, None])
    path = tmp_path / "report.bin"  # the extension must not matter
    wb.save(path)
    sheets, rows = read_rows(path)
    assert sheets[0].sheet is STOCKS_ON_WAREHOUSES and sheets[0].unknown_columns == ["Новое поле"]
    row = rows[0]
    assert (row["WAREHOUSE"], row["SHOP_SKU"], row["AVAILABLE_FOR_ORDER"], row["TURNOVER"], row["WEIGHT"]) == \
        ("Софьино", "12345", 7, "HIGH", 1.5)
    assert len(rows) == 1


def test_semicolon_csv_with_bom_and_unknown_files(tmp_path):
    text = "\ufeffSHOP_SKU;WAREHOUSE_AND_SHOP;COUNT;PLACEMENT_TYPE\nA;W;1 000;FBS\n"
    path = make_zip(tmp_path / "r.zip", {"stocks_business.csv": text.encode(), "readme.txt": b"hi"})
    _, rows = read_rows(path)
    assert rows[0]["COUNT"] == 1000 and rows[0]["SHOP_SKU"] == "A"
    junk = make_zip(tmp_path / "junk.zip", {"readme.txt": b"hi"})
    with pytest.raises(ReportParseError, match="no known report sheet"):
        read_rows(junk)


def test_rows_csv_and_snapshot_merge_name_failed_parts(tmp_path):
    a = make_zip(tmp_path / "a.zip", {"stocks_on_warehouses.csv": b"SHOP_SKU,AVAILABLE_FOR_ORDER,WAREHOUSE\nA,5,W1\n"})
    b = make_zip(tmp_path / "b.zip", {"stocks_business.csv": b"SHOP_SKU,COUNT,WAREHOUSE_AND_SHOP\nB,2,W2\nC,0,W2\n"})
    parts = []
    for path in (a, b):
        summary = write_rows_csv(path, path.with_suffix(".rows.csv"))
        parts.append({"status": "DONE", "rows_path": str(path.with_suffix(".rows.csv")), **summary})
    parts.append({"status": "FAILED", "sub_status": "NO_DATA", "reason": "no data"})
    summary = merge_snapshot(parts, tmp_path / "snap", "s1", ["fby", "business", "empty"])
    assert summary["status"] == "partial" and summary["rows"] == 3
    assert summary["failed"] == ["empty: FAILED NO_DATA no data"]
    lines = (tmp_path / "snap" / "snapshot.csv").read_text().splitlines()
    assert lines[0].startswith("PART,SHEET,SHOP_SKU,WAREHOUSE,AVAILABLE,")
    assert lines[1].startswith("fby,stocks_on_warehouses,A,W1,5,") and lines[3].startswith("business,stocks_business,C,W2,0,")
    assert json.loads((tmp_path / "snap" / "summary.json").read_text())["parts"][2]["status"] == "FAILED"
