"""What a worker process does at start and stop (Celery signals): refuse to start without a cabinet
or with a Redis that may evict ymsync's keys, say once that it is ready, and run the scheduler
threads of the queues it consumes."""

from __future__ import annotations

import logging
import sys
import threading

import redis
from celery import signals

from ymsync.config.settings import SettingsError, get_settings
from ymsync.store.eviction import eviction_problem
from ymsync.store.client import state_client

from .app import app

log = logging.getLogger("ymsync.worker")

_scheduler = None
_report_scheduler = None


def _refuse(why: str) -> None:
    sys.stderr.write(f"ymsync: configuration error: {why}\n")
    sys.stderr.flush()
    raise SystemExit(2) from None


@signals.worker_init.connect
def _check_credentials(**_: object) -> None:
    try:
        get_settings().require_cabinets()
    except SettingsError as exc:
        _refuse(str(exc))


@signals.worker_init.connect
def _check_redis_keeps_keys(**_: object) -> None:
    """An evicting Redis would drop pending values and leases without a trace: refuse to start.
    A Redis that does not answer yet is not refused here (the worker waits for it like for the broker)."""
    client = state_client(get_settings(), connect_timeout_s=3, timeout_s=5)
    try:
        problem = eviction_problem(client)
    except redis.RedisError:
        return
    finally:
        client.close()
    if problem:
        _refuse(problem)


@signals.worker_init.connect
def _declare_every_queue(**_: object) -> None:
    """On RabbitMQ, Celery's delayed delivery binds every configured queue when a consumer starts,
    but a worker declares only the queues (and exchanges) it consumes: on a fresh broker a
    stocks-only worker would log "no queue 'reports'" at every connect, and a reports retry could
    not be delayed until some reports worker had run. Declaring them all (exchange, queue,
    binding) here is idempotent and cheap."""
    try:
        with app.connection_for_write() as connection:
            if connection.transport.driver_type != "amqp":
                return
            channel = connection.default_channel
            for queue in app.conf.task_queues or ():
                queue(channel).declare()
    except Exception as exc:  # the broker may not answer yet: the consumer waits for it as usual
        log.warning("could not declare ymsync's queues yet: %s", exc)


@signals.worker_process_init.connect
def _connect_early(**_: object) -> None:
    """A pool process opens its Redis connection as it starts, not on its first task's way to the
    Market: the handshake (HELLO, CLIENT SETINFO) is several round trips. In a thread, as Celery
    gives a process a few seconds to start and a Redis that does not answer must not cost them."""

    def connect() -> None:
        from . import runtime

        try:
            runtime.redis_client().ping()
        except redis.RedisError:
            pass  # the first task connects (and fails, and retries) as it would have

    threading.Thread(target=connect, name="ymsync-connect", daemon=True).start()


@signals.worker_ready.connect
def _say_ready(sender: object = None, **_: object) -> None:
    """One line an operator (or a supervisor's log) can wait for: the queues and the pool size. At
    WARNING, so the README's bare command (Celery's default log level is WARNING) shows it."""
    consumed = getattr(getattr(getattr(sender, "app", app), "amqp", None), "queues", None)
    queues = sorted(getattr(consumed, "consume_from", None) or {}) or ["every queue"]
    pool = getattr(getattr(sender, "pool", None), "limit", None) or getattr(sender, "concurrency", "?")
    log.warning("ymsync worker %s ready: queues %s, concurrency %s", getattr(sender, "hostname", "?"),
                ",".join(queues), pool)


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
