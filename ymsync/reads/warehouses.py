"""WarehouseDirectory: each business's own warehouses (getPartnerWarehouses), cached in Redis.

The Market allows 100 getPartnerWarehouses calls an hour per business, and warehouses change
rarely, so the list is kept in Redis for ``ttl_s`` (10 minutes) and shared by every process:
the CLI, the producer's enqueue check and the workers. Past ``ttl_s`` a copy is refreshed on
next use; a copy up to ``keep_s`` (a day) old is still served, marked stale, when the quota or
the Market says no, because refusing pushes to known-good warehouses for an hour would be worse.
One process refreshes at a time (a short lock); the others wait a moment for its copy.

:meth:`WarehouseDirectory.check` is the producer's guard: a push to a warehouse the business
does not have, or to one with no model open to the API (``apiAvailability`` AVAILABLE), is
refused at enqueue with a message naming the warehouse, not dead-lettered minutes later.

This module knows nothing about Celery.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import redis

from ymsync.store import keys
from ymsync.market import MarketClient, MarketError
from ymsync.market.models import PartnerWarehouse, WarehouseModel
from ymsync.engine.call_policy import Call, CallGaveUp, CallPolicy
from ymsync.engine.quota import QuotaLimiter

log = logging.getLogger("ymsync.reads.warehouses")

METHOD = "warehouses_v3"  # settings.DEFAULT_QUOTAS name (YM_QUOTA_WAREHOUSES_V3), 100 an hour
PAGE_LIMIT = 30  # the Market's maximum page size for getPartnerWarehouses
_MAX_PAGES = 200  # 6,000 warehouses: far beyond any cabinet; a guard against a looping token


class WarehousesUnavailable(MarketError):
    """No copy of the list can be had now (quota spent or the Market failing, nothing cached)."""


@dataclass(frozen=True)
class WarehouseList:
    business_id: int
    warehouses: tuple[PartnerWarehouse, ...]
    fetched_ms: int
    stale: bool = False  # served past its TTL because a refresh was not possible now

    def by_id(self) -> dict[int, PartnerWarehouse]:
        return {w.id: w for w in self.warehouses}

    def to_json(self) -> dict[str, object]:
        return {"business_id": self.business_id, "fetched_ms": self.fetched_ms, "stale": self.stale,
                "warehouses": [warehouse_dict(w) for w in self.warehouses]}


def warehouse_dict(w: PartnerWarehouse) -> dict[str, object]:
    return {"id": w.id, "name": w.name, "available": w.available,
            "models": [{"program": m.program, "apiAvailability": m.api_availability} for m in w.models]}


def _from_dict(d: dict) -> PartnerWarehouse:
    return PartnerWarehouse(int(d["id"]), str(d["name"]),
                            tuple(WarehouseModel(m["program"], m["apiAvailability"]) for m in d["models"]))


class WarehouseDirectory:
    """``client_for(business_id)`` and ``limiter_for(business_id)`` give that cabinet's client
    and the shared limiter (a cabinet's own token; quota key ``b<id>``)."""

    def __init__(self, client: redis.Redis, client_for: Callable[[int], MarketClient],
                 limiter_for: Callable[[int], QuotaLimiter], *, ttl_s: float = 600.0, keep_s: float = 86400.0,
                 max_wait_s: float = 30.0, recheck_unknown_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.redis, self.client_for, self.limiter_for = client, client_for, limiter_for
        self.ttl_ms, self.keep_s = int(ttl_s * 1000), max(ttl_s, keep_s)
        self.max_wait_s = max_wait_s  # how long a caller may wait for the quota or another's refresh
        self.recheck_unknown_ms = int(recheck_unknown_s * 1000)
        self.sleep = sleep

    # --- reading ----------------------------------------------------------------------------

    def get(self, business_id: int, *, refresh: bool = False) -> WarehouseList:
        """The business's warehouses: the cached copy while fresh, else fetched (all pages)."""
        cached = self._cached(business_id)
        if cached is not None and not refresh and self._now_ms() - cached.fetched_ms < self.ttl_ms:
            return cached
        return self._refresh(business_id, cached)

    def check(self, business_id: int, warehouse_ids: Iterable[int]) -> list[str]:
        """Why a push to these warehouses would be refused; an empty list when all are fine."""
        wanted = list(dict.fromkeys(int(w) for w in warehouse_ids))
        try:
            return list(self._refusals(business_id, wanted).values())
        except MarketError as exc:  # quota spent with nothing cached, 403 for this token, ...
            return [f"business {business_id}: cannot check warehouses {', '.join(map(str, wanted))} now: "
                    f"{exc.message}"]

    def refusals(self, business_id: int, warehouse_ids: Iterable[int]) -> dict[int, str]:
        """{warehouse: why} for the warehouses a push must be refused for now: unknown to the
        business, without an AVAILABLE model, or a business no cabinet serves. When the list
        cannot be fetched (quota spent with nothing cached, a refused token), nothing is refused
        here: the Market decides, and refused items are dead-lettered with its message."""
        try:
            return self._refusals(business_id, list(dict.fromkeys(int(w) for w in warehouse_ids)))
        except MarketError:
            return {}

    def _refusals(self, business_id: int, wanted: list[int]) -> dict[int, str]:
        if not wanted:
            return {}
        try:
            listing = self.get(business_id)
            if any(w not in listing.by_id() for w in wanted) and \
                    self._now_ms() - listing.fetched_ms >= self.recheck_unknown_ms:
                listing = self.get(business_id, refresh=True)  # a warehouse added in the last minutes
        except LookupError as exc:  # no cabinet configured for the business (CabinetNotFound)
            return {wid: str(exc) for wid in wanted}
        known = listing.by_id()
        errors: dict[int, str] = {}
        for wid in wanted:
            warehouse = known.get(wid)
            if warehouse is None:
                names = ", ".join(f"{w.id} ({w.name})" for w in listing.warehouses[:10]) or "none"
                errors[wid] = (f"warehouse {wid}: not a warehouse of business {business_id} "
                               f"(its warehouses: {names}; see ymsync warehouses --business {business_id})")
            elif not warehouse.available:
                models = ", ".join(f"{m.program}: {m.api_availability}" for m in warehouse.models) or "no models"
                errors[wid] = (f"warehouse {wid} ({warehouse.name}): no model is AVAILABLE to the API ({models}); "
                               f"the Market refuses stock for it")
        return errors

    # --- the cache --------------------------------------------------------------------------

    # A sibling directory (reads/warehouse_groups.py) keeps another list the same way: it
    # overrides these four and _fetch.
    def _key(self, business_id: int) -> str:
        return keys.warehouses(business_id)

    def _lock_key(self, business_id: int) -> str:
        return keys.warehouses_lock(business_id)

    def _decode(self, business_id: int, data: dict):
        return WarehouseList(business_id, tuple(_from_dict(d) for d in data["warehouses"]), int(data["fetched_ms"]))

    def _encode(self, listing) -> dict[str, object]:
        return listing.to_json()

    def _cached(self, business_id: int):
        raw = self.redis.get(self._key(business_id))
        if not raw:
            return None
        try:
            return self._decode(business_id, json.loads(raw))
        except (ValueError, KeyError, TypeError):
            log.warning("business %s: unreadable warehouses cache dropped", business_id)
            return None

    def _store(self, listing: WarehouseList) -> None:
        self.redis.set(self._key(listing.business_id), json.dumps(self._encode(listing), ensure_ascii=False),
                       ex=int(self.keep_s))

    def _refresh(self, business_id: int, cached: WarehouseList | None) -> WarehouseList:
        lock = self._lock_key(business_id)
        me = uuid.uuid4().hex
        deadline = time.monotonic() + self.max_wait_s
        while not self.redis.set(lock, me, nx=True, px=int((self.max_wait_s + 60) * 1000)):
            # Someone else is fetching: their copy will do (it is at most seconds old).
            newer = self._cached(business_id)
            if newer is not None and (cached is None or newer.fetched_ms > cached.fetched_ms):
                return newer
            if time.monotonic() > deadline:
                return self._fallback(cached, "another process has been refreshing the list for too long")
            self.sleep(0.2)
        try:
            newer = self._cached(business_id)  # the previous holder may have just stored one
            if newer is not None and (cached is None or newer.fetched_ms > cached.fetched_ms):
                return newer
            listing = self._fetch(business_id)
        except WarehousesUnavailable as exc:
            return self._fallback(cached, str(exc))
        finally:
            if self.redis.get(lock) == me.encode():
                self.redis.delete(lock)
        self._store(listing)
        return listing

    def _fallback(self, cached: WarehouseList | None, why: str) -> WarehouseList:
        if cached is None:
            raise WarehousesUnavailable(why)
        log.warning("business %s: serving the warehouse list fetched %ds ago: %s", cached.business_id,
                    (self._now_ms() - cached.fetched_ms) // 1000, why)
        return replace(cached, stale=True)

    # --- the Market -------------------------------------------------------------------------

    def _fetch(self, business_id: int) -> WarehouseList:
        client, limiter = self.client_for(business_id), self.limiter_for(business_id)
        key = keys.business_target(business_id)
        found: dict[int, PartnerWarehouse] = {}
        token: str | None = None
        for _ in range(_MAX_PAGES):
            page = self._page(client, limiter, key, business_id, token)
            for warehouse in page.warehouses:
                found.setdefault(warehouse.id, warehouse)
            if not page.next_page_token or page.next_page_token == token:
                return WarehouseList(business_id, tuple(sorted(found.values(), key=lambda w: w.id)), self._now_ms())
            token = page.next_page_token
        raise WarehousesUnavailable(f"getPartnerWarehouses: business {business_id} returned over {_MAX_PAGES} pages")

    def _page(self, client: MarketClient, limiter: QuotaLimiter, key: str, business_id: int, token: str | None):
        """One page under the hourly quota and the business's parallel cap. Waiting longer than
        ``max_wait_s`` (quota spent, a 420) or a failure that may pass (5xx, timeout) makes the
        list unavailable now (a cached copy is then served); a refusal (403...) is raised."""
        spec = Call(METHOD, key, key, client.clock)
        try:
            return CallPolicy(limiter).call(
                spec, lambda _units: client.get_partner_warehouses(business_id, page_token=token, limit=PAGE_LIMIT),
                sleep=self.sleep, max_wait_s=self.max_wait_s, retries=0,
                what=f"getPartnerWarehouses business {business_id}")
        except CallGaveUp as exc:
            raise WarehousesUnavailable(exc.message) from None

    def _now_ms(self) -> int:
        seconds, micros = self.redis.time()  # one clock for every process sharing the cache
        return seconds * 1000 + micros // 1000


__all__ = ["METHOD", "WarehouseDirectory", "WarehouseList", "WarehousesUnavailable", "warehouse_dict"]
