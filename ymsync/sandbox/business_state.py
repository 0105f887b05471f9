"""The sandbox's businesses (cabinets): their warehouses, warehouse groups and stock per warehouse.

The business-level (v3) methods address stock by (warehouse, SKU) across a business's own
warehouses; they serve only cabinets *without* warehouse groups, and such a cabinet's FBS, DBS
and Express campaigns are refused the campaign-level stock update. Businesses are strict only
once configured (``SandboxConfig.businesses`` or ``POST /_admin/businesses``): an unconfigured
sandbox lets any business exist, without groups, and any warehouse id of it exist (FBS,
AVAILABLE) the first time it is used, the way an empty campaign list lets any campaign exist.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ymsync.sandbox.stock_record import StockRecord

PROGRAMS = ("FBS", "DBS", "EXPRESS")
AVAILABILITIES = ("AVAILABLE", "DISABLED_BY_INACTIVITY", "DISABLED_BY_NO_ACTIVE_CONTRACT", "MANUALLY_DISABLED",
                  "DISABLED_BY_NO_PLACEMENT_TYPE")


@dataclass(frozen=True)
class WarehouseConfig:
    """One of a business's own warehouses; ``models``: (placementType, apiAvailability) pairs."""

    id: int
    name: str = ""
    models: tuple[tuple[str, str], ...] = (("FBS", "AVAILABLE"),)

    def __post_init__(self) -> None:
        if self.id < 1:
            raise ValueError(f"warehouse id must be >= 1, got {self.id}")
        for program, availability in self.models:
            if program not in PROGRAMS or availability not in AVAILABILITIES:
                raise ValueError(f"warehouse {self.id}: model ({program}, {availability}) must be one of "
                                 f"{PROGRAMS} with one of {AVAILABILITIES}")

    @property
    def title(self) -> str:
        return self.name or f"Склад {self.id}"

    @property
    def available(self) -> bool:
        return any(availability == "AVAILABLE" for _, availability in self.models)

    @property
    def placement_type(self) -> str:
        """The model stock on it is shown under: the first open to the API, else the first."""
        return next((p for p, a in self.models if a == "AVAILABLE"), self.models[0][0] if self.models else "FBS")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.title,
                "models": [{"placementType": p, "apiAvailability": a} for p, a in self.models]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "WarehouseConfig":
        models = data.get("models")
        pairs = tuple((str(m["placementType"]), str(m["apiAvailability"])) for m in models) if models is not None \
            else (("FBS", "AVAILABLE"),)
        return cls(int(data["id"]), str(data.get("name") or ""), pairs)


@dataclass(frozen=True)
class BusinessConfig:
    """A cabinet: its id, its own warehouses and whether it keeps stock in warehouse groups."""

    id: int
    warehouses: tuple[WarehouseConfig, ...] = ()
    groups: bool = False

    def warehouse(self, warehouse_id: int) -> WarehouseConfig | None:
        return next((w for w in self.warehouses if w.id == warehouse_id), None)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "groups": self.groups, "warehouses": [w.to_json() for w in self.warehouses]}

    @classmethod
    def parse(cls, text: str) -> "BusinessConfig":
        """``ID[:groups]:WAREHOUSE[,WAREHOUSE…]`` with ``WAREHOUSE`` = ``WID[=PROGRAM[/AVAILABILITY]]``,
        e.g. ``7:11,12=EXPRESS,13=DBS/MANUALLY_DISABLED`` or ``8:groups:21``."""
        parts = text.split(":")
        try:
            groups = len(parts) == 3 and parts[1] == "groups"
            if len(parts) != (3 if groups else 2):
                raise ValueError
            warehouses = []
            for spec in parts[-1].split(","):
                wid, _, model = spec.partition("=")
                program, _, availability = model.partition("/")
                warehouses.append(WarehouseConfig(int(wid), "", ((program.upper() or "FBS",
                                                                  availability.upper() or "AVAILABLE"),)))
            if int(parts[0]) < 1 or len({w.id for w in warehouses}) != len(warehouses):
                raise ValueError("ids must be >= 1 and warehouses must not repeat")
            return cls(int(parts[0]), tuple(warehouses), groups)
        except ValueError as exc:
            raise ValueError(f"business must look like ID[:groups]:WID[=PROGRAM[/AVAILABILITY]][,...], got {text!r}"
                             f"{': ' + str(exc) if str(exc) else ''}") from None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BusinessConfig":
        warehouses = tuple(WarehouseConfig.from_json(w) for w in data.get("warehouses") or ())
        if len({w.id for w in warehouses}) != len(warehouses):
            raise ValueError(f"business {data.get('id')}: warehouse ids repeat")
        business_id = int(data["id"])
        if business_id < 1:
            raise ValueError(f"business id must be >= 1, got {business_id}")
        return cls(business_id, warehouses, bool(data.get("groups", False)))


@dataclass(frozen=True)
class TokenScope:
    """What a restricted token may reach: these businesses and campaigns (a campaign's business
    counts as reachable, and a business's campaigns as well)."""

    businesses: frozenset[int] = frozenset()
    campaigns: frozenset[int] = frozenset()


@dataclass
class BusinessStock:
    """One business's stock: warehouse -> sku -> record, and what the admin set around it."""

    stocks: dict[int, dict[str, StockRecord]] = field(default_factory=dict)
    sorted_skus: dict[int, list[str]] = field(default_factory=dict)
    archived: set[str] = field(default_factory=set)
    poisoned: dict[tuple[int | None, str], bool] = field(default_factory=dict)  # (warehouse|None, sku) -> named
    item_units: int = 0  # items received by the v3 update
    stale_writes: int = 0


class BusinessStore:
    """Every business's configuration and stock; one lock (the sandbox's) guards it all."""

    def __init__(self, businesses: tuple[BusinessConfig, ...], lock: threading.RLock,
                 now: Callable[[], float], changed: Callable[[], None] = lambda: None) -> None:
        self.lock = lock
        self.now = now  # the Market's clock (unix seconds)
        self.changed = changed  # called (under the lock) after stock changes: the state file saves
        self.configs: dict[int, BusinessConfig] = {b.id: b for b in businesses}
        self.strict = bool(businesses)
        self.data: dict[int, BusinessStock] = {}

    # --- configuration --------------------------------------------------------------------

    def configure(self, business: BusinessConfig) -> None:
        with self.lock:
            self.configs[business.id] = business
            self.strict = True

    def configured(self, business_id: int) -> BusinessConfig | None:
        """The business as explicitly configured (None: never configured)."""
        with self.lock:
            return self.configs.get(business_id) if self.strict else None

    def get(self, business_id: int) -> BusinessConfig | None:
        """The business, or None if it does not exist (only a configured sandbox says so)."""
        with self.lock:
            if not self.strict:
                return self.configs.setdefault(business_id, BusinessConfig(business_id))
            return self.configs.get(business_id)

    def warehouse(self, business: BusinessConfig, warehouse_id: int) -> WarehouseConfig | None:
        """A warehouse of the business; an unconfigured sandbox makes it on first use."""
        found = business.warehouse(warehouse_id)
        if found is not None or self.strict:
            return found
        with self.lock:
            current = self.configs[business.id]
            found = current.warehouse(warehouse_id)
            if found is None:
                found = WarehouseConfig(warehouse_id)
                self.configs[business.id] = BusinessConfig(business.id, current.warehouses + (found,), current.groups)
            return found

    def stock(self, business_id: int) -> BusinessStock:
        with self.lock:
            return self.data.setdefault(business_id, BusinessStock())

    # --- stock ----------------------------------------------------------------------------

    def apply(self, business_id: int, items: list[dict[str, Any]]) -> int:
        """Store each item (latest arrival wins, as on the Market); return the stale writes:
        items stamped older than what their (warehouse, SKU) already held."""
        now = datetime.fromtimestamp(self.now(), timezone.utc)
        stale = 0
        with self.lock:
            stock = self.stock(business_id)
            for item in items:
                store = stock.stocks.setdefault(item["partnerWarehouseId"], {})
                stamp = item.get("updatedAt") or now
                old = store.get(item["sku"])
                if old is None:
                    stock.sorted_skus.pop(item["partnerWarehouseId"], None)
                elif stamp < old.updated_at:
                    stale += 1
                store[item["sku"]] = StockRecord(item["count"], stamp)
            stock.item_units += len(items)
            stock.stale_writes += stale
            self.changed()
        return stale

    def plant(self, business_id: int, levels: dict[int, dict[str, int]]) -> int:
        now = datetime.fromtimestamp(self.now(), timezone.utc)
        with self.lock:
            stock = self.stock(business_id)
            for warehouse_id, skus in levels.items():
                store = stock.stocks.setdefault(warehouse_id, {})
                stock.sorted_skus.pop(warehouse_id, None)
                for sku, count in skus.items():
                    store[sku] = StockRecord(int(count), now)
            self.changed()
            return sum(len(skus) for skus in levels.values())

    def read(self, business_id: int) -> dict[str, dict[str, dict[str, Any]]]:
        """{warehouse_id: {sku: {count, updatedAt}}} (JSON keys are strings)."""
        with self.lock:
            stock = self.stock(business_id)
            return {str(wid): {sku: {"count": r.count, "updatedAt": r.updated_at.isoformat()}
                               for sku, r in store.items()} for wid, store in stock.stocks.items()}

    def page_after(self, business_id: int, warehouse_id: int, after: str | None,
                   size: int) -> tuple[list[tuple[str, StockRecord]], str | None]:
        """One page of a warehouse's offers in SKU order, and the last SKU if more follow."""
        with self.lock:
            stock = self.stock(business_id)
            store = stock.stocks.get(warehouse_id, {})
            keys = stock.sorted_skus.get(warehouse_id)
            if keys is None:
                keys = stock.sorted_skus[warehouse_id] = sorted(store)
            start = bisect_right(keys, after) if after is not None else 0
            page = keys[start:start + size]
            more = start + size < len(keys)
            return [(sku, store[sku]) for sku in page], (page[-1] if more and page else None)

    def poisoned_in(self, business_id: int, items: list[dict[str, Any]]) -> list[tuple[str, int, bool]]:
        """(sku, warehouse, named) of each poisoned item, in request order."""
        with self.lock:
            table = self.stock(business_id).poisoned
            if not table:
                return []
            out = []
            for item in items:
                sku, wid = item["sku"], item["partnerWarehouseId"]
                named = table.get((wid, sku), table.get((None, sku)))
                if named is not None:
                    out.append((sku, wid, named))
            return out

    def archive(self, business_id: int, skus: list[str]) -> None:
        with self.lock:
            self.stock(business_id).archived.update(skus)
            self.changed()

    def dump(self) -> dict[str, Any]:
        """What outlives a restart (stock and archived offers; not poison or counters), as JSON data."""
        with self.lock:
            return {str(bid): {"stocks": {str(wid): {sku: [r.count, r.updated_at.isoformat()] for sku, r in store.items()}
                                          for wid, store in stock.stocks.items()},
                               "archived": sorted(stock.archived)}
                    for bid, stock in self.data.items() if stock.stocks or stock.archived}

    def restore(self, data: dict[str, Any]) -> int:
        """Replace every business's stock with ``dump()``'s output; return the items loaded.
        Raises ValueError/TypeError/AttributeError on a malformed one (the caller names the file)."""
        loaded = {int(bid): BusinessStock(
            stocks={int(wid): {str(sku): StockRecord(int(count), datetime.fromisoformat(stamp))
                               for sku, (count, stamp) in store.items()}
                    for wid, store in entry.get("stocks", {}).items()},
            archived=set(map(str, entry.get("archived", ()))))
            for bid, entry in data.items()}
        with self.lock:
            self.data.clear()
            self.data.update(loaded)
        return sum(len(store) for stock in loaded.values() for store in stock.stocks.values())

    def reset(self) -> None:
        """Forget stock, poison and counters; keep the configuration (as campaigns are kept), but
        not the warehouses an unconfigured sandbox made up on first use."""
        with self.lock:
            self.data.clear()
            if not self.strict:
                self.configs.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {str(bid): {"groups": self.configs[bid].groups if bid in self.configs else False,
                               "warehouses": len(self.configs[bid].warehouses) if bid in self.configs else 0,
                               "skus": sum(len(s) for s in stock.stocks.values()),
                               "item_units": stock.item_units, "stale_writes": stock.stale_writes}
                    for bid, stock in self.data.items()} | {
                str(bid): {"groups": b.groups, "warehouses": len(b.warehouses), "skus": 0, "item_units": 0,
                           "stale_writes": 0} for bid, b in self.configs.items() if bid not in self.data}


def scope_allows(scope: TokenScope | None, *, business_id: int | None = None, campaign_id: int | None = None,
                 campaign_business: Callable[[int], int | None] = lambda cid: None) -> bool:
    """Whether a token of this scope (None: unrestricted) reaches the business or campaign."""
    if scope is None:
        return True
    if business_id is not None:
        return business_id in scope.businesses or any(campaign_business(c) == business_id for c in scope.campaigns)
    if campaign_id is not None:
        return campaign_id in scope.campaigns or campaign_business(campaign_id) in scope.businesses
    return True
