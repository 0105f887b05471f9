"""The report scheduler's thread: one in each reports worker's main process, running the library's
loop (``ymsync.reports.dispatch``) with Celery's send: each due job's stored signature is sent
again, same task id and chord linkage. One at a time dispatches; the others stand by."""

from __future__ import annotations

import threading
import uuid
from typing import Any


from ymsync.config.settings import get_settings
from ymsync.reports.dispatch import run_report_scheduler
from ymsync.reports.jobs import ReportJobs
from ymsync.store.client import lasting_state_client

from .app import app


def send_signature(signature: dict[str, Any]) -> None:
    app.signature(signature).apply_async()


class ReportScheduler(threading.Thread):
    def __init__(self, resend_after_s: float = 60.0) -> None:
        super().__init__(name="ymsync-report-scheduler", daemon=True)
        self.stopping = threading.Event()
        self.resend_after_s = resend_after_s
        self.identity = uuid.uuid4().hex

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        client = lasting_state_client(get_settings(), self.stopping, "report scheduler", timeout_s=10)
        if client is None:
            return
        store = ReportJobs(client, resend_after_s=self.resend_after_s)
        run_report_scheduler(client, store, send_signature, self.identity, self.stopping)
