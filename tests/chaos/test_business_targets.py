"""Chaos for business (v3) targets: late-applied requests and waves of newer values over two
warehouses, three workers, the request-counted quota shortened. The sandbox is the referee: its
per-(warehouse, SKU) ``stale_writes`` must stay 0 and its final state must be exact."""

from __future__ import annotations

import time

import pytest

from tests.chaos.pacing import LATE_SCHEDULE, late_applies_landed, next_wave_when_received, received
from tests.support.processes import wait_for
from ymsync import push_business_stocks
from ymsync.engine.producer import stamp_items
from ymsync.sandbox import Faults, SandboxConfig
from ymsync.sandbox.business_state import BusinessConfig, WarehouseConfig
from ymsync.config.settings import Quota
from ymsync.engine.targets import business_target

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

BUSINESS, WAREHOUSES, V3 = 8, (601, 602), "updateStocksOnPartnerWarehouses"


def test_v3_waves_over_two_warehouses_with_late_applies(bench_for, case):
    """v3: waves over two warehouses while 30 % of requests land 3 s after the client gave up"""
    config = SandboxConfig(quotas={V3: Quota(20, 6), "updateStocks": None, "getStocks": None},
                           businesses=(BusinessConfig(BUSINESS, tuple(WarehouseConfig(w) for w in WAREHOUSES)),),
                           faults=Faults(late_apply_rate=0.3, late_apply_s=3.0, schedule=LATE_SCHEDULE), seed=21)
    bench = bench_for(config)
    env = {"YM_HTTP_CONNECT_TIMEOUT": "1", "YM_HTTP_READ_TIMEOUT": "1", "YM_UNKNOWN_OUTCOME_S": "4.5",
           "YM_QUOTA_UPDATE_STOCKS_V3": "20/6", "YM_BUSINESS_ID": str(BUSINESS), "YM_API_MODE": "v3"}
    for n in range(3):
        bench.start_worker(f"v3chaos{n}", concurrency=1, **env)
    skus = [f"W-{i:04d}" for i in range(1500)]
    expected: dict[tuple[int, str], int] = {}
    started = time.monotonic()
    waves = 8
    for wave in range(waves):
        items = stamp_items([{"sku": sku, "warehouse": WAREHOUSES[(i + wave) % 2], "count": wave * 10_000 + i}
                             for i, sku in enumerate(skus)])
        before = received(bench, V3)
        push_business_stocks(BUSINESS, items, buffer=bench.buffer)
        expected.update(((it["warehouse"], it["sku"]), it["count"]) for it in items)
        next_wave_when_received(bench, V3, before)
    target = business_target(BUSINESS)

    def market() -> dict[tuple[int, str], int]:
        raw = bench.admin(f"business/{BUSINESS}/stocks")
        return {(int(w), sku): v["count"] for w, s in raw.items() for sku, v in s.items()}

    wait_for(lambda: bench.buffer.pending(target) == 0 and bench.buffer.in_flight(target) == 0
             and market() == expected, 90, "the newest value of every item at the Market", interval=0.5)
    late_applies_landed(bench)
    state = bench.state()["businesses"][str(BUSINESS)]
    log = [e for e in bench.admin("log") if e["op"] == V3]
    stats = bench.buffer.stats(target)
    case.figures.update({"waves": waves, "items_per_wave": len(skus), "warehouses": len(WAREHOUSES),
                         "late_apply_rate": 0.3, "late_apply_s": 3.0, "requests": len(log),
                         "r420": sum(1 for e in log if e["status"] == 420),
                         "items_held_in_doubt": stats.get("in_doubt", 0),
                         "stale_writes": state["stale_writes"], "seconds": round(time.monotonic() - started, 1)})
    case.check("some requests landed late", stats.get("in_doubt", 0) > 0, stats)
    case.check("0 writes older than the value the Market held", state["stale_writes"] == 0, state)
    case.check("the Market ends with the newest value of every (warehouse, SKU)", market() == expected)
    case.check("0 x 420", all(e["status"] != 420 for e in log))
    case.check("nothing dead-lettered", not bench.buffer.dead_letters(target))
