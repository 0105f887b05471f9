"""Two cabinets from one YM_CABINETS_FILE against the sandbox over HTTP, a private Redis and a real
reports worker: warehouses (cached, per-cabinet token), a v3 warehouse read, a cabinet with
warehouse groups refused plainly, the v3 business stocks report through the task and the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from celery import Celery

from tests.support.processes import ROOT, CeleryWorker, wait_for
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig

NORTH, SOUTH = "tok-north-7-secret", "tok-south-8-secret"
CABINETS = """
[cabinets.north]
business_id = 7
mode = "v3"
token_env = "YM_TOKEN_NORTH"

[cabinets.south]
business_id = 8
mode = "v3"          # wrong on purpose: business 8 keeps warehouse groups
campaigns = [8001]
token_file = "{south}"
"""


@pytest.fixture(scope="module")
def market():
    # The report quotas are off here (each test asks afresh); test_report_poller_v3 covers them.
    config = SandboxConfig(tokens=("sandbox-token",), report_delay_s=0.3,
                           campaigns=(CampaignConfig(8001, 8, "FBS"),),
                           quotas={"generateStocksReport": None, "generateStocksOnWarehousesReport": None})
    with MarketSandbox(config=config) as sandbox:
        admin = f"{sandbox.url}/_admin"
        requests.post(f"{admin}/businesses", timeout=5, json=[
            {"id": 7, "warehouses": [
                {"id": 11, "name": "Север", "models": [{"placementType": "FBS", "apiAvailability": "AVAILABLE"}]},
                {"id": 12, "name": "Юг", "models": [{"placementType": "DBS",
                                                     "apiAvailability": "DISABLED_BY_INACTIVITY"}]}]},
            {"id": 8, "groups": True, "warehouses": [{"id": 21, "name": "Запад"}]}]).raise_for_status()
        # Each cabinet's token reaches only its own business.
        requests.post(f"{admin}/tokens", json={"token": NORTH, "businesses": [7]}, timeout=5).raise_for_status()
        requests.post(f"{admin}/tokens", json={"token": SOUTH, "businesses": [8]}, timeout=5).raise_for_status()
        requests.post(f"{admin}/business/7/stocks", json={"11": {f"N-{i}": i for i in range(130)}},
                      timeout=5).raise_for_status()
        requests.post(f"{admin}/stocks/8001", json={"S-1": 4, "S-2": 5}, timeout=5).raise_for_status()
        yield sandbox


@pytest.fixture(scope="module")
def env(market, redis_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cabinets")
    (folder / "south.token").write_text(SOUTH + "\n")
    (folder / "cabinets.toml").write_text(CABINETS.format(south=folder / "south.token"))
    return {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_CABINETS_FILE": str(folder / "cabinets.toml"),
            "YM_TOKEN_NORTH": NORTH, "YM_REPORTS_DIR": str(folder / "reports"),
            "YM_QUOTA_STOCKS_REPORT_V3": "0", "YM_QUOTA_REPORT_GENERATE": "0"}


def cli(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("YM_", "REDIS_URL", "CELERY_"))}
    return subprocess.run([sys.executable, "-m", "ymsync.cli", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout)


def calls(market, operation: str) -> int:
    counts = requests.get(f"{market.url}/_admin/state", timeout=5).json()["requests"]
    return sum(n for k, n in counts.items() if k.startswith(f"{operation} 200"))


def test_warehouses_listed_once_then_from_the_cache(market, env, redis_server):
    import redis as redis_lib

    redis_lib.Redis.from_url(redis_server.url).flushdb()
    first = cli(env, "warehouses", "--business", "7", "--json")
    assert first.returncode == 0, first.stderr
    listing = json.loads(first.stdout)
    assert [(w["id"], w["name"], w["available"]) for w in listing["warehouses"]] == \
        [(11, "Север", True), (12, "Юг", False)]
    assert listing["warehouses"][1]["models"] == [{"program": "DBS", "apiAvailability": "DISABLED_BY_INACTIVITY"}]
    before = calls(market, "getPartnerWarehouses")
    table = cli(env, "warehouses", "--business", "7")
    assert table.returncode == 0 and "NOT AVAILABLE" in table.stdout and "Север" in table.stdout
    assert calls(market, "getPartnerWarehouses") == before  # served from Redis: the quota is 100 an hour
    assert cli(env, "warehouses", "--business", "7", "--refresh").returncode == 0
    assert calls(market, "getPartnerWarehouses") == before + 1
    unknown = cli(env, "warehouses", "--business", "9")
    assert unknown.returncode == 1 and unknown.stderr.strip() == \
        "Error: no cabinet configured for business 9 (configured: 7, 8)"


def test_v3_warehouse_read_to_jsonl(market, env, tmp_path):
    out = tmp_path / "w11.jsonl"
    done = cli(env, "stocks", "--business", "7", "--warehouse", "11", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["offerId"]: r["stocks"].get("FIT", r["stocks"].get("AVAILABLE")) for r in rows} == \
        {f"N-{i}": i for i in range(130)}
    assert {r["warehouseId"] for r in rows} == {11}
    assert "130 offers in 2 pages" in done.stderr  # limit 100: the Market's maximum


def test_cabinet_with_groups_is_refused_plainly_and_tokens_never_show(market, env, tmp_path):
    done = cli(env, "stocks", "--business", "8", "--warehouse", "21", "--out", str(tmp_path / "x.jsonl"))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "warehouse groups" in lines[0] and "v2" in lines[0], lines
    assert SOUTH not in done.stderr + done.stdout and NORTH not in done.stderr + done.stdout


@pytest.fixture(scope="module")
def worker(env, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "reports-worker.log"
    proc = CeleryWorker(env, queues="reports", concurrency=2, name="cabinets", log_path=log).start()
    probe = Celery(broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    wait_for(lambda: probe.control.ping(timeout=0.5), 60, "the reports worker to answer ping")
    yield probe, log
    proc.kill()  # teardown: nothing here tests a graceful shutdown


def test_business_stocks_report_through_worker_and_cli(market, env, worker, tmp_path):
    app, log = worker
    done = cli(env, "report", "stocks", "--business", "7", "--warehouse", "11", "--format", "CSV",
               "--out", str(tmp_path / "out"), "--wait", "--timeout", "60", timeout=90)
    assert done.returncode == 0, done.stderr + done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("queued report job ") and "(business=7 CSV v3 partnerWarehouseIds=1)" in lines[0]
    path = Path(lines[-2])
    assert path.parent == tmp_path / "out" and path.is_file()
    assert "rows (stocks_business)" in lines[-1]
    rows_path = path.with_name(path.stem + ".rows.csv")
    with open(rows_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["SHOP_SKU"] for r in rows} == {f"N-{i}" for i in range(130)}
    assert calls(market, "generateStocksReport") >= 1
    # The cabinet with groups: the job ends with the Market's refusal and which mode to set, no traceback.
    refused = app.send_task("ymsync.reports.business_stocks", args=({"businessId": 8}, "CSV"), queue="reports")
    outcome = refused.get(timeout=60)
    assert outcome["status"] == "ERROR" and "warehouse groups" in outcome["reason"] and "v2" in outcome["reason"]
    # A business no cabinet serves: a clear outcome, not a crash.
    stray = app.send_task("ymsync.reports.business_stocks", args=({"businessId": 99}, "CSV"), queue="reports")
    assert "no cabinet configured for business 99" in stray.get(timeout=60)["reason"]
    text = log.read_text()
    assert NORTH not in text and SOUTH not in text


def test_warehouse_read_task_and_groups_refusal_as_a_result(env, worker):
    app, log = worker
    result = app.send_task("ymsync.reads.warehouse_stocks", args=(7, 11, "w/north-11.jsonl"),
                           queue="reports").get(timeout=60)
    assert result["offers"] == 130 and result["requests"] == 2
    lines = Path(result["path"]).read_text().splitlines()
    assert Path(result["path"]) == Path(env["YM_REPORTS_DIR"]) / "w" / "north-11.jsonl" and len(lines) == 130
    refused = app.send_task("ymsync.reads.warehouse_stocks", args=(8, 21), queue="reports").get(timeout=60)
    assert "warehouse groups" in refused["error"] and "v2" in refused["error"]
    assert SOUTH not in json.dumps(refused)


def test_snapshot_chord_mixes_v2_and_v3_reports_of_two_cabinets(env, worker):
    app, log = worker
    parts = [{"request": {"businessId": 8, "campaignIds": [8001]}, "format": "CSV"},
             {"request": {"businessId": 7, "partnerWarehouseIds": [11]}, "format": "CSV", "api": "v3"}]
    info = app.send_task("ymsync.reports.snapshot", args=(parts, "snaps/mixed"), queue="reports").get(timeout=30)
    summary = app.AsyncResult(info["merge_task_id"]).get(timeout=90)
    assert summary["status"] == "complete", summary
    assert [p["status"] for p in summary["parts"]] == ["DONE", "DONE"]
    assert info["parts"] == ["business=8 CSV campaignIds=1", "business=7 CSV v3 partnerWarehouseIds=1"]
    with open(summary["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_part: dict[str, set[str]] = {}
    for row in rows:
        by_part.setdefault(row["PART"], set()).add(row["SHOP_SKU"])
    assert by_part == {"business=8 CSV campaignIds=1": {"S-1", "S-2"},
                       "business=7 CSV v3 partnerWarehouseIds=1": {f"N-{i}" for i in range(130)}}


def test_cabinets_command_shows_configuration_without_tokens(env):
    done = cli(env, "cabinets")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "north: business 7, mode v3, basic, campaigns none, token from YM_TOKEN_NORTH"
    assert lines[1].startswith("south: business 8, mode v3, basic, campaigns 8001, token from file ")
    assert lines[2].startswith("2 cabinet(s) from ") and NORTH not in done.stdout and SOUTH not in done.stdout
    as_json = [json.loads(line) for line in cli(env, "cabinets", "--json").stdout.splitlines()]
    assert [(c["name"], c["business_id"], c["mode"]) for c in as_json] == [("north", 7, "v3"), ("south", 8, "v3")]
