"""The CLI's port to the task queue: what ``ymsync report``, ``ymsync check`` and ``ymsync demo`` need from the workers.

The library never imports Celery. The CLI needs four things from the queue (send a report
request, send a snapshot, read a task's result, see who consumes the queues), so it names them here as :class:`TaskQueue`
and finds the implementation through :func:`task_queue`, the one documented lookup: it loads
``ymsync_celery.tasks.port`` (``tasks/port.py`` in a checkout), installed with ymsync. That
import is the only one from ``ymsync/`` into the Celery side (tests/unit/test_import_graph.py
checks it); Celery is loaded only when a command actually queues something.
"""

from __future__ import annotations

from typing import Any, Protocol

from ymsync.reports.request import ReportRequest

# A finished task: its final state (SUCCESS, FAILURE, ...) and its return value (for a failed task,
# the exception it raised). A plain pair, so the implementation needs nothing from the CLI.
TaskResult = tuple[str, Any]


class TaskQueue(Protocol):
    def send_report(self, request: ReportRequest) -> str:
        """Queue one report job (validated already); return its task id."""

    def send_snapshot(self, requests: list[ReportRequest]) -> str:
        """Queue a snapshot (several reports merged into one file); return the snapshot task's id."""

    def result(self, task_id: str) -> TaskResult | None:
        """The task's result once it is finished, else None. Never blocks."""

    def consumers(self, timeout: float = 2.0) -> dict[str, list[str]]:
        """Every queue ymsync's workers read (``stocks``, ``reports``) and the workers consuming it
        now (an empty list: none). Raises when the broker cannot be reached."""


def task_queue(redis_url: str | None = None) -> TaskQueue:
    """The queue the workers read. ``redis_url`` points broker and result backend at that Redis
    (the demo's private one) instead of the settings'."""
    from ymsync_celery.tasks.port import CeleryTaskQueue  # the one seam (see the module's docstring)

    return CeleryTaskQueue(redis_url)


__all__ = ["TaskQueue", "TaskResult", "task_queue"]
