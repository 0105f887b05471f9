"""Report tasks end to end: a real ``reports`` worker, the sandbox over HTTP, a private Redis.

One sandbox and one worker serve the whole module (starting a worker costs seconds); each test
uses its own campaigns or formats and clears the report dedup records, so they stay independent.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests
from celery import Celery

from tests.support.processes import ROOT, CeleryWorker, wait_for
from ymsync.reports.parse import read_rows
from ymsync.reports.poller import read_events
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig

OFF = {"updateStocks": None, "getStocks": None, "generateStocksOnWarehousesReport": None, "getReportInfo": None}
TASK = "ymsync.reports.stocks_on_warehouses"


@pytest.fixture(scope="module")
def market():
    config = SandboxConfig(campaigns=(CampaignConfig(41, 5, "FBY"), CampaignConfig(42, 5, "FBS"),
                                      CampaignConfig(43, 5, "DBS"), CampaignConfig(44, 5, "FBS")),
                           quotas=dict(OFF), report_delay_s=0.3)
    with MarketSandbox(config=config) as sandbox:
        requests.post(f"{sandbox.url}/_admin/stocks/41", json={f"F-{i}": i for i in range(30)}, timeout=5)
        requests.post(f"{sandbox.url}/_admin/stocks/42", json={"S-1": 4, "S-2": 0}, timeout=5)
        requests.post(f"{sandbox.url}/_admin/stocks/43", json={"D-1": 9}, timeout=5)
        yield sandbox  # campaign 44 stays empty: its reports end FAILED/NO_DATA


@pytest.fixture(scope="module")
def env(market, redis_server, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    return {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": "sandbox-token",
            "YM_REPORTS_DIR": str(reports), "YM_QUOTA_REPORT_GENERATE": "0", "YM_QUOTA_REPORT_INFO": "100/60"}


@pytest.fixture(scope="module")
def worker(env, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "reports-worker.log"
    proc = CeleryWorker(env, queues="reports", concurrency=2, name="reports", log_path=log).start()
    probe = Celery(broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    wait_for(lambda: probe.control.ping(timeout=0.5), 60, "the reports worker to answer ping")
    yield probe
    proc.kill()  # teardown: nothing here tests a graceful shutdown


@pytest.fixture()
def app(worker, redis_server):
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter("ymsync:report:req:*"):
        client.delete(key)  # the dedup window outlives a test; each test asks afresh
    return worker


def send(app: Celery, request: dict, fmt: str):
    return app.send_task(TASK, args=(request, fmt), queue="reports")


def generates(market) -> int:
    counts = requests.get(f"{market.url}/_admin/state", timeout=5).json()["requests"]
    return sum(n for k, n in counts.items() if k.startswith("generateStocksOnWarehousesReport 200"))


def test_full_lifecycle_in_all_three_formats(app, market, env):
    jobs = {"CSV": send(app, {"campaignId": 41}, "CSV"), "JSON": send(app, {"campaignId": 42}, "JSON"),
            "FILE": send(app, {"businessId": 5, "campaignIds": [42, 43]}, "FILE")}
    out = {fmt: job.get(timeout=30) for fmt, job in jobs.items()}
    assert all(o["status"] == "DONE" for o in out.values()), out
    assert (out["CSV"]["rows"], out["CSV"]["sheets"]) == (30, ["stocks_on_warehouses"])
    assert (out["JSON"]["rows"], out["JSON"]["sheets"]) == (2, ["mass_shared_stocks"])
    assert (out["FILE"]["rows"], out["FILE"]["sheets"]) == (3, ["stocks_business"])
    for fmt, ext in (("CSV", ".zip"), ("JSON", ".zip"), ("FILE", ".xlsx")):
        path = Path(out[fmt]["path"])
        assert path.suffix == ext and path.parent == Path(env["YM_REPORTS_DIR"])
    _, rows = read_rows(Path(out["FILE"]["path"]))
    assert {r["SHOP_SKU"]: r["COUNT"] for r in rows} == {"S-1": 4, "S-2": 0, "D-1": 9}
    with open(out["CSV"]["rows_path"], newline="") as fh:
        parsed = {r["SHOP_SKU"]: int(r["AVAILABLE_FOR_ORDER"]) for r in csv.DictReader(fh)}
    assert parsed == {f"F-{i}": i for i in range(30)}


def test_identical_requests_share_one_report(app, market):
    before = generates(market)
    a, b = send(app, {"campaignId": 43}, "JSON"), send(app, {"campaignId": 43}, "JSON")
    ra, rb = a.get(timeout=30), b.get(timeout=30)
    assert ra["status"] == rb["status"] == "DONE"
    assert ra["report_id"] == rb["report_id"] and sorted([ra["reused"], rb["reused"]]) == [False, True]
    assert generates(market) - before == 1


def test_failed_no_data_ends_with_a_clear_result(app, market):
    job = send(app, {"campaignId": 44}, "CSV")
    result = job.get(timeout=30)
    assert job.state == "SUCCESS"  # a verdict, not a traceback
    assert (result["status"], result["sub_status"], result["path"]) == ("FAILED", "NO_DATA", None)
    assert "no data" in result["reason"]


def test_expired_link_is_recovered_by_the_worker(app, market, redis_server):
    requests.post(f"{market.url}/_admin/reports/dead-links", json={"count": 1}, timeout=5)
    job = send(app, {"campaignId": 42}, "FILE")
    result = job.get(timeout=30)
    assert result["status"] == "DONE" and result["rows"] == 2
    statuses = [e["status"] for e in read_events(redis.Redis.from_url(redis_server.url), job.id)]
    assert "link-expired" in statuses and statuses[-1] == "parsed"


def test_chord_snapshot_merges_three_reports_and_names_the_failed_part(app, env):
    parts = [{"request": {"campaignId": 41}, "format": "CSV"}, {"request": {"campaignId": 42}, "format": "JSON"},
             {"request": {"businessId": 5, "campaignIds": [43]}, "format": "FILE"},
             {"request": {"campaignId": 44}, "format": "CSV"}]
    started = app.send_task("ymsync.reports.snapshot", args=(parts, "snaps/one"), queue="reports")
    info = started.get(timeout=15)
    summary = app.AsyncResult(info["merge_task_id"]).get(timeout=45)
    assert summary["status"] == "partial" and summary["rows"] == 30 + 2 + 1
    assert [p["status"] for p in summary["parts"]] == ["DONE", "DONE", "DONE", "FAILED"]
    assert summary["failed"] == ["campaign=44 CSV: FAILED NO_DATA the Market has no data for this selection "
                                 "(no stock matched the request's filters)"]
    folder = Path(env["YM_REPORTS_DIR"]) / "snaps" / "one"
    assert info["folder"] == str(folder) and summary["csv"] == str(folder / "snapshot.csv")
    on_disk = json.loads((folder / "summary.json").read_text())
    assert on_disk == summary
    with open(folder / "snapshot.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["PART"] for r in rows} == {"campaign=41 CSV", "campaign=42 JSON", "business=5 FILE campaignIds=1"}
    assert {(r["SHOP_SKU"], r["AVAILABLE"]) for r in rows if r["SHEET"] != "stocks_on_warehouses"} == \
        {("S-1", "4"), ("S-2", "0"), ("D-1", "9")}
    # A task argument cannot point a worker's writes outside YM_REPORTS_DIR.
    escape = app.send_task("ymsync.reports.snapshot", args=(parts, "../elsewhere"), queue="reports").get(timeout=15)
    assert escape["status"] == "failed" and "out_dir must lie inside YM_REPORTS_DIR" in escape["error"]
    job = app.send_task(TASK, args=({"campaignId": 41}, "CSV", "/tmp"), queue="reports").get(timeout=15)
    assert job["status"] == "ERROR" and "out_dir must lie inside" in job["reason"]


def test_cli_wait_shows_transitions_and_prints_path_and_rows(app, env, tmp_path):
    cmd = [sys.executable, "-m", "ymsync.cli", "report", "stocks-on-warehouses", "--campaign", "41",
           "--format", "JSON", "--out", str(tmp_path / "out"), "--wait", "--timeout", "40"]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("queued report job ") and "(campaign=41 JSON)" in lines[0]
    statuses = [line.split()[1] for line in lines if line.startswith("  ")]
    assert statuses[0] in ("generating", "reused") and statuses[-1] == "parsed" and "DONE" in statuses
    path = Path(lines[-2])
    assert path.parent == tmp_path / "out" and path.is_file()
    assert lines[-1].startswith("30 rows (stocks_on_warehouses)")

    refused = subprocess.run(cmd[:5] + ["--business", "5", "--warehouse", "1", "--wait"], cwd=ROOT,
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--warehouse is only for --campaign (FBY) reports" in refused.stderr
    assert "queued" not in refused.stdout


def test_chord_errback_writes_a_failed_summary(env, tmp_path):
    # Parts never raise, so a broken chord takes a crash; call the errback the way Celery's
    # backend does (new-style: request, exc, traceback) to prove it is wired and writes.
    script = ("import sys; from celery.exceptions import ChordError; from tasks import app; import tasks.reports as r\n"
              "sig = app.signature(r.snapshot_failed.s(snapshot_id='s9', folder=sys.argv[1]))\n"
              "assert app.backend._errback_arity_greater(sig, 1)\n"
              "sig(None, ChordError('part 2 crashed'), None)\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "s9")], cwd=ROOT, env={**os.environ, **env},
                   check=True, timeout=60)
    summary = json.loads((tmp_path / "s9" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed"] == ["snapshot chord failed: ChordError: part 2 crashed"]


def test_a_duplicated_message_runs_the_job_once(app, market, redis_server):
    # Two messages with one task id (a redelivery racing a dispatch): one job, one report.
    before = generates(market)
    first = app.send_task(TASK, args=({"campaignId": 43}, "CSV"), queue="reports")
    app.send_task(TASK, args=({"campaignId": 43}, "CSV"), queue="reports", task_id=first.id)
    result = first.get(timeout=30)
    assert result["status"] == "DONE" and result["rows"] == 1 and not result["reused"]
    assert generates(market) - before == 1
    statuses = [e["status"] for e in read_events(redis.Redis.from_url(redis_server.url), first.id)]
    assert statuses.count("generating") == 1 and "reused" not in statuses and statuses.count("parsed") == 1


def test_done_without_a_file_ends_the_job_at_once(app, market):
    requests.post(f"{market.url}/_admin/reports/quirk-next", json={"status": "DONE", "sub_status": "NO_DATA",
                                                                   "file": False}, timeout=5)
    job = send(app, {"campaignId": 41}, "JSON")
    result = job.get(timeout=30)
    assert (result["status"], result["sub_status"], result["path"]) == ("FAILED", "NO_DATA", None)
    assert result["reason"].startswith("DONE without a file link") and result["elapsed_s"] < 10
