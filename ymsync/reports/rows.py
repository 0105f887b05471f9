"""A downloaded report as rows: parsed (parse.py, unpack.py) and written as one CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ymsync.files import atomic_writer
from ymsync.reports.parse import ReportParseError, open_report
from ymsync.reports.unpack import ArchiveLimits


def write_rows_csv(report: Path, dest: Path, limits: ArchiveLimits | None = None) -> dict[str, Any]:
    """Parse ``report`` and write its rows as one CSV keyed by the Market's CSV names (plus
    ``SHEET``), atomically. Returns what the outcome reports: rows, sheets, column drift."""
    summary: dict[str, Any] = {"rows": 0, "sheets": [], "unknown_columns": [], "missing_columns": [], "problems": []}
    with atomic_writer(dest, newline="", prefix=".rows-") as out, open_report(report, limits) as sheets:
        if not sheets:
            raise ReportParseError(f"{report.name}: no known report sheet inside")
        names = ["SHEET"] + list(dict.fromkeys(c.csv for data in sheets for c in data.sheet.columns))
        writer = csv.DictWriter(out, names)
        writer.writeheader()
        for data in sheets:
            for row in data.rows:
                writer.writerow({"SHEET": data.sheet.name, **row})
                summary["rows"] += 1
            summary["sheets"].append(data.sheet.name)
            summary["unknown_columns"] += data.unknown_columns
            summary["missing_columns"] += data.missing_columns
            summary["problems"] += data.problems
    return summary
