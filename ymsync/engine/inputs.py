"""Stock update files for ``ymsync push``: CSV with a header, or JSON Lines.

Readers never raise on a bad line: they yield every item with a label (``line 7``) so the
producer's validation can report every problem at once, located by line, field and value.
Only a file that cannot be read as its format at all (no header, not UTF-8) raises.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from typing import IO, Any, Iterable

CSV_COLUMNS = ("sku", "count", "updatedAt", "warehouse")  # warehouse: business (v3) pushes only
_INT = re.compile(r"^[+-]?\d+$")


class UnreadableInput(ValueError):
    """The file is not CSV with a ``sku,count[,updatedAt]`` header nor JSON Lines."""


@dataclass
class LabelledItems:
    """Items as read, each with the label errors will use; ``problems`` are per-line read errors."""

    items: list[Any] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def detect_format(name: str, head: str) -> str:
    """``csv`` or ``jsonl`` from the file name, else from the first non-blank character."""
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def read_items(stream: IO[bytes], name: str = "-", fmt: str | None = None) -> LabelledItems:
    """Read every item of a CSV or JSON Lines stream (``fmt`` None: detect)."""
    try:
        # Whole-file read: validation must see every line before anything is queued anyway.
        data = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="").read()
    except UnicodeDecodeError as exc:
        raise UnreadableInput(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    fmt = fmt or detect_format(name, data[:4096])
    lines = io.StringIO(data)
    return _read_csv(lines) if fmt == "csv" else _read_jsonl(lines)


def _read_csv(lines: Iterable[str]) -> LabelledItems:
    out = LabelledItems()
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise UnreadableInput("empty input: expected a CSV header 'sku,count[,updatedAt]' or JSON Lines")
    names = [h.strip() for h in header]
    missing = [c for c in ("sku", "count") if c not in names]
    unknown = [h for h in names if h not in CSV_COLUMNS]
    if missing or unknown or len(set(names)) != len(names):
        raise UnreadableInput(f"CSV header must name sku,count and optionally updatedAt and warehouse; "
                              f"got {','.join(names)!r}")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a field past the csv module's size limit, say: that line is bad
            out.problems.append(f"line {reader.line_num}: unreadable CSV ({exc})")
            continue
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            out.problems.append(f"line {line}: expected {len(names)} fields ({','.join(names)}), got {len(row)}")
            continue
        item: dict[str, Any] = dict(zip(names, row))
        count = item["count"].strip()
        # CSV has no types; a well-formed integer becomes one, anything else stays text so the
        # schema's message shows the value exactly as the file had it.
        item["count"] = int(count) if _INT.match(count) else item["count"]
        if "updatedAt" in item and not item["updatedAt"].strip():
            item["updatedAt"] = None
        if "warehouse" in item:
            warehouse = item["warehouse"].strip()
            item["warehouse"] = int(warehouse) if _INT.match(warehouse) else (warehouse or None)
        out.items.append(item)
        out.labels.append(f"line {line}")
    return out


def _read_jsonl(lines: Iterable[str]) -> LabelledItems:
    out = LabelledItems()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line.rstrip("\r\n"))
        except ValueError as exc:
            out.problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:  # "[[[[…" nested past the decoder's depth: hostile, not an item
            out.problems.append(f"line {number}: not valid JSON (nested too deeply)")
            continue
        out.items.append(item)
        out.labels.append(f"line {number}")
    return out


def open_input(path: str) -> IO[bytes]:
    """``-`` is standard input; anything else a file opened for binary reading."""
    return sys.stdin.buffer if path == "-" else open(path, "rb")


__all__ = ["LabelledItems", "UnreadableInput", "detect_format", "open_input", "read_items"]
