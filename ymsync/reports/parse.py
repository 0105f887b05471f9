"""Rows of a stocks-on-warehouses report, by column name, from XLSX, CSV or JSON alike.

The Market warns that report columns may be added, reordered or renamed, so nothing here
trusts positions: each header cell is matched to a known :class:`Column` by any of its three
spellings (``SHOP_SKU`` / ``shopSku`` / ``Ваш SKU *``), unknown columns are reported and
skipped, and missing ones come back as None. Which of the three sheets a file holds is told
by its member name or Russian sheet title when those are known, else by its columns.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

from ymsync.reports.columns import SHEETS, Column, Sheet
from ymsync.reports.unpack import ArchiveLimits, SafeArchive, UnsafeArchive

# Captions that carry a variable tail in the real XLSX ("Оборачиваемость за 01.11.26-30.11.26").
_PREFIX_CAPTIONS = frozenset({"оборачиваемость"})
_HEADER_SCAN_ROWS = 10  # a people-made XLSX may have a title block above the header row
_MAX_PROBLEMS = 20


class ReportParseError(ValueError):
    """The file holds no sheet ymsync recognises (or is not a report at all)."""


def norm(name: object) -> str:
    """One spelling for comparison: case, ``ё``, spacing, the required-field ``*`` and, for
    identifiers, underscores stop mattering (``SHOP_SKU`` and ``shopSku`` both become ``shopsku``)."""
    text = re.sub(r"\s+", " ", str(name or "").replace("\ufeff", "").strip().casefold().replace("ё", "е"))
    text = text.rstrip("*").strip()
    return text.replace("_", "") if re.fullmatch(r"[a-z0-9_]+", text) else text


def _lookup(sheet: Sheet) -> dict[str, Column]:
    table: dict[str, Column] = {}
    for col in sheet.columns:
        for spelling in (col.csv, col.json, col.xlsx):
            table.setdefault(norm(spelling), col)
    return table


_LOOKUPS = {name: _lookup(sheet) for name, sheet in SHEETS.items()}
_TITLES = {norm(sheet.xlsx_title): sheet for sheet in SHEETS.values()}


def match_columns(header: Sequence[object], sheet: Sheet) -> list[Column | None]:
    """For each header cell, the sheet column it names (or None for an unknown column)."""
    table = _LOOKUPS[sheet.name]
    out: list[Column | None] = []
    taken: set[str] = set()
    for cell in header:
        key = norm(cell)
        col = table.get(key)
        if col is None:
            col = next((table[p] for p in _PREFIX_CAPTIONS if p in table and key.startswith(p + " ")), None)
        if col is not None and col.csv in taken:
            col = None  # a repeated caption: keep the first, never let a later one overwrite it
        if col is not None:
            taken.add(col.csv)
        out.append(col)
    return out


def guess_sheet(header: Sequence[object], hint: str | None = None) -> Sheet | None:
    """The sheet a header belongs to: the hint (file stem or XLSX title) if it names one and its
    columns fit, else the sheet whose columns it matches best (at least two of them)."""
    hinted = SHEETS.get(hint or "") or _TITLES.get(norm(hint))
    if hinted is not None and sum(c is not None for c in match_columns(header, hinted)) >= 1:
        return hinted
    best, best_score = None, (1, 0.0)
    for sheet in SHEETS.values():
        hits = sum(c is not None for c in match_columns(header, sheet))
        score = (hits, hits / len(sheet.columns))
        if score > best_score:
            best, best_score = sheet, score
    return best


@dataclass
class SheetData:
    """One sheet of a report; ``rows`` is lazy and valid inside :func:`open_report` only."""

    sheet: Sheet
    source: str
    unknown_columns: list[str]
    missing_columns: list[str]
    rows: Iterator[dict[str, Any]]
    problems: list[str] = field(default_factory=list)


def coerce(value: Any, col: Column, problems: list[str], where: str) -> Any:
    """Type a cell by its column's kind; a value that will not fit is kept as text and noted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if col.kind == "str":
        if isinstance(value, float) and value.is_integer():
            return str(int(value))  # an SKU typed into Excel as a number
        return str(value).strip() if isinstance(value, str) else str(value)
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)):
            number: float = value
        else:
            number = float(str(value).replace("\u00a0", "").replace(" ", "").replace(",", "."))
        if col.kind == "int":
            if not float(number).is_integer():
                raise ValueError
            return int(number)
        return float(number)
    except (ValueError, OverflowError):
        if len(problems) < _MAX_PROBLEMS:
            problems.append(f"{where}: {col.csv} is not {'an integer' if col.kind == 'int' else 'a number'}: {value!r}")
        return str(value)


# Errors of ymsync's own that already say what is wrong; anything else a damaged file makes a
# library raise (zipfile, zlib, openpyxl, XML, csv, codecs...) is turned into ReportParseError.
_CLEAR = (ReportParseError, UnsafeArchive, MemoryError)


def _unreadable(source: str, exc: BaseException) -> ReportParseError:
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    return ReportParseError(f"{source}: damaged or not a report ({type(exc).__name__}: {detail})")


def _rows(records: Iterable[Sequence[Any]], columns: list[Column | None], sheet: Sheet, data: SheetData,
          first_line: int) -> Iterator[dict[str, Any]]:
    number = first_line
    try:
        for number, record in enumerate(records, start=first_line):
            if not any(v not in (None, "") for v in record):
                continue  # blank lines and Excel's trailing empty rows
            row: dict[str, Any] = {c.csv: None for c in sheet.columns}
            for col, value in zip(columns, record):
                if col is not None:
                    row[col.csv] = coerce(value, col, data.problems, f"{data.source} row {number}")
            yield row
    except _CLEAR:
        raise
    except Exception as exc:  # rows are read lazily: a damaged member shows only now
        raise _unreadable(f"{data.source} near row {number}", exc) from exc


def _sheet_data(header: Sequence[Any], records: Iterable[Sequence[Any]], source: str, hint: str | None,
                first_line: int) -> SheetData | None:
    sheet = guess_sheet(header, hint)
    if sheet is None:
        return None
    columns = match_columns(header, sheet)
    present = {c.csv for c in columns if c is not None}
    data = SheetData(sheet, source,
                     unknown_columns=[str(h) for h, c in zip(header, columns) if c is None and h not in (None, "")],
                     missing_columns=[c.csv for c in sheet.columns if c.csv not in present],
                     rows=iter(()))
    data.rows = _rows(records, columns, sheet, data, first_line)
    return data


def _csv_sheet(stream: IO[bytes], source: str, hint: str | None) -> SheetData | None:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    first = text.readline()
    # Hand-saved CSVs from Excel in a Russian locale use ';'; the Market's own use ','.
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(text, delimiter=delimiter)
    header = next(csv.reader([first], delimiter=delimiter), [])
    return _sheet_data(header, reader, source, hint, first_line=2)


def _json_sheet(stream: IO[bytes], source: str, hint: str | None) -> SheetData | None:
    try:
        payload = json.load(io.TextIOWrapper(stream, encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportParseError(f"{source}: not valid JSON ({exc})") from None
    if isinstance(payload, dict):  # tolerate {"result": [...]}-style wrappers
        payload = next((v for v in payload.values() if isinstance(v, list)), [])
    items = [item for item in payload if isinstance(item, dict)] if isinstance(payload, list) else []
    keys: list[str] = []
    for item in items[:1000]:
        keys.extend(k for k in item if k not in keys)
    return _sheet_data(keys, ([item.get(k) for k in keys] for item in items), source, hint, first_line=1)


def _xlsx_sheets(workbook: Any) -> Iterator[SheetData]:
    for ws in workbook.worksheets:
        rows = ws.iter_rows(values_only=True)
        head: list[tuple] = []
        for row in rows:
            head.append(row)
            if len(head) >= _HEADER_SCAN_ROWS:
                break
        best = None
        for index, candidate in enumerate(head):
            sheet = guess_sheet(candidate, ws.title)
            hits = sum(c is not None for c in match_columns(candidate, sheet)) if sheet else 0
            if sheet and hits >= 2 and (best is None or hits > best[0]):
                best = (hits, index)
        if best is None:
            continue
        index = best[1]
        records = itertools.chain(head[index + 1:], rows)
        data = _sheet_data(head[index], records, f"sheet {ws.title!r}", ws.title, first_line=index + 2)
        if data is not None:
            yield data


@contextmanager
def open_report(path: Path, limits: ArchiveLimits | None = None) -> Iterator[list[SheetData]]:
    """Open a report file (XLSX, ZIP of CSV/JSON, or a bare CSV/JSON) and yield its sheets.

    Archives are checked by :class:`SafeArchive` first; the rows are read lazily, so a large
    report streams through without being held in memory (JSON members excepted)."""
    path = Path(path)
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic[:2] != b"PK":
        with path.open("rb") as fh:
            reader = _json_sheet if path.suffix.lower() == ".json" else _csv_sheet
            data = _guarded(path.name, reader, fh, path.name, path.stem)
            yield [data] if data else []
        return
    with SafeArchive(path, limits) as archive:
        if "[Content_Types].xml" in archive.members():
            # XLSX is a ZIP that openpyxl inflates itself: the SafeArchive check above has
            # already vetted its entry count and declared sizes. A file object, because openpyxl
            # judges by the file name's extension and ours may be anything.
            from openpyxl import load_workbook

            with path.open("rb") as fh:
                workbook = _guarded(path.name, load_workbook, fh, read_only=True, data_only=True)
                try:
                    sheets = _guarded(path.name, lambda: list(_xlsx_sheets(workbook)))
                    yield sheets
                finally:
                    workbook.close()
            return
        sheets = []
        for member in archive.members():
            stem, _, ext = Path(member).name.rpartition(".")
            reader = {"csv": _csv_sheet, "json": _json_sheet}.get(ext.lower())
            if reader is None:
                continue
            data = _guarded(member, lambda: reader(archive.open(member), member, stem))
            if data is not None:
                sheets.append(data)
        yield sheets


def _guarded(source: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, with a damaged file's library error turned into ReportParseError
    (only around our own reading: never around the caller's code inside ``open_report``)."""
    try:
        return fn(*args, **kwargs)
    except _CLEAR:
        raise
    except Exception as exc:
        raise _unreadable(source, exc) from exc


def read_rows(path: Path, limits: ArchiveLimits | None = None) -> tuple[list[SheetData], list[dict[str, Any]]]:
    """Every row of a (small) report in memory; tests and quick looks. Raises if none is known."""
    with open_report(path, limits) as sheets:
        if not sheets:
            raise ReportParseError(f"{Path(path).name}: no known report sheet inside")
        rows = [row for data in sheets for row in data.rows]
    return sheets, rows


__all__ = ["ReportParseError", "SheetData", "UnsafeArchive", "coerce", "guess_sheet", "match_columns", "norm",
           "open_report", "read_rows"]
