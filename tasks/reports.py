"""Report tasks on the ``reports`` queue (``celery -A tasks worker -Q reports``).

Public names (``send_task`` them from anywhere):

``ymsync.reports.stocks_on_warehouses(request, format="FILE", out_dir=None)``
    (``out_dir``: a folder inside YM_REPORTS_DIR, relative to it.) One stocks-on-warehouses report: generate → poll → download → parse. Between polls the
    task re-enqueues itself (``retry`` with a countdown and the new state), so no worker slot
    ever sleeps, and its task id stays the same from request to result. The result is a small
    dict (status, report id, file path, row count, reason); it never raises for the Market's
    verdicts, so a chord of these never dies of a ChordError.
``ymsync.reports.snapshot(requests, out_dir=None)`` (default ``snapshots/{id}``)
    Several reports as a chord; ``ymsync.reports.merge_snapshot`` writes one CSV and a JSON
    summary naming any failed part. Rows travel as files, never through the result backend.

Progress of each job (status transitions) is kept in Redis under the task id; the CLI shows it.
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis
from celery import chord
from celery.exceptions import Ignore, Retry

from ymsync.market import MarketClient
from ymsync.market.schemas import InvalidRequest
from ymsync.reports.poller import PollState, ReportOutcome, ReportPoller
from ymsync.reports.request import ReportRequest
from ymsync.reports.snapshot import failed_snapshot, merge_snapshot
from ymsync.settings import get_settings

from . import app, runtime

log = logging.getLogger("ymsync.reports")

# A countdown longer than the broker's visibility timeout would let Redis hand the delayed
# message to a second worker while the first still holds it; stay a tenth of it below.
_VISIBILITY = float((app.conf.broker_transport_options or {}).get("visibility_timeout", 3600))
MAX_COUNTDOWN_S = min(300.0, _VISIBILITY / 10)
_EXPIRES = app.conf.result_expires
_EXPIRES_S = _EXPIRES.total_seconds() if hasattr(_EXPIRES, "total_seconds") else float(_EXPIRES or 0)
# Chord state (the header's results and counter) lives only as long as results do: a part that
# waited past result_expires would find its chord gone. So a job gives up well before that.
GIVE_UP_AFTER_S = min(6 * 3600.0, _EXPIRES_S / 2) if _EXPIRES_S > 0 else 6 * 3600.0


@lru_cache(maxsize=1)
def poller() -> ReportPoller:
    s = get_settings()
    return ReportPoller(MarketClient.from_settings(s), runtime.limiter(), runtime.redis_client(), s.reports_dir,
                        max_wait_s=MAX_COUNTDOWN_S, give_up_after_s=GIVE_UP_AFTER_S)


def inside_reports_dir(out_dir: str | None) -> str | None:
    """``out_dir`` resolved under YM_REPORTS_DIR (relative paths are taken from there). A task
    argument must not make a worker write anywhere else on its disk; refused with InvalidRequest."""
    if not out_dir:
        return None
    base = get_settings().reports_dir.resolve()
    target = (base / out_dir).resolve()
    if target != base and base not in target.parents:
        raise InvalidRequest("report request", [f"out_dir must lie inside YM_REPORTS_DIR ({base}), got {out_dir!r}"])
    return str(target)


def _label(request: Any, fmt: Any) -> str:
    try:
        return ReportRequest.build(request, fmt).describe()
    except (InvalidRequest, TypeError, AttributeError):
        return "invalid request"


@app.task(bind=True, name="ymsync.reports.stocks_on_warehouses", max_retries=None)
def stocks_on_warehouses(self, request: dict[str, Any], format: str = "FILE", out_dir: str | None = None,
                         state: dict[str, Any] | None = None) -> dict[str, Any]:
    job_id = self.request.id or uuid.uuid4().hex
    try:
        if state is None:
            checked = ReportRequest.build(request, format)
            current = PollState.new(checked, inside_reports_dir(out_dir), job_id=job_id)
        else:
            current = PollState.from_dict(state)
        step = poller().step(current)
    except InvalidRequest as exc:
        return ReportOutcome("ERROR", job_id, "invalid request", reason=str(exc)).to_dict()
    except (redis.RedisError, OSError) as exc:
        # Our own infrastructure hiccuped: try the same step again shortly, within the deadline.
        if state is not None and time.time() - float(state.get("started_at", 0)) > GIVE_UP_AFTER_S:
            return ReportOutcome("ERROR", job_id, _label(request, format), reason=f"{type(exc).__name__}: {exc}").to_dict()
        log.warning("report job %s: %s; retrying", job_id, exc)
        raise self.retry(countdown=5, kwargs={"request": request, "format": format, "out_dir": out_dir,
                                              "state": state}, argsrepr=f"({_label(request, format)}, retrying)")
    except (Retry, Ignore):
        raise
    except Exception as exc:  # a bug must end this part with a reason, not a silent chord failure
        log.exception("report job %s failed", job_id)
        return ReportOutcome("ERROR", job_id, _label(request, format), reason=f"{type(exc).__name__}: {exc}").to_dict()
    if step.outcome is not None:
        return step.outcome.to_dict()
    nxt = step.state
    raise self.retry(countdown=min(MAX_COUNTDOWN_S, step.wait_s or 0),
                     kwargs={"request": request, "format": format, "out_dir": out_dir, "state": nxt.to_dict()},
                     argsrepr=f"({_label(request, format)}, {nxt.last_status or nxt.phase}"
                              f"{', report ' + nxt.report_id if nxt.report_id else ''})",
                     kwargsrepr="{}")


@app.task(name="ymsync.reports.merge_snapshot")
def merge(results: list[dict[str, Any]], snapshot_id: str, folder: str, labels: list[str]) -> dict[str, Any]:
    return merge_snapshot(results, Path(folder), snapshot_id, labels)


@app.task(name="ymsync.reports.snapshot_failed")
def snapshot_failed(request: Any, exc: BaseException, traceback: Any, snapshot_id: str = "",
                    folder: str = "") -> None:
    """Errback of the merge: whatever broke the chord, the snapshot folder says so."""
    failed_snapshot(Path(folder), snapshot_id, f"snapshot chord failed: {type(exc).__name__}: {exc}")


@app.task(bind=True, name="ymsync.reports.snapshot")
def snapshot(self, requests: list[dict[str, Any]], out_dir: str | None = None) -> dict[str, Any]:
    """Start a chord: one report job per request, merged into one snapshot when all are in.

    ``requests``: ``[{"request": {...}, "format": "CSV"}, ...]``. Returns at once with the
    snapshot folder and the merge task's id (its result is the summary)."""
    snapshot_id = self.request.id or uuid.uuid4().hex
    try:
        folder = Path(inside_reports_dir(out_dir or f"snapshots/{snapshot_id}") or "")
    except InvalidRequest as exc:
        return {"snapshot_id": snapshot_id, "status": "failed", "error": str(exc)}
    parts_dir = folder / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    labels = [_label((r or {}).get("request"), (r or {}).get("format", "CSV")) for r in requests]
    header = [
        stocks_on_warehouses.s((r or {}).get("request"), (r or {}).get("format", "CSV"), str(parts_dir))
        .set(argsrepr=f"({label}, snapshot {snapshot_id[:8]})", kwargsrepr="{}")
        for r, label in zip(requests, labels)
    ]
    body = merge.s(snapshot_id, str(folder), labels).set(argsrepr=f"(snapshot {snapshot_id[:8]}, {len(header)} parts)")
    body = body.on_error(snapshot_failed.s(snapshot_id=snapshot_id, folder=str(folder)))
    result = chord(header)(body)
    return {"snapshot_id": snapshot_id, "folder": str(folder), "merge_task_id": result.id, "parts": labels}


def send_report(request: ReportRequest, out_dir: str | None = None, task_id: str | None = None) -> str:
    """Enqueue one report job (already validated) with a readable argsrepr; returns its task id."""
    result = stocks_on_warehouses.apply_async((request.body, request.format, out_dir), task_id=task_id,
                                              argsrepr=f"({request.describe()})")
    return result.id


def send_snapshot(requests: list[ReportRequest], out_dir: str | None = None) -> str:
    result = snapshot.apply_async(([r.to_dict() for r in requests], out_dir),
                                  argsrepr=f"({len(requests)} reports: {'; '.join(r.describe() for r in requests)})")
    return result.id


__all__ = ["merge", "poller", "send_report", "send_snapshot", "snapshot", "snapshot_failed", "stocks_on_warehouses"]
