"""A worker's task events (what Flower sees) leave in batches: every event still arrives, in fewer
broker messages than events. A real worker, a real Redis broker, Celery's own event receiver."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
import redis
from celery import Celery

from tests.support.processes import CeleryWorker, wait_for
from ymsync.sandbox import MarketSandbox

pytestmark = pytest.mark.integration
CAMPAIGN = 6161


class EventTap:
    """Celery's EventReceiver on the broker, recording each message as it arrived (a batch is a list)."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery(broker=broker_url)
        self.messages: list[list[dict[str, Any]]] = []
        self.receiver: Any = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as connection:
            receiver = self.receiver = self.app.events.Receiver(connection, handlers={"*": lambda event: None})
            unpack, consuming = receiver._receive, receiver.on_consume_ready

            def record(body: Any, message: Any) -> None:
                events = body if isinstance(body, list) else [body]
                self.messages.append([e for e in events if str(e.get("type", "")).startswith("task-")])
                unpack(body, message)

            def ready(*args: Any, **kwargs: Any) -> None:
                consuming(*args, **kwargs)
                self.ready.set()

            receiver._receive = record  # before get_consumers() binds it as the consumer's callback
            receiver.on_consume_ready = ready
            receiver.capture(limit=None, timeout=None, wakeup=False)

    def stop(self) -> None:
        self.receiver.should_stop = True
        self.thread.join(5)

    def events(self) -> list[dict[str, Any]]:
        return [e for batch in self.messages for e in batch]


def test_task_events_arrive_in_batches(redis_server, tmp_path):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    with MarketSandbox() as market:
        env = {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": "t-events",
               "YM_FLUSH_DELAY_MS": "20", "YM_TASK_EVENTS_EVERY_S": "0.5"}
        tap = EventTap(redis_server.url)
        tap.thread.start()
        assert tap.ready.wait(10), "the event receiver did not start"
        worker = CeleryWorker(env, concurrency=2, name="evw", log_path=tmp_path / "worker.log").start()
        try:
            worker.wait_ready(redis_server.url)
            sender = Celery(broker=redis_server.url)
            for i in range(4):
                sender.send_task("ymsync.stocks.update", (CAMPAIGN, [{"sku": f"E-{i}", "count": i}],
                                                          "2026-12-06T12:00:00+00:00"), queue="stocks")

            def finished() -> Counter[str]:
                kinds = Counter((e["type"], e.get("name") or "") for e in tap.events())
                done = Counter(e["type"] for e in tap.events())
                return kinds if done["task-succeeded"] >= 5 and done["task-received"] == done["task-succeeded"] else None

            wait_for(finished, 60, "every task's events (4 updates and their flushes)", interval=0.2)
        finally:
            worker.kill()
            tap.stop()
    events = tap.events()
    kinds = Counter(e["type"] for e in events)
    by_task: dict[str, set[str]] = {}
    for e in events:
        by_task.setdefault(e["uuid"], set()).add(e["type"])
    # Every task shows its whole life: none of its events is lost to the batching.
    assert all({"task-received", "task-started", "task-succeeded"} <= seen for seen in by_task.values()), by_task
    assert kinds["task-received"] >= 5
    carrying = [batch for batch in tap.messages if batch]
    # Batched: fewer messages than events, and a task's received and started (a few ms apart, in
    # different turns of the worker's loop, so one message each before) travel together.
    assert len(carrying) * 2 <= len(events), (len(carrying), len(events))
    assert any({"task-received", "task-started"} <= {e["type"] for e in batch if e["uuid"] == uid}
               for batch in carrying for uid in {e["uuid"] for e in batch})
