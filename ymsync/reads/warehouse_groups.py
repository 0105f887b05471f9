"""A v2 cabinet's warehouse groups as the Market states them (getPagedWarehouses), cached in Redis.

Kept exactly like the v3 warehouse list (:class:`~ymsync.reads.warehouses.WarehouseDirectory`,
whose cache, lock, stale-copy fallback and call policy this reuses): ``ttl_s`` fresh, up to
``keep_s`` served stale when the Market or its 100-an-hour quota says no, one process refreshing
at a time, shared by the CLI, producers and workers (built in ``ymsync.connect``).

:meth:`GroupDirectory.cached_groups` reads the cached copy only (never the Market): what the push
path may afford. :func:`contradictions` compares configured groups with the Market's: one line per
configured group the Market contradicts, naming both.

This module knows nothing about Celery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from ymsync.engine.call_policy import Call, CallGaveUp, CallPolicy
from ymsync.market import MarketClient
from ymsync.market.warehouse_groups import MAX_LIMIT, MarketWarehouse
from ymsync.reads.warehouses import _MAX_PAGES, WarehouseDirectory, WarehousesUnavailable
from ymsync.store import keys

METHOD = "warehouses_v2"  # settings.DEFAULT_QUOTAS name (YM_QUOTA_WAREHOUSES_V2), 100 an hour


@dataclass(frozen=True)
class GroupList:
    business_id: int
    warehouses: tuple[MarketWarehouse, ...]
    fetched_ms: int
    stale: bool = False

    def groups(self) -> tuple[tuple[int, ...], ...]:
        """Campaigns whose warehouses share one ``groupInfo``, each group sorted, by first campaign."""
        by_group: dict[int, set[int]] = {}
        for w in self.warehouses:
            if w.group_id is not None:
                by_group.setdefault(w.group_id, set()).add(w.campaign_id)
        return tuple(sorted(tuple(sorted(g)) for g in by_group.values()))

    def to_json(self) -> dict[str, object]:
        return {"business_id": self.business_id, "fetched_ms": self.fetched_ms, "stale": self.stale,
                "groups": [list(g) for g in self.groups()],
                "warehouses": [{"id": w.id, "name": w.name, "campaignId": w.campaign_id, "groupId": w.group_id,
                                "groupName": w.group_name} for w in self.warehouses]}


class GroupDirectory(WarehouseDirectory):
    """getPagedWarehouses per business, cached (keys.warehouse_groups) like the v3 list."""

    def _key(self, business_id: int) -> str:
        return keys.warehouse_groups(business_id)

    def _lock_key(self, business_id: int) -> str:
        return keys.warehouse_groups_lock(business_id)

    def _decode(self, business_id: int, data: dict) -> GroupList:
        return GroupList(business_id, tuple(MarketWarehouse(int(w["id"]), str(w["name"]), int(w["campaignId"]),
                                                            w.get("groupId"), w.get("groupName"))
                                            for w in data["warehouses"]), int(data["fetched_ms"]))

    def cached_groups(self, business_id: int) -> tuple[tuple[int, ...], ...]:
        """The groups of the cached copy, however old; () when none is cached. No Market call."""
        cached = self._cached(business_id)
        return cached.groups() if cached is not None else ()

    def _fetch(self, business_id: int) -> GroupList:  # type: ignore[override]
        client, limiter = self.client_for(business_id), self.limiter_for(business_id)
        key = keys.business_target(business_id)  # the business's quota and parallel cap
        found: dict[int, MarketWarehouse] = {}
        token: str | None = None
        for _ in range(_MAX_PAGES):
            page = self._group_page(client, limiter, key, business_id, token)
            for warehouse in page.warehouses:
                found.setdefault(warehouse.id, warehouse)
            if not page.next_page_token or page.next_page_token == token:
                return GroupList(business_id, tuple(sorted(found.values(), key=lambda w: w.id)), self._now_ms())
            token = page.next_page_token
        raise WarehousesUnavailable(f"getPagedWarehouses: business {business_id} returned over {_MAX_PAGES} pages")

    def _group_page(self, client: MarketClient, limiter, key: str, business_id: int, token: str | None):
        spec = Call(METHOD, key, key, client.clock)
        try:
            return CallPolicy(limiter).call(
                spec, lambda _units: client.get_paged_warehouses(business_id, page_token=token, limit=MAX_LIMIT),
                sleep=self.sleep, max_wait_s=self.max_wait_s, retries=0,
                what=f"getPagedWarehouses business {business_id}")
        except CallGaveUp as exc:
            raise WarehousesUnavailable(exc.message) from None


def contradictions(configured: Iterable[Sequence[int]], market: Sequence[Sequence[int]], business_id: int,
                   campaigns: Iterable[int] = ()) -> list[str]:
    """One line per configured group the Market's groups contradict, naming both. Only campaigns
    the Market listed (``campaigns``, or those in its groups) are judged."""
    by_campaign = {c: tuple(g) for g in market for c in g}
    listed = set(campaigns) | set(by_campaign)
    lines = []
    for group in configured:
        group = tuple(group)
        theirs = {by_campaign.get(c, (c,)) for c in group if c in listed}
        if theirs and theirs != {tuple(sorted(group))}:
            shown = " | ".join("+".join(map(str, g)) + ("" if len(g) > 1 else " (no group)") for g in sorted(theirs))
            lines.append(f"business {business_id}: warehouse group {'+'.join(map(str, group))} is configured, "
                         f"but the Market groups these campaigns as {shown}")
    return lines


__all__ = ["GroupDirectory", "GroupList", "METHOD", "contradictions"]
