"""Every environment variable ymsync reads, parsed and checked once.

Nothing else in the project touches ``os.environ``: processes call :func:`get_settings`
at start, so a missing or malformed value fails there with one clear line instead of
deep inside a task an hour later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from ymsync.config.cabinets import Cabinets, from_environment as cabinets_from_environment
from ymsync.config.cabinets import load_file as load_cabinets_file
from ymsync.config.redis_state import RedisState, redis_state
from ymsync.config.env_values import parse_duration, parse_quota
from ymsync.config.env_values import campaigns as _campaigns, duration as _duration, flag as _flag
from ymsync.config.env_values import number as _number, secret as _secret, url as _url
# Re-exported: callers import the shared value types from here, as they always did.
from ymsync.config.values import Credentials, Quota, Secret, SettingsError

DEFAULT_API_URL = "https://api.partner.market.yandex.ru"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# The Market's own limits (x-resource-limit-config in the official description).
DEFAULT_QUOTAS = {
    "update_stocks": "100000/60",
    "get_stocks": "100000/60",
    "report_generate": "1/120",
    "report_info": "100/60",
    # Business-level (v3) methods, per business. The stock update counts requests, not SKUs (a full
    # request carries 2000 items); the report shares nothing with report_generate.
    "update_stocks_v3": "50/60",
    "get_stocks_v3": "500/60",
    "warehouses_v3": "100/3600",
    "warehouses_v2": "100/3600",  # getPagedWarehouses: a v2 cabinet's warehouse groups
    "stocks_report_v3": "1/120",
}


@dataclass(frozen=True)
class Settings:
    api_url: str = DEFAULT_API_URL
    credentials: Credentials = field(default_factory=Credentials)
    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = DEFAULT_REDIS_URL
    result_backend: str = DEFAULT_REDIS_URL
    # One Redis or a cluster; replica acknowledgement and failover retries (ymsync.config.redis_state).
    redis_state: RedisState = field(default_factory=RedisState)
    reports_dir: Path = Path("reports")
    quotas: Mapping[str, Quota | None] = field(default_factory=dict)
    max_parallel: int = 4
    flush_delay_ms: int = 250
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_report_bytes: int = 512 * 1024 * 1024
    download_hosts: tuple[str, ...] = ("*.yandex.ru", "*.yandex.net", "*.yandex.com")
    retry_max_age_s: float = 24 * 3600.0
    # Per-SKU latest-wins and delivered records idle this long go (the Market refuses stamps
    # older than a day, so nothing older can be ordered or sent); updates stamped earlier are dropped.
    state_horizon_s: float = 25 * 3600.0
    # How long after sending a request whose outcome ymsync cannot know (timeout, dropped
    # connection, 5xx, 423, a dead worker) the Market may still apply it; None: connect timeout
    # + 2 x read timeout (the whole deadline we waited, and as long again for a backend that
    # kept working after its proxy gave up). See ``unknown_outcome_s``.
    unknown_outcome_setting_s: float | None = None
    # 401/403: the target stops sending, keeps its backlog and probes again after this long.
    halt_probe_s: float = 120.0
    # Retryable failures back off exponentially (with jitter) up to this long between tries.
    max_backoff_s: float = 60.0
    # A producer (push_stocks, send_updates, ymsync push) waits at most this long to connect and
    # for each reply, then raises ymsync.Unavailable (YM_PRODUCER_TIMEOUT_S): a web request is
    # held no longer by a stopped or hung Redis.
    producer_timeout_s: float = 1.0
    # A batch's lease outlives the time its request may still land (unknown_outcome_s) by this
    # margin (YM_LEASE_MARGIN_S); a flush task's slot outlives one request's deadline by it too.
    lease_margin_s: float = 10.0
    # A target whose quota counts requests lets a part-filled request wait this long for more
    # values (YM_BATCH_WAIT_S); a full request goes at once.
    batch_wait_s: float = 1.0
    # One flush task works a target for at most this long before it hands over (YM_FLUSH_BUDGET_S).
    flush_budget_s: float = 5.0
    # A flush task's slot waits this long for its task to start; then it frees (the message died in
    # a killed worker's prefetch, or waited behind a long queue) and the target gets a new task
    # (YM_FLUSH_START_S).
    flush_start_s: float = 60.0
    # A flush round asks for a parallel sibling only when its backlog would keep it busy longer
    # than this at its last request's pace (YM_FANOUT_AFTER_S; 0: whenever the quota has room).
    fanout_after_s: float = 1.0
    # A worker sends its task events (Flower's view) in batches at most this often: each send is a
    # broker round trip, and a flush task has three (YM_TASK_EVENTS_EVERY_S; 0: as Celery does).
    task_events_every_s: float = 0.25
    # A report job's step holds the job under a lease of this long, renewed every third of it: a
    # worker that dies mid-step frees the job this long after at most (YM_REPORT_STEP_LEASE_S).
    report_step_lease_s: float = 30.0
    # A report step the scheduler sent but no worker started within this long (its message died in
    # a killed worker's prefetch) is sent again (YM_REPORT_RESEND_S).
    report_resend_s: float = 60.0
    # Celery beat (celeryconfig.beat_schedule): nothing is scheduled unless campaigns are named.
    reconcile_campaigns: tuple[int, ...] = ()
    reconcile_every_s: float = 3600.0
    reconcile_fix: bool = False
    # v3 businesses reconciled on the same schedule (YM_RECONCILE_BUSINESSES), each warehouse
    # ymsync delivered to; values delivered within the grace (YM_RECONCILE_GRACE) are not judged.
    reconcile_businesses: tuple[int, ...] = ()
    reconcile_grace_s: float = 300.0
    snapshot_campaigns: tuple[int, ...] = ()
    # Businesses whose v3 business stocks report joins the snapshot chord (YM_SNAPSHOT_BUSINESSES).
    snapshot_businesses: tuple[int, ...] = ()
    snapshot_every_s: float = 24 * 3600.0
    snapshot_format: str = "CSV"
    # Every cabinet (business) this deployment serves: YM_CABINETS_FILE, or the simple case's one
    # cabinet from YM_API_KEY/YM_OAUTH_TOKEN, YM_BUSINESS_ID, YM_API_MODE (see ymsync/config/cabinets.py).
    cabinets: Cabinets = field(default_factory=Cabinets)

    @property
    def request_deadline_s(self) -> float:
        """The hard deadline of one API call (MarketClient.deadline_s)."""
        return self.connect_timeout + self.read_timeout

    @property
    def unknown_outcome_s(self) -> float:
        """How long after sending a request of unknown outcome its SKUs are held (YM_UNKNOWN_OUTCOME_S)."""
        if self.unknown_outcome_setting_s is not None:
            return self.unknown_outcome_setting_s
        return self.connect_timeout + 2 * self.read_timeout

    @property
    def lease_s(self) -> float:
        """A batch's lease: it outlives any request its worker may still have at the Market, so
        a dead worker's batch comes back only once none of it can land any more."""
        return self.unknown_outcome_s + self.lease_margin_s

    def require_credentials(self) -> Credentials:
        """The one token of a single-cabinet deployment (callers that address no cabinet)."""
        if not self.credentials:
            if len(self.cabinets) == 1:
                return next(iter(self.cabinets)).credentials
            if len(self.cabinets) > 1:
                raise SettingsError(f"{len(self.cabinets)} cabinets are configured ({self.cabinets.source}): "
                                    "this call must name a business or campaign to pick one")
            raise SettingsError(
                "YM_API_KEY or YM_OAUTH_TOKEN must be set (the Market rejects anonymous calls)"
            )
        return self.credentials

    def require_cabinets(self) -> Cabinets:
        """Workers call this at start: they cannot do anything useful without a cabinet and its token."""
        if not self.cabinets:
            raise SettingsError(
                "YM_API_KEY or YM_OAUTH_TOKEN must be set, or YM_CABINETS_FILE name a cabinets file "
                "(the Market rejects anonymous calls)"
            )
        return self.cabinets


def _schedule(env: Mapping[str, str], kind: str, default_every: float,
              others: tuple[int, ...] = ()) -> tuple[tuple[int, ...], float]:
    campaigns = _campaigns(env, f"YM_{kind}_CAMPAIGNS")
    every = _duration(env, f"YM_{kind}_EVERY", default_every)
    if env.get(f"YM_{kind}_EVERY", "").strip() and not campaigns and not others:
        # A schedule that silently never runs is worse than a refusal at start.
        raise SettingsError(f"YM_{kind}_EVERY is set but YM_{kind}_CAMPAIGNS names no campaign "
                            f"(nor YM_{kind}_BUSINESSES a business)")
    return campaigns, every


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse the environment; raise :class:`SettingsError` with one clear line on bad input."""
    env = os.environ if env is None else env
    api_key, oauth = _secret(env, "YM_API_KEY"), _secret(env, "YM_OAUTH_TOKEN")
    if api_key and oauth:
        raise SettingsError("set only one of YM_API_KEY and YM_OAUTH_TOKEN")
    business = env.get("YM_BUSINESS_ID", "").strip()
    business_id = int(_number(env, "YM_BUSINESS_ID", 0, minimum=1, integer=True)) if business else None

    redis_url = _url(env, "REDIS_URL", DEFAULT_REDIS_URL, ("redis", "rediss", "unix"))
    broker_url = _url(env, "CELERY_BROKER_URL", redis_url, ("redis", "rediss", "amqp", "amqps", "unix"))
    result_backend = _url(env, "CELERY_RESULT_BACKEND", redis_url, ("redis", "rediss", "unix"))
    quotas = {
        method: parse_quota(f"YM_QUOTA_{method.upper()}", env.get(f"YM_QUOTA_{method.upper()}", "") or default)
        for method, default in DEFAULT_QUOTAS.items()
    }
    hosts = tuple(h.strip().lower() for h in env.get("YM_DOWNLOAD_HOSTS", "").split(",") if h.strip())
    reconcile_businesses = _campaigns(env, "YM_RECONCILE_BUSINESSES")
    reconcile = _schedule(env, "RECONCILE", Settings.reconcile_every_s, reconcile_businesses)
    snapshot_businesses = tuple(int(b) for b in _campaigns(env, "YM_SNAPSHOT_BUSINESSES"))
    snapshot = _schedule(env, "SNAPSHOT", Settings.snapshot_every_s, snapshot_businesses)
    snapshot_format = env.get("YM_SNAPSHOT_FORMAT", "").strip().upper() or Settings.snapshot_format
    if snapshot_format not in ("CSV", "JSON", "FILE"):
        raise SettingsError(f"YM_SNAPSHOT_FORMAT: expected CSV, JSON or FILE, got {snapshot_format!r}")
    credentials = Credentials(api_key=api_key, oauth_token=oauth, business_id=business_id)
    cabinets = _cabinets(env, credentials)
    for name, businesses, what in (("YM_SNAPSHOT_BUSINESSES", snapshot_businesses, "the business stocks report"),
                                   ("YM_RECONCILE_BUSINESSES", reconcile_businesses, "a business reconciliation")):
        for business in businesses:  # a schedule that would fail at every run fails now instead
            try:
                cabinets.by_business(business).require_mode("v3", f"{name} ({what})")
            except (LookupError, ValueError) as exc:
                raise SettingsError(f"{name}: {exc}") from None
    if env.get("YM_CABINETS_FILE", "").strip():
        credentials = Credentials()  # the file names each cabinet's token; none is "the" token
    return Settings(
        api_url=_url(env, "YM_API_URL", DEFAULT_API_URL, ("https", "http")),
        credentials=credentials,
        cabinets=cabinets,
        redis_url=redis_url,
        broker_url=broker_url,
        result_backend=result_backend,
        redis_state=redis_state(env, redis_url, broker_url, result_backend),
        reports_dir=Path(env.get("YM_REPORTS_DIR", "").strip() or "reports"),
        quotas=quotas,
        max_parallel=int(_number(env, "YM_MAX_PARALLEL", 4, minimum=1, integer=True)),
        flush_delay_ms=int(_number(env, "YM_FLUSH_DELAY_MS", 250, minimum=0, integer=True)),
        connect_timeout=_number(env, "YM_HTTP_CONNECT_TIMEOUT", 5.0, minimum=0.1, integer=False),
        read_timeout=_number(env, "YM_HTTP_READ_TIMEOUT", 60.0, minimum=0.1, integer=False),
        max_report_bytes=int(_number(env, "YM_MAX_REPORT_BYTES", 512 * 1024 * 1024, minimum=1024, integer=True)),
        download_hosts=hosts or Settings.download_hosts,
        retry_max_age_s=_number(env, "YM_RETRY_MAX_AGE", 24 * 3600.0, minimum=1, integer=False),
        state_horizon_s=_number(env, "YM_STATE_HORIZON", 25 * 3600.0, minimum=1, integer=False),
        unknown_outcome_setting_s=(_number(env, "YM_UNKNOWN_OUTCOME_S", 0, minimum=0.1, integer=False)
                                   if env.get("YM_UNKNOWN_OUTCOME_S", "").strip() else None),
        halt_probe_s=_number(env, "YM_HALT_PROBE_S", 120.0, minimum=1, integer=False),
        max_backoff_s=_number(env, "YM_MAX_BACKOFF_S", 60.0, minimum=0.1, integer=False),
        producer_timeout_s=_number(env, "YM_PRODUCER_TIMEOUT_S", 1.0, minimum=0.01, integer=False),
        lease_margin_s=_number(env, "YM_LEASE_MARGIN_S", Settings.lease_margin_s, minimum=0.1, integer=False),
        batch_wait_s=_number(env, "YM_BATCH_WAIT_S", Settings.batch_wait_s, minimum=0, integer=False),
        flush_budget_s=_number(env, "YM_FLUSH_BUDGET_S", Settings.flush_budget_s, minimum=0.1, integer=False),
        flush_start_s=_number(env, "YM_FLUSH_START_S", Settings.flush_start_s, minimum=0.5, integer=False),
        fanout_after_s=_number(env, "YM_FANOUT_AFTER_S", Settings.fanout_after_s, minimum=0, integer=False),
        task_events_every_s=_number(env, "YM_TASK_EVENTS_EVERY_S", Settings.task_events_every_s, minimum=0,
                                    integer=False),
        report_step_lease_s=_number(env, "YM_REPORT_STEP_LEASE_S", Settings.report_step_lease_s, minimum=0.3,
                                    integer=False),
        report_resend_s=_number(env, "YM_REPORT_RESEND_S", Settings.report_resend_s, minimum=0.5, integer=False),
        reconcile_campaigns=reconcile[0],
        reconcile_every_s=reconcile[1],
        reconcile_fix=_flag(env, "YM_RECONCILE_FIX", False),
        reconcile_businesses=reconcile_businesses,
        reconcile_grace_s=(parse_duration("YM_RECONCILE_GRACE", env["YM_RECONCILE_GRACE"], minimum=0)
                           if env.get("YM_RECONCILE_GRACE", "").strip() else Settings.reconcile_grace_s),
        snapshot_campaigns=snapshot[0],
        snapshot_businesses=snapshot_businesses,
        snapshot_every_s=snapshot[1],
        snapshot_format=snapshot_format,
    )


def _cabinets(env: Mapping[str, str], credentials: Credentials) -> Cabinets:
    path = env.get("YM_CABINETS_FILE", "").strip()
    if not path:
        return cabinets_from_environment(credentials, mode=env.get("YM_API_MODE", "").strip(),
                                         subscription=env.get("YM_SUBSCRIPTION", "").strip(),
                                         fby_campaigns=_campaigns(env, "YM_FBY_CAMPAIGNS"),
                                         campaigns=_campaigns(env, "YM_CAMPAIGN_IDS"),
                                         warehouse_groups=_groups(env))
    clash = [name for name in ("YM_BUSINESS_ID", "YM_API_MODE", "YM_SUBSCRIPTION", "YM_WAREHOUSE_GROUPS")
             if env.get(name, "").strip()]
    if clash:
        # Two sources for one fact: refuse rather than guess which one the operator meant.
        raise SettingsError(f"{', '.join(clash)} cannot be combined with YM_CABINETS_FILE "
                            "(set business_id, mode and subscription per cabinet in the file)")
    return load_cabinets_file(Path(path), env)


def _groups(env: Mapping[str, str]) -> tuple[tuple[int, ...], ...]:
    """``YM_WAREHOUSE_GROUPS="1001,1002;2001,2002"``: groups separated by ``;``, campaigns by ``,``."""
    raw = env.get("YM_WAREHOUSE_GROUPS", "").strip()
    groups = []
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        try:
            groups.append(tuple(int(c) for c in part.split(",") if c.strip()))
        except ValueError:
            raise SettingsError(f"YM_WAREHOUSE_GROUPS: expected campaign ids like \"1001,1002;2001,2002\", "
                                f"got {raw!r}") from None
    return tuple(groups)


# Values a framework's own configuration gives (Django's ``YMSYNC`` setting), over the environment.
_configured: dict[str, str] = {}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use (and :func:`configure`'s values)."""
    return load_settings({**os.environ, **_configured} if _configured else None)


def configure(values: Mapping[str, object] | None) -> Settings:
    """Make ``values`` (the variables' names, e.g. ``{"REDIS_URL": ...}``) the process's settings over
    the environment, checked now: a framework calls this as it starts (Django's AppConfig.ready), so a
    bad value fails there with one line, not at the first push inside a request. ``None`` forgets them."""
    global _configured
    wanted = {str(k): str(v) for k, v in (values or {}).items() if v is not None}
    checked = load_settings({**os.environ, **wanted})  # raises SettingsError before anything changes
    _configured = wanted
    get_settings.cache_clear()
    return checked


@dataclass(frozen=True)
class SpecCheckSettings:
    """The sandbox's test mode: each API request checked against the official OpenAPI description."""

    spec: Path  # openapi.yaml of the description
    violations_log: Path | None = None  # every violation also appended here as a JSON line


def load_spec_check(env: Mapping[str, str] | None = None) -> SpecCheckSettings | None:
    """``YM_SANDBOX_SPEC_CHECK`` (the description's openapi.yaml; unset: off) and
    ``YM_SANDBOX_SPEC_VIOLATIONS`` (optional JSON Lines file). Read by the sandbox only."""
    env = os.environ if env is None else env
    raw = env.get("YM_SANDBOX_SPEC_CHECK", "").strip()
    if not raw:
        return None
    if not Path(raw).is_file():
        raise SettingsError(f"YM_SANDBOX_SPEC_CHECK: no OpenAPI description at {raw}")
    log = env.get("YM_SANDBOX_SPEC_VIOLATIONS", "").strip()
    return SpecCheckSettings(Path(raw), Path(log) if log else None)


# Variables a child process must not inherit when the caller sets up its own world (the demo):
# ymsync's, Celery's and Flower's settings, so a developer's REDIS_URL or token never leaks in.
_OWN_PREFIXES = ("YM_", "CELERY_", "FLOWER_", "REDIS_URL")


def child_environ(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ymsync, Celery or Flower setting, plus ``overrides``:
    the environment for a child process that must see exactly the settings it is given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    return {**base, **overrides}
