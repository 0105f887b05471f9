"""Celery configuration, derived from ymsync's settings (the one place the environment is read).

Decisions worth knowing:
- JSON only: task arguments are plain data a person can read in Flower; no pickle.
- acks_late + reject_on_worker_lost: a worker killed mid-task leaves its message to be
  redelivered, so every task must be safe to run twice (ymsync's are: see the stock buffer).
- prefetch 1: tasks are short but may wait on quota; one worker must not hoard a backlog.
- visibility_timeout is far longer than any countdown ymsync uses, or Redis would hand a
  delayed message to a second worker while the first still holds it.
- result_expires outlives the longest report chord.
- On RabbitMQ (an ``amqp://`` broker): quorum queues for ``stocks`` and ``reports`` (replicated
  and fsynced, they survive a broker restart or the loss of a minority of nodes), and publisher
  confirms, so a send returns only once the broker has the message (a refused one raises).
"""

from __future__ import annotations

import sys

from kombu import Exchange, Queue

from ymsync.config.settings import SettingsError, get_settings

# The app package beside this module: ``tasks`` in a checkout, ``ymsync_celery.tasks`` installed.
_PARENT = __name__.rpartition(".")[0]
TASKS_PACKAGE = f"{_PARENT}.tasks" if _PARENT else "tasks"

try:
    _settings = get_settings()
except SettingsError as exc:  # one clear line, not a traceback from deep inside Celery
    sys.stderr.write(f"ymsync: configuration error: {exc}\n")
    raise SystemExit(2) from None

broker_url = _settings.broker_url
result_backend = _settings.result_backend

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

QUEUE_NAMES = ("stocks", "reports")


def is_amqp(url: str) -> bool:
    return url.partition(":")[0] in ("amqp", "amqps")


def build_queues(amqp: bool) -> tuple[Queue, ...]:
    """ymsync's queues: plain ones on Redis; on RabbitMQ quorum queues behind topic exchanges.

    Quorum: Celery then drops global QoS by itself (``worker_detect_quorum_queues``, on by
    default), and a countdown (a retry's backoff) goes through Celery's native delayed delivery,
    which needs a topic exchange (a direct one makes the worker hold the message, blocking a
    prefetch slot until it is due). The exchanges are named apart from the queues, so an existing
    broker's direct ``stocks``/``reports`` exchanges do not clash (README: upgrading).
    """
    if not amqp:
        return tuple(Queue(name) for name in QUEUE_NAMES)
    return tuple(Queue(name, Exchange(f"ymsync.{name}", type="topic"), routing_key=name,
                       queue_arguments={"x-queue-type": "quorum"}) for name in QUEUE_NAMES)


def build_transport_options(amqp: bool) -> dict:
    if amqp:
        # py-amqp waits for the broker's ack on every publish and raises on a nack.
        return {"confirm_publish": True}
    # Redis redelivers an unacked message after this: far longer than any countdown ymsync uses.
    return {"visibility_timeout": 6 * 3600}


_AMQP = is_amqp(_settings.broker_url)
task_queues = build_queues(_AMQP)
task_default_queue = "stocks"
task_routes = {
    "ymsync.stocks.*": {"queue": "stocks"},
    "ymsync.reports.*": {"queue": "reports"},
    "ymsync.reads.*": {"queue": "reports"},
}

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Drops a malformed message instead of letting it restart the consumer until the worker quits.
worker_consumer = f"{TASKS_PACKAGE}.consumer:GuardedConsumer"
task_track_started = True
worker_send_task_events = True
task_send_sent_event = True

broker_connection_retry_on_startup = True
broker_transport_options = build_transport_options(_AMQP)
result_backend_transport_options = {"visibility_timeout": 6 * 3600}
result_expires = 7 * 24 * 3600
result_extended = False  # args stay out of the result backend


def _campaign_report(settings, campaign: int) -> dict:
    try:
        return settings.cabinets.by_campaign(campaign).stocks_report_body(campaign)
    except LookupError:  # no cabinet lists it: as before, by campaignId
        return {"campaignId": campaign}


def build_beat_schedule(settings) -> dict:
    """``celery -A tasks beat`` entries from the settings; empty unless campaigns or businesses are named.

    Each message expires after one interval, so a beat that outlived a stopped reports worker
    does not leave a pile of stale reconciliations behind. ``argsrepr`` keeps Flower readable.
    """
    schedule: dict = {}
    every = settings.reconcile_every_s
    for campaign in settings.reconcile_campaigns:
        schedule[f"reconcile-{campaign}"] = {
            "task": "ymsync.reads.reconcile",
            "schedule": every,
            "args": (campaign,),
            "kwargs": {"fix": settings.reconcile_fix},
            "options": {"queue": "reports", "expires": every, "argsrepr": f"(campaign={campaign})",
                        "kwargsrepr": f"{{fix={settings.reconcile_fix}}}"},
        }
    for business in settings.reconcile_businesses:  # v3: every warehouse ymsync delivered to
        schedule[f"reconcile-business-{business}"] = {
            "task": "ymsync.reads.reconcile_business",
            "schedule": every,
            "args": (business,),
            "kwargs": {"fix": settings.reconcile_fix},
            "options": {"queue": "reports", "expires": every, "argsrepr": f"(business={business})",
                        "kwargsrepr": f"{{warehouse=all, fix={settings.reconcile_fix}}}"},
        }
    if settings.snapshot_campaigns or settings.snapshot_businesses:
        every = settings.snapshot_every_s
        # v2 parts: DBS/FBS/Express campaigns as businessId + campaignIds (the spec marks campaignId
        # as soon unavailable for them), FBY ones by campaignId; v3 parts: business stocks reports.
        requests = [{"request": _campaign_report(settings, c), "format": settings.snapshot_format}
                    for c in settings.snapshot_campaigns]
        requests += [{"request": {"businessId": b}, "format": settings.snapshot_format, "api": "v3"}
                     for b in settings.snapshot_businesses]
        what = []
        if settings.snapshot_campaigns:
            what.append(f"campaigns {','.join(map(str, settings.snapshot_campaigns))}")
        if settings.snapshot_businesses:
            what.append(f"businesses {','.join(map(str, settings.snapshot_businesses))} (v3)")
        schedule["snapshot"] = {
            "task": "ymsync.reports.snapshot",
            "schedule": every,
            "args": (requests,),
            "options": {"queue": "reports", "expires": every,
                        "argsrepr": f"({len(requests)} reports: {'; '.join(what)}, {settings.snapshot_format})"},
        }
    return schedule


beat_schedule = build_beat_schedule(_settings)
