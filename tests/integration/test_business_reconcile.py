"""Business (v3) reconciliation end to end: real workers, a private Redis, the sandbox over HTTP.

What ymsync delivered (the buffer's records of target ``b7``, per (warehouse, SKU)) is compared
with getStocksOnPartnerWarehouses warehouse by warehouse; ``--fix`` re-queues drifted values
through push_business_stocks, except one whose newer value is already queued (pending).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from celery import Celery

from tests.support.processes import CeleryWorker, ROOT, wait_for
from ymsync import push_business_stocks
from ymsync.sandbox import SandboxConfig
from ymsync.sandbox.business_state import BusinessConfig, WarehouseConfig
from ymsync.engine.targets import business_target

pytestmark = pytest.mark.integration

BUSINESS, NORTH, SOUTH = 7, 501, 502
CABINET = {"YM_BUSINESS_ID": str(BUSINESS), "YM_API_MODE": "v3"}  # the simple case: one v3 cabinet


def config() -> SandboxConfig:
    business = BusinessConfig(BUSINESS, (WarehouseConfig(NORTH, "Север"), WarehouseConfig(SOUTH, "Юг")))
    return SandboxConfig(quotas={"updateStocks": None, "getStocks": None}, businesses=(business,))


def market_stock(bench) -> dict[tuple[int, str], int]:
    raw = bench.admin(f"business/{BUSINESS}/stocks")
    return {(int(w), sku): v["count"] for w, skus in raw.items() for sku, v in skus.items()}


def cli(bench, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YM_", "REDIS_URL", "CELERY_"))}
    env.update(bench.env(**CABINET))
    return subprocess.run([sys.executable, "-m", "ymsync.cli", *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=90)


def reconcile_json(bench, *args: str) -> dict[str, Any]:
    done = cli(bench, "reconcile", "--business", str(BUSINESS), "--json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def rows(result: dict[str, Any]) -> dict[tuple[int, str], tuple[int, int | None, str]]:
    return {(r["warehouse_id"], r["sku"]): (r["ours"], r["market"], r["status"])
            for w in result["warehouses"] for r in w["rows"]}


def deliver(bench, levels: dict[tuple[int, str], int]) -> None:
    items = [{"sku": sku, "warehouse": w, "count": n} for (w, sku), n in levels.items()]
    push_business_stocks(BUSINESS, items, buffer=bench.buffer)


def settled(bench) -> bool:
    target = business_target(BUSINESS)
    return bench.buffer.pending(target) == 0 and bench.buffer.in_flight(target) == 0


def test_drift_listed_per_warehouse_and_fixed_except_where_a_newer_value_waits(bench_for):
    bench = bench_for(config())
    shop = {(w, f"R-{i:02d}"): 10 * i + w % 10 for w in (NORTH, SOUTH) for i in range(20)}
    deliver(bench, shop)
    stocks = bench.start_worker("stocks", concurrency=2, **CABINET)
    wait_for(lambda: settled(bench) and market_stock(bench) == shop, 30, "the shop's stock at the Market")

    # Within the grace period nothing is judged: the Market may not show a fresh value yet.
    fresh = reconcile_json(bench)
    assert (fresh["checked"], fresh["drift"], fresh["in_motion"]) == (0, 0, 40), fresh

    # Someone edits three levels in the cabinet; the shop meanwhile sells one of them again.
    stocks.stop()
    bench.admin(f"business/{BUSINESS}/stocks", {str(NORTH): {"R-01": 99, "R-02": 98}, str(SOUTH): {"R-03": 97}})
    deliver(bench, {(NORTH, "R-02"): 1})  # queued, not delivered: no worker runs
    listed = reconcile_json(bench, "--grace", "0")
    assert [w["warehouse"] for w in listed["warehouses"]] == [NORTH, SOUTH]
    assert listed["checked"] == 40 and listed["requeued"] == 0
    assert rows(listed) == {(NORTH, "R-01"): (shop[(NORTH, "R-01")], 99, "drift"),
                            (NORTH, "R-02"): (shop[(NORTH, "R-02")], 98, "pending"),
                            (SOUTH, "R-03"): (shop[(SOUTH, "R-03")], 97, "drift")}
    one = reconcile_json(bench, "--grace", "0", "--warehouse", str(SOUTH))
    assert [w["warehouse"] for w in one["warehouses"]] == [SOUTH] and set(rows(one)) == {(SOUTH, "R-03")}

    fixed = reconcile_json(bench, "--grace", "0", "--fix")
    assert fixed["requeued"] == 2, fixed
    assert {k: v[2] for k, v in rows(fixed).items()} == {(NORTH, "R-01"): "drift", (NORTH, "R-02"): "pending",
                                                         (SOUTH, "R-03"): "drift"}
    bench.start_worker("stocks2", concurrency=2, **CABINET)
    # The fixes land, and the newer value of R-02 wins over the old delivered one it would have undone.
    expected = {**shop, (NORTH, "R-02"): 1}
    wait_for(lambda: settled(bench) and market_stock(bench) == expected, 30, "the fixed and newer values")
    again = reconcile_json(bench, "--grace", "0")
    assert (again["checked"], again["drift"]) == (40, 0), again


def test_the_reports_worker_task_and_the_cli_table(bench_for, tmp_path):
    bench = bench_for(config())
    levels = {(NORTH, "T-1"): 4, (SOUTH, "T-2"): 5}
    deliver(bench, levels)
    bench.start_worker("stocks", concurrency=1, **CABINET)
    wait_for(lambda: settled(bench) and market_stock(bench) == levels, 30, "delivery")
    bench.admin(f"business/{BUSINESS}/stocks", {str(SOUTH): {"T-2": 0}})
    env = bench.env(**CABINET, YM_RECONCILE_GRACE="0", YM_REPORTS_DIR=str(tmp_path / "reports"))
    reports = CeleryWorker(env, queues="reports", concurrency=1, name="reports",
                           log_path=tmp_path / "reports.log").start()
    bench.workers.append(reports)
    app = Celery(broker=bench.redis_url, backend=bench.redis_url)
    wait_for(lambda: app.control.ping(timeout=0.5), 60, "the reports worker to answer ping")
    result = app.send_task("ymsync.reads.reconcile_business", args=(BUSINESS,), kwargs={"fix": True},
                           queue="reports").get(timeout=60)
    assert (result["checked"], result["drift"], result["requeued"]) == (2, 1, 1), result
    saved = json.loads(open(result["path"], encoding="utf-8").read())
    assert rows(saved) == {(SOUTH, "T-2"): (5, 0, "drift")}
    wait_for(lambda: settled(bench) and market_stock(bench) == levels, 30, "the fix delivered")
    table = cli(bench, "reconcile", "--business", str(BUSINESS), "--grace", "0")
    assert table.returncode == 0, table.stderr
    assert f"business {BUSINESS} warehouse {SOUTH}: 1 SKUs checked, 0 drifted" in table.stdout
    # A cabinet configured for v2 is told which mode to set.
    v2 = subprocess.run([sys.executable, "-m", "ymsync.cli", "reconcile", "--business", str(BUSINESS)], cwd=ROOT,
                        env={**{k: v for k, v in os.environ.items() if not k.startswith("YM_")},
                             **bench.env(YM_BUSINESS_ID=str(BUSINESS))}, capture_output=True, text=True, timeout=60)
    assert v2.returncode == 1 and "set YM_API_MODE = v3" in v2.stderr, v2.stderr
