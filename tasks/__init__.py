"""The Celery app: ``celery -A tasks worker -Q stocks`` from the repository root.

Installed (pip, the image), this package is ``ymsync_celery.tasks`` and the config
``ymsync_celery.celeryconfig``: ``celery -A ymsync_celery.tasks worker -Q stocks`` from
anywhere. Every reference below is built from this package's own ``__name__``, so the app
works under either name and never imports a shop's own top-level ``tasks`` or ``celeryconfig``.

Task modules here are thin: they parse arguments, call the ``ymsync`` library and decide
what Celery should do next (re-enqueue, give up). The library never imports Celery.
"""

from __future__ import annotations

import sys

from celery import Celery, signals

from ymsync.settings import SettingsError, get_settings

# Summaries, never payloads, as the default argsrepr/kwargsrepr Flower shows (see tasks/flower.py).
# "" from a checkout (tasks, celeryconfig), "ymsync_celery" when installed.
_PARENT = __name__.rpartition(".")[0]
CONFIG_MODULE = f"{_PARENT}.celeryconfig" if _PARENT else "celeryconfig"

app = Celery("ymsync", amqp=f"{__name__}.flower:SummarizingAMQP")
app.config_from_object(CONFIG_MODULE)
app.conf.include = [f"{__name__}.stocks", f"{__name__}.reads", f"{__name__}.reports"]

_scheduler = None
_report_scheduler = None

if "flower" in sys.modules:  # loaded by `celery -A tasks flower`: its /metrics needs auth too
    from .flower import protect_metrics

    protect_metrics()


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

    _report_scheduler = ReportScheduler(resend_after_s=get_settings().report_resend_s)
    _report_scheduler.start()


@signals.worker_shutdown.connect
def _stop_scheduler(**_: object) -> None:
    if _scheduler is not None:
        _scheduler.stop()
    if _report_scheduler is not None:
        _report_scheduler.stop()


__all__ = ["app"]
