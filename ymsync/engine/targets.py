"""Stock targets: where one request goes and what one quota counts.

| target | name | value key | request | quota (unit) | parallel gate |
| --- | --- | --- | --- | --- | --- |
| campaign (v2) | ``c1001`` | SKU | ``PUT v2/campaigns/{c}/offers/stocks`` | ``update_stocks`` (SKUs) | ``c1001`` |
| business (v3) | ``b7`` | (warehouse, SKU) | ``POST v3/businesses/{b}/offers/stocks/update`` | ``update_stocks_v3`` (requests) | ``b7`` |

The parallel gate is the campaign's or the business's identity (``keys.lease``): reads, the
warehouse directory and reports of the same campaign or business lease the same gate.

The engine (buffer, schedule, failure policy) works on targets; a target kind supplies the key of
a value, the request and the quota's unit. A business target's values are keyed
``"<warehouse>\\x1f<sku>"``: the unit separator can never be part of a SKU (control characters are
refused), so the key splits back unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from ymsync.market.models import StockLevel, UpdateResult
from ymsync.store import keys

SEP = "\x1f"


def business_target(business_id: int) -> str:
    return keys.business_target(business_id)


def item_key(warehouse_id: int, sku: str) -> str:
    return f"{int(warehouse_id)}{SEP}{sku}"


def split_key(key: str) -> tuple[int, str]:
    warehouse, _, sku = key.partition(SEP)
    return int(warehouse), sku


@dataclass(frozen=True)
class Target:
    name: str

    @property
    def kind(self) -> str:
        return "business" if self.name.startswith("b") else "campaign"

    @property
    def id(self) -> int:
        return int(self.name[1:])

    @property
    def per_request(self) -> bool:
        """The quota counts requests (v3), not SKUs (v2): fill every request."""
        return self.kind == "business"

    @property
    def method(self) -> str:
        """The quota's name in settings (YM_QUOTA_<NAME>)."""
        return "update_stocks_v3" if self.kind == "business" else "update_stocks"

    @property
    def quota_key(self) -> str:
        # Campaign quotas keep their historical key (the campaign id), shared with stock reads.
        return self.name if self.kind == "business" else str(self.id)

    @property
    def gate(self) -> str:
        """The parallel cap this target's requests count against (shared with reads and reports)."""
        return self.name

    def label(self, key: str) -> str:
        """A value's key as people read it: ``SKU`` or ``SKU@warehouse``."""
        if self.kind != "business":
            return key
        warehouse, sku = split_key(key)
        return f"{sku}@{warehouse}"

    def sku_of(self, key: str) -> str:
        return split_key(key)[1] if self.kind == "business" else key

    def send(self, client, entries: Sequence[tuple[str, int, datetime | None]]) -> UpdateResult:
        """One request with ``(key, count, stamp)`` entries, through ``client`` (a MarketClient)."""
        if self.kind == "business":
            from ymsync.market.models import WarehouseStockLevel

            items = []
            for key, count, stamp in entries:
                warehouse, sku = split_key(key)
                items.append(WarehouseStockLevel(sku, warehouse, count, stamp))
            return client.update_stocks_v3(self.id, items, validate=False)
        return client.update_stocks(self.id, [StockLevel(key, count, stamp) for key, count, stamp in entries],
                                    validate=False)


def target(name_or_campaign: str | int) -> Target:
    return Target(name_or_campaign if isinstance(name_or_campaign, str) else keys.campaign_target(name_or_campaign))
