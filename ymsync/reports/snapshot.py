"""Merging several finished report jobs into one snapshot: a CSV and a JSON summary on disk.

The parts arrive as :class:`ReportOutcome` dicts (small: counts and file paths), never as
rows, so a snapshot of millions of rows never passes through the Celery result backend. A
part that failed is named in the summary with its reason and the snapshot is marked
``partial``: the rows that did arrive are still worth having.

A warehouse group's campaigns share one stock, so their campaign reports would list the same rows
once per campaign. :func:`group_parts` keeps one request per group (the first named) where the
others ask the same report of another campaign of the group, and each row of a grouped campaign's
part carries ``GROUP``: the campaigns sharing its stock (``1001,1002``); empty otherwise.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ymsync.files import atomic_writer, write_json_atomic

# Leading columns every sheet can fill, so one CSV can be read without knowing the sheets:
# the warehouse and the count available for order are spelled differently per sheet.
LEAD = ["PART", "SHEET", "SHOP_SKU", "WAREHOUSE", "AVAILABLE", "GROUP"]
_WAREHOUSE_FROM = ("WAREHOUSE", "WAREHOUSE_AND_SHOP")
_AVAILABLE_FROM = ("AVAILABLE_FOR_ORDER", "COUNT")


def group_parts(requests: list[Any], group_of: Callable[[int], tuple[int, ...]]
                ) -> tuple[list[Any], list[str]]:
    """(the requests to run, each one's ``GROUP`` value). A v2 campaign report whose campaign is
    in a warehouse group is run once for the group: a later request asking the same report
    (same format and filters) of another campaign of the group is dropped, as its rows would
    repeat the first's. ``group_of(campaign)``: the campaign's group, ``()`` when none."""
    kept: list[Any] = []
    groups: list[str] = []
    seen: set[str] = set()
    for item in requests:
        request = item.get("request") if isinstance(item, Mapping) else None
        campaign = request.get("campaignId") if isinstance(request, Mapping) else None
        group = tuple(group_of(int(campaign))) if isinstance(campaign, int) and item.get("api", "v2") == "v2" else ()
        if len(group) > 1:
            others = {k: v for k, v in request.items() if k != "campaignId"}
            same = json.dumps([group, item.get("format", "CSV"), others], sort_keys=True, default=str)
            if same in seen:
                continue
            seen.add(same)
        kept.append(item)
        groups.append(",".join(map(str, group)) if len(group) > 1 else "")
    return kept, groups


def merge_snapshot(parts: Iterable[Mapping[str, Any] | None], folder: Path, snapshot_id: str,
                   labels: list[str] | None = None, groups: list[str] | None = None) -> dict[str, Any]:
    """Write ``snapshot.csv`` and ``summary.json`` into ``folder``; return the summary.
    ``groups[i]``: the campaigns sharing part i's stock (``1001,1002``), its rows' ``GROUP``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = list(parts)
    labels = labels or []
    groups = groups or []
    summary_parts = []
    readable: list[tuple[str, str, Path]] = []
    for index, part in enumerate(parts):
        label = labels[index] if index < len(labels) and labels[index] else f"part {index + 1}"
        group = groups[index] if index < len(groups) else ""
        if not isinstance(part, Mapping):
            part = {"status": "ERROR", "reason": f"no result for this part ({part!r})"}
        entry = {"index": index, "label": label, "request": part.get("request"), "status": part.get("status"),
                 "ok": part.get("status") == "DONE", "report_id": part.get("report_id"),
                 "sub_status": part.get("sub_status"), "reason": part.get("reason", ""),
                 "rows": part.get("rows", 0), "file": part.get("path"), "reused": part.get("reused", False),
                 "group": group}
        rows_path = part.get("rows_path")
        if entry["ok"] and rows_path and Path(rows_path).is_file():
            readable.append((label, group, Path(rows_path)))
        elif entry["ok"]:
            entry.update(ok=False, status="ERROR", reason=f"parsed rows file is missing: {rows_path}")
        summary_parts.append(entry)

    columns = list(LEAD)
    for _, _, path in readable:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        columns += [c for c in header if c not in columns]
    csv_path = folder / "snapshot.csv"
    total = _write_csv(csv_path, columns, readable)

    failed = [p for p in summary_parts if not p["ok"]]
    status = "complete" if not failed else ("partial" if len(failed) < len(summary_parts) else "failed")
    summary = {
        "snapshot_id": snapshot_id,
        "status": status,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "csv": str(csv_path),
        "rows": total,
        "parts": summary_parts,
        "failed": [f"{p['label']}: {p['status']} {p['sub_status'] or ''} {p['reason']}".replace("  ", " ").strip()
                   for p in failed],
    }
    write_json(folder / "summary.json", summary)
    return summary


def failed_snapshot(folder: Path, snapshot_id: str, error: str) -> dict[str, Any]:
    """The summary when the merge itself could not run (e.g. a part crashed outright)."""
    summary = {"snapshot_id": snapshot_id, "status": "failed",
               "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "csv": None, "rows": 0, "parts": [], "failed": [error]}
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json(Path(folder) / "summary.json", summary)
    return summary


def _write_csv(dest: Path, columns: list[str], parts: list[tuple[str, str, Path]]) -> int:
    total = 0
    with atomic_writer(dest, newline="", prefix=".snapshot-") as out:
        writer = csv.DictWriter(out, columns, extrasaction="ignore")
        writer.writeheader()
        for label, group, path in parts:
            with path.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    row["PART"], row["GROUP"] = label, group
                    row["WAREHOUSE"] = next((row[k] for k in _WAREHOUSE_FROM if row.get(k)), "")
                    row["AVAILABLE"] = next((row[k] for k in _AVAILABLE_FROM if row.get(k) not in (None, "")), "")
                    writer.writerow(row)
                    total += 1
    return total


def write_json(dest: Path, data: Any) -> None:
    write_json_atomic(dest, data)


__all__ = ["LEAD", "failed_snapshot", "group_parts", "merge_snapshot", "write_json"]
