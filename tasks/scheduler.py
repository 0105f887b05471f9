"""The flush scheduler's thread: one in each stocks worker's main process, running the library's
loop (``ymsync.engine.dispatch``) with Celery's send function. One at a time drains the schedule;
the others stand by to take over (see that module)."""

from __future__ import annotations

import os
import socket
import threading
import uuid

from ymsync.config.settings import get_settings
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.dispatch import run_flush_scheduler
from ymsync.engine.schedule import Schedule
from ymsync.store.client import lasting_state_client

from . import runtime


class FlushScheduler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="ymsync-flush-scheduler", daemon=True)
        self.stopping = threading.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        from .stocks import send_flush

        settings = get_settings()
        # Its own connection: BLPOP blocks it, and the task pool's must stay free.
        client = lasting_state_client(settings, self.stopping, "flush scheduler", timeout_s=10,
                                      client_name="ymsync-scheduler")
        if client is None:
            return
        schedule = Schedule(client, max_parallel=settings.max_parallel, **runtime.slot_ttls())
        buffer = StockBuffer.from_settings(client, settings, schedule)
        run_flush_scheduler(schedule, buffer, send_flush, self.owner, self.stopping)
