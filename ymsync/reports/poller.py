"""ReportPoller: one stocks-on-warehouses report from request to parsed rows, one step at a time.

Every call to :meth:`ReportPoller.step` does at most one Market call (plus the download when
the report turns DONE) and answers either "call me again in N seconds" or a final
:class:`ReportOutcome`. That shape lets a Celery task re-enqueue itself with a countdown
instead of sleeping in a worker slot, and lets plain Python run the same loop with
:meth:`ReportPoller.run`. The state that travels between steps (:class:`PollState`) is plain
JSON with no file links and no tokens, because it shows up in Flower and the broker.

Shared with every worker through Redis: the ``report_generate`` and ``report_info`` quotas
(:class:`QuotaLimiter`), and a dedup record per request fingerprint, so an identical request
already generating, or generated inside the quota window, reuses that report id instead of
waiting two minutes for the generate quota.

This module is the state machine (generate → poll → download → parse); its parts: kinds.py (what
differs between report kinds: how one is generated, whose quota and cap), dedup.py (one report
for identical requests), events.py (the job's status transitions), download.py (the file, under a
safe name), rows.py (parsed rows as one CSV); call_policy.py owns quota, lease and 420s.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import redis

from ymsync.engine.call_policy import Call, CallPolicy, Kind, Ticket
from ymsync.engine.quota import QuotaLimiter
from ymsync.market import MarketClient
from ymsync.market.errors import MarketError, MarketNotFound
from ymsync.market.models import ReportInfo
from ymsync.reports.dedup import ReportDedup, dedup_key
from ymsync.reports.download import fetch, report_path, safe_report_id
from ymsync.reports.events import events_key, read_events, record_event
from ymsync.reports.kinds import GENERATE, GENERATE_V3, INFO
from ymsync.reports.parse import ReportParseError
from ymsync.reports.request import ReportRequest
from ymsync.reports.rows import write_rows_csv
from ymsync.reports.unpack import ArchiveLimits, UnsafeArchive

log = logging.getLogger("ymsync.reports")

SUB_STATUS_TEXT = {
    "NO_DATA": "the Market has no data for this selection (no stock matched the request's filters)",
    "TOO_LARGE": "the report is too large for the Market to build; narrow the request "
                 "(fewer campaigns, warehouses or categories)",
    "RESOURCE_NOT_FOUND": "the Market could not find part of what the request names "
                          "(a campaign, warehouse or category)",
}
_MAX_LINK_REFRESHES = 3
_MAX_ERRORS = 12


@dataclass
class PollState:
    """Where one report job stands. JSON-safe: it travels as a task argument."""

    request: dict[str, Any]
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    out_dir: str | None = None
    report_id: str | None = None
    reused: bool = False
    phase: str = "generate"  # generate → poll → (finished)
    polls: int = 0
    errors: int = 0  # consecutive transient failures
    link_refreshes: int = 0
    last_status: str = ""
    started_at: float = field(default_factory=time.time)

    @classmethod
    def new(cls, request: ReportRequest, out_dir: str | Path | None = None, job_id: str | None = None) -> "PollState":
        return cls(request.to_dict(), job_id=job_id or uuid.uuid4().hex, out_dir=str(out_dir) if out_dir else None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PollState":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReportOutcome:
    """How a report job ended. ``status``: DONE, FAILED (the Market's verdict) or ERROR (ours)."""

    status: str
    job_id: str
    request: str
    report_id: str | None = None
    reused: bool = False
    sub_status: str | None = None
    reason: str = ""
    path: str | None = None
    rows_path: str | None = None
    rows: int = 0
    sheets: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "DONE"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class Step:
    state: PollState
    wait_s: float | None = None
    outcome: ReportOutcome | None = None

    @property
    def finished(self) -> bool:
        return self.outcome is not None


class ReportPoller:
    def __init__(self, client: MarketClient, limiter: QuotaLimiter, redis_client: redis.Redis, reports_dir: Path,
                 *, quota_key: str = "all", min_poll_s: float = 1.0, max_poll_s: float = 60.0,
                 max_wait_s: float = 300.0, give_up_after_s: float = 6 * 3600.0, recheck_s: float = 5.0,
                 archive_limits: ArchiveLimits | None = None, gate: str | None = None) -> None:
        """``gate``: the parallel cap the token's v2 report calls share (its business's, ``b<id>``;
        None: none kept); a v3 report uses its own business's."""
        self.client, self.limiter, self.redis = client, limiter, redis_client
        self.gate = gate
        self.reports_dir = Path(reports_dir)
        self.quota_key = quota_key
        self.min_poll_s, self.max_poll_s = min_poll_s, max_poll_s
        # The caller's countdown cap: it must stay far below the broker's visibility timeout.
        self.max_wait_s = max_wait_s
        self.give_up_after_s = give_up_after_s
        self.recheck_s = recheck_s
        self.archive_limits = archive_limits or ArchiveLimits(max_unpacked_bytes=4 * client.max_report_bytes)
        quota = limiter.quotas.get(GENERATE)
        # "Inside the quota window": with the quota switched off, keep the Market's own 2 minutes.
        self.dedup_window_s = quota.seconds if quota else 120.0
        self.claim_ttl_s = sum(client.timeout) + 5  # outlives one generate call, even a slow one
        self.dedup = ReportDedup(redis_client, client.base_url, self.dedup_window_s, self.claim_ttl_s)
        self.policy = CallPolicy(limiter)

    # --- the loop ----------------------------------------------------------------------------

    def run(self, state: PollState, sleep: Callable[[float], None] = time.sleep) -> ReportOutcome:
        """Drive one job to its end in this process (no Celery): step, sleep, step..."""
        while True:
            step = self.step(state)
            if step.outcome is not None:
                return step.outcome
            state = step.state
            sleep(step.wait_s or 0)

    def step(self, state: PollState) -> Step:
        request = ReportRequest.from_dict(state.request)
        if time.time() - state.started_at > self.give_up_after_s:
            return self._end(state, request, "ERROR", f"gave up after {self.give_up_after_s:g}s without a finished report")
        try:
            if state.phase == "generate":
                return self._generate(state, request)
            return self._poll(state, request)
        except MarketError as exc:
            if not exc.retryable:
                return self._end(state, request, "ERROR", exc.message)
            state.errors += 1
            if state.errors > _MAX_ERRORS:
                return self._end(state, request, "ERROR", f"gave up after {state.errors} failures in a row: {exc.message}")
            wait = min(self.max_wait_s, 2.0 ** state.errors)
            self._event(state, "retrying", f"{type(exc).__name__}: {exc.message}; retrying in {wait:g}s")
            return Step(state, wait)

    # --- phases ------------------------------------------------------------------------------

    def _generate(self, state: PollState, request: ReportRequest) -> Step:
        fingerprint = request.fingerprint
        record = self.dedup.record(fingerprint)
        if record.get("report_id"):
            state.report_id, state.reused, state.phase = record["report_id"], True, "poll"
            self._event(state, "reused", f"reusing report {state.report_id} of an identical request")
            return self._poll(state, request)
        if record.get("pending"):
            self._event(state, "waiting", "an identical request is being sent; waiting to reuse its report")
            return Step(state, 0.5)
        ticket = self.policy.admit(request.kind.generate_call(request, self.client, self.quota_key, self.gate))
        if not isinstance(ticket, Ticket):
            # Look again well before the quota frees: an identical request may generate meanwhile
            # (or win the freed unit), and its report is ours to reuse. A look costs Redis only.
            wait = min(self.max_wait_s, self.recheck_s, max(0.2, ticket))
            self._event(state, "waiting-quota", f"waiting for the generate quota ({ticket:.0f}s)")
            return Step(state, wait)
        if not self.dedup.claim(fingerprint, state.job_id):
            self.policy.cancel(ticket)  # lost the race to an identical request: reuse its report
            return Step(state, 0.2)
        try:
            reply = self.policy.send(ticket, lambda _units: request.kind.generate(request, self.client))
        finally:
            self.policy.release(ticket)
        if not reply.ok:
            self.dedup.forget(fingerprint, state.job_id)
            wait = min(self.max_wait_s, reply.wait_s)
            if reply.kind is Kind.ACTIVE_REPORTS:
                self._event(state, "waiting-active", f"Active reports limit exceeded; retrying in {wait:.0f}s")
                return Step(state, wait)
            if reply.kind.rate_limited:
                self._event(state, "waiting-quota", f"the Market says the generate quota is spent; "
                                                    f"retrying in {wait:.0f}s")
                return Step(state, wait)
            assert reply.error is not None
            if reply.error.status == 200:  # a reply we cannot read: asking again would not read better
                return self._end(state, request, "ERROR", f"the Market's reply was not understood: "
                                                          f"{reply.error.message}")
            raise reply.error
        generated = reply.value
        assert generated is not None
        if safe_report_id(generated.report_id) is None:
            self.dedup.forget(fingerprint, state.job_id)
            return self._end(state, request, "ERROR", "the Market returned a report id ymsync will not use as a "
                                                      f"file name: {generated.report_id[:80]!r}")
        self.dedup.remember(fingerprint, generated.report_id)
        state.report_id, state.phase, state.errors = generated.report_id, "poll", 0
        self._event(state, "generating", f"report {generated.report_id} requested "
                                         f"(about {generated.estimated_generation_ms / 1000:g}s)")
        return Step(state, self._pace(generated.estimated_generation_ms, 0))

    def _poll(self, state: PollState, request: ReportRequest) -> Step:
        assert state.report_id is not None
        info_call = Call(INFO, self.quota_key, request.kind.gate(request, self.gate), self.client.clock)
        reply = self.policy.attempt(info_call, lambda _units: self.client.get_report_info(state.report_id))
        if reply.kind is Kind.WAIT or reply.kind.rate_limited:
            return Step(state, min(self.max_wait_s, max(0.2, reply.wait_s)))
        if not reply.ok:
            exc = reply.error
            assert exc is not None
            if isinstance(exc, MarketNotFound):
                if not state.reused:
                    return self._end(state, request, "ERROR", f"the Market no longer knows report "
                                                              f"{state.report_id}: {exc.message}")
                # A reused id from a stale record: forget it and generate our own.
                self.dedup.forget(request.fingerprint, state.report_id)
                state.report_id, state.reused, state.phase = None, False, "generate"
                return Step(state, 0)
            if exc.status == 200:  # an unknown status or a reply of the wrong shape: ends now
                return self._end(state, request, "ERROR", f"the Market's reply was not understood: {exc.message}")
            raise exc
        info = reply.value
        assert info is not None
        state.polls += 1
        state.errors = 0
        if info.failed:
            text = SUB_STATUS_TEXT.get(info.sub_status or "", f"generation failed (subStatus {info.sub_status})")
            self._event(state, "FAILED", f"FAILED {info.sub_status or ''}: {text}".replace("  ", " "))
            return self._end(state, request, "FAILED", text, sub_status=info.sub_status)
        if not info.done:
            self.dedup.keep(request.fingerprint, state.report_id)
            self._event(state, info.status, f"{info.status.lower()}")
            return Step(state, self._pace(info.estimated_generation_ms, state.polls))
        self._event(state, "DONE", "report is ready; downloading")
        return self._download(state, request, info)

    def _download(self, state: PollState, request: ReportRequest, info: ReportInfo) -> Step:
        folder = Path(state.out_dir) if state.out_dir else self.reports_dir
        dest = report_path(folder, state.report_id, request.file_extension)
        if dest is None:
            return self._end(state, request, "ERROR", "report id is not a safe file name: "
                                                      f"{str(state.report_id)[:80]!r}")
        fetched = fetch(self.client, info, dest)
        if fetched.status == "no_file":
            # The Market's way of saying "nothing to report" (NO_DATA) can be DONE with no
            # link: a verdict, not a glitch, so it ends now instead of being asked again.
            sub = info.sub_status or ""
            text = SUB_STATUS_TEXT.get(sub, "the Market marked the report DONE but gave no file to download")
            self._event(state, "FAILED", f"DONE without a file {sub}: {text}".strip())
            return self._end(state, request, "FAILED", f"DONE without a file link: {text}", sub_status=info.sub_status)
        if fetched.status == "link_expired":
            state.link_refreshes += 1
            if state.link_refreshes > _MAX_LINK_REFRESHES:
                return self._end(state, request, "ERROR", f"every file link was dead on arrival: {fetched.reason}")
            self._event(state, "link-expired", "the file link expired; fetching a fresh one")
            return Step(state, 0)
        if fetched.status == "refused":
            return self._end(state, request, "ERROR", fetched.reason)
        self._event(state, "downloaded", f"saved {dest} ({dest.stat().st_size} bytes)")
        return self._parse(state, request, dest)

    def _parse(self, state: PollState, request: ReportRequest, dest: Path) -> Step:
        rows_path = dest.with_name(dest.stem + ".rows.csv")
        try:
            summary = write_rows_csv(dest, rows_path, self.archive_limits)
        except (UnsafeArchive, ReportParseError) as exc:
            return self._end(state, request, "ERROR", f"report file refused: {exc}", path=str(dest))
        self._event(state, "parsed", f"{summary['rows']} rows ({', '.join(summary['sheets'])})")
        return self._end(state, request, "DONE", "", path=str(dest), rows_path=str(rows_path), **summary)

    # --- helpers -----------------------------------------------------------------------------

    def _end(self, state: PollState, request: ReportRequest, status: str, reason: str, **extra: Any) -> Step:
        outcome = ReportOutcome(status=status, job_id=state.job_id, request=request.describe(),
                                report_id=state.report_id, reused=state.reused, reason=reason,
                                elapsed_s=round(time.time() - state.started_at, 3), **extra)
        if status != "DONE":
            self._event(state, status, reason, force=True)
        log.info("report job %s (%s) ended %s %s", state.job_id, outcome.request, status, reason)
        return Step(state, None, outcome)

    def _pace(self, estimated_ms: int | None, polls: int) -> float:
        """Next poll: when the Market expects the report, else backing off once it is overdue."""
        if estimated_ms and estimated_ms > 0:
            wait = estimated_ms / 1000
        else:
            wait = self.min_poll_s * 1.5 ** min(polls, 12)
        return max(self.min_poll_s, min(wait, self.max_poll_s, self.max_wait_s))

    def _event(self, state: PollState, status: str, message: str, force: bool = False) -> None:
        record_event(self.redis, state, status, message, force)


# Re-exported: callers and tests name them here.
__all__ = ["GENERATE", "GENERATE_V3", "INFO", "PollState", "ReportOutcome", "ReportPoller", "Step", "SUB_STATUS_TEXT",
           "dedup_key", "events_key", "read_events", "safe_report_id", "write_rows_csv"]
