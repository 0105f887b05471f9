"""Django integration: ``INSTALLED_APPS += ["ymsync.contrib.django"]`` (``pip install 'ymsync[django]'``).

- Settings: the ``YMSYNC`` Django setting (a dict of ymsync's variables, e.g. ``{"REDIS_URL": ...}``)
  over the environment, checked when the app loads (:class:`apps.YmsyncConfig`).
- :func:`push_on_commit` / :func:`push_business_on_commit`: check the items now (``InvalidInput``
  rolls the transaction back with the rest of the request's work) and queue them only when the
  surrounding transaction commits; nothing when it rolls back. Outside a transaction (autocommit)
  they queue at once, as Django runs ``on_commit`` callbacks then.
- :func:`push_queryset_on_commit`: after the commit, read the rows' committed values and queue
  them: for ``bulk_update`` and ``QuerySet.update`` (which send no signals, and whose ``F()``
  values only the database knows).
- ``manage.py ymsync_push``: re-push a whole catalogue from a model (unchanged values send nothing).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from django.db import transaction

from ymsync.deferred import prepared_business_push, prepared_push


def push_on_commit(campaign_id: int, items: Iterable[Mapping[str, Any]], *, using: str | None = None,
                   **options: Any) -> None:
    """Queue ``items`` for the campaign when the current transaction (on ``using``) commits."""
    transaction.on_commit(prepared_push(campaign_id, items, **options), using=using)


def push_business_on_commit(business_id: int, items: Iterable[Mapping[str, Any]], *, warehouse: int | None = None,
                            using: str | None = None, **options: Any) -> None:
    """The same for a business (v3 cabinets): items name their ``warehouse``, or ``warehouse`` applies."""
    transaction.on_commit(prepared_business_push(business_id, items, warehouse=warehouse, **options), using=using)


def catalogue_items(queryset: Any, *, sku: str = "sku", count: str = "stock",
                    warehouse: str | None = None) -> list[dict[str, Any]]:
    """``{sku, count[, warehouse]}`` for every row of ``queryset`` (read now, in one query)."""
    fields = [sku, count] + ([warehouse] if warehouse else [])
    items = []
    for row in queryset.values_list(*fields):
        item = {"sku": str(row[0]), "count": row[1]}
        if warehouse:
            item["warehouse"] = row[2]
        items.append(item)
    return items


def push_queryset_on_commit(queryset: Any, *, campaign_id: int | None = None, business_id: int | None = None,
                            sku: str = "sku", count: str = "stock", warehouse: str | None = None,
                            using: str | None = None) -> None:
    """After the commit, queue the committed stock of ``queryset``'s rows (to a campaign, or to a
    business with a ``warehouse`` field or argument-less per-row warehouses)."""
    if (campaign_id is None) == (business_id is None):
        raise ValueError("name exactly one of campaign_id and business_id")

    def push() -> None:
        from ymsync import push_business_stocks, push_stocks

        items = catalogue_items(queryset.all(), sku=sku, count=count, warehouse=warehouse)
        if not items:
            return
        if campaign_id is not None:
            push_stocks(campaign_id, items)
        else:
            push_business_stocks(business_id, items)  # type: ignore[arg-type]

    transaction.on_commit(push, using=using or queryset.db)


__all__ = ["catalogue_items", "push_business_on_commit", "push_on_commit", "push_queryset_on_commit"]
