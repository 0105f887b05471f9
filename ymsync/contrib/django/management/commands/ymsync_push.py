"""``manage.py ymsync_push --model shop.Product --campaign 1001``: re-push a whole catalogue.

The repair path after anything that may have lost updates (a Redis outage, a bulk edit made
without the hooks): every row's current stock is queued, 2,000 at a time. ymsync sends only what
differs from what the Market was last given, so a catalogue of unchanged SKUs sends nothing.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from ymsync import InvalidInput, push_business_stocks, push_stocks
from ymsync.contrib.django import catalogue_items

CHUNK = 2000


class Command(BaseCommand):
    help = "Queue the current stock of every row of a model (or a filtered part) for the Market."

    def add_arguments(self, parser: Any) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--campaign", type=int, help="a v2 campaign id")
        target.add_argument("--business", type=int, help="a v3 business id (rows name a warehouse)")
        parser.add_argument("--model", required=True, help="app_label.Model holding the stock")
        parser.add_argument("--sku-field", default="sku")
        parser.add_argument("--count-field", default="stock")
        parser.add_argument("--warehouse-field", help="with --business: the field naming the warehouse")
        parser.add_argument("--warehouse", type=int, help="with --business: one warehouse for every row")
        parser.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                            help="only rows matching (repeatable; Django lookups like active=1)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            model = apps.get_model(opts["model"])
        except (LookupError, ValueError) as exc:
            raise CommandError(f"--model {opts['model']}: {exc}") from None
        lookups = {}
        for pair in opts["filter"]:
            field, sep, value = pair.partition("=")
            if not sep:
                raise CommandError(f"--filter expects FIELD=VALUE, got {pair!r}")
            lookups[field] = value
        queryset = model._default_manager.filter(**lookups).order_by("pk")
        if opts["business"] and not (opts["warehouse_field"] or opts["warehouse"]):
            raise CommandError("--business needs --warehouse-field or --warehouse")
        items = catalogue_items(queryset, sku=opts["sku_field"], count=opts["count_field"],
                                warehouse=opts["warehouse_field"])
        queued = unchanged = 0
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            try:
                if opts["campaign"]:
                    result = push_stocks(opts["campaign"], chunk)
                else:
                    result = push_business_stocks(opts["business"], chunk, warehouse=opts["warehouse"])
            except InvalidInput as exc:
                raise CommandError("; ".join(exc.errors[:20])) from None
            queued += result.accepted
            unchanged += result.unchanged
        self.stdout.write(f"{len(items)} rows: {queued} queued, {unchanged} unchanged (already at the Market)")
