"""The worker's message consumer, hardened against malformed messages.

Celery's consumer handles undecodable bodies and unknown task names, but a message shaped like
protocol 1 without an ``id`` (``{"task": "ymsync.stocks.update"}``, say) makes it raise a bare
``KeyError`` from the task strategy. Celery takes that for a broken broker connection: it
restores the message, reconnects, receives it again, and after five rounds a second gives up
with ``RestartFreqExceeded`` and shuts the worker down. One bad message from any producer would
take every stocks worker down in turn. This consumer drops such a message (logged, without its
body) and carries on; broker errors still go to Celery's reconnection logic.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from celery.worker.consumer.consumer import Consumer
from vine import promise

log = logging.getLogger("ymsync.consumer")
# What reading a task message of the wrong shape raises; broker and Redis errors are none of these.
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)


class GuardedConsumer(Consumer):
    def create_task_handler(self, promise: Any = promise) -> Callable[[Any], Any]:
        handler = super().create_task_handler(promise)

        def on_task_received(message: Any) -> Any:
            try:
                return handler(message)
            except _MALFORMED as exc:  # a message missing fields or of the wrong shape
                # (Not "any exception but the broker's": the Redis transport counts KeyError
                # among its channel errors, which is how this message restarts the consumer.)
                headers = getattr(message, "headers", None) or {}
                log.error("dropped a malformed message (task %r, %d bytes): %s: %s",
                          headers.get("task") if isinstance(headers, dict) else None,
                          len(getattr(message, "body", b"") or b""), type(exc).__name__, str(exc)[:200])
                message.reject_log_error(log, self.connection_errors)
                return None

        return on_task_received


__all__ = ["GuardedConsumer"]

