"""The CLI's :class:`ymsync.cli.port.TaskQueue` on Celery: how ``ymsync report`` and ``ymsync demo``
queue work and read results without the library importing Celery. It imports nothing of the CLI's
(the lookup imports this module), so the seam points one way."""

from __future__ import annotations

from typing import Any

from celery import states

from ymsync.reports.request import ReportRequest

from .app import app
from .reports import send_report, send_snapshot


class CeleryTaskQueue:
    def __init__(self, redis_url: str | None = None) -> None:
        if redis_url is not None:
            # Before the app's first connection, whatever the caller's own environment says.
            app.conf.update(broker_url=redis_url, result_backend=redis_url)
        self.app = app

    def send_report(self, request: ReportRequest) -> str:
        return send_report(request)

    def send_snapshot(self, requests: list[ReportRequest]) -> str:
        return send_snapshot(requests)

    def result(self, task_id: str) -> tuple[str, Any] | None:
        # The backend's stored meta, not AsyncResult: that may subscribe to Redis pub/sub and try
        # to unsubscribe at interpreter exit, long after the demo's Redis is gone.
        meta = self.app.backend.get_task_meta(task_id)
        if meta.get("status") not in states.READY_STATES:
            return None
        return str(meta.get("status")), meta.get("result")

    def consumers(self, timeout: float = 2.0) -> dict[str, list[str]]:
        with self.app.connection_for_write() as conn:  # a dead broker fails here, in seconds
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        found: dict[str, list[str]] = {q.name: [] for q in self.app.conf.task_queues}
        replies = self.app.control.inspect(timeout=timeout).active_queues() or {}
        for worker, queues in replies.items():
            for queue in queues or ():
                found.setdefault(queue["name"], []).append(worker)
        return found


__all__ = ["CeleryTaskQueue"]
