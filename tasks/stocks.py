"""Stock tasks on the ``stocks`` queue.

``ymsync.stocks.update`` is the public task any Celery client may ``send_task``:
``(campaign_id: int, items: list[{"sku", "count", "updatedAt"?}])``. Invalid items are
dead-lettered with the reason, never dropped. ``ymsync.stocks.flush`` is internal: one bounded
round of pushing for a campaign, re-enqueued (not retried) while work or a quota wait remains.
"""

from __future__ import annotations

import time
from typing import Any

from ymsync.producer import check_updates

from . import app, runtime


@app.task(name="ymsync.stocks.update", ignore_result=True)
def update(campaign_id: int, items: list[dict[str, Any]]) -> None:
    checked = check_updates(items)
    buf = runtime.buffer()
    for error in checked.errors:
        label, _, reason = error.partition(": ")
        buf.dead_letter_raw(int(campaign_id), f"invalid:{time.time_ns()}:{label}",
                            {"sku": label, "count": None, "stamp_ms": None, "first_ms": None,
                             "reason": f"invalid input: {reason}", "at_ms": int(time.time() * 1000)})
    if checked.updates:
        buf.ingest(int(campaign_id), checked.updates)


@app.task(name="ymsync.stocks.flush")
def flush(campaign_id: int) -> dict[str, Any]:
    result = runtime.flusher().flush(int(campaign_id))
    if result.next_in is not None:
        # A fresh message, not a retry: waiting for quota must not burn the retry budget.
        runtime.buffer().touch_flush(int(campaign_id), result.next_in)
        schedule_flush(int(campaign_id), result.next_in)
    if result.fan_out:
        schedule_flush(int(campaign_id), 0)
    return {"campaign": int(campaign_id), "delivered": result.delivered, "dead": result.dead,
            "requests": result.requests, "next_in": result.next_in}


def schedule_flush(campaign_id: int, countdown: float) -> None:
    flush.apply_async((campaign_id,), countdown=max(0.0, countdown) or None, argsrepr=f"(campaign={campaign_id})")


def send_updates(campaign_id: int, items: list[dict[str, Any]]) -> None:
    """Enqueue the public update task with a readable, payload-free summary for Flower."""
    update.apply_async((campaign_id, items), argsrepr=f"(campaign={campaign_id}, {len(items)} SKUs)")


__all__ = ["flush", "update", "schedule_flush", "send_updates"]
