"""The Market sandbox's in-memory world: campaigns, stock store, quotas, parallel caps, faults.

Everything here is guarded by one lock per concern and timed with ``time.monotonic`` (wall
clock only where the API shows dates). Quotas are strict sliding windows: the sandbox is the
referee that tells whether ymsync ever exceeded the Market's limits, so it must not be lenient.
"""

from __future__ import annotations

import math
import random
import threading
import time
from bisect import bisect_right
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ymsync.config.settings import Quota
from ymsync.sandbox.business_state import BusinessConfig, BusinessStore, TokenScope
from ymsync.sandbox.stock_record import StockRecord
from ymsync.sandbox.window import SlidingWindow

MODELS = ("FBS", "FBY", "DBS", "EXPRESS")
# The Market's own limits: x-resource-limit-config of the official description.
DEFAULT_QUOTAS: dict[str, Quota | None] = {
    "updateStocks": Quota(100_000, 60),
    "getStocks": Quota(100_000, 60),
    "generateStocksOnWarehousesReport": Quota(1, 120),
    "getReportInfo": Quota(100, 60),
    # Business-level (v3) methods, keyed per business; each counts requests.
    "updateStocksOnPartnerWarehouses": Quota(50, 60),
    "getStocksOnPartnerWarehouses": Quota(500, 60),
    "getPartnerWarehouses": Quota(100, 3600),
    "getPagedWarehouses": Quota(100, 3600),  # v2, per business: warehouses with their groups
    "generateStocksReport": Quota(1, 120),
}


@dataclass(frozen=True)
class CampaignConfig:
    id: int
    business_id: int = 1
    model: str = "FBS"

    @property
    def warehouse_id(self) -> int:
        # FBY stock sits on a Market warehouse; others on the shop's own. Any stable id will do.
        return 300 + self.id % 1000 if self.model == "FBY" else 100_000 + self.id

    @classmethod
    def parse(cls, text: str) -> "CampaignConfig":
        """``ID[:MODEL[:BUSINESS]]``, e.g. ``1001``, ``1002:FBY``, ``1003:DBS:77``."""
        parts = text.split(":")
        try:
            cid = int(parts[0])
            model = parts[1].upper() if len(parts) > 1 and parts[1] else "FBS"
            business = int(parts[2]) if len(parts) > 2 else 1
        except ValueError:
            raise ValueError(f"campaign must look like ID[:MODEL[:BUSINESS]], got {text!r}") from None
        if cid < 1 or business < 1 or model not in MODELS:
            raise ValueError(f"campaign {text!r}: ids must be >= 1 and MODEL one of {', '.join(MODELS)}")
        return cls(cid, business, model)


# The stock updates the late-apply fault delays: campaign-level and business-level alike.
LATE_APPLY_OPERATIONS = frozenset({"updateStocks", "updateStocksOnPartnerWarehouses"})


@dataclass
class Faults:
    """Misbehaviour to inject into API calls (not into admin or file routes)."""

    error_rate: float = 0.0  # 500 before anything applies
    lost_reply_rate: float = 0.0  # the update applies, then the connection drops without a reply
    locked_rate: float = 0.0  # 423, cabinet migrating
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    # A share of stock updates applies only after this long, whether or not the client still
    # waits (a slow backend behind a proxy): a client that gave up must not send a newer value
    # that this late one then overwrites (``stale_writes`` counts it if it does).
    late_apply_rate: float = 0.0
    late_apply_s: float = 0.0
    # A seeded fault schedule: the n-th stock update (either API) that gets past the quota and
    # parallel checks meets ``schedule[n]``, in arrival order (one of SCHEDULED_FAULTS; "late"
    # applies after ``late_apply_s``); once it runs out, the rates above apply. Tests that must see
    # every fault strike say when instead of waiting for chance.
    schedule: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.schedule = tuple(self.schedule)
        unknown = sorted(set(self.schedule) - SCHEDULED_FAULTS)
        if unknown:
            raise ValueError(f"unknown scheduled faults {unknown}: use {', '.join(sorted(SCHEDULED_FAULTS))}")

    def latency(self, rng: random.Random, operation: str = "", scheduled: str | None = None) -> float:
        delay = 0.0
        if self.latency_max_ms > 0:
            delay = rng.uniform(self.latency_min_ms, max(self.latency_min_ms, self.latency_max_ms)) / 1000
        if scheduled is not None:
            return delay + (self.late_apply_s if scheduled == "late" else 0.0)
        if self.late_apply_rate and operation in LATE_APPLY_OPERATIONS and rng.random() < self.late_apply_rate:
            delay += self.late_apply_s
        return delay


SCHEDULED_FAULTS = frozenset({"ok", "500", "423", "lost", "late"})


@dataclass
class SandboxConfig:
    tokens: tuple[str, ...] = ("sandbox-token",)
    campaigns: tuple[CampaignConfig, ...] = ()  # empty: any campaign id exists (FBS, business 1)
    quotas: dict[str, Quota | None] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    max_parallel: int = 4
    faults: Faults = field(default_factory=Faults)
    report_delay_s: float = 3.0
    link_ttl_s: float = 3600.0
    max_active_reports: int = 10
    page_cap: int = 100  # the Market silently cuts getStocks' limit to 100
    seed: int | None = None
    # The Market's clock minus the real one: its Date headers, its "now" for stamp rules and for
    # stamping values sent without one, its 420 Until. Negative: every client runs ahead of it.
    clock_offset_s: float = 0.0
    # Cabinets for the business-level (v3) methods (empty: any business exists, without groups,
    # with any warehouse); see business_state.py.
    businesses: tuple[BusinessConfig, ...] = ()
    # Tokens (also listed in ``tokens``) that reach only some businesses/campaigns (else 403).
    token_scopes: dict[str, TokenScope] = field(default_factory=dict)
    # Warehouse groups: campaigns whose warehouses share one stock, as on the Market: a write
    # through any campaign of a group (or a cabinet edit) is seen through all of them.
    warehouse_groups: tuple[tuple[int, ...], ...] = ()


class SandboxState:
    """All mutable state of one sandbox; the HTTP layer is a thin shell around it."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.rng = random.Random(config.seed)
        self.tokens = set(config.tokens)
        self.revoked: set[str] = set()
        self.campaigns = {c.id: c for c in config.campaigns}
        self.stocks: dict[int, dict[str, StockRecord]] = {}
        self.archived: dict[int, set[str]] = {}
        self._sorted: dict[int, list[str]] = {}
        self.windows: dict[tuple[str, str], SlidingWindow] = {}
        self.paused_until: dict[tuple[str, str], float] = {}  # foreign storms: 420 until then
        self.foreign: dict[tuple[str, str], float] = {}  # a foreign client's share of each window
        self.in_flight: Counter[str] = Counter()
        self.in_flight_peers: Counter[str] = Counter()  # by client address: which host holds requests
        self.parallel_peak: Counter[str] = Counter()
        self.parallel_refused: Counter[str] = Counter()  # 420 "parallel requests" answered, per gate
        self.requests: Counter[str] = Counter()  # "operation status" -> n
        self.sku_units = Counter[int]()  # SKUs received by updateStocks per campaign
        self.stale_writes = 0  # updates whose updatedAt was older than the stored one
        # The referee for the Market's per-request caps (2000 SKUs, 512 KB): the largest
        # updateStocks request ever received, counted before any check can refuse it.
        self.max_request_skus = 0
        self.max_request_bytes = 0
        # SKUs the Market refuses (a blocked offer, say): any request holding one is refused whole.
        self.poisoned: dict[int, dict[str, bool]] = {}  # campaign -> sku -> named in the message
        self.log: deque[dict[str, Any]] = deque(maxlen=20_000)

        self.token_scopes = dict(config.token_scopes)
        self.business = BusinessStore(config.businesses, self.lock, self.now, self._changed)
        # Bumped by every change to stocks or archived offers: the state file saver's cue.
        self.revision = 0
        self.scheduled = 0  # stock updates that have met their entry of faults.schedule
        self.group_of = {c: tuple(g) for g in config.warehouse_groups for c in g}
        self.link_groups()

    def next_scheduled_fault(self, operation: str) -> str | None:
        """The scheduled fault of this stock update, or None (not a stock update, or the schedule ran out)."""
        if operation not in LATE_APPLY_OPERATIONS:
            return None
        with self.lock:
            schedule = self.config.faults.schedule
            if self.scheduled >= len(schedule):
                return None
            self.scheduled += 1
            return schedule[self.scheduled - 1]

    def link_groups(self) -> None:
        """Make every campaign of a warehouse group hold the one same stock dict (the first
        campaign's, or the first non-empty one's); called again whenever ``stocks`` is replaced."""
        with self.lock:
            for group in {g for g in self.group_of.values()}:
                shared = next((self.stocks[c] for c in group if self.stocks.get(c)), None)
                if shared is None:
                    shared = self.stocks.get(group[0], {})
                for c in group:
                    self.stocks[c] = shared
                    self._sorted.pop(c, None)

    def _unsort(self, campaign_id: int) -> None:
        """A SKU came or went: the sorted page index of the campaign (and of its group) is stale."""
        for c in self.group_of.get(campaign_id, (campaign_id,)):
            self._sorted.pop(c, None)

    # --- campaigns and stock --------------------------------------------------------------

    def campaign(self, campaign_id: int) -> CampaignConfig | None:
        if not self.config.campaigns:
            return self.campaigns.setdefault(campaign_id, CampaignConfig(campaign_id))
        return self.campaigns.get(campaign_id)

    def _changed(self) -> None:
        self.revision += 1  # the state file (persist.py) saves what changed since its last save

    def now(self) -> float:
        """The Market's clock (unix seconds)."""
        return time.time() + self.config.clock_offset_s

    def apply_stocks(self, campaign_id: int, updates: list[tuple[str, int, datetime | None]]) -> None:
        """(sku, count, updatedAt or None: now) per SKU, in the request's order."""
        now = datetime.fromtimestamp(self.now(), timezone.utc)
        with self.lock:
            store = self.stocks.setdefault(campaign_id, {})
            known = len(store)
            for sku, count, stamp in updates:
                stamp = stamp or now
                old = store.get(sku)
                if old is not None and stamp < old.updated_at:
                    # The real Market applies in arrival order too; counting these exposes
                    # a client that let an older value overtake a newer one.
                    self.stale_writes += 1
                store[sku] = StockRecord(count, stamp)
            if len(store) != known:  # a SKU came: once a request, not once a new SKU
                self._unsort(campaign_id)
            self.sku_units[campaign_id] += len(updates)
            self.revision += 1

    def note_update_request(self, body_bytes: int, skus: int) -> None:
        with self.lock:
            self.max_request_bytes = max(self.max_request_bytes, body_bytes)
            self.max_request_skus = max(self.max_request_skus, skus)

    def poison(self, campaign_id: int, skus: list[str], named: bool = True) -> None:
        with self.lock:
            self.poisoned.setdefault(campaign_id, {}).update({sku: named for sku in skus})

    def poisoned_in(self, campaign_id: int, skus: list[str]) -> list[tuple[str, bool]]:
        """(sku, named) of each poisoned SKU among ``skus``, in request order."""
        with self.lock:
            table = self.poisoned.get(campaign_id, {})
            return [(sku, table[sku]) for sku in skus if sku in table]

    def plant(self, campaign_id: int, levels: dict[str, int]) -> None:
        """Set stock behind the API's back (a shop employee editing the cabinet, say)."""
        now = datetime.now(timezone.utc)
        with self.lock:
            store = self.stocks.setdefault(campaign_id, {})
            for sku, count in levels.items():
                if sku not in store:
                    self._unsort(campaign_id)
                store[sku] = StockRecord(int(count), now)
            self.revision += 1

    def sorted_skus(self, campaign_id: int) -> list[str]:
        with self.lock:
            keys = self._sorted.get(campaign_id)
            if keys is None:
                keys = self._sorted[campaign_id] = sorted(self.stocks.get(campaign_id, {}))
            return keys

    def page_after(self, campaign_id: int, after: str | None, size: int) -> tuple[list[str], str | None]:
        keys = self.sorted_skus(campaign_id)
        start = bisect_right(keys, after) if after is not None else 0
        page = keys[start:start + size]
        more = start + size < len(keys)
        return page, (page[-1] if more and page else None)

    # --- limits ---------------------------------------------------------------------------

    def admit(self, operation: str, key: str, cost: int) -> float:
        """0 if the call may go ahead (and is charged), else seconds until it would fit."""
        quota = self.config.quotas.get(operation)
        now = time.monotonic()
        with self.lock:
            paused = self.paused_until.get((operation, key), 0.0) - now
            if paused > 0:
                return paused
            if quota is None:
                return 0.0
            return self._window(operation, key, quota, now).admit(cost, now)

    def _window(self, operation: str, key: str, quota: Quota, now: float) -> SlidingWindow:
        window = self.windows.get((operation, key))
        if window is None:
            window = self.windows[(operation, key)] = SlidingWindow(quota)
            share = self.foreign.get((operation, key), 0.0)
            if share:
                window.set_foreign(share, now)
        return window

    def set_foreign(self, operation: str, key: str, share: float) -> None:
        """A foreign client spending ``share`` (0..1) of ``operation``'s window on ``key`` every
        window, from now on (0: it stops): counted in refusals and in the headers' Remaining."""
        quota = self.config.quotas.get(operation)
        now = time.monotonic()
        with self.lock:
            self.foreign[(operation, key)] = share
            if quota is not None:
                self._window(operation, key, quota, now).set_foreign(share, now)

    def quota_headers(self, operation: str, key: str) -> dict[str, str]:
        quota = self.config.quotas.get(operation)
        if quota is None:
            return {}
        now = time.monotonic()
        with self.lock:
            window = self.windows.get((operation, key))
            if window is None and (operation, key) in self.foreign:
                window = self._window(operation, key, quota, now)
            remaining = window.remaining(now) if window else quota.amount
            reset = window.reset_at(now) if window else 0.0
        return {"X-RateLimit-Resource-Limit": str(quota.amount),
                "X-RateLimit-Resource-Remaining": str(remaining),
                "X-RateLimit-Resource-Until": http_date(epoch_in(reset, self.config.clock_offset_s))}

    def enter(self, key: str, peer: str = "") -> bool:
        """Count one more request in flight on a gate (``campaign:ID``, ``business:ID``: every
        method of that campaign or business together, as the Market counts); False, and the
        refusal counted in ``parallel_refused``, when the cap is reached."""
        with self.lock:
            if self.in_flight[key] >= self.config.max_parallel:
                self.parallel_refused[key] += 1
                return False
            self.in_flight[key] += 1
            self.in_flight_peers[peer] += 1
            self.parallel_peak[key] = max(self.parallel_peak[key], self.in_flight[key])
            return True

    def leave(self, key: str, peer: str = "") -> None:
        with self.lock:
            self.in_flight[key] -= 1
            self.in_flight_peers[peer] -= 1

    def hold_slots(self, gate: str, slots: int, seconds: float) -> None:
        """A foreign client holding ``slots`` of ``gate``'s parallel requests for ``seconds``:
        ymsync's own requests then meet the Market's parallel-limit 420 however few it sends."""
        with self.lock:
            self.in_flight[gate] += slots
        timer = threading.Timer(seconds, self._release_slots, args=(gate, slots))
        timer.daemon = True
        timer.start()

    def _release_slots(self, gate: str, slots: int) -> None:
        with self.lock:
            self.in_flight[gate] -= slots

    def consume_foreign(self, operation: str, key: str, amount: int = 0, pause_s: float = 0.0) -> None:
        """A foreign client on the same campaign: eat quota, or force 420s for ``pause_s``."""
        with self.lock:
            if pause_s > 0:
                self.paused_until[(operation, key)] = time.monotonic() + pause_s
        if amount > 0:
            quota = self.config.quotas.get(operation)
            if quota is not None:
                now = time.monotonic()
                with self.lock:
                    self._window(operation, key, quota, now).consume(amount, now)

    def record(self, operation: str, key: str, status: int, cost: int = 0, until: float | None = None,
               arrived: float | None = None, peer: str = "") -> None:
        """Count a call; ``until`` (a 420's X-RateLimit-Resource-Until, unix time) lets tests
        check that nobody called again before it. ``t``: when it was answered; ``arrived``:
        when its request came in (both unix time); ``peer``: the client's address."""
        with self.lock:
            self.requests[f"{operation} {status}"] += 1
            now = time.time()
            entry: dict[str, Any] = {"t": now, "arrived": now if arrived is None else arrived, "op": operation,
                                     "key": key, "status": status, "cost": cost, "peer": peer}
            if until is not None:
                entry["until"] = until
            self.log.append(entry)

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self.lock:
            return {
                "campaigns": {str(cid): {"skus": len(store), "sku_units": self.sku_units[cid]}
                              for cid, store in self.stocks.items()},
                "quotas": {f"{op}:{key}": w.snapshot(now) for (op, key), w in self.windows.items()},
                "parallel_peak": dict(self.parallel_peak),
                "parallel_refused": dict(self.parallel_refused),
                "in_flight": {k: v for k, v in self.in_flight.items() if v},
                "in_flight_peers": {k: v for k, v in self.in_flight_peers.items() if v},
                "requests": dict(self.requests),
                "stale_writes": self.stale_writes,
                "businesses": self.business.snapshot(),
                "max_request_skus": self.max_request_skus,
                "max_request_bytes": self.max_request_bytes,
            }


def epoch_in(seconds: float, clock_offset_s: float = 0.0) -> int:
    """Unix time ``seconds`` from now (on a clock ``clock_offset_s`` off the real one), rounded
    up so a client waiting until it is never early."""
    return math.ceil(time.time() + clock_offset_s + max(0.0, seconds))


def http_date(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def http_date_in(seconds: float) -> str:
    """RFC 822 date ``seconds`` from now, rounded up so a client waiting until it is never early."""
    return http_date(epoch_in(seconds))
