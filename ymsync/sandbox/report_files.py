"""Report files the sandbox serves for download, shaped like the Market's.

FILE is an XLSX workbook for people (Russian sheet title and captions); CSV and JSON are ZIP
archives with one member per sheet, named after the sheet id, as the Market documents them.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from ymsync.files import atomic_path
from ymsync.reports.columns import Sheet

FORMATS = ("FILE", "CSV", "JSON")


def write_report(path: Path, fmt: str, sheet: Sheet, rows: Sequence[Mapping[str, object]]) -> int:
    """Write one report file; rows are keyed by Column.csv names; returns bytes written.

    fmt "FILE": an XLSX workbook with one sheet titled sheet.xlsx_title, header row = Russian
    captions (openpyxl, write_only mode for speed).
    fmt "CSV": a ZIP holding f"{sheet.name}.csv" (UTF-8, header of csv names, comma separated,
    csv module quoting).
    fmt "JSON": a ZIP holding f"{sheet.name}.json": a JSON array of objects keyed by camelCase names.
    Missing row keys become empty cells / null. Values are written as given (not coerced to
    Column.kind), so tests can also serve deliberately odd data; unknown keys raise ValueError.
    """
    writers: dict[str, Callable[[Path, Sheet, Sequence[Mapping[str, object]]], None]] = {
        "FILE": _write_xlsx,
        "CSV": _write_csv_zip,
        "JSON": _write_json_zip,
    }
    if fmt not in writers:
        raise ValueError(f"unknown report format {fmt!r}; expected one of {FORMATS}")
    _check_keys(sheet, rows)
    path = Path(path)
    # Atomic: a reader (the download handler) sees either no file or a complete one, never a
    # half-written ZIP.
    with atomic_path(path, fsync=True, suffix=".tmp") as tmp:
        writers[fmt](tmp, sheet, rows)
        size = tmp.stat().st_size
    return size


def _check_keys(sheet: Sheet, rows: Sequence[Mapping[str, object]]) -> None:
    # A misspelt key would otherwise silently become an empty column.
    known = {c.csv for c in sheet.columns}
    for i, row in enumerate(rows):
        extra = set(row) - known
        if extra:
            raise ValueError(f"row {i}: {sheet.name} has no columns {sorted(extra)}")


def _write_xlsx(dest: Path, sheet: Sheet, rows: Sequence[Mapping[str, object]]) -> None:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=sheet.xlsx_title)
    ws.append([c.xlsx for c in sheet.columns])
    for row in rows:
        ws.append([_xlsx_cell(ws, row.get(c.csv)) for c in sheet.columns])
    wb.save(dest)


def _xlsx_cell(ws: object, value: object) -> object:
    # openpyxl turns any string starting with "=" into a formula; a product name must stay text.
    if isinstance(value, str) and value.startswith("="):
        cell = WriteOnlyCell(ws, value=value)
        cell.data_type = "s"
        return cell
    return value


def _write_csv_zip(dest: Path, sheet: Sheet, rows: Sequence[Mapping[str, object]]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)  # excel dialect: comma, minimal quoting, CRLF line ends
    writer.writerow([c.csv for c in sheet.columns])
    for row in rows:
        writer.writerow(["" if row.get(c.csv) is None else row[c.csv] for c in sheet.columns])
    _write_zip(dest, f"{sheet.name}.csv", buf.getvalue().encode("utf-8"))


def _write_json_zip(dest: Path, sheet: Sheet, rows: Sequence[Mapping[str, object]]) -> None:
    items = [{c.json: row.get(c.csv) for c in sheet.columns} for row in rows]
    _write_zip(dest, f"{sheet.name}.json", json.dumps(items, ensure_ascii=False).encode("utf-8"))


def _write_zip(dest: Path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
