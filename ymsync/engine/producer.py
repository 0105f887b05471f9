"""The producer side: validate stock updates, then write them into the StockBuffer.

The buffer *is* the queue for stock values: one atomic, pipelined Redis write per thousand
updates (a Celery message per update could not carry tens of thousands a second), after
which a worker's scheduler is woken to enqueue the flush task. Nothing is written unless
every item is valid, unless the caller asks to skip the invalid ones.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import redis
from marshmallow import ValidationError

from ymsync.engine.buffer import IngestResult, StockBuffer
from ymsync.market.schemas import (MAX_COUNT, PRODUCER_CLOCK_SKEW, StockUpdateSchema, flatten_errors, parse_stamp, show,
                             sku_problem, utcnow)
from ymsync.config.cabinets import CabinetNotFound, Cabinets
from ymsync.config.settings import get_settings
from ymsync.engine.group_target import campaign_stock_target
from ymsync.engine.targets import business_target, item_key
from ymsync.errors import Unavailable, YmsyncError
from ymsync.store.client import state_client, watch_sends

_SCHEMA = StockUpdateSchema()
# Printable ASCII, 1 to 255 characters, no space at either end: a SKU sku_problem always accepts.
_PLAIN_SKU = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")
OLDEST_STAMP = datetime(2000, 1, 1, tzinfo=timezone.utc)


class ItemError(str):
    """One refused update, as data: ``index`` (its position in the items given; None when the
    problem is the call itself), ``sku`` and ``warehouse`` where known, ``field`` (None: the item
    as a whole) and ``message``. It is also its readable line, ``"<label>: <field>: <message>"``,
    so printing and comparing errors works as it always did; code reads the attributes instead
    of splitting the line (a label or SKU may itself contain ": ")."""

    index: int | None
    label: str
    field: str | None
    message: str
    sku: str | None
    warehouse: int | None

    def __new__(cls, index: int | None, label: str, field: str | None, message: str, *,
                sku: str | None = None, warehouse: int | None = None) -> "ItemError":
        reason = f"{field}: {message}" if field else message
        shown = _located(label, sku, warehouse)
        self = super().__new__(cls, f"{shown}: {reason}" if shown else reason)
        self.index, self.label, self.field, self.message = index, label, field, message
        self.sku, self.warehouse = sku, warehouse
        return self

    @property
    def reason(self) -> str:
        """The line without its label: ``"count: count must be ..."``."""
        return f"{self.field}: {self.message}" if self.field else self.message

    def moved(self, index: int | None, *, warehouse: int | None = None) -> "ItemError":
        """The same error for the item at ``index`` of the caller's list (and its warehouse)."""
        return ItemError(index, self.label, self.field, self.message, sku=self.sku,
                         warehouse=self.warehouse if warehouse is None else warehouse)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "sku": self.sku, "warehouse": self.warehouse,
                "field": self.field, "message": self.message}

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (and copies) as itself, attributes included
        return (_item_error, (self.index, self.label, self.field, self.message, self.sku, self.warehouse))


def _located(label: str, sku: str | None, warehouse: int | None) -> str:
    """``item 10 (SKU "A-1", warehouse 501)``: a position alone does not say which product failed.
    A file's ``line 7`` is left as it is (the line shows the SKU)."""
    # A SKU that is itself the problem (blank, control characters, broken Unicode) is shown by the
    # message, quoted safely; here only a valid one is named.
    named = sku.strip() if isinstance(sku, str) and sku_problem(sku.strip()) is None else None
    if not label.startswith("item ") or named is None and warehouse is None:
        return label
    parts = ([f"SKU {json.dumps(named, ensure_ascii=False)}"] if named else []) + \
        ([f"warehouse {warehouse}"] if warehouse is not None else [])
    return f"{label} ({', '.join(parts)})"


def _item_error(index: int | None, label: str, field: str | None, message: str, sku: str | None,
                warehouse: int | None) -> ItemError:
    return ItemError(index, label, field, message, sku=sku, warehouse=warehouse)


def call_error(message: str, field: str | None = None) -> ItemError:
    """A problem with the call as a whole (its items argument, its campaign), not with one item."""
    return ItemError(None, "", field, message)


class InvalidInput(YmsyncError, ValueError):
    """Some updates are invalid, nothing queued; ``errors`` holds one :class:`ItemError` per
    problem (its item's index, SKU, warehouse, field and message), readable as text too."""

    def __init__(self, errors: Sequence[str]) -> None:
        if isinstance(errors, str):  # rebuilt from its message alone (Celery's JSON of an exception)
            errors = [errors]
        self.errors: list[ItemError] = [e if isinstance(e, ItemError) else call_error(str(e)) for e in errors]
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} invalid stock update(s), nothing queued: "
                         + "; ".join(self.errors[:20]) + more)

    def __reduce__(self) -> tuple[Any, ...]:  # Celery and multiprocessing pickle exceptions
        return (type(self), (self.errors,))


@dataclass(frozen=True)
class Checked:
    updates: list[tuple[str, int, int | None]]  # (sku, count, stamp_ms or None)
    errors: list[ItemError]


def check_updates(items: Iterable[Mapping[str, Any]], labels: Iterable[str] | None = None, *,
                  horizon_s: float | None = None, require_stamp: bool = False) -> Checked:
    """Validate items (``{sku, count, updatedAt?}``); ``labels`` name each one in errors.

    ``horizon_s`` (default: the ``YM_STATE_HORIZON`` setting): an ``updatedAt`` older than this
    is refused. The Market refuses stamps older than a day, and the buffer keeps what orders
    values only that long, so such a value could neither be sent with its stamp nor ordered.
    ``require_stamp``: an item without ``updatedAt`` is refused (the Celery task: it cannot know
    when a value without one was current)."""
    updates: list[tuple[str, int, int | None]] = []
    errors: list[ItemError] = []
    label_iter = iter(labels) if labels is not None else None
    now = utcnow()
    latest = now + PRODUCER_CLOCK_SKEW
    horizon = timedelta(seconds=get_settings().state_horizon_s if horizon_s is None else horizon_s)
    oldest = now - horizon
    oldest_ms = int(oldest.timestamp() * 1000)
    for index, item in enumerate(items):
        label = next(label_iter) if label_iter is not None else f"item {index}"
        sku = item.get("sku") if isinstance(item, Mapping) and isinstance(item.get("sku"), str) else None

        def refuse(field: str | None, message: str) -> None:
            errors.append(ItemError(index, label, field, message, sku=sku))

        fast = _plainly_valid(item, latest)
        if fast is not None and fast[2] is None and require_stamp:
            refuse("updatedAt", _STAMP_REQUIRED)
            continue
        if fast is not None and (fast[2] is None or fast[2] >= oldest_ms):
            updates.append(fast)
            continue
        if not isinstance(item, Mapping):
            refuse(None, f"expected an object with sku, count and updatedAt, got {show(item)}")
            continue
        try:
            data = _SCHEMA.load(item)
        except ValidationError as exc:
            for field, message in _field_messages(exc.messages):
                refuse(field, message)
            continue
        stamp = data.get("updatedAt")
        if stamp is None and require_stamp:
            refuse("updatedAt", _STAMP_REQUIRED)
            continue
        if stamp is not None and stamp < OLDEST_STAMP:
            # The buffer orders values by epoch milliseconds and cannot hold a negative one; no
            # real stock level dates from before this anyway (a zeroed or mangled clock does).
            refuse("updatedAt", f"updatedAt is before {OLDEST_STAMP.date()}: {show(item.get('updatedAt'))}")
            continue
        if stamp is not None and stamp < oldest:
            refuse("updatedAt", f"updatedAt is older than {_hours(horizon)} "
                   f"(the Market refuses stamps older than a day): {show(item.get('updatedAt'))}")
            continue
        updates.append((data["sku"], data["count"], int(stamp.timestamp() * 1000) if stamp else None))
    return Checked(updates, errors)


_STAMP_REQUIRED = ("updatedAt is required here (when the value was current; send_updates sets it at enqueue), "
                   "got none")


def _field_messages(messages: Any) -> list[tuple[str | None, str]]:
    """The schema's ``{field: [message, ...]}`` as (field, message) pairs; ``_schema``: no field."""
    if not isinstance(messages, Mapping):
        return [(None, line) for line in flatten_errors(messages)]
    return [(None if key == "_schema" else str(key), line) for key, value in messages.items()
            for line in flatten_errors(value)]


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h" if hours >= 1 else f"{span.total_seconds():g} s"


def _plainly_valid(item: Any, latest: datetime) -> tuple[str, int, int | None] | None:
    """What the checks above accept, in one pass (~1 us an item against ~10 us through the
    schema); None at the first doubt, and the schema then decides and words the error.
    ``latest``: the furthest-ahead stamp allowed (now + clock skew)."""
    if type(item) is not dict:
        return None
    sku, count = item.get("sku"), item.get("count")
    if type(sku) is not str or type(count) is not int or not 0 <= count <= MAX_COUNT:
        return None
    stamp_ms = None
    if len(item) == 3 and "updatedAt" in item:
        raw = item["updatedAt"]
        if raw is not None:
            stamp = parse_stamp(raw)
            if stamp is None or stamp > latest or stamp < OLDEST_STAMP:
                return None
            stamp_ms = int(stamp.timestamp() * 1000)
    elif len(item) != 2:
        return None
    sku = sku.strip()
    if _PLAIN_SKU.fullmatch(sku) is None and sku_problem(sku) is not None:
        return None
    return sku, count, stamp_ms


_stamp_lock = threading.Lock()
_last_stamp_ms = 0


def enqueue_stamp_ms() -> int:
    """Now (ms), strictly after every stamp this process gave before: two updates of one SKU
    enqueued one after the other never share a stamp, so the later always wins."""
    global _last_stamp_ms
    with _stamp_lock:
        _last_stamp_ms = max(int(time.time() * 1000), _last_stamp_ms + 1)
        return _last_stamp_ms


def stamp_items(items: Iterable[Any]) -> list[Any]:
    """Copies of ``items`` with ``updatedAt`` set where it is missing (or null) to the time of
    this call: the moment the update is enqueued is the moment its value was current. Items
    that are not objects are passed through for the task to refuse with a reason."""
    stamp = datetime.fromtimestamp(enqueue_stamp_ms() / 1000, timezone.utc).isoformat(timespec="milliseconds")
    return [{**item, "updatedAt": stamp} if isinstance(item, Mapping) and item.get("updatedAt") is None
            else item for item in items]


def check_items(items: object) -> Iterable[Mapping[str, Any]]:
    """``items`` itself must be a list (any iterable) of objects: a string, a mapping or a
    number is a caller's mistake to name, not something to iterate or crash on."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise InvalidInput([call_error(f"items must be a list of {{sku, count, updatedAt?}} objects, got {show(items)}")])
    return items


def check_campaign(campaign_id: object, name: str = "campaign_id") -> int:
    if isinstance(campaign_id, bool) or not isinstance(campaign_id, int) or campaign_id < 1:
        raise InvalidInput([call_error(f"{name} must be an integer >= 1, got {show(campaign_id)}")])
    return campaign_id


def check_listed(campaign_id: int, cabinets: Cabinets | None = None) -> int:
    """Refuse a campaign that no configured cabinet lists: its values could only go out with a
    token that does not serve it. A process with no cabinet configured (a shop's web app that only
    sets REDIS_URL) cannot tell and lets it through; the workers never send it with a foreign token."""
    cabinets = get_settings().cabinets if cabinets is None else cabinets
    if cabinets:
        try:
            cabinets.by_campaign(campaign_id)
        except CabinetNotFound as exc:
            raise InvalidInput([call_error(f"campaign {campaign_id} is refused: {exc}", field="campaign_id")]) from None
    return campaign_id


@lru_cache(maxsize=4)
def _buffer_for(redis_url: str, timeout_s: float) -> StockBuffer:
    return StockBuffer.from_settings(state_client(get_settings(), timeout_s=timeout_s, bounded=True), get_settings())


def default_buffer() -> StockBuffer:
    """The process's buffer on ``REDIS_URL``: no retries, ``YM_PRODUCER_TIMEOUT_S`` per wait."""
    settings = get_settings()
    return _buffer_for(settings.redis_url, settings.producer_timeout_s)


def queue_updates(buffer: StockBuffer, target: int | str, updates: Sequence[tuple[str, int, int | None]], *,
                  force: bool = False, what: str) -> IngestResult:
    """``buffer.ingest``, with any Redis failure raised as :class:`Unavailable` naming ``what``
    (``campaign 1001``) and how many updates: never a raw redis-py error, never a silent loss.
    A failure once a command had left this process is ambiguous (Redis may have run the script
    and lost only its answer), and says so; a re-push is then safe, as latest-wins drops a repeat."""
    with unavailable_as(what, len(updates)):
        return buffer.ingest(target, updates, force=force)


@contextmanager
def unavailable_as(what: str, count: int) -> Iterator[None]:
    """Any Redis failure inside is raised as :class:`Unavailable` for ``count`` updates of ``what``."""
    with watch_sends() as sends:
        try:
            yield
        except redis.RedisError as exc:
            # An error reply (OOM, READONLY, a script refused) is Redis saying no: nothing ran. A
            # failed connect sent nothing, unless an earlier command of this call had gone out (only
            # the producer's own client records that; any other is judged by its error alone).
            answered = isinstance(exc, redis.ResponseError)
            at_connect = "connecting" in str(exc).lower()
            raise Unavailable(what, count, f"{type(exc).__name__}: {exc}",
                              maybe_queued=not answered and (sends.sent or not at_connect)) from exc


def push_stocks(campaign_id: int, items: Iterable[Mapping[str, Any]], *, skip_invalid: bool = False,
                force: bool = False, buffer: StockBuffer | None = None) -> IngestResult:
    """Queue stock updates for a campaign. Raises :class:`InvalidInput` (nothing queued) on bad input
    or when no configured cabinet lists the campaign, and :class:`ymsync.Unavailable` when Redis
    cannot take them within ``YM_PRODUCER_TIMEOUT_S`` (connect, and each reply).

    A value equal to the one the Market was last given (with nothing newer queued) is not sent
    again unless ``force``; it is counted in ``IngestResult.unchanged``.
    """
    campaign_id = check_listed(check_campaign(campaign_id))
    checked = check_updates(check_items(items))
    if checked.errors and not skip_invalid:
        raise InvalidInput(checked.errors)
    # A campaign of a warehouse group: the group's one target (latest stamp wins across the group).
    result = queue_updates(buffer or default_buffer(), campaign_stock_target(campaign_id), checked.updates,
                           force=force, what=f"campaign {campaign_id}")
    return replace(result, refused=tuple(checked.errors)) if checked.errors else result


# --- business targets (v3): values addressed by (warehouse, SKU) ---------------------------------

WarehouseCheck = Callable[[int, Sequence[int]], Mapping[int, str]]  # business, ids -> {id: why refused}


def check_business_updates(items: Iterable[Any], labels: Iterable[str] | None = None, *,
                           warehouse: int | None = None, business_id: int | None = None,
                           warehouses: WarehouseCheck | None = None, horizon_s: float | None = None,
                           require_stamp: bool = False) -> Checked:
    """Validate ``{sku, count, updatedAt?, warehouse?}`` items for a business; ``warehouse`` is the
    default for items without one. Updates come back keyed ``"<warehouse>\\x1f<sku>"``.
    ``warehouses`` (the cabinet's warehouse directory) refuses unknown or unavailable ones."""
    items = list(items)
    labels = list(labels) if labels is not None else [f"item {i}" for i in range(len(items))]
    errors: list[ItemError] = []
    kept: list[tuple[int, dict[str, Any], int]] = []  # (index in items, item without warehouse, warehouse)
    for index, (label, item) in enumerate(zip(labels, items)):
        if not isinstance(item, Mapping):
            errors.append(ItemError(index, label, None, "expected an object with sku, count, warehouse and "
                                    f"updatedAt, got {show(item)}"))
            continue
        sku = item.get("sku") if isinstance(item.get("sku"), str) else None
        wh = item.get("warehouse", warehouse)
        if wh is None:
            wh = warehouse
        if isinstance(wh, bool) or not isinstance(wh, int) or wh < 1:
            got = "none (a warehouse field or column, or --warehouse)" if wh is None else show(wh)
            errors.append(ItemError(index, label, "warehouse", "warehouse must be a positive integer (the "
                                    f"partnerWarehouseId), got {got}", sku=sku))
            continue
        kept.append((index, {k: v for k, v in item.items() if k != "warehouse"}, wh))
    refused: Mapping[int, str] = {}
    if warehouses is not None and business_id is not None and kept:
        refused = warehouses(business_id, sorted({wh for _, _, wh in kept}))
    checked = check_updates([it for _, it, _ in kept], [labels[i] for i, _, _ in kept], horizon_s=horizon_s,
                            require_stamp=require_stamp)
    # check_updates numbers the kept items; each error goes back to its item's index and warehouse.
    item_errors = [e.moved(kept[e.index][0], warehouse=kept[e.index][2]) for e in checked.errors]
    failed = {e.index for e in checked.errors}
    updates: list[tuple[str, int, int | None]] = []
    valid = iter(checked.updates)
    for position, (index, _, wh) in enumerate(kept):
        if position in failed:
            continue
        sku, count, stamp = next(valid)
        if wh in refused:
            errors.append(ItemError(index, labels[index], "warehouse", refused[wh], sku=sku, warehouse=wh))
            continue
        updates.append((item_key(wh, sku), count, stamp))
    return Checked(updates, errors + item_errors)


def push_business_stocks(business_id: int, items: Iterable[Mapping[str, Any]], *, warehouse: int | None = None,
                         skip_invalid: bool = False, force: bool = False, buffer: StockBuffer | None = None,
                         warehouses: WarehouseCheck | None = None) -> IngestResult:
    """Queue stock updates for a business (v3 cabinets): each item names its ``warehouse`` (or the
    ``warehouse`` argument applies). Latest wins per (warehouse, SKU). Raises
    :class:`InvalidInput` (nothing queued) on bad input, unless ``skip_invalid``, and
    :class:`ymsync.Unavailable` as ``push_stocks`` does."""
    business_id = check_campaign(business_id, "business_id")
    checked = check_business_updates(check_items(items), warehouse=warehouse, business_id=business_id,
                                     warehouses=warehouses)
    if checked.errors and not skip_invalid:
        raise InvalidInput(checked.errors)
    result = queue_updates(buffer or default_buffer(), business_target(business_id), checked.updates, force=force,
                           what=f"business {business_id}")
    return replace(result, refused=tuple(checked.errors)) if checked.errors else result
