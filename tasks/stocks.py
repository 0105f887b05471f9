"""Stock tasks on the ``stocks`` queue.

``ymsync.stocks.update`` is the public task any Celery client may ``send_task``:
``(campaign_id: int, items: list[{"sku", "count", "updatedAt"?}])``. Invalid items are
dead-lettered with the reason, never dropped. ``ymsync.stocks.flush`` is internal: one bounded
round of pushing for a campaign, re-enqueued (not retried) while work or a quota wait remains.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task

from ymsync.producer import InvalidInput, check_campaign, check_updates

from . import app, runtime


@app.task(name="ymsync.stocks.update", bind=True, ignore_result=True)
def update(self: Task, campaign_id: int, items: list[dict[str, Any]]) -> None:
    # A bad campaign has nowhere to be dead-lettered: fail the task loudly (logs, Flower).
    campaign = check_campaign(campaign_id)
    if not isinstance(items, list):
        raise InvalidInput([f"items must be a list of {{sku, count, updatedAt?}}, got {type(items).__name__}"])
    checked = check_updates(items)
    buf = runtime.buffer()
    reasons: dict[int, list[str]] = {}
    for error in checked.errors:  # "item 3: count: …"
        label, _, reason = error.partition(": ")
        reasons.setdefault(int(label.split()[1]), []).append(reason)
    now_ms = int(time.time() * 1000)
    for index, why in reasons.items():
        item = items[index] if isinstance(items[index], dict) else {}
        sku, count = item.get("sku"), item.get("count")
        # Keyed by task id and position, so a redelivered message rewrites rather than repeats.
        buf.dead_letter_raw(campaign, f"invalid:{self.request.id}:{index}", {
            "sku": str(sku) if sku is not None else f"item {index}",
            "count": count if isinstance(count, int) and not isinstance(count, bool) else None,
            "stamp_ms": None, "first_ms": None, "reason": "invalid input: " + "; ".join(why), "at_ms": now_ms})
    if checked.updates:
        buf.ingest(campaign, checked.updates)


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
