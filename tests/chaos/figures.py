"""Where the chaos suite writes its figures, and how a case records them.

Every case writes one JSON file (``build/chaos/<case>.json``, or under ``$YM_CHAOS_REPORT``)
with what it measured; ``tests/chaos/report.py`` renders docs/RELIABILITY.md from those files,
so the document always shows the figures of a real run, never numbers typed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def report_dir() -> Path:
    return Path(os.environ.get("YM_CHAOS_REPORT") or ROOT / "build" / "chaos")


def clear_figures(case: str) -> None:
    """Forget a case's figures from an earlier run (before the case runs again)."""
    (report_dir() / f"{case}.json").unlink(missing_ok=True)


def write_figures(case: str, title: str, figures: dict[str, Any], checks: list[str], started: float) -> Path:
    """Record one case: its figures, the claims it asserted, how long it took and where it ran.
    ``figures["passed"]`` says whether the case passed; a failed case's figures are written marked
    failed (``"passed": false``), and the report shows them as the figures of a failed run."""
    out = report_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{case}.json"
    figures = {**figures, "passed": bool(figures.get("passed", False))}
    payload = {"case": case, "title": title, "passed": figures["passed"], "figures": figures, "checks": checks,
               "duration_s": round(time.monotonic() - started, 1),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system()}}
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
