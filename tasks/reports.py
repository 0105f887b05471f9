"""Report tasks on the ``reports`` queue (``celery -A tasks worker -Q reports``).

Public names (``send_task`` them from anywhere):

``ymsync.reports.stocks_on_warehouses(request, format="FILE", out_dir=None)``
    (``out_dir``: a folder inside YM_REPORTS_DIR, relative to it.) One stocks-on-warehouses
    report: generate → poll → download → parse. Each message runs one step; between steps the
    job waits in Redis (``ymsync.reports.jobs``), not in a countdown message: the task raises
    ``Retry`` (the message is acked, the result says RETRY, no new message is sent) and the
    report scheduler (``tasks.report_scheduler``) re-sends the same signature, same task id and
    chord linkage, when the job is due. A worker killed mid-job therefore loses nothing: the
    job's lease lapses and any reports worker's scheduler sends it again. The result is a small
    dict (status, report id, file path, row count, reason); it never raises for the Market's
    verdicts, so a chord of these never dies of a ChordError.
``ymsync.reports.snapshot(requests, out_dir=None)`` (default ``snapshots/{id}``)
    Several reports as a chord; ``ymsync.reports.merge_snapshot`` writes one CSV and a JSON
    summary naming any failed part. Rows travel as files, never through the result backend.

Progress of each job (status transitions) is kept in Redis under the task id; the CLI shows it.
"""

from __future__ import annotations

import json
import logging
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis
from celery import Task, chord
from celery.exceptions import Ignore, Retry

from ymsync.config.cabinets import CabinetNotFound
from ymsync.market.schemas import InvalidRequest
from ymsync.reports.jobs import ReportJobs
from ymsync.store import keys
from ymsync.reports.poller import PollState, ReportOutcome, ReportPoller
from ymsync.reports.request import ReportRequest
from ymsync.reports.snapshot import failed_snapshot, group_parts, merge_snapshot
from ymsync.config.settings import get_settings

from . import runtime
from .app import app

log = logging.getLogger("ymsync.reports")

# The longest single wait between two steps; waits live in Redis now, so this only bounds how
# stale a job's pace can get (a 420's Until, a long estimate) before it looks again.
MAX_COUNTDOWN_S = 300.0
_VISIBILITY = float((app.conf.broker_transport_options or {}).get("visibility_timeout", 3600))
_EXPIRES = app.conf.result_expires
_EXPIRES_S = _EXPIRES.total_seconds() if hasattr(_EXPIRES, "total_seconds") else float(_EXPIRES or 0)
# Chord state (the header's results and counter) lives only as long as results do: a part that
# waited past result_expires would find its chord gone. So a job gives up well before that.
GIVE_UP_AFTER_S = min(6 * 3600.0, _EXPIRES_S / 2) if _EXPIRES_S > 0 else 6 * 3600.0
# A step holds its job under a lease (YM_REPORT_STEP_LEASE_S, 30 s) renewed every third of it; a
# worker that dies mid-step frees the job that long after at most. A sent step not started within
# YM_REPORT_RESEND_S (a minute; its message died in a killed worker's prefetch) is sent again. Job
# records outlive the broker's visibility timeout, so a message the broker redelivers hours later
# still finds its job finished and is dropped.
INFRA_RETRY_S = 5.0


def poller(request: dict[str, Any]) -> ReportPoller:
    """The poller of the cabinet the request is about: its token, its subscription's quotas.
    Raises CabinetNotFound if no configured cabinet serves it."""
    body = (request or {}).get("request") or {}
    cabinet = get_settings().cabinets.serving(business_id=body.get("businessId"), campaign_id=body.get("campaignId"))
    return _poller(cabinet.name)


@lru_cache(maxsize=None)
def _poller(cabinet_name: str) -> ReportPoller:
    s = get_settings()
    # The v2 report methods name no business or campaign in their path: the Market counts them per
    # token, so per cabinet (one cabinet keeps the historical key "all"); v3 reports use b<id>.
    key = "all" if len(s.cabinets) == 1 else f"cabinet:{cabinet_name}"
    # Report calls share the parallel cap of the token's business (its pushes, reads, directory).
    business_id = next(c for c in s.cabinets if c.name == cabinet_name).business_id
    return ReportPoller(runtime.client_for_cabinet(cabinet_name), runtime.limiter_for_cabinet(cabinet_name),
                        runtime.redis_client(), s.reports_dir, quota_key=key, max_wait_s=MAX_COUNTDOWN_S,
                        give_up_after_s=GIVE_UP_AFTER_S,
                        gate=keys.business_target(business_id) if business_id is not None else None)


@lru_cache(maxsize=1)
def jobs() -> ReportJobs:
    s = get_settings()
    return ReportJobs(runtime.redis_client(), lease_s=s.report_step_lease_s, resend_after_s=s.report_resend_s,
                      ttl_s=GIVE_UP_AFTER_S + _VISIBILITY + 3600, done_ttl_s=_VISIBILITY + 3600)


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


def _label(request: Any, fmt: Any, api: str = "v2") -> str:
    try:
        return ReportRequest.build(request, fmt, api).describe()
    except (InvalidRequest, TypeError, AttributeError):
        return "invalid request"


class ReportJobTask(Task):
    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        # Runs after Celery stored the result and counted the chord part: from now on a
        # duplicate message of this job is dropped instead of reporting the outcome again.
        try:
            jobs().reported(task_id)
        except redis.RedisError:  # the outcome is re-reported after the lease; the backend dedups
            log.warning("report job %s: could not mark its result reported", task_id, exc_info=True)


def _resend_signature(task: Task, label: str) -> dict[str, Any]:
    """The message that runs this job's next step: this one's signature (task id, chord, group,
    callbacks) without what belongs to one delivery (an old ``state`` kwarg, expiry, retries)."""
    req = task.request
    kwargs = {k: v for k, v in (req.kwargs or {}).items() if k != "state"}
    queue = (req.delivery_info or {}).get("routing_key") or "reports"
    sig = task.signature_from_request(kwargs=kwargs, queue=queue, argsrepr=f"({label})", kwargsrepr="{}")
    for option in ("expires", "retries", "countdown", "eta"):
        sig.options.pop(option, None)
    return json.loads(json.dumps(dict(sig), default=str))


@app.task(bind=True, base=ReportJobTask, name="ymsync.reports.stocks_on_warehouses", max_retries=None)
def stocks_on_warehouses(self, request: dict[str, Any], format: str = "FILE", out_dir: str | None = None,
                         state: dict[str, Any] | None = None) -> dict[str, Any]:
    return _run_job(self, request, format, "v2", out_dir, state)


@app.task(bind=True, base=ReportJobTask, name="ymsync.reports.business_stocks", max_retries=None)
def business_stocks(self, request: dict[str, Any], format: str = "CSV", out_dir: str | None = None) -> dict[str, Any]:
    """The v3 business stocks report (generateStocksReport): ``request`` is ``{"businessId": 7,
    "partnerWarehouseIds": [...], "categoryIds": [...], "hasStocks": true}`` (all but businessId
    optional). Same job pattern and outcome as ``stocks_on_warehouses``."""
    return _run_job(self, request, format, "v3", out_dir, None)


def _run_job(self: Task, request: dict[str, Any], format: str, api: str, out_dir: str | None,
             state: dict[str, Any] | None) -> dict[str, Any]:
    job_id = self.request.id or uuid.uuid4().hex
    label = _label(request, format, api)
    try:
        if state is not None:  # a message from before jobs lived in Redis: adopt its progress
            initial = PollState.from_dict(state).to_dict()
        else:
            initial = PollState.new(ReportRequest.build(request, format, api), inside_reports_dir(out_dir),
                                    job_id=job_id).to_dict()
    except InvalidRequest as exc:  # the same verdict however often it runs: nothing to keep
        return ReportOutcome("ERROR", job_id, "invalid request", reason=str(exc)).to_dict()
    store = jobs()
    try:
        claim = store.claim(job_id, initial, _resend_signature(self, label))
    except redis.RedisError as exc:
        # No job record could be written: keep the message, the only copy of this job.
        log.warning("report job %s: %s; retrying", job_id, exc)
        raise self.retry(countdown=INFRA_RETRY_S, argsrepr=f"({label}, retrying)", kwargsrepr="{}")
    if claim.verdict == "report":
        return claim.payload or {}
    if claim.verdict != "run" or claim.payload is None:
        # Another delivery holds the job, or it is not due, or it is over: this message is a
        # duplicate (a redelivery, a second dispatch). The job's due time brings the next step.
        log.info("report job %s: message dropped (%s)", job_id, claim.verdict)
        raise Ignore()
    current = PollState.from_dict(claim.payload)
    try:
        with store.holding(job_id, claim.token):
            step = poller(current.request).step(current)
    except (Retry, Ignore):
        raise
    except (redis.RedisError, OSError) as exc:
        # Our own infrastructure hiccuped: the same step again shortly. If even that cannot be
        # written, the lapsing lease brings the job back once Redis answers.
        log.warning("report job %s: %s; retrying in %gs", job_id, exc, INFRA_RETRY_S)
        raise _park(store, job_id, claim.token, current, INFRA_RETRY_S, f"{type(exc).__name__}") from None
    except CabinetNotFound as exc:  # configuration, not a bug: the same verdict however often it runs
        return _report(store, job_id, claim.token, ReportOutcome("ERROR", job_id, label, reason=str(exc)).to_dict())
    except Exception as exc:  # a bug must end this part with a reason, not a silent chord failure
        log.exception("report job %s failed", job_id)
        outcome = ReportOutcome("ERROR", job_id, label, reason=f"{type(exc).__name__}: {exc}").to_dict()
        return _report(store, job_id, claim.token, outcome)
    if step.outcome is not None:
        return _report(store, job_id, claim.token, step.outcome.to_dict())
    nxt = step.state
    raise _park(store, job_id, claim.token, nxt, step.wait_s or 0,
                f"{nxt.last_status or nxt.phase}{', report ' + nxt.report_id if nxt.report_id else ''}")


def _park(store: ReportJobs, job_id: str, token: str, state: PollState, wait_s: float, why: str) -> Exception:
    """Write the job's next due time; the exception that ends this message without sending
    another (``Retry``: acked, state RETRY), or ``Ignore`` if the job is no longer ours."""
    wait_s = min(MAX_COUNTDOWN_S, max(0.0, wait_s))
    try:
        due = store.wait(job_id, token, state.to_dict(), wait_s)
    except redis.RedisError:
        log.warning("report job %s: could not save its progress; its lease will bring it back", job_id)
        return Ignore()
    if due < 0:
        log.warning("report job %s: lost its lease while working; the newer step wins", job_id)
        return Ignore()
    return Retry(f"next step in {wait_s:.1f}s ({why})", when=wait_s)


def _report(store: ReportJobs, job_id: str, token: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """Keep the outcome in the job before handing it to Celery, so a worker dying in between
    re-reports the same outcome (the job's lease) instead of running the job again."""
    try:
        kept = store.finish(job_id, token, outcome)
    except redis.RedisError:
        log.warning("report job %s: could not store its outcome; reporting it anyway", job_id)
        return outcome
    if not kept:
        log.warning("report job %s: lost its lease while working; the newer step reports", job_id)
        raise Ignore()
    return outcome


@app.task(name="ymsync.reports.merge_snapshot")
def merge(results: list[dict[str, Any]], snapshot_id: str, folder: str, labels: list[str],
          groups: list[str] | None = None) -> dict[str, Any]:
    return merge_snapshot(results, Path(folder), snapshot_id, labels, groups)


def _group_of(campaign_id: int) -> tuple[int, ...]:
    """A campaign's warehouse group (configured, else the Market's as last cached), or ``()``."""
    from ymsync.engine.group_target import group_of

    runtime.buffer()  # installs the Market's groups (the cached getPagedWarehouses copy) in this process
    return group_of(campaign_id)


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
    # A warehouse group's campaigns share one stock: one report for the group, its rows marked GROUP.
    requests, groups = group_parts(list(requests), _group_of)
    labels = [_label((r or {}).get("request"), (r or {}).get("format", "CSV"), (r or {}).get("api", "v2"))
              for r in requests]
    # A part is a v2 stocks-on-warehouses report or a v3 business stocks report ("api": "v3").
    header = [
        (business_stocks if (r or {}).get("api") == "v3" else stocks_on_warehouses)
        .s((r or {}).get("request"), (r or {}).get("format", "CSV"), str(parts_dir))
        .set(argsrepr=f"({label}, snapshot {snapshot_id[:8]})", kwargsrepr="{}")
        for r, label in zip(requests, labels)
    ]
    body = merge.s(snapshot_id, str(folder), labels, groups).set(argsrepr=f"(snapshot {snapshot_id[:8]}, {len(header)} parts)")
    body = body.on_error(snapshot_failed.s(snapshot_id=snapshot_id, folder=str(folder)))
    result = chord(header)(body)
    return {"snapshot_id": snapshot_id, "folder": str(folder), "merge_task_id": result.id, "parts": labels}


def send_report(request: ReportRequest, out_dir: str | None = None, task_id: str | None = None) -> str:
    """Enqueue one report job (already validated) with a readable argsrepr; returns its task id."""
    task = business_stocks if request.api == "v3" else stocks_on_warehouses
    result = task.apply_async((dict(request.body), request.format, out_dir), task_id=task_id,
                              argsrepr=f"({request.describe()})")
    return result.id


def send_snapshot(requests: list[ReportRequest], out_dir: str | None = None) -> str:
    result = snapshot.apply_async(([r.to_dict() for r in requests], out_dir),
                                  argsrepr=f"({len(requests)} reports: {'; '.join(r.describe() for r in requests)})")
    return result.id


__all__ = ["business_stocks", "jobs", "merge", "poller", "send_report", "send_snapshot", "snapshot", "snapshot_failed", "stocks_on_warehouses"]
