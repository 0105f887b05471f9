"""Retiring SKUs: the shop says a product is gone (issue 21 item 6).

Without this, ymsync keeps a deleted product's records for a day, and ``ymsync reconcile --fix``
finds it "missing" on the Market and queues it again. ``retire_stocks`` forgets a SKU in one
atomic script per chunk (ymsync/store/ingest_lua.py ``RETIRE``): its pending value, its
latest-wins and delivered records and its dead letters go, and the retirement itself becomes the
SKU's newest value, so a late update stamped before it (a delayed message, a reconciliation's
re-queue) loses. Reconciliation compares only what ymsync delivered, so a retired SKU is never
compared, nor re-queued.

An optional final count (0: "none left") is queued in the same step as an ordinary update and
sent as one; the SKU is marked retired with that value's stamp, so its delivery leaves no record
(and clears the mark), while a failure is kept as a dead letter like any value's. Ordering is
the buffer's: the final value is the newest, so nothing queued before it can overtake it, and a
value of the SKU still in flight settles without recording anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.group_target import campaign_stock_target
from ymsync.engine.producer import (InvalidInput, ItemError, call_error, check_campaign, check_listed,
                                    default_buffer, unavailable_as)
from ymsync.engine.targets import business_target, item_key
from ymsync.market.schemas import MAX_COUNT, show, sku_problem
from ymsync.store import keys
from ymsync.store.ingest_lua import RETIRE

CHUNK = 1000


@dataclass(frozen=True)
class RetireResult:
    retired: int = 0  # SKUs (or warehouse and SKU pairs) retired
    pending_dropped: int = 0  # values that were waiting to be sent and now will not be (no final count)
    dead_letters_dropped: int = 0
    final_count: int | None = None  # queued for each retired SKU, to be sent before its records go


def _final(final_count: object) -> int | None:
    if final_count is None:
        return None
    if isinstance(final_count, bool) or not isinstance(final_count, int) or not 0 <= final_count <= MAX_COUNT:
        raise InvalidInput([call_error(f"final_count must be an integer between 0 and {MAX_COUNT} or None, "
                                       f"got {show(final_count)}", field="final_count")])
    return final_count


def _skus(skus: object, warehouse: int | None = None, *, business: bool = False) -> list[str]:
    """Validated SKU names (business: ``warehouse\\x1fsku`` keys); InvalidInput lists every problem."""
    if isinstance(skus, (str, bytes, Mapping)) or not isinstance(skus, Iterable):
        raise InvalidInput([call_error(f"skus must be a list of SKUs, got {show(skus)}")])
    out: list[str] = []
    errors: list[ItemError] = []
    for index, raw in enumerate(skus):
        wh: Any = warehouse
        sku: Any = raw
        if business and isinstance(raw, Mapping):
            sku, wh = raw.get("sku"), raw.get("warehouse", warehouse)
        trimmed = sku.strip() if isinstance(sku, str) else sku
        problem = sku_problem(trimmed)
        if problem:
            errors.append(ItemError(index, f"item {index}", "sku", problem))
            continue
        if business:
            if isinstance(wh, bool) or not isinstance(wh, int) or wh < 1:
                errors.append(ItemError(index, f"item {index}", "warehouse", "warehouse must be a positive integer "
                                        f"(a warehouse field, or warehouse=), got {show(wh)}", sku=trimmed))
                continue
            out.append(item_key(wh, trimmed))
        else:
            out.append(trimmed)
    if errors:
        raise InvalidInput(errors)
    return out


def retire_target(buffer: StockBuffer, target: str, skus: list[str], final_count: int | None,
                  what: str) -> RetireResult:
    """Retire ``skus`` of a target (names as the buffer keys them); Unavailable if Redis cannot."""
    k = keys.target_keys(target)
    script = buffer.redis.register_script(RETIRE)
    totals = [0, 0, 0]
    with unavailable_as(what, len(skus)):
        for start in range(0, len(skus), CHUNK):
            got = buffer.call_in_generation(
                script, target, [k["buf"], k["queue"], k["stats"], k["busy"], k["dead"], k["invalid"], k["retired"],
                             k["flight"]],
                (keys.hwm, keys.delivered), [buffer.horizon_ms, "" if final_count is None else final_count,
                                             *skus[start:start + CHUNK]])
            totals = [a + int(b) for a, b in zip(totals, got)]
        if final_count is not None and totals[0]:
            buffer.schedule.activate(target, buffer.flush_delay_s)
        elif totals[0]:
            buffer.schedule.activate_registry_only(target)
    return RetireResult(totals[0], totals[1], totals[2], final_count)


def retire_stocks(campaign_id: int, skus: Iterable[str], final_count: int | None = None, *,
                  buffer: StockBuffer | None = None) -> RetireResult:
    """Say that these SKUs of a campaign are gone: their records go and reconciliation no longer
    re-queues them; ``final_count`` (e.g. 0) is sent first as their last value. Raises
    :class:`InvalidInput` on bad input and :class:`ymsync.Unavailable` when Redis cannot take it."""
    campaign_id = check_listed(check_campaign(campaign_id))
    final, names = _final(final_count), _skus(skus)
    return retire_target(buffer or default_buffer(), campaign_stock_target(campaign_id), names, final,
                         f"campaign {campaign_id} (retiring)")


def retire_business_stocks(business_id: int, skus: Iterable[str | Mapping[str, Any]], *,
                           warehouse: int | None = None, final_count: int | None = None,
                           buffer: StockBuffer | None = None) -> RetireResult:
    """``retire_stocks`` for a business (v3): each SKU on ``warehouse``, or items
    ``{"sku", "warehouse"}`` naming their own."""
    business_id = check_campaign(business_id, "business_id")
    final, names = _final(final_count), _skus(skus, warehouse, business=True)
    return retire_target(buffer or default_buffer(), business_target(business_id), names, final,
                         f"business {business_id} (retiring)")


__all__ = ["RetireResult", "retire_business_stocks", "retire_stocks", "retire_target"]
