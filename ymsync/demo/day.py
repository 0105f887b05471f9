"""A shop's day, compressed into ``duration`` seconds, played against the demo stack.

08:00 to 22:00 on the shop's clock: a steady trickle of orders (one SKU at a time, the way a
shop backend calls ``push_stocks`` or ``push_business_stocks`` from its order hook), a full stock
import in the morning and a warehouse recount at midday (tens of thousands of updates over two
campaigns of the v2 cabinet and two warehouses of the v3 one), a foreign integration that makes
the Market answer 420 for a while, cabinet edits that make the Market drift from the shop, a
reconciliation of both cabinets that finds and fixes it, and a chord report snapshot mixing the
campaigns' v2 reports with the business's v3 report.

The v2 cabinet's two campaigns form one warehouse group: the shop pushes its stock to both (it
sells through both, and names campaigns as before), ymsync coalesces them into the group's one
target (``g1001``) and sends each SKU once, through one campaign; a hand edit in 1001's cabinet is
seen through 1002 too, so the reconciliation reads the group once (through 1002) and finds it.

Everything is pushed from one thread, so "the latest value we pushed" is well defined and the
end of the day can check that the Market holds exactly the shop's stock.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import requests

from ymsync import connect
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.producer import push_business_stocks, push_stocks
from ymsync.reads.reconcile import ReconcileResult
from ymsync.reads.reconcile_business import BusinessReconcileResult
from ymsync.reports.request import ReportRequest
from ymsync.sandbox import MarketSandbox
from ymsync.config.settings import Settings
from ymsync.engine.status import campaign_status
from ymsync.engine.targets import business_target, item_key, split_key
from ymsync.demo.reconcile_phase import reconcile_business, reconcile_campaign
from ymsync.demo.world import BUSINESS, CAMPAIGNS, GROUPS, WAREHOUSE_NAMES, WAREHOUSES
from ymsync.store import keys as store_keys
from ymsync.store.client import state_client

DAY_START_H, DAY_HOURS = 8.0, 14.0
# Where stock goes: the v2 cabinet's warehouse group (one stock behind both campaigns), and the
# v3 business by warehouse. Targets are the engine's names (``g1001``, ``b200``); a business's
# values are keyed "<warehouse>\x1f<sku>". The shop still pushes naming a campaign (``c1001``).
GROUP = GROUPS[0]
GROUP_TARGET = store_keys.group_target(GROUP[0])
TARGETS = (GROUP_TARGET, business_target(BUSINESS))
PLACES: tuple[tuple[str, int | None], ...] = tuple((f"c{c}", None) for c in CAMPAIGNS) + tuple(
    (business_target(BUSINESS), w) for w in WAREHOUSES)
V3_GRACE_S = 2.0  # the sandbox applies at once; the real Market needs minutes (YM_RECONCILE_GRACE)


def target_of(place: str) -> str:
    """The engine target a push naming ``place`` lands in: a campaign of the group goes to the group."""
    return GROUP_TARGET if place.startswith("c") and int(place[1:]) in GROUP else place


def label(target: str) -> str:
    """A row's name: the campaign id, the group's campaigns (``1001+1002``), or the business with its API mode."""
    if target.startswith("g"):
        return "+".join(map(str, GROUP))
    return target[1:] if target.startswith("c") else f"b{target[1:]} v3"


class SnapshotGateway(Protocol):
    """How the day starts a report snapshot: the CLI provides one built on the Celery tasks."""

    def send_snapshot(self, requests: list[ReportRequest]) -> str:
        """Enqueue the snapshot chord; return the snapshot task's id."""

    def result(self, task_id: str) -> dict[str, Any] | None:
        """The task's result once it is ready, else None."""


@dataclass
class CampaignView:
    """One target's row: a campaign (v2) or the business (v3, quota counted in requests)."""

    campaign: str  # the row's label (see label())
    pushed: int = 0
    pending: int = 0
    in_flight: int = 0
    delivered: int = 0
    dead: int = 0
    quota_used: int = 0
    quota_amount: int | None = None
    rate_limited: int = 0
    retries: int = 0
    paused: str | None = None
    unit: str = "SKUs"  # what the quota counts


@dataclass
class Snapshot:
    """What the live view shows at one moment."""

    clock: str
    phase: str
    campaigns: list[CampaignView]
    market_420s: int
    market_requests: int
    events: list[str]


@dataclass
class DayResult:
    completed: bool  # played to the end (not interrupted)
    settled: bool  # nothing left pending or in flight when it ended
    views: list[CampaignView]
    in_sync: dict[str, tuple[int, int]]  # row label -> (values matching the shop, values pushed)
    quota_peaks: dict[str, tuple[int, int]]  # row label -> (peak in any window, quota)
    market_420s: int
    reconcile: list[ReconcileResult]
    business_reconcile: BusinessReconcileResult | None
    # The v3 business as the sandbox's admin API shows it at the end, beside what the shop pushed:
    # {"shop"|"market": {warehouse: {sku: count}}} (the demo writes it to its working folder).
    business_final: dict[str, dict[str, dict[str, int]]]
    snapshot: dict[str, Any] | None
    events: list[str]
    elapsed_s: float


@dataclass
class _Reports:
    reconcile: list[ReconcileResult] = field(default_factory=list)
    business_reconcile: BusinessReconcileResult | None = None
    reconcile_error: str | None = None
    reconcile_done: bool = False
    snapshot_task: str | None = None
    merge_task: str | None = None
    snapshot: dict[str, Any] | None = None


class Day:
    def __init__(self, settings: Settings, market: MarketSandbox, gateway: SnapshotGateway | None,
                 duration: float, catalog: int = 8000, seed: int = 20261125) -> None:
        self.settings, self.market, self.gateway = settings, market, gateway
        self.duration = max(5.0, duration)
        self.catalog = catalog
        self.rng = random.Random(seed)
        self.redis = state_client(settings)
        self.buffer = StockBuffer.from_settings(self.redis, settings)
        self.limiter = connect.quota_limiter(self.redis, settings)
        self.latest: dict[str, dict[str, int]] = {t: {} for t in TARGETS}  # target -> value key -> count
        self.pushed = {t: 0 for t in TARGETS}
        self.events: list[str] = []
        self.edited: dict[str, set[str]] = {t: set() for t in TARGETS}  # edited by hand: no orders till reconciled
        self.phase = "opening"
        self.reports = _Reports()
        self.started = 0.0
        # (fraction of the day, what happens): each fires once, in order.
        self.plan: list[tuple[float, Callable[[], None]]] = [
            (0.04, self._morning_import), (0.30, self._foreign_storm), (0.45, self._midday_recount),
            (0.60, self._cabinet_edit), (0.68, self._start_reconcile), (0.74, self._start_snapshot),
        ]

    # --- the clock ------------------------------------------------------------------------

    def frac(self) -> float:
        return min(1.0, (time.monotonic() - self.started) / self.duration)

    def clock(self) -> str:
        hours = DAY_START_H + DAY_HOURS * self.frac()
        return f"{int(hours):02d}:{int(hours % 1 * 60):02d}"

    def note(self, text: str) -> None:
        self.events.append(f"{self.clock()}  {text}")

    # --- producing ------------------------------------------------------------------------

    def _push(self, place: str, levels: dict[str, int]) -> None:
        """Queue ``levels`` (value key -> count) for ``place`` (a campaign or the business), the way a
        shop's code would; what the shop expects is kept per engine target (the group's one stock)."""
        target = place
        if place.startswith("c"):
            items = [{"sku": sku, "count": count} for sku, count in levels.items()]
            for start in range(0, len(items), 1000):
                push_stocks(int(place[1:]), items[start:start + 1000], buffer=self.buffer)
            target = target_of(place)
        else:
            items = [{"sku": sku, "warehouse": wid, "count": count}
                     for (wid, sku), count in ((split_key(k), n) for k, n in levels.items())]
            for start in range(0, len(items), 2000):
                push_business_stocks(int(target[1:]), items[start:start + 2000], buffer=self.buffer)
        self.latest[target].update(levels)
        self.pushed[target] += len(items)

    def _orders(self) -> None:
        """A few orders (and the odd restock) since the last tick: one SKU per push."""
        for _ in range(self.rng.randint(1, 4)):
            place, warehouse = self.rng.choice(PLACES)
            known = self.latest[target_of(place)]
            sku = f"SKU-{self.rng.randrange(self.catalog):05d}"
            key = sku if warehouse is None else item_key(warehouse, sku)
            if key in self.edited[target_of(place)]:
                continue
            have = known.get(key, self.rng.randint(5, 40))
            count = have + self.rng.randint(10, 40) if self.rng.random() < 0.1 else max(0, have - self.rng.randint(1, 3))
            self._push(place, {key: count})

    def _import(self, what: str) -> None:
        group_levels: dict[str, int] | None = None
        for place, warehouse in PLACES:
            skus = [f"SKU-{i:05d}" for i in range(self.catalog)]
            if warehouse is None:
                # One stock behind the group's campaigns: the shop sends the same levels to each.
                group_levels = group_levels or {sku: self.rng.randint(0, 120) for sku in skus}
                self._push(place, group_levels)
                continue
            self._push(place, {item_key(warehouse, sku): self.rng.randint(0, 120) for sku in skus})
        self.note(f"{what}: {self.catalog * len(PLACES):,} updates over {self.catalog:,} SKUs in "
                  f"{len(CAMPAIGNS)} campaigns of one warehouse group (v2, sent once) and {len(WAREHOUSES)} warehouses of business {BUSINESS} (v3)")

    def _morning_import(self) -> None:
        self.phase = "morning stock import"
        self._import("stock import from the warehouse system")

    def _midday_recount(self) -> None:
        self.phase = "midday recount"
        self._import("warehouse recount")

    def _foreign_storm(self) -> None:
        self.phase = "a foreign integration spends the quota"
        seconds = max(2.0, self.duration * 0.06)
        # Another integration on campaign 1001 (the group's carrier) makes the Market answer 420
        # for a while; ymsync's workers must all pause until the Market's Until, then catch up,
        # losing nothing.
        self.market.state.consume_foreign("updateStocks", str(GROUP[0]), pause_s=seconds)
        self.note(f"another integration exhausts campaign {GROUP[0]}'s quota: the Market answers 420 "
                  f"for {seconds:.0f}s")

    def _edit_keys(self, target: str, keys: list[str], k: int) -> list[str]:
        """``k`` of ``keys`` at random among those at rest (newest value delivered: one still on its
        way would overwrite the edit with the shop's value, no drift to find), held from orders."""
        newest, done = self.buffer.latest_of(target, keys), self.buffer.delivered_of(target, keys)
        rest = [key for key, n, d in zip(keys, newest, done) if n and d and d[:2] == (self.latest[target][key], n[0])]
        chosen = self.rng.sample(rest, k=min(k, len(rest)))
        self.edited[target].update(chosen)
        return chosen

    def _cabinet_edit(self) -> None:
        self.phase = "cabinet edit"
        campaign, latest = GROUP[0], self.latest[GROUP_TARGET]
        skus = self._edit_keys(GROUP_TARGET, sorted(latest), 25)
        self.market.state.plant(campaign, {sku: latest[sku] + 7 for sku in skus})
        self.note(f"someone edits {len(skus)} stock levels by hand in campaign {campaign}'s cabinet (drift, "
                  f"seen through the whole group {label(GROUP_TARGET)})")
        # And in the v3 cabinet, on one warehouse.
        warehouse, ours = WAREHOUSES[0], self.latest[business_target(BUSINESS)]
        keys = self._edit_keys(business_target(BUSINESS), sorted(k for k in ours if split_key(k)[0] == warehouse), 10)
        self.market.state.business.plant(BUSINESS, {warehouse: {split_key(k)[1]: ours[k] + 5 for k in keys}})
        self.note(f"and {len(keys)} on warehouse {warehouse} ({WAREHOUSE_NAMES[warehouse]}) of business {BUSINESS}")

    def _start_reconcile(self) -> None:
        self.phase = "reconciliation"
        self.note("reconciliation: reading the Market for every delivered SKU and re-queueing drift")
        threading.Thread(target=self._reconcile, name="demo-reconcile", daemon=True).start()

    def _reconcile(self) -> None:
        try:
            # The group is one stock: read once, through its last campaign (the edit was made in
            # the first one's cabinet), judged once.
            campaign = GROUP[-1]
            result = reconcile_campaign(self.settings, self.buffer, self.limiter, campaign)
            self.reports.reconcile.append(result)
            self.note(f"reconciled group {label(GROUP_TARGET)} through campaign {campaign} (warehouse "
                      f"{result.warehouse_id}, source: {result.warehouse_source}): {result.checked:,} checked, "
                      f"{result.drift} drifted, {result.requeued} re-queued")
            business = reconcile_business(self.settings, self.buffer, self.limiter, BUSINESS, V3_GRACE_S)
            self.reports.business_reconcile = business
            self.note(f"reconciled business {BUSINESS} (v3, {len(business.warehouses)} warehouses): "
                      f"{business.checked:,} checked, {business.drift} drifted, {business.requeued} re-queued")
        except Exception as exc:  # the demo goes on; the summary says what failed
            self.reports.reconcile_error = f"{type(exc).__name__}: {exc}"
            self.note(f"reconciliation failed: {self.reports.reconcile_error}")
        finally:
            self.edited = {t: set() for t in TARGETS}  # read (or failed): orders may touch them again
            self.reports.reconcile_done = True

    def _start_snapshot(self) -> None:
        if self.gateway is None:
            return
        self.phase = "report snapshot"
        # Asked as the cabinet asks: businessId + campaignIds for FBS/DBS/Express campaigns.
        requests = [ReportRequest.build(self.settings.cabinets.by_campaign(c).stocks_report_body(c), "CSV")
                    for c in CAMPAIGNS]
        requests.append(ReportRequest.build({"businessId": BUSINESS}, "CSV", api="v3"))
        self.reports.snapshot_task = self.gateway.send_snapshot(requests)
        self.note(f"report snapshot (a chord of {len(CAMPAIGNS)} stocks-on-warehouses reports and business "
                  f"{BUSINESS}'s v3 stocks report) queued")

    def _poll_snapshot(self) -> None:
        r = self.reports
        if self.gateway is None or r.snapshot_task is None or r.snapshot is not None:
            return
        if r.merge_task is None:
            started = self.gateway.result(r.snapshot_task)
            if started is not None:
                r.merge_task = started.get("merge_task_id")
                if r.merge_task is None:
                    r.snapshot = started
            return
        merged = self.gateway.result(r.merge_task)
        if merged is not None:
            r.snapshot = merged
            self.note(f"snapshot {merged.get('status')}: {merged.get('rows', 0):,} rows in {merged.get('csv') or '?'}")

    # --- observing ------------------------------------------------------------------------

    def views(self) -> list[CampaignView]:
        out = []
        for t in TARGETS:
            s = campaign_status(self.buffer, self.limiter, t)
            stats = self.buffer.stats(t)
            out.append(CampaignView(label(t), self.pushed[t], s.pending, s.in_flight, s.delivered, s.dead_letters,
                                    s.quota_used, s.quota_amount, int(stats.get("rate_limited", 0)),
                                    int(stats.get("retries", 0)), s.pause_reason,
                                    "requests" if t.startswith("b") else "SKUs"))
        return out

    def market_counts(self) -> tuple[int, int]:
        """(answers 420 of any method, stock update calls of both APIs)."""
        requests = self.market.state.snapshot()["requests"]
        return (sum(n for k, n in requests.items() if k.endswith(" 420")),
                sum(n for k, n in requests.items() if k.startswith("updateStocks")))

    def snapshot(self) -> Snapshot:
        m420, mreq = self.market_counts()
        return Snapshot(self.clock(), self.phase, self.views(), m420, mreq, self.events[-8:])

    def settled(self) -> bool:
        return all(v.pending == 0 and v.in_flight == 0 for v in self.views())

    def finished(self) -> bool:
        r = self.reports
        return self.settled() and r.reconcile_done and (self.gateway is None or r.snapshot is not None)

    # --- playing --------------------------------------------------------------------------

    def play(self, stop: threading.Event, show: Callable[[Snapshot], None], tick: float = 0.25,
             finish_timeout: float | None = None) -> DayResult:
        """Play the day, then let the pipeline settle (at most ``finish_timeout``), unless ``stop``."""
        self.started = time.monotonic()
        self.note("the shop opens; orders start coming in")
        plan = list(self.plan)
        while not stop.is_set() and self.frac() < 1.0:
            while plan and self.frac() >= plan[0][0]:
                plan.pop(0)[1]()
            self._orders()
            self._poll_snapshot()
            show(self.snapshot())
            stop.wait(tick)
        for _, action in plan if not stop.is_set() else []:
            action()  # a very short day still gets every event
        if not stop.is_set():
            self.phase = "closing: letting the pipeline settle"
            self.note("the shop closes; waiting for the last updates, the reconciliation and the snapshot")
            deadline = time.monotonic() + (finish_timeout if finish_timeout is not None else max(20.0, self.duration / 2))
            while not stop.is_set() and time.monotonic() < deadline:
                self._poll_snapshot()
                show(self.snapshot())
                if self.finished():
                    break
                stop.wait(tick)
        return self.result(completed=not stop.is_set())

    def business_final(self) -> dict[str, dict[str, dict[str, int]]]:
        """The v3 business as the sandbox's admin API reports it, beside what the shop pushed."""
        raw = requests.get(f"{self.market.url}/_admin/business/{BUSINESS}/stocks", timeout=30)
        raw.raise_for_status()
        market = {wid: {sku: v["count"] for sku, v in skus.items()} for wid, skus in raw.json().items()}
        shop: dict[str, dict[str, int]] = {}
        for key, count in self.latest[business_target(BUSINESS)].items():
            wid, sku = split_key(key)
            shop.setdefault(str(wid), {})[sku] = count
        return {"shop": shop, "market": market}

    def result(self, completed: bool) -> DayResult:
        m420, _ = self.market_counts()
        market = self.market.state
        in_sync: dict[str, tuple[int, int]] = {}
        with market.lock:
            latest = self.latest[GROUP_TARGET]
            for c in GROUP:  # the group's one stock, as each of its campaigns shows it
                store = market.stocks.get(c, {})
                same = sum(1 for sku, count in latest.items() if sku in store and store[sku].count == count)
                in_sync[f"{c}~{label(GROUP_TARGET)}"] = (same, len(latest))
            in_sync[label(GROUP_TARGET)] = min((in_sync[f"{c}~{label(GROUP_TARGET)}"] for c in GROUP),
                                               key=lambda v: v[0])
        final = self.business_final()
        per_warehouse = {f"{BUSINESS}@{wid}": (sum(1 for sku, n in skus.items() if final["market"].get(wid, {}).get(sku) == n),
                                                len(skus)) for wid, skus in final["shop"].items()}
        # The business row counts (warehouse, SKU) pairs; each warehouse also has its own line.
        in_sync[label(business_target(BUSINESS))] = (sum(v[0] for v in per_warehouse.values()),
                                                     sum(v[1] for v in per_warehouse.values()))
        in_sync.update(per_warehouse)
        quotas = market.snapshot()["quotas"]
        windows = {label(business_target(BUSINESS)): f"updateStocksOnPartnerWarehouses:{BUSINESS}"}
        peaks = {name: (quotas.get(w, {}).get("peak", 0), quotas.get(w, {}).get("amount", 0))
                 for name, w in windows.items()}
        # The group is sent through one campaign at a time: its row shows the busiest one's window.
        peaks[label(GROUP_TARGET)] = max(((quotas.get(f"updateStocks:{c}", {}).get("peak", 0),
                                           quotas.get(f"updateStocks:{c}", {}).get("amount", 0)) for c in GROUP))
        r = self.reports
        return DayResult(completed, self.settled(), self.views(), in_sync, peaks, m420, list(r.reconcile),
                         r.business_reconcile, final, r.snapshot, list(self.events), time.monotonic() - self.started)

    def close(self) -> None:
        self.redis.close()


__all__ = ["CAMPAIGNS", "GROUP", "GROUP_TARGET", "CampaignView", "Day", "DayResult", "Snapshot", "SnapshotGateway", "TARGETS", "label"]
