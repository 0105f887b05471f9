"""What Flower (and any event consumer) gets to see of ymsync's tasks.

Celery puts ``argsrepr``/``kwargsrepr`` into every message and into the task-sent and
task-received events; Flower shows and serves exactly those strings. ymsync's senders pass a
one-line summary (``send_updates``, ``send_snapshot``, ...), but a call site that forgets, a
retry, or a chord body would fall back to Celery's ``saferepr`` of the arguments: up to a
kilobyte of SKUs or report state per task, kept in Flower's memory and API. So the app's AMQP
class summarises instead of repr-ing whenever no repr was given: numbers and short strings as
they are, containers by size. Tokens are never task arguments (workers read them from settings),
and long strings are shown only by length, so nothing secret-shaped gets through either.

Flower 2.x leaves ``/metrics`` open even with ``--basic-auth``; :func:`protect_metrics` puts it
behind the same check as every other page when the app is loaded by ``celery -A tasks flower``.
"""

from __future__ import annotations

import inspect
from typing import Any

from celery import bootsteps
from celery.app.amqp import AMQP

from ymsync.config.settings import get_settings

_SHORT = 64  # longer strings are shown by length only
# Internal tasks sent without a task-sent event: the scheduler sends a flush per round (several a
# second under load), each event a broker round trip; Flower shows them from task-received on.
NO_SENT_EVENT = frozenset({"ymsync.stocks.flush"})
# Where Celery passes create_sent_event positionally (Celery.send_task does): its index in *rest.
_PARAMS = list(inspect.signature(AMQP.as_task_v2).parameters)[5:]  # after self, task_id, name, args, kwargs
_SENT_AT = _PARAMS.index("create_sent_event") if "create_sent_event" in _PARAMS else None


def brief(value: Any) -> str:
    """One short token for one argument: never a payload."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= _SHORT else f"<{len(value)} chars>"
    if isinstance(value, (list, tuple)):
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    return f"<{type(value).__name__}>"


def summarize(name: str, args: Any, kwargs: Any) -> tuple[str, str]:
    """(argsrepr, kwargsrepr) for a message whose sender gave none."""
    args = list(args or ())
    kwargs = dict(kwargs or {})
    if name == "ymsync.stocks.update" and len(args) == 2 and isinstance(args[1], list):
        # The public task: the shape a person wants to see, as send_updates writes it.
        return f"(campaign={brief(args[0])}, {len(args[1])} SKUs)", brief_kwargs(kwargs)
    return "(" + ", ".join(brief(a) for a in args) + ("," if len(args) == 1 else "") + ")", brief_kwargs(kwargs)


def brief_kwargs(kwargs: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={brief(v)}" for k, v in kwargs.items()) + "}"


class SummarizingAMQP(AMQP):
    """Celery's AMQP with summaries instead of reprs as the default ``argsrepr``/``kwargsrepr``."""

    def as_task_v2(self, task_id: str, name: str, args: Any = None, kwargs: Any = None,
                   *rest: Any, **options: Any) -> Any:
        if name in NO_SENT_EVENT:
            if "create_sent_event" in options:
                options["create_sent_event"] = False
            elif _SENT_AT is not None and len(rest) > _SENT_AT:
                rest = (*rest[:_SENT_AT], False, *rest[_SENT_AT + 1:])
        if options.get("argsrepr") is None or options.get("kwargsrepr") is None:
            argsrepr, kwargsrepr = summarize(name, args, kwargs)
            if options.get("argsrepr") is None:
                options["argsrepr"] = argsrepr
            if options.get("kwargsrepr") is None:
                options["kwargsrepr"] = kwargsrepr
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)


class BatchedTaskEvents(bootsteps.StartStopStep):
    """A worker's task events leave in batches, at most ``YM_TASK_EVENTS_EVERY_S`` after they happen.

    With an event loop (prefork), Celery already buffers task events and publishes what it holds as
    one ``task.multi`` message, which Flower (Celery's EventReceiver) unpacks; but it flushes on the
    loop's next turn, and a flush task's received, started and succeeded events fall in different
    turns: one broker round trip each, three a task. Flushed on a timer instead, they go together,
    with other tasks' events. Stopping (before the Events step closes) sends what is left."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.every_s = get_settings().task_events_every_s
        self.timer: Any = None

    def start(self, c: Any) -> None:
        dispatcher, hub = c.event_dispatcher, c.hub
        if dispatcher is None or hub is None or self.every_s <= 0 or dispatcher.on_send_buffered is None:
            return  # no loop (solo, threads) or batching off: Celery's own way

        def flush() -> None:
            self.timer = None
            if c.event_dispatcher is not None:
                c.event_dispatcher.flush()

        def flush_later() -> None:
            if self.timer is None:
                self.timer = hub.call_later(self.every_s, flush)

        dispatcher.on_send_buffered = flush_later

    def stop(self, c: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if c.event_dispatcher is not None:
            c.event_dispatcher.flush()

    shutdown = stop


def protect_metrics() -> None:
    """Require Flower's authentication on ``/metrics`` too (a no-op when Flower has none)."""
    try:
        from flower.views.monitor import Metrics
        from tornado import web
    except ImportError:  # flower not installed: nothing to protect
        return
    if getattr(Metrics.get, "_ymsync_protected", False):
        return
    guarded = web.authenticated(Metrics.get)
    guarded._ymsync_protected = True  # type: ignore[attr-defined]
    Metrics.get = guarded  # type: ignore[method-assign]


__all__ = ["BatchedTaskEvents", "NO_SENT_EVENT", "SummarizingAMQP", "brief", "protect_metrics", "summarize"]
