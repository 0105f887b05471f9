"""A report job's status transitions, kept in Redis for a day (the CLI shows them live)."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import redis

from ymsync.store import keys

EVENTS_TTL_S = 24 * 3600
_KEPT = 200  # events kept per job, newest last


class HasEvents(Protocol):
    job_id: str
    report_id: str | None
    last_status: str


def events_key(job_id: str) -> str:
    return keys.report_events(job_id)


def record_event(client: redis.Redis, state: HasEvents, status: str, message: str, force: bool = False) -> None:
    """Append a status transition to the job's event list; a repeat of the last status is skipped
    unless ``force`` (a job's end is always written)."""
    if status == state.last_status and not force:
        return
    state.last_status = status
    key = events_key(state.job_id)
    entry = json.dumps({"t": round(time.time(), 3), "status": status, "message": message,
                        "report_id": state.report_id}, ensure_ascii=False)
    pipe = client.pipeline()
    pipe.rpush(key, entry)
    pipe.ltrim(key, -_KEPT, -1)
    pipe.expire(key, EVENTS_TTL_S)
    pipe.execute()


def read_events(client: redis.Redis, job_id: str, start: int = 0) -> list[dict[str, Any]]:
    """Events of one job from index ``start`` on (for live display)."""
    return [json.loads(raw) for raw in client.lrange(events_key(job_id), start, -1)]
