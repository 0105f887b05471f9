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
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import redis

from ymsync.files import atomic_writer
from ymsync.store import keys
from ymsync.market import MarketClient
from ymsync.market.errors import DownloadRefused, MarketError, MarketNotFound, ReportLinkExpired, ReportTooLarge
from ymsync.market.models import ReportInfo
from ymsync.engine.call_policy import Call, CallPolicy, Kind, Ticket
from ymsync.engine.quota import QuotaLimiter
from ymsync.reports.parse import ReportParseError, open_report
from ymsync.reports.request import ReportRequest
from ymsync.reports.unpack import ArchiveLimits, UnsafeArchive

log = logging.getLogger("ymsync.reports")

GENERATE, INFO = "report_generate", "report_info"  # settings.DEFAULT_QUOTAS method names
GENERATE_V3 = "stocks_report_v3"  # the v3 business stocks report: its own quota, counted per business
SUB_STATUS_TEXT = {
    "NO_DATA": "the Market has no data for this selection (no stock matched the request's filters)",
    "TOO_LARGE": "the report is too large for the Market to build; narrow the request "
                 "(fewer campaigns, warehouses or categories)",
    "RESOURCE_NOT_FOUND": "the Market could not find part of what the request names "
                          "(a campaign, warehouse or category)",
}
_EVENTS_TTL_S = 24 * 3600
_MAX_LINK_REFRESHES = 3
_MAX_ERRORS = 12

# Compare-and-delete: only the holder of a claim (or the report it recorded) may remove it.
_FORGET = """
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0
"""


# A report id becomes a file name ({id}.zip, {id}.rows.csv): letters, digits, '_', '-' and
# inner dots only, so no id can name a folder ('..', '/x', 'a/../../b') or a hidden file.
_SAFE_REPORT_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def safe_report_id(report_id: object) -> str | None:
    """``report_id`` if it can safely be a file name inside the reports folder, else None."""
    if isinstance(report_id, str) and _SAFE_REPORT_ID.fullmatch(report_id) and ".." not in report_id:
        return report_id
    return None


def dedup_key(scope: str, fingerprint: str) -> str:
    digest = hashlib.sha256(f"{scope}|{fingerprint}".encode()).hexdigest()[:32]
    return keys.report_dedup(digest)


def events_key(job_id: str) -> str:
    return keys.report_events(job_id)


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
                 archive_limits: ArchiveLimits | None = None) -> None:
        self.client, self.limiter, self.redis = client, limiter, redis_client
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
        self._forget = redis_client.register_script(_FORGET)
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
        key = dedup_key(self.client.base_url, request.fingerprint)
        record = self._record(key)
        if record.get("report_id"):
            state.report_id, state.reused, state.phase = record["report_id"], True, "poll"
            self._event(state, "reused", f"reusing report {state.report_id} of an identical request")
            return self._poll(state, request)
        if record.get("pending"):
            self._event(state, "waiting", "an identical request is being sent; waiting to reuse its report")
            return Step(state, 0.5)
        ticket = self.policy.admit(self._generate_call(request))
        if not isinstance(ticket, Ticket):
            # Look again well before the quota frees: an identical request may generate meanwhile
            # (or win the freed unit), and its report is ours to reuse. A look costs Redis only.
            wait = min(self.max_wait_s, self.recheck_s, max(0.2, ticket))
            self._event(state, "waiting-quota", f"waiting for the generate quota ({ticket:.0f}s)")
            return Step(state, wait)
        if not self.redis.set(key, json.dumps({"pending": state.job_id}), nx=True, ex=int(self.claim_ttl_s)):
            self.policy.cancel(ticket)  # lost the race to an identical request: reuse its report
            return Step(state, 0.2)
        try:
            reply = self.policy.send(ticket, lambda _units: self._send_generate(request))
        finally:
            self.policy.release(ticket)
        if not reply.ok:
            self._forget(keys=[key], args=[state.job_id])
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
            self._forget(keys=[key], args=[state.job_id])
            return self._end(state, request, "ERROR", "the Market returned a report id ymsync will not use as a "
                                                      f"file name: {generated.report_id[:80]!r}")
        self.redis.set(key, json.dumps({"report_id": generated.report_id, "at": time.time()}),
                       ex=max(1, int(self.dedup_window_s)))
        state.report_id, state.phase, state.errors = generated.report_id, "poll", 0
        self._event(state, "generating", f"report {generated.report_id} requested "
                                         f"(about {generated.estimated_generation_ms / 1000:g}s)")
        return Step(state, self._pace(generated.estimated_generation_ms, 0))

    def _generate_call(self, request: ReportRequest) -> Call:
        """The v3 report is a business path: counted per business (``b<id>``) and sharing the
        business's cap of requests in flight with its pushes, reads and warehouse directory."""
        if request.api == "v3":
            identity = keys.business_target(int(request.business_id))
            return Call(GENERATE_V3, identity, identity, self.client.clock)
        return Call(GENERATE, self.quota_key, None, self.client.clock)

    def _send_generate(self, request: ReportRequest) -> Any:
        if request.api == "v3":
            body = request.body
            return self.client.generate_stocks_report_v3(
                int(body["businessId"]), format=request.format, warehouse_ids=body.get("partnerWarehouseIds", ()),
                category_ids=body.get("categoryIds", ()), has_stocks=body.get("hasStocks"))
        return self.client.generate_stocks_on_warehouses_report(request.body, format=request.format)

    def _poll(self, state: PollState, request: ReportRequest) -> Step:
        assert state.report_id is not None
        reply = self.policy.attempt(Call(INFO, self.quota_key, None, self.client.clock),
                                    lambda _units: self.client.get_report_info(state.report_id))
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
                self._forget(keys=[dedup_key(self.client.base_url, request.fingerprint)], args=[state.report_id])
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
            self._keep_record(request, state.report_id)
            self._event(state, info.status, f"{info.status.lower()}")
            return Step(state, self._pace(info.estimated_generation_ms, state.polls))
        self._event(state, "DONE", "report is ready; downloading")
        return self._download(state, request, info)

    def _download(self, state: PollState, request: ReportRequest, info: ReportInfo) -> Step:
        folder = Path(state.out_dir) if state.out_dir else self.reports_dir
        name = safe_report_id(state.report_id)
        dest = folder / f"{name}.{request.file_extension}"
        if name is None or dest.resolve().parent != folder.resolve():
            return self._end(state, request, "ERROR", "report id is not a safe file name: "
                                                      f"{str(state.report_id)[:80]!r}")
        # Same report id, same bytes: a reusing job need not fetch (or outlive) another link.
        if not (dest.exists() and dest.stat().st_size > 0):
            if not info.file_url:
                # The Market's way of saying "nothing to report" (NO_DATA) can be DONE with no
                # link: a verdict, not a glitch, so it ends now instead of being asked again.
                sub = info.sub_status or ""
                text = SUB_STATUS_TEXT.get(sub, "the Market marked the report DONE but gave no file to download")
                self._event(state, "FAILED", f"DONE without a file {sub}: {text}".strip())
                return self._end(state, request, "FAILED", f"DONE without a file link: {text}",
                                 sub_status=info.sub_status)
            try:
                self.client.download_report(info.file_url, dest)
            except ReportLinkExpired as exc:
                state.link_refreshes += 1
                if state.link_refreshes > _MAX_LINK_REFRESHES:
                    return self._end(state, request, "ERROR", f"every file link was dead on arrival: {exc.message}")
                self._event(state, "link-expired", "the file link expired; fetching a fresh one")
                return Step(state, 0)
            except (ReportTooLarge, DownloadRefused) as exc:
                return self._end(state, request, "ERROR", exc.message)
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

    def _record(self, key: str) -> dict[str, Any]:
        raw = self.redis.get(key)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def _keep_record(self, request: ReportRequest, report_id: str) -> None:
        # "Already generating" must stay reusable however long generation takes.
        key = dedup_key(self.client.base_url, request.fingerprint)
        if self._record(key).get("report_id") == report_id and self.redis.pttl(key) < self.dedup_window_s * 1000:
            self.redis.pexpire(key, int(self.dedup_window_s * 1000))

    def _event(self, state: PollState, status: str, message: str, force: bool = False) -> None:
        """Append a status transition to the job's event list (the CLI shows them live)."""
        if status == state.last_status and not force:
            return
        state.last_status = status
        key = events_key(state.job_id)
        entry = json.dumps({"t": round(time.time(), 3), "status": status, "message": message,
                            "report_id": state.report_id}, ensure_ascii=False)
        pipe = self.redis.pipeline()
        pipe.rpush(key, entry)
        pipe.ltrim(key, -200, -1)
        pipe.expire(key, _EVENTS_TTL_S)
        pipe.execute()


def read_events(client: redis.Redis, job_id: str, start: int = 0) -> list[dict[str, Any]]:
    """Events of one job from index ``start`` on (for live display)."""
    return [json.loads(raw) for raw in client.lrange(events_key(job_id), start, -1)]


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


__all__ = ["GENERATE", "INFO", "PollState", "ReportOutcome", "ReportPoller", "Step", "SUB_STATUS_TEXT",
           "dedup_key", "events_key", "read_events", "safe_report_id", "write_rows_csv"]
