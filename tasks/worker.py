"""What a worker process does at start and stop (Celery signals): refuse to start without a cabinet,
and run the scheduler threads of the queues it consumes."""

from __future__ import annotations

import sys

from celery import signals

from ymsync.config.settings import SettingsError, get_settings

from .app import app

_scheduler = None
_report_scheduler = None


@signals.worker_init.connect
def _check_credentials(**_: object) -> None:
    try:
        get_settings().require_cabinets()
    except SettingsError as exc:
        sys.stderr.write(f"ymsync: configuration error: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None


def _consumes(sender: object, queue: str) -> bool:
    consumed = getattr(getattr(getattr(sender, "app", app), "amqp", None), "queues", None)
    names = set(getattr(consumed, "consume_from", None) or {})  # empty: every queue
    return not names or queue in names


@signals.worker_ready.connect
def _start_scheduler(sender: object = None, **_: object) -> None:
    """Only workers that consume the ``stocks`` queue run the flush scheduler (one at a time
    drains the schedule; the others stand by to take over)."""
    global _scheduler
    if not _consumes(sender, "stocks"):
        return
    from .scheduler import FlushScheduler

    _scheduler = FlushScheduler()
    _scheduler.start()


@signals.worker_ready.connect
def _start_report_scheduler(sender: object = None, **_: object) -> None:
    """Only workers that consume the ``reports`` queue run report jobs' scheduler."""
    global _report_scheduler
    if not _consumes(sender, "reports"):
        return
    from .report_scheduler import ReportScheduler
    from .reports import RESEND_AFTER_S

    _report_scheduler = ReportScheduler(resend_after_s=RESEND_AFTER_S)
    _report_scheduler.start()


@signals.worker_shutdown.connect
def _stop_scheduler(**_: object) -> None:
    if _scheduler is not None:
        _scheduler.stop()
    if _report_scheduler is not None:
        _report_scheduler.stop()
