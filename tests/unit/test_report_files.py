"""Roundtrip of the sandbox's report files, read back with plain openpyxl / zipfile / csv / json."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import openpyxl
import pytest

from ymsync.reports.columns import (
    MASS_SHARED_STOCKS,
    SHEETS,
    STOCKS_BUSINESS,
    STOCKS_ON_WAREHOUSES,
    Column,
    Sheet,
)
from ymsync.sandbox.report_files import write_report

ALL_SHEETS = [STOCKS_ON_WAREHOUSES, MASS_SHARED_STOCKS, STOCKS_BUSINESS]
SUFFIX = {"FILE": ".xlsx", "CSV": ".zip", "JSON": ".zip"}


def _value(col: Column, i: int) -> object:
    if col.kind == "int":
        return 1000 * i + len(col.csv)
    if col.kind == "float":
        return 0.25 + i
    # Cyrillic, a comma and quotes exercise CSV quoting and UTF-8 in every format.
    return f'{col.csv.lower()}-{i}, "Товар" №{i}'


def _rows(sheet: Sheet) -> list[dict[str, object]]:
    full = {c.csv: _value(c, 1) for c in sheet.columns}
    explicit_none = {c.csv: _value(c, 2) for c in sheet.columns}
    explicit_none[sheet.columns[0].csv] = None
    sparse = {"SHOP_SKU": "=SUM(A1:A2)", "PRODUCT_NAME": "Только два поля"}  # rest missing
    return [full, explicit_none, sparse]


def _write(tmp_path: Path, fmt: str, sheet: Sheet, rows) -> tuple[Path, int]:
    path = tmp_path / f"report{SUFFIX[fmt]}"
    size = write_report(path, fmt, sheet, rows)
    assert size == path.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    return path, size


@pytest.mark.parametrize("sheet", ALL_SHEETS, ids=lambda s: s.name)
def test_xlsx_roundtrip(tmp_path: Path, sheet: Sheet) -> None:
    rows = _rows(sheet)
    path, _ = _write(tmp_path, "FILE", sheet, rows)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == [sheet.xlsx_title]
    got = list(wb[sheet.xlsx_title].iter_rows(values_only=True))
    assert list(got[0]) == [c.xlsx for c in sheet.columns]
    assert len(got) == 1 + len(rows)
    for row, cells in zip(rows, got[1:]):
        expected = [row.get(c.csv) for c in sheet.columns]
        assert list(cells) == expected
        for col, cell in zip(sheet.columns, cells):
            if cell is not None:
                assert type(cell) is {"int": int, "float": float, "str": str}[col.kind], col.csv
    # A leading "=" stays text, not a formula.
    assert wb[sheet.xlsx_title].cell(row=4, column=1 + sheet.columns.index(sheet.column("SHOP_SKU"))).data_type == "s"


@pytest.mark.parametrize("sheet", ALL_SHEETS, ids=lambda s: s.name)
def test_csv_roundtrip(tmp_path: Path, sheet: Sheet) -> None:
    rows = _rows(sheet)
    path, _ = _write(tmp_path, "CSV", sheet, rows)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [f"{sheet.name}.csv"]
        text = zf.read(f"{sheet.name}.csv").decode("utf-8")
    got = list(csv.reader(io.StringIO(text, newline="")))
    assert got[0] == [c.csv for c in sheet.columns]
    assert got[1:] == [
        ["" if row.get(c.csv) is None else str(row[c.csv]) for c in sheet.columns] for row in rows
    ]


@pytest.mark.parametrize("sheet", ALL_SHEETS, ids=lambda s: s.name)
def test_json_roundtrip(tmp_path: Path, sheet: Sheet) -> None:
    rows = _rows(sheet)
    path, _ = _write(tmp_path, "JSON", sheet, rows)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [f"{sheet.name}.json"]
        got = json.loads(zf.read(f"{sheet.name}.json").decode("utf-8"))
    assert got == [{c.json: row.get(c.csv) for c in sheet.columns} for row in rows]
    for item in got:
        assert list(item) == [c.json for c in sheet.columns]
    int_cols = [c for c in sheet.columns if c.kind == "int"]
    assert int_cols and all(type(got[0][c.json]) is int for c in int_cols)


@pytest.mark.parametrize("fmt", ["FILE", "CSV", "JSON"])
def test_empty_report_has_header_only(tmp_path: Path, fmt: str) -> None:
    path, _ = _write(tmp_path, fmt, MASS_SHARED_STOCKS, [])
    if fmt == "FILE":
        ws = openpyxl.load_workbook(path)[MASS_SHARED_STOCKS.xlsx_title]
        assert list(ws.iter_rows(values_only=True)) == [tuple(c.xlsx for c in MASS_SHARED_STOCKS.columns)]
    else:
        with zipfile.ZipFile(path) as zf:
            data = zf.read(zf.namelist()[0]).decode("utf-8")
        if fmt == "CSV":
            assert data == "ERRORS,WARNINGS,SHOP_SKU,PRODUCT_NAME,COUNT\r\n"
        else:
            assert json.loads(data) == []


def test_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "r.zip"
    path.write_bytes(b"old")
    write_report(path, "JSON", STOCKS_BUSINESS, [{"SHOP_SKU": "a", "COUNT": 3}])
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("stocks_business.json"))[0]["count"] == 3


def test_bad_format_and_unknown_key_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_report(tmp_path / "r.xlsx", "XLS", STOCKS_BUSINESS, [])
    with pytest.raises(ValueError, match="SHOPSKU"):
        write_report(tmp_path / "r.zip", "CSV", STOCKS_BUSINESS, [{"SHOPSKU": "a"}])
    assert list(tmp_path.iterdir()) == []


def test_sheet_registry_and_lookup() -> None:
    assert SHEETS == {s.name: s for s in ALL_SHEETS}
    assert STOCKS_ON_WAREHOUSES.column("AVAILABLE_FOR_ORDER").json == "availableForOrder"
    assert STOCKS_BUSINESS.column("WAREHOUSE_AND_SHOP").json == "warehouseAndShop"
    with pytest.raises(KeyError):
        MASS_SHARED_STOCKS.column("RESERVE")
    for sheet in ALL_SHEETS:
        assert len(sheet.xlsx_title) <= 31 and not set("[]:*?/\\") & set(sheet.xlsx_title)
        assert sheet.column("SHOP_SKU").json == "shopSku"
    with pytest.raises(ValueError):
        Sheet("x", "bad/title", ())
