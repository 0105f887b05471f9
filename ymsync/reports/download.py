"""Fetching a finished report's file into the reports folder, under a name no report id can bend."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ymsync.market import MarketClient
from ymsync.market.errors import DownloadRefused, ReportLinkExpired, ReportTooLarge
from ymsync.market.models import ReportInfo

# A report id becomes a file name ({id}.zip, {id}.rows.csv): letters, digits, '_', '-' and
# inner dots only, so no id can name a folder ('..', '/x', 'a/../../b') or a hidden file.
_SAFE_REPORT_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def safe_report_id(report_id: object) -> str | None:
    """``report_id`` if it can safely be a file name inside the reports folder, else None."""
    if isinstance(report_id, str) and _SAFE_REPORT_ID.fullmatch(report_id) and ".." not in report_id:
        return report_id
    return None


def report_path(folder: Path, report_id: object, extension: str) -> Path | None:
    """Where the report's file goes inside ``folder``; None if its id cannot be a file name there."""
    name = safe_report_id(report_id)
    if name is None:
        return None
    dest = folder / f"{name}.{extension}"
    return dest if dest.resolve().parent == folder.resolve() else None


@dataclass(frozen=True)
class Fetched:
    """How a download went: ``saved`` (or already there), ``no_file`` (DONE without a link: the
    Market's verdict), ``link_expired`` (ask for a fresh link), or ``refused`` (``reason``)."""

    status: str
    reason: str = ""


def fetch(client: MarketClient, info: ReportInfo, dest: Path) -> Fetched:
    # Same report id, same bytes: a reusing job need not fetch (or outlive) another link.
    if dest.exists() and dest.stat().st_size > 0:
        return Fetched("saved")
    if not info.file_url:
        return Fetched("no_file")
    try:
        client.download_report(info.file_url, dest)
    except ReportLinkExpired as exc:
        return Fetched("link_expired", exc.message)
    except (ReportTooLarge, DownloadRefused) as exc:
        return Fetched("refused", exc.message)
    return Fetched("saved")
