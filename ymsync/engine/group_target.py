"""A warehouse group (v2): campaigns whose warehouses share one stock on the Market.

The Market documents it: *for a warehouse group, send stocks for only one (any) warehouse; the
other warehouses of the group are updated automatically.* So a group is one stock target,
``g1001`` (named by its first campaign): pushes to any of its campaigns coalesce in one buffer
(latest stamp wins across the group), and each request goes through one campaign of the group, the
*carrier*, with that campaign's quota and parallel cap. A carrier the Market refuses (401/403) is
marked refused for ``halt_s`` (``keys.refused_carrier``) and the next campaign of the group carries
the stock; only when every one is refused does the group halt.

| target | name | value key | request | quota (unit) | parallel gate |
| --- | --- | --- | --- | --- | --- |
| group (v2) | ``g1001`` | SKU | ``PUT v2/campaigns/{carrier}/offers/stocks`` | ``update_stocks`` of the carrier (SKUs) | ``c{carrier}`` |
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Sequence

import redis

from ymsync.engine.targets import KINDS, Target
from ymsync.market.models import UpdateResult
from ymsync.market.wire import EncodedBody, campaign_stock_body
from ymsync.store import keys


class DiscoveredGroups:
    """A v2 campaign's group as the Market states it: the cached getPagedWarehouses copy
    (``keys.warehouse_groups``, written by ``reads/warehouse_groups.py``). Only for a v2 cabinet
    with a business id that configures no groups: configured groups always win. Never calls the
    Market. Read from Redis at each look by default (``ttl_s`` 0: one GET): every process then
    sees a group from the moment the copy naming it is written, so no worker sends a group's stock
    while another still treats one of its campaigns alone (engine/group_move.py relies on it)."""

    def __init__(self, client: redis.Redis, ttl_s: float = 0.0) -> None:
        self.redis, self.ttl_s = client, ttl_s
        self._seen: dict[int, tuple[float, tuple[tuple[int, ...], ...]]] = {}
        self._lock = threading.Lock()

    def __call__(self, campaign_id: int) -> tuple[int, ...]:
        from ymsync.config.cabinets import CabinetNotFound
        from ymsync.config.settings import get_settings

        try:
            cabinet = get_settings().cabinets.serving(campaign_id=int(campaign_id))
        except CabinetNotFound:
            return ()
        if cabinet.mode != "v2" or cabinet.warehouse_groups or cabinet.business_id is None:
            return ()
        return next((g for g in self.groups(cabinet.business_id) if int(campaign_id) in g), ())

    def groups(self, business_id: int) -> tuple[tuple[int, ...], ...]:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(business_id)
        if seen is not None and now - seen[0] < self.ttl_s:
            return seen[1]
        try:
            raw = self.redis.get(keys.warehouse_groups(business_id))
        except redis.RedisError:  # the write that follows fails loudly; routing keeps what it knew
            return seen[1] if seen else ()
        groups = tuple(tuple(sorted(int(c) for c in g)) for g in json.loads(raw).get("groups", ())) if raw else ()
        with self._lock:
            self._seen[business_id] = (now, groups)
        return groups


_discovered: Callable[[int], tuple[int, ...]] | None = None


def use_discovered_groups(source: Callable[[int], tuple[int, ...]] | None) -> None:
    """Where this process learns groups the Market reports (a :class:`DiscoveredGroups` on its
    state Redis; each StockBuffer installs one). None: configured groups only."""
    global _discovered
    _discovered = source


def group_of(campaign_id: int) -> tuple[int, ...]:
    """A campaign's warehouse group: the configured one, else the one the Market reports for a v2
    cabinet that configures none (the cached copy); ``()`` when it is in none."""
    from ymsync.config.settings import get_settings  # settings are read where a group is met, never at import

    configured = get_settings().cabinets.group_of(campaign_id)
    if configured:
        return configured
    return _discovered(int(campaign_id)) if _discovered is not None else ()


def group_campaigns(first_campaign: int) -> tuple[int, ...]:
    """The group whose first campaign is ``first_campaign`` (just it when none is)."""
    group = group_of(first_campaign)
    return group if group and group[0] == int(first_campaign) else (int(first_campaign),)


def group_target_of(campaign_id: int) -> str | None:
    """The group target a campaign's pushes go to (``g1001``), or None when it is in no group."""
    group = group_of(campaign_id)
    return keys.group_target(group[0]) if group else None


def campaign_stock_target(campaign_id: int) -> str:
    """Where a push naming this campaign goes: its group's target (``g1001``) when the campaign is
    in a warehouse group, else its own (``c1002``). Producers keep naming campaigns."""
    return group_target_of(campaign_id) or keys.campaign_target(campaign_id)


def describe_group(name: str) -> str:
    """How people name a target, a group with its campaigns: ``group=1001 campaigns=1001,1002``."""
    shown = keys.describe_target(name)
    if name.startswith("g") and name[1:].isdigit():
        shown += " campaigns=" + ",".join(map(str, group_campaigns(int(name[1:]))))
    return shown


@dataclass(frozen=True)
class GroupTarget(Target):
    """A warehouse group: values keyed by SKU, sent through one campaign of the group (``carrier``)."""

    carrier: int | None = None  # None: the group's first campaign
    kind: ClassVar[str] = "group"
    method: ClassVar[str] = "update_stocks"
    per_request: ClassVar[bool] = False

    @property
    def campaigns(self) -> tuple[int, ...]:
        return group_campaigns(self.id)

    @property
    def via(self) -> int:
        """The campaign this target's requests go through now."""
        return self.carrier if self.carrier is not None else self.campaigns[0]

    @property
    def quota_key(self) -> str:
        # The carrier's own update quota (campaign quotas are keyed by the campaign id).
        return str(self.via)

    @property
    def gate(self) -> str:
        return keys.campaign_target(self.via)

    def carriers(self) -> tuple[int, ...]:
        return self.campaigns

    def carried_by(self, campaign_id: int) -> "GroupTarget":
        return replace(self, carrier=int(campaign_id))

    campaign_body: ClassVar[bool] = True

    def send(self, client, entries: Sequence[tuple[str, int, int | None]]) -> UpdateResult:
        return client.send_stocks_body(self.via, campaign_stock_body(entries))

    def send_campaign_body(self, client, body: EncodedBody) -> UpdateResult:
        return client.send_stocks_body(self.via, body)


KINDS["g"] = GroupTarget

__all__ = ["DiscoveredGroups", "GroupTarget", "group_of", "use_discovered_groups", "campaign_stock_target", "describe_group", "group_campaigns", "group_target_of"]
