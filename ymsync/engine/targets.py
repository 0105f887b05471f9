"""Stock targets: where one request goes and what one quota counts.

| target | name | value key | request | quota (unit) | parallel gate |
| --- | --- | --- | --- | --- | --- |
| campaign (v2) | ``c1001`` | SKU | ``PUT v2/campaigns/{c}/offers/stocks`` | ``update_stocks`` (SKUs) | ``c1001`` |
| business (v3) | ``b7`` | (warehouse, SKU) | ``POST v3/businesses/{b}/offers/stocks/update`` | ``update_stocks_v3`` (requests) | ``b7`` |
| warehouse group (v2) | ``g1001`` | SKU | through one campaign of the group (group_target.py) | that campaign's | that campaign's |

The parallel gate is the campaign's or the business's identity (``keys.lease``): reads, the
warehouse directory and reports of the same campaign or business lease the same gate.

The engine (buffer, schedule, failure policy) works on targets; a target kind (a sibling class
below) supplies the key of a value, the request, the quota and its unit, and the parallel cap. A business target's values are keyed
``"<warehouse>\\x1f<sku>"``: the unit separator can never be part of a SKU (control characters are
refused), so the key splits back unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from ymsync.market.models import UpdateResult
from ymsync.market.wire import EncodedBody, business_stock_body, campaign_stock_body
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
    """What the engine needs of a target kind: its identity (``name``, e.g. ``c1001``), the key
    shape of its values, its quota (``method`` at ``quota_key``, counting SKUs or requests), its
    parallel cap (``gate``) and how one request is sent. Kinds are sibling classes registered by
    their name's prefix in ``KINDS``; :func:`target` is the one place a name becomes a target."""

    name: str
    kind: ClassVar[str]  # how people and metrics name the kind ("campaign", "business")
    method: ClassVar[str]  # the quota's name in settings (YM_QUOTA_<NAME>)
    per_request: ClassVar[bool]  # the quota counts requests (fill every request), not values

    @property
    def id(self) -> int:
        return int(self.name[1:])

    @property
    def quota_key(self) -> str:
        return self.name

    @property
    def gate(self) -> str:
        """The parallel cap this target's requests count against (shared with reads and reports)."""
        return self.name

    def label(self, key: str) -> str:
        """A value's key as people read it."""
        return key

    def sku_of(self, key: str) -> str:
        return key

    def carriers(self) -> tuple[int, ...]:
        """Campaigns that may each carry this target's requests (a warehouse group's); () for one path."""
        return ()

    def carried_by(self, campaign_id: int) -> "Target":
        """This target sending through ``campaign_id`` (one of :meth:`carriers`)."""
        return self

    def send(self, client, entries: Sequence[tuple[str, int, int | None]]) -> UpdateResult:
        """One request with ``(key, count, stamp in epoch ms)`` entries, through ``client`` (a
        MarketClient). The body is built straight from the tuples (ymsync.market.wire); the
        producer validated every value, so the client does not validate it again."""
        raise NotImplementedError

    def send_campaign_body(self, client, body: EncodedBody) -> UpdateResult:
        """One request with a campaign-level body already encoded (``wire.campaign_stock_bytes``),
        for the kinds whose values go as one (``campaign_body``)."""
        raise NotImplementedError

    # Values sent as a campaign's ``PUT v2/campaigns/{id}/offers/stocks`` body, keyed by SKU.
    campaign_body: ClassVar[bool] = False


@dataclass(frozen=True)
class CampaignTarget(Target):
    """A campaign (v2): values keyed by SKU, ``PUT v2/campaigns/{id}/offers/stocks``."""

    kind: ClassVar[str] = "campaign"
    method: ClassVar[str] = "update_stocks"
    per_request: ClassVar[bool] = False

    @property
    def quota_key(self) -> str:
        # Campaign quotas keep their historical key (the campaign id), shared with stock reads.
        return str(self.id)

    campaign_body: ClassVar[bool] = True

    def send(self, client, entries: Sequence[tuple[str, int, int | None]]) -> UpdateResult:
        return client.send_stocks_body(self.id, campaign_stock_body(entries))

    def send_campaign_body(self, client, body: EncodedBody) -> UpdateResult:
        return client.send_stocks_body(self.id, body)


@dataclass(frozen=True)
class BusinessTarget(Target):
    """A business (v3): values keyed by (warehouse, SKU), ``POST v3/businesses/{id}/offers/stocks/update``."""

    kind: ClassVar[str] = "business"
    method: ClassVar[str] = "update_stocks_v3"
    per_request: ClassVar[bool] = True

    def label(self, key: str) -> str:
        """``SKU@warehouse``."""
        warehouse, sku = split_key(key)
        return f"{sku}@{warehouse}"

    def sku_of(self, key: str) -> str:
        return split_key(key)[1]

    def send(self, client, entries: Sequence[tuple[str, int, int | None]]) -> UpdateResult:
        items = []
        for key, count, stamp_ms in entries:
            warehouse, _, sku = key.partition(SEP)
            items.append((sku, int(warehouse), count, stamp_ms))
        return client.send_stocks_body_v3(self.id, business_stock_body(items))


# A new kind is one module with its class, registering itself here (group_target.py adds "g";
# ymsync/engine/__init__.py imports it, so the kind is known wherever the engine is).
KINDS: dict[str, type[Target]] = {"c": CampaignTarget, "b": BusinessTarget}


def target(name_or_campaign: str | int) -> Target:
    """The target a name stands for (``c1001``, ``b7``); a bare number is a campaign."""
    name = name_or_campaign if isinstance(name_or_campaign, str) else keys.campaign_target(name_or_campaign)
    kind = KINDS.get(name[:1])
    if kind is None or not name[1:].isdigit():
        raise ValueError(f"not a stock target name: {name!r} (known kinds: {', '.join(sorted(KINDS))})")
    return kind(name)
