"""Stock tasks on the ``stocks`` queue.

``ymsync.stocks.update`` is the public task any Celery client may ``send_task``:
``(campaign_id: int, items: list[{"sku", "count", "updatedAt"?}], stamped_at: str | None)``.
Every item needs a time: its own ``updatedAt`` or the message's ``stamped_at`` (when it was
enqueued; ``send_updates`` sets ``updatedAt`` itself). The task never stamps with its own clock:
messages run out of order on a prefork pool, and a redelivered one may run hours late.
Invalid items are dead-lettered with the reason, never dropped. ``ymsync.stocks.flush`` is internal: one bounded
round of pushing for a stock target, sent by the scheduler (tasks/scheduler.py) when the target
is due and has a free task slot.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from amqp.exceptions import MessageNacked
from celery import Task
from kombu.exceptions import OperationalError

from ymsync.config.settings import get_settings
from ymsync.errors import Unavailable

from ymsync.engine.producer import (Checked, InvalidInput, ItemError, call_error, check_business_updates,
                                    check_campaign, check_listed, check_updates, queue_updates, stamp_items)
from ymsync.engine.dispatch import round_ended
from ymsync.engine.group_target import campaign_stock_target, describe_group
from ymsync.engine.targets import business_target
from ymsync.store.keys import describe_target

from . import app, runtime


# Redis (ymsync's state) failing under a task: the message goes back to the broker to run again
# later rather than being acknowledged as done (acks_late acknowledges a failed task too); a
# second run is safe (latest wins, a repeat is dropped).
_RETRY = {"autoretry_for": (Unavailable, redis.RedisError), "retry_backoff": 1, "retry_backoff_max": 60, "max_retries": None}


@app.task(name="ymsync.stocks.update", bind=True, ignore_result=True, **_RETRY)
def update(self: Task, campaign_id: int, items: list[dict[str, Any]], stamped_at: str | None = None) -> None:
    # A bad or unlisted campaign has nowhere to be dead-lettered: fail the task loudly (logs, Flower).
    campaign = check_listed(check_campaign(campaign_id))
    items = _with_stamps(items, stamped_at)
    _ingest(self.request.id, campaign_stock_target(campaign), items, check_updates(items, require_stamp=True))


@app.task(name="ymsync.stocks.update_business", bind=True, ignore_result=True, **_RETRY)
def update_business(self: Task, business_id: int, items: list[dict[str, Any]], stamped_at: str | None = None,
                    warehouse: int | None = None) -> None:
    """The v3 twin of ``update``: items ``{sku, count, warehouse?, updatedAt?}`` for a business;
    ``warehouse`` is the default for items without one."""
    business = check_campaign(business_id, "business_id")
    items = _with_stamps(items, stamped_at)
    checked = check_business_updates(items, warehouse=warehouse, business_id=business,
                                     warehouses=runtime.warehouse_check(), require_stamp=True)
    _ingest(self.request.id, business_target(business), items, checked)


def _with_stamps(items: object, stamped_at: str | None) -> list[Any]:
    if not isinstance(items, list):
        raise InvalidInput([call_error(f"items must be a list of {{sku, count, updatedAt?}}, got {type(items).__name__}")])
    if stamped_at is None:
        return items
    return [{**item, "updatedAt": stamped_at} if isinstance(item, dict) and item.get("updatedAt") is None
            else item for item in items]


def _ingest(task_id: str, target: int | str, items: list[Any], checked: Checked) -> None:
    """Write the valid updates; dead-letter each invalid item with its reasons, never drop it.
    Each error says which item it is about (``index``): nothing is read back out of its text."""
    buf = runtime.buffer()
    reasons: dict[int, list[ItemError]] = {}
    for error in checked.errors:
        if error.index is not None:
            reasons.setdefault(error.index, []).append(error)
    now_ms = int(time.time() * 1000)
    for index, why in reasons.items():
        item = items[index] if isinstance(items[index], dict) else {}
        sku, count = item.get("sku"), item.get("count")
        warehouse = next((e.warehouse for e in why if e.warehouse is not None), None)
        record = {"sku": str(sku) if sku is not None else f"item {index}",
                  "count": count if isinstance(count, int) and not isinstance(count, bool) else None,
                  "stamp_ms": None, "first_ms": None, "reason": "invalid input: " + "; ".join(e.reason for e in why),
                  "at_ms": now_ms}
        if warehouse is not None:
            record["warehouse"] = warehouse
        # Keyed by task id and position, so a redelivered message rewrites rather than repeats.
        buf.dead_letter_raw(target, f"invalid:{task_id}:{index}", record)
    if checked.updates:
        queue_updates(buf, target, checked.updates, what=describe_target(buf.target(target)).replace("=", " "))


@app.task(name="ymsync.stocks.flush", ignore_result=True)
def flush(target: str, slot: str = "", due_ms: int = 0) -> None:
    """Internal: one bounded round of pushing for a stock target, sent by the scheduler into one
    of the target's task slots. Stores no result: nobody reads it, and an idle shop runs
    thousands a day. What to do next is written back to the schedule, never re-enqueued here."""
    schedule = runtime.schedule()
    if not slot or not isinstance(target, str):
        return  # a 0.1 message (campaign id, no slot) left in the broker: `ymsync migrate` scheduled its work
    try:
        runtime.refresh_groups(target)  # a campaign the Market reports in a group hands over to it
        # The round renews the slot first (each request again); its lateness figures ride along.
        result = runtime.flusher().flush(target, slot=slot, due_ms=int(due_ms or 0))
    except Exception:
        schedule.release(target, slot)
        schedule.defer(target, 1.0)  # the round failed (Redis, a bug): try again, not never
        raise
    if result.slot_lost:
        return  # the slot expired (this message waited too long, or was redelivered): not ours
    round_ended(schedule, target, slot, result.next_in, freed=result.slot_freed, takeable=result.takeable)


def send_flush(target: str, slot: str, due_ms: int) -> None:
    """The scheduler's send (``slot``: the task slot it claimed); argsrepr keeps Flower readable."""
    flush.apply_async((target, slot, due_ms), argsrepr=f"({describe_group(target)})")


def _publish(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], argsrepr: str, what: str, count: int) -> None:
    """Send one message to the broker within ``YM_PRODUCER_TIMEOUT_S`` (connect, and each reply),
    without Celery's publish retries; a broker that cannot take it raises :class:`Unavailable`.

    ``maybe_queued`` follows where it failed, never the error's wording: a failed connect sent
    nothing; a failure once connected (a reset while the publish or its confirm was on the wire,
    as when the broker stops or crashes) may have left the message with the broker."""
    timeout = get_settings().producer_timeout_s
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0}
    with app.connection_for_write(connect_timeout=timeout, transport_options=options) as connection:
        try:
            connection.default_channel  # connects (and opens the channel) under the options above
        except (OperationalError, redis.RedisError, OSError) as exc:
            raise Unavailable(what, count, f"{type(exc).__name__}: {exc}", maybe_queued=False,
                              where="the Celery broker") from exc
        try:
            task.apply_async(args, kwargs, argsrepr=argsrepr, connection=connection, retry=False)
        except (OperationalError, redis.RedisError, OSError) as exc:
            if isinstance(exc.__cause__, MessageNacked):  # kombu's wrapping of a RabbitMQ publisher-confirm nack
                raise Unavailable(what, count, "the broker refused the message (a publisher-confirm nack)",
                                  maybe_queued=False, where="the Celery broker") from exc
            raise Unavailable(what, count, f"{type(exc).__name__}: {exc}", maybe_queued=True,
                              where="the Celery broker") from exc


def send_business_updates(business_id: int, items: list[dict[str, Any]], warehouse: int | None = None) -> None:
    """``send_updates`` for a business (v3): items carry their ``warehouse`` (or ``warehouse``
    applies to all), each without ``updatedAt`` stamped now. Raises :class:`ymsync.Unavailable`
    when the broker cannot take the message."""
    _publish(update_business, (business_id, stamp_items(items)), {"warehouse": warehouse} if warehouse else {},
             f"(business={business_id}, {len(items)} items)", f"business {business_id}", len(items))


def send_updates(campaign_id: int, items: list[dict[str, Any]]) -> None:
    """Enqueue the public update task, each item without ``updatedAt`` stamped now (at enqueue),
    with a readable, payload-free summary for Flower. Raises :class:`ymsync.Unavailable` when the
    broker cannot take the message within ``YM_PRODUCER_TIMEOUT_S``."""
    _publish(update, (campaign_id, stamp_items(items)), {}, f"(campaign={campaign_id}, {len(items)} SKUs)",
             f"campaign {campaign_id}", len(items))


__all__ = ["flush", "update", "update_business", "send_business_updates", "send_flush", "send_updates"]
