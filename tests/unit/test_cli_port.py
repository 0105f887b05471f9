"""The CLI's task-queue port: ``ymsync report --wait`` and the demo read task results only through
it (tests/integration/test_report_tasks.py drives the Celery implementation end to end)."""

from __future__ import annotations

import json
from typing import Any

from ymsync.cli.demo import QueueGateway
from ymsync.cli.port import TaskResult
from ymsync.cli.reports import _follow


class FakeQueue:
    """Finishes the task after ``polls`` looks, with ``finished`` as its result."""

    def __init__(self, finished: TaskResult, polls: int = 2) -> None:
        self.finished, self.polls, self.sent = finished, polls, []

    def send_report(self, request: Any) -> str:
        self.sent.append(request)
        return "job-1"

    def send_snapshot(self, requests: list[Any]) -> str:
        self.sent.append(requests)
        return "snap-1"

    def result(self, task_id: str) -> TaskResult | None:
        self.polls -= 1
        return self.finished if self.polls <= 0 else None


class Events:
    """A job's event list as the worker writes it (the one Redis call _follow makes)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.raw = [json.dumps(e).encode() for e in events]

    def lrange(self, key: str, start: int, end: int) -> list[bytes]:
        return self.raw[start:]


def test_follow_returns_the_result_the_port_reads_after_printing_every_event(capsys) -> None:
    outcome = {"status": "DONE", "path": "/r/1.csv"}
    events = Events([{"t": 0, "status": "GENERATING", "message": "asked"}, {"t": 1, "status": "DONE", "message": "in"}])
    assert _follow(FakeQueue(("SUCCESS", outcome)), "job-1", events, timeout=5) == outcome  # type: ignore[arg-type]
    printed = capsys.readouterr().out
    assert "GENERATING" in printed and "DONE" in printed


def test_follow_turns_a_failed_task_into_an_error_outcome() -> None:
    got = _follow(FakeQueue(("FAILURE", RuntimeError("boom")), polls=1), "job-1", Events([]), timeout=5)  # type: ignore[arg-type]
    assert got == {"status": "ERROR", "reason": "the task failed: RuntimeError: boom"}


def test_demo_gateway_reads_results_through_the_port(monkeypatch) -> None:
    queue = FakeQueue(("REVOKED", None), polls=1)
    monkeypatch.setattr("ymsync.cli.demo.task_queue", lambda url: queue)
    gateway = QueueGateway("redis://127.0.0.1:1/0")
    assert gateway.send_snapshot(["r"]) == "snap-1" and queue.sent == [["r"]]
    assert gateway.result("snap-1") == {"status": "failed", "failed": ["REVOKED: None"]}
    queue.finished, queue.polls = ("SUCCESS", {"status": "ok"}), 2
    assert gateway.result("snap-1") is None
    assert gateway.result("snap-1") == {"status": "ok"}
