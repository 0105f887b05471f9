"""Report jobs survive a SIGKILLed reports worker (issue 11, item 6).

Real processes: a private redis-server, the sandbox over HTTP, ``celery -A tasks worker -Q reports``
workers. Worker A runs a single report job and a two-part snapshot chord until all three are
polling, with one poll step in flight; A's whole process group is SIGKILLed (its messages stay
unacked in the broker for the 6 h visibility timeout). Worker B starts: every job must end DONE with
its file parsed within 2 minutes, the chord must merge `complete`, and no report is generated twice.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import requests
from celery import Celery

from tests.support.processes import CeleryWorker, wait_for
from ymsync.store import keys
from ymsync.reports.jobs import ReportJobs
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig

pytestmark = [pytest.mark.chaos, pytest.mark.integration]
OFF = {"updateStocks": None, "getStocks": None, "generateStocksOnWarehousesReport": None, "getReportInfo": None}
TASK = "ymsync.reports.stocks_on_warehouses"
STEP_LEASE_S, RESEND_S = 3.0, 6.0


@pytest.fixture()
def market():
    config = SandboxConfig(campaigns=(CampaignConfig(71, 7, "FBY"), CampaignConfig(72, 7, "FBS"),
                                      CampaignConfig(73, 7, "DBS")), quotas=dict(OFF), report_delay_s=8.0)
    with MarketSandbox(config=config) as sandbox:
        requests.post(f"{sandbox.url}/_admin/stocks/71", json={f"F-{i}": i for i in range(12)}, timeout=5)
        requests.post(f"{sandbox.url}/_admin/stocks/72", json={"S-1": 4, "S-2": 0}, timeout=5)
        requests.post(f"{sandbox.url}/_admin/stocks/73", json={"D-1": 9}, timeout=5)
        # Each report says "ready in 0.3 s" while it takes 8 s: jobs keep polling, so the kill
        # lands in their polling phase.
        requests.post(f"{sandbox.url}/_admin/reports/quirk-next", json={"estimate_ms": 300, "count": 3}, timeout=5)
        yield sandbox


def generates(market) -> int:
    counts = requests.get(f"{market.url}/_admin/state", timeout=5).json()["requests"]
    return sum(n for k, n in counts.items() if k.startswith("generateStocksOnWarehousesReport 200"))


def test_report_job_survives_a_killed_reports_worker(market, clean_redis, redis_server, tmp_path, case):
    """Report jobs and a snapshot chord polling when their reports worker is SIGKILLed"""
    # The step lease and the resend (30 s and 60 s in production) shortened: the heir takes the
    # killed worker's jobs over once they lapse, whatever their length.
    env = {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": "sandbox-token",
           "YM_REPORTS_DIR": str(tmp_path / "reports"), "YM_QUOTA_REPORT_GENERATE": "0",
           "YM_QUOTA_REPORT_INFO": "100/60", "YM_REPORT_STEP_LEASE_S": str(STEP_LEASE_S),
           "YM_REPORT_RESEND_S": str(RESEND_S)}
    app = Celery(broker=redis_server.url, backend=redis_server.url)
    a = CeleryWorker(env, queues="reports", concurrency=2, name="a", log_path=tmp_path / "a.log").start()
    b = CeleryWorker(env, queues="reports", concurrency=2, name="b", log_path=tmp_path / "b.log")
    try:
        wait_for(lambda: app.control.ping(destination=["a@" + _host()], timeout=0.5), 60, "worker A to answer ping")
        single = app.send_task(TASK, args=({"campaignId": 71}, "CSV"), queue="reports")
        parts = [{"request": {"campaignId": 72}, "format": "JSON"}, {"request": {"campaignId": 73}, "format": "FILE"}]
        snap = app.send_task("ymsync.reports.snapshot", args=(parts, "snaps/killed"), queue="reports").get(timeout=30)
        merge = app.AsyncResult(snap["merge_task_id"])
        store = ReportJobs(clean_redis)

        def job_ids() -> list[str]:
            return [k.decode().split("{")[1].split("}")[0] for k in clean_redis.scan_iter(keys.report_job("*"))]

        def polling() -> list[dict]:
            rows = [store.get(j) for j in job_ids()]
            return [r for r in rows if r.get("state") and json.loads(r["state"])["phase"] == "poll"]

        wait_for(lambda: len(polling()) == 3, 30, "all three jobs to be polling")
        # Slow every info call down so a poll step is in flight when the worker dies.
        requests.post(f"{market.url}/_admin/faults", json={"latency_min_ms": 800, "latency_max_ms": 800}, timeout=5)
        in_flight = wait_for(lambda: [r for r in polling() if r.get("mode") == "running"], 30,
                             "a poll step in flight")
        a.kill(signal.SIGKILL)
        killed_mid_step = json.loads(in_flight[0]["state"])["job_id"]
        assert not single.ready() and not merge.ready()
        assert generates(market) == 3

        b.start()
        wait_for(lambda: app.control.ping(destination=["b@" + _host()], timeout=0.5), 60, "worker B to answer ping")
        up = time.monotonic()
        outcome = single.get(timeout=120)
        summary = merge.get(timeout=max(1.0, 120 - (time.monotonic() - up)))
        recovered_in = time.monotonic() - up
    finally:
        a.kill(signal.SIGKILL)
        b.kill()

    case.figures.update({"jobs": 3, "chord_parts": 2, "step_lease_s": STEP_LEASE_S, "resend_s": RESEND_S,
                         "finished_s_after_heir_up": round(recovered_in, 1),
                         "chord_status": summary["status"], "reports_generated": generates(market)})
    case.check("every job finished within 2 minutes of another worker being up", recovered_in <= 120, recovered_in)
    assert outcome["status"] == "DONE" and outcome["rows"] == 12 and Path(outcome["rows_path"]).is_file()
    case.check("the snapshot chord whose part was hit ended complete", summary["status"] == "complete", summary)
    assert [p["status"] for p in summary["parts"]] == ["DONE", "DONE"] and summary["rows"] == 2 + 1
    assert json.loads((tmp_path / "reports" / "snaps" / "killed" / "summary.json").read_text()) == summary
    case.check("no report generated twice", generates(market) == 3)  # recovery re-polled the ones it had
    # The job whose poll step died with A ended DONE too, and every job record says so.
    hit = app.AsyncResult(killed_mid_step).get(timeout=5)
    assert hit["status"] == "DONE" and hit["rows"] > 0 and Path(hit["rows_path"]).is_file()
    assert {store.get(j).get("mode") for j in job_ids()} == {"done"}
    # The due index empties: a job's last index entry goes when Celery has its result (on_success,
    # just after the result is visible) or, if a scheduler turn re-indexed it meanwhile, at that
    # entry's due time (the job is gone by then).
    wait_for(lambda: clean_redis.zcard(keys.REPORT_DUE) == 0, RESEND_S + 10, "the report due index to empty")
    assert 0 < clean_redis.ttl(keys.report_job(killed_mid_step)) <= 8 * 3600


def _host() -> str:
    import socket

    return socket.gethostname()
