"""A shop's day, compressed into ``duration`` seconds, played against the demo stack.

08:00 to 22:00 on the shop's clock: a steady trickle of orders (one SKU at a time, the way a
shop backend calls ``push_stocks`` from its order hook), a full stock import in the morning and
a warehouse recount at midday (tens of thousands of updates over two campaigns), a foreign
integration that makes the Market answer 420 for a while, a cabinet edit that makes the Market
drift from the shop, a reconciliation that finds and fixes it, and a chord report snapshot.

Everything is pushed from one thread, so "the latest value we pushed" is well defined and the
end of the day can check that the Market holds exactly the shop's stock.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import redis

from ..buffer import StockBuffer
from ..market import MarketClient
from ..producer import push_stocks
from ..quota import QuotaLimiter
from ..reads import StockReader
from ..reconcile import ReconcileResult, Reconciler
from ..reports.request import ReportRequest
from ..sandbox import MarketSandbox
from ..settings import Settings
from ..status import campaign_status

CAMPAIGNS = (1001, 1002)
DAY_START_H, DAY_HOURS = 8.0, 14.0


class SnapshotGateway(Protocol):
    """How the day starts a report snapshot: the CLI provides one built on the Celery tasks."""

    def send_snapshot(self, requests: list[ReportRequest]) -> str:
        """Enqueue the snapshot chord; return the snapshot task's id."""

    def result(self, task_id: str) -> dict[str, Any] | None:
        """The task's result once it is ready, else None."""


@dataclass
class CampaignView:
    campaign: int
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
    in_sync: dict[int, tuple[int, int]]  # campaign -> (SKUs matching the shop, SKUs in the catalog)
    quota_peaks: dict[int, tuple[int, int]]  # campaign -> (peak in any window, quota)
    market_420s: int
    reconcile: list[ReconcileResult]
    snapshot: dict[str, Any] | None
    events: list[str]
    elapsed_s: float


@dataclass
class _Reports:
    reconcile: list[ReconcileResult] = field(default_factory=list)
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
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.buffer = StockBuffer.from_settings(self.redis, settings)
        self.limiter = QuotaLimiter(self.redis, settings.quotas, max_parallel=settings.max_parallel,
                                    lease_ttl_s=settings.lease_s)
        self.latest: dict[int, dict[str, int]] = {c: {} for c in CAMPAIGNS}
        self.pushed = {c: 0 for c in CAMPAIGNS}
        self.events: list[str] = []
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

    def _push(self, campaign: int, levels: dict[str, int]) -> None:
        items = [{"sku": sku, "count": count} for sku, count in levels.items()]
        for start in range(0, len(items), 1000):
            push_stocks(campaign, items[start:start + 1000], buffer=self.buffer)
        self.latest[campaign].update(levels)
        self.pushed[campaign] += len(items)

    def _orders(self) -> None:
        """A few orders (and the odd restock) since the last tick: one SKU per push."""
        for _ in range(self.rng.randint(1, 4)):
            campaign = self.rng.choice(CAMPAIGNS)
            known = self.latest[campaign]
            sku = f"SKU-{self.rng.randrange(self.catalog):05d}"
            have = known.get(sku, self.rng.randint(5, 40))
            count = have + self.rng.randint(10, 40) if self.rng.random() < 0.1 else max(0, have - self.rng.randint(1, 3))
            self._push(campaign, {sku: count})

    def _import(self, label: str) -> None:
        for campaign in CAMPAIGNS:
            self._push(campaign, {f"SKU-{i:05d}": self.rng.randint(0, 120) for i in range(self.catalog)})
        self.note(f"{label}: {self.catalog * len(CAMPAIGNS):,} updates over {self.catalog:,} SKUs "
                  f"in {len(CAMPAIGNS)} campaigns")

    def _morning_import(self) -> None:
        self.phase = "morning stock import"
        self._import("stock import from the warehouse system")

    def _midday_recount(self) -> None:
        self.phase = "midday recount"
        self._import("warehouse recount")

    def _foreign_storm(self) -> None:
        self.phase = "a foreign integration spends the quota"
        seconds = max(2.0, self.duration * 0.06)
        # Another integration on campaign 1002 makes the Market answer 420 for a while; ymsync's
        # workers must all pause until the Market's Until, then catch up, losing nothing.
        self.market.state.consume_foreign("updateStocks", str(CAMPAIGNS[1]), pause_s=seconds)
        self.note(f"another integration exhausts campaign {CAMPAIGNS[1]}'s quota: the Market answers 420 "
                  f"for {seconds:.0f}s")

    def _cabinet_edit(self) -> None:
        self.phase = "cabinet edit"
        campaign = CAMPAIGNS[0]
        skus = self.rng.sample(sorted(self.latest[campaign]), k=min(25, len(self.latest[campaign])))
        self.market.state.plant(campaign, {sku: self.latest[campaign][sku] + 7 for sku in skus})
        self.note(f"someone edits {len(skus)} stock levels by hand in campaign {campaign}'s cabinet (drift)")

    def _start_reconcile(self) -> None:
        self.phase = "reconciliation"
        self.note("reconciliation: reading the Market for every delivered SKU and re-queueing drift")
        threading.Thread(target=self._reconcile, name="demo-reconcile", daemon=True).start()

    def _reconcile(self) -> None:
        try:
            reader = StockReader(self.limiter, MarketClient.from_settings(self.settings))
            reconciler = Reconciler(self.buffer, reader)
            for campaign in CAMPAIGNS:
                result = reconciler.run(campaign, fix=True)
                self.reports.reconcile.append(result)
                self.note(f"reconciled campaign {campaign}: {result.checked:,} checked, {result.drift} drifted, "
                          f"{result.requeued} re-queued")
        except Exception as exc:  # the demo goes on; the summary says what failed
            self.reports.reconcile_error = f"{type(exc).__name__}: {exc}"
            self.note(f"reconciliation failed: {self.reports.reconcile_error}")
        finally:
            self.reports.reconcile_done = True

    def _start_snapshot(self) -> None:
        if self.gateway is None:
            return
        self.phase = "report snapshot"
        requests = [ReportRequest.build({"campaignId": c}, "CSV") for c in CAMPAIGNS]
        self.reports.snapshot_task = self.gateway.send_snapshot(requests)
        self.note(f"report snapshot (a chord of {len(requests)} stocks-on-warehouses reports) queued")

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
        for c in CAMPAIGNS:
            s = campaign_status(self.buffer, self.limiter, c)
            stats = self.buffer.stats(c)
            out.append(CampaignView(c, self.pushed[c], s.pending, s.in_flight, s.delivered, s.dead_letters,
                                    s.quota_used, s.quota_amount, int(stats.get("rate_limited", 0)),
                                    int(stats.get("retries", 0)), s.pause_reason))
        return out

    def market_counts(self) -> tuple[int, int]:
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

    def result(self, completed: bool) -> DayResult:
        m420, _ = self.market_counts()
        market = self.market.state
        in_sync: dict[int, tuple[int, int]] = {}
        with market.lock:
            for c in CAMPAIGNS:
                store = market.stocks.get(c, {})
                same = sum(1 for sku, count in self.latest[c].items() if sku in store and store[sku].count == count)
                in_sync[c] = (same, len(self.latest[c]))
        quotas = market.snapshot()["quotas"]
        peaks = {c: (quotas.get(f"updateStocks:{c}", {}).get("peak", 0), quotas.get(f"updateStocks:{c}", {}).get("amount", 0))
                 for c in CAMPAIGNS}
        return DayResult(completed, self.settled(), self.views(), in_sync, peaks, m420, list(self.reports.reconcile),
                         self.reports.snapshot, list(self.events), time.monotonic() - self.started)

    def close(self) -> None:
        self.redis.close()


__all__ = ["CAMPAIGNS", "CampaignView", "Day", "DayResult", "Snapshot", "SnapshotGateway"]
