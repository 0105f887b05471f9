"""Warehouse groups on the read side (issue 20 item 3): a group's campaigns share one stock, so a
read asked for several of them is one read, drift is judged once, and a report snapshot holds one
row set per group with ``GROUP`` naming the campaigns that share it. The sandbox models the group
(a write through one campaign, or a cabinet edit, is seen through both) and logs every request.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from tests.support.processes import ROOT, CeleryWorker, wait_for
from tests.support.stock_harness import sandbox_config
from ymsync.config.settings import configure
from ymsync.sandbox import CampaignConfig

pytestmark = pytest.mark.integration
GROUP = (1001, 1002)
SKUS = 240


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ymsync.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def _config(**kwargs):
    return sandbox_config(campaigns=tuple(CampaignConfig(c, 100) for c in GROUP), warehouse_groups=(GROUP,),
                          **kwargs)


def test_shell_reads_and_reconcile_take_a_discovered_group_as_one_stock(bench_for, redis_server):
    bench = bench_for(_config())
    env = bench.env(YM_BUSINESS_ID="100")  # a v2 cabinet that configures no groups: the Market's count
    bench.admin("stocks/1002", {f"S-{i:03d}": i for i in range(SKUS)})  # a cabinet edit, seen through both
    skus = sorted(f"S-{i:03d}" for i in range(SKUS))

    # Before the Market's groups are known, each campaign is read as a stock of its own: the
    # duplication the reads below must not show.
    alone = run_cli(env, "stocks", "--campaign", "1001", "--campaign", "1002")
    assert alone.returncode == 0, alone.stderr
    assert len(alone.stdout.splitlines()) == 2 * SKUS and "share one stock" not in alone.stderr

    assert run_cli(env, "warehouses", "--business", "100").returncode == 0  # caches getPagedWarehouses
    seen = len(bench.log("getStocks"))
    read = run_cli(env, "stocks", "--campaign", "1002", "--campaign", "1001")
    assert read.returncode == 0, read.stderr
    assert sorted(json.loads(line)["offerId"] for line in read.stdout.splitlines()) == skus  # each once
    assert "campaigns 1001, 1002 share one stock (warehouse group); read once, through 1002" in read.stderr
    calls = bench.log("getStocks")[seen:]
    assert {c["key"] for c in calls} == {"1002"} and len(calls) == SKUS // 100 + 1  # one walk of 3 pages

    # What ymsync delivers, pushed through both campaigns; then someone edits the cabinet of one.
    configure({"REDIS_URL": redis_server.url, "YM_API_KEY": "sandbox-token", "YM_BUSINESS_ID": "100"})
    try:
        ours = {sku: 1000 + i for i, sku in enumerate(skus)}
        bench.push(1001, list(ours.items())[: SKUS // 2])
        bench.push(1002, list(ours.items())[SKUS // 2:])
        assert bench.buffer.pending("g1001") == SKUS  # the group's target, though campaigns were named
    finally:
        configure(None)
    bench.start_worker("stocks", YM_BUSINESS_ID="100")
    wait_for(lambda: bench.buffer.pending("g1001") == bench.buffer.in_flight("g1001") == 0
             and bench.stocks(1001) == ours, 60, "the group's values delivered", interval=0.2)
    bench.admin("stocks/1001", {"S-003": 0, "S-117": 999})  # drift, seen through both campaigns

    seen = len(bench.log("getStocks"))
    found = run_cli(env, "reconcile", "--campaign", "1001", "--campaign", "1002", "--json")
    assert found.returncode == 0, found.stderr
    report = json.loads(found.stdout)  # one object: one stock, judged once
    assert (report["campaign"], report["campaigns"], report["checked"], report["drift"]) == (1001, [1001, 1002],
                                                                                           SKUS, 2)
    # The campaign's own warehouse as getPagedWarehouses lists it, not a guess from the read.
    assert (report["warehouse"], report["warehouse_source"]) == (CampaignConfig(1001).warehouse_id, "market")
    assert {c["key"] for c in bench.log("getStocks")[seen:]} == {"1001"}
    table = run_cli(env, "reconcile", "--campaign", "1002", "--campaign", "1001")
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("SKUs checked") == 1
    assert ("group 1001+1002 (one stock shared by campaigns 1001, 1002; read and judged once, through 1002): "
            f"{SKUS} SKUs checked, 2 drifted") in table.stdout


def test_report_snapshot_and_read_tasks_name_the_group(bench_for, tmp_path):
    """A configured group, a real worker on the reports queue: two campaign reports of one group are
    one report (one generate) whose rows say GROUP=1001,1002; the read tasks name the group too."""
    bench = bench_for(_config(report_delay_s=0.3))
    bench.admin("stocks/1001", {f"R-{i:02d}": i for i in range(40)})
    reports = tmp_path / "reports"
    env = bench.env(YM_WAREHOUSE_GROUPS="1001,1002", YM_REPORTS_DIR=str(reports), YM_QUOTA_REPORT_GENERATE="0",
                    YM_QUOTA_REPORT_INFO="100/60")
    bench.workers.append(CeleryWorker(env, queues="reports", name="reports", log_path=tmp_path / "reports.log").start())
    probe = Celery(broker=bench.redis_url, backend=bench.redis_url)
    parts = [{"request": {"campaignId": 1001}, "format": "CSV"}, {"request": {"campaignId": 1002}, "format": "CSV"},
             {"request": {"campaignId": 1002}, "format": "JSON"}]
    info = probe.send_task("ymsync.reports.snapshot", args=(parts, "snaps/g"), queue="reports").get(timeout=60)
    summary = probe.AsyncResult(info["merge_task_id"]).get(timeout=60)
    assert summary["status"] == "complete", summary
    # The JSON report of 1002 is another report (a format asked for); the CSV of 1002 repeats 1001's.
    assert [(p["label"], p["group"]) for p in summary["parts"]] == [("campaign=1001 CSV", "1001,1002"),
                                                                    ("campaign=1002 JSON", "1001,1002")]
    assert bench.requests_by_status("generateStocksOnWarehousesReport") == {200: 2}
    with open(Path(summary["csv"]), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 40 and {r["GROUP"] for r in rows} == {"1001,1002"}

    read = probe.send_task("ymsync.reads.stocks", (1002,), {"out": "reads/g.jsonl"}, queue="reports").get(timeout=30)
    assert (read["offers"], read["campaigns"]) == (40, [1001, 1002])
    rec = probe.send_task("ymsync.reads.reconcile", (1002,), {"out": "rec.json"}, queue="reports").get(timeout=30)
    assert rec["campaigns"] == [1001, 1002]
