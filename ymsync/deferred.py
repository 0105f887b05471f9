"""Validate now, queue later: the framework-neutral half of "push when the transaction commits".

A web request that changes stock inside a database transaction must not queue the new value
before the transaction commits (a rollback would leave the Market holding a value the database
never had), and must learn about invalid input while it can still roll back. So
:func:`prepared_push` checks the items at once (raising :class:`ymsync.InvalidInput`, nothing
queued) and returns the push as a callable for the framework's after-commit hook: Django's
``transaction.on_commit`` (``ymsync.contrib.django``), SQLAlchemy's ``after_commit`` event, or a
plain call after ``commit()``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from ymsync.engine.producer import (InvalidInput, check_business_updates, check_campaign, check_items,
                                    check_updates, push_business_stocks, push_stocks)

Push = Callable[[], Any]  # runs the push; returns its IngestResult


def prepared_push(campaign_id: int, items: Iterable[Mapping[str, Any]], **options: Any) -> Push:
    """Check ``items`` for ``campaign_id`` now; the returned callable queues them (``push_stocks``)."""
    campaign = check_campaign(campaign_id)
    frozen = [dict(item) if isinstance(item, Mapping) else item for item in check_items(items)]
    checked = check_updates(frozen)
    if checked.errors and not options.get("skip_invalid"):
        raise InvalidInput(checked.errors)
    return lambda: push_stocks(campaign, frozen, **options)


def prepared_business_push(business_id: int, items: Iterable[Mapping[str, Any]], *, warehouse: int | None = None,
                           **options: Any) -> Push:
    """The same for a business (v3): each item names its ``warehouse`` or ``warehouse`` applies. The
    warehouses themselves are checked against the Market's list when the push runs."""
    business = check_campaign(business_id, "business_id")
    frozen = [dict(item) if isinstance(item, Mapping) else item for item in check_items(items)]
    checked = check_business_updates(frozen, warehouse=warehouse, business_id=business)
    if checked.errors and not options.get("skip_invalid"):
        raise InvalidInput(checked.errors)
    return lambda: push_business_stocks(business, frozen, warehouse=warehouse, **options)


__all__ = ["Push", "prepared_business_push", "prepared_push"]
