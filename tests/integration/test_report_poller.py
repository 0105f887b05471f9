"""ReportPoller in-process against the sandbox over HTTP and a private Redis (no Celery here:
the worker tests cover the tasks). Steps are driven with a fake sleep, so quota waits are
seen as returned countdowns instead of being slept through."""

from __future__ import annotations

import pytest
import redis
import requests

from ymsync.market import MarketClient
from ymsync.engine.quota import QuotaLimiter
from ymsync.reports.parse import read_rows
from ymsync.reports.poller import PollState, ReportPoller, read_events
from ymsync.reports.request import ReportRequest
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.config.settings import Credentials, Quota, Secret

OFF = {"updateStocks": None, "getStocks": None, "generateStocksOnWarehousesReport": None, "getReportInfo": None}


@pytest.fixture()
def market():
    config = SandboxConfig(campaigns=(CampaignConfig(31, 9, "FBY"), CampaignConfig(32, 9, "FBS"),
                                      CampaignConfig(33, 9, "FBS")), quotas=dict(OFF), report_delay_s=0.3)
    with MarketSandbox(config=config) as sandbox:
        requests.post(f"{sandbox.url}/_admin/stocks/31", json={"A-1": 5, "A-2": 0}, timeout=5)
        requests.post(f"{sandbox.url}/_admin/stocks/32", json={"B-1": 7}, timeout=5)
        yield sandbox


@pytest.fixture()
def rclient(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter("ymsync:*"):
        client.delete(key)
    return client


def make_poller(market, rclient, tmp_path, generate: Quota | None = None) -> ReportPoller:
    client = MarketClient(market.url, Credentials(api_key=Secret("sandbox-token")))
    limiter = QuotaLimiter(rclient, {"report_generate": generate, "report_info": Quota(100, 60)})
    return ReportPoller(client, limiter, rclient, tmp_path, min_poll_s=0.05, max_poll_s=0.5)


def drive(poller: ReportPoller, state: PollState):
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        __import__("time").sleep(seconds)

    return poller.run(state, sleep=sleep), sleeps


def generates(market) -> int:
    state = requests.get(f"{market.url}/_admin/state", timeout=5).json()
    return sum(n for k, n in state["requests"].items() if k.startswith("generateStocksOnWarehousesReport 200"))


def test_lifecycle_writes_file_and_rows_and_events(market, rclient, tmp_path):
    poller = make_poller(market, rclient, tmp_path)
    state = PollState.new(ReportRequest.build({"campaignId": 31}, "CSV"))
    outcome, _ = drive(poller, state)
    assert outcome.ok, outcome
    assert outcome.rows == 2 and outcome.sheets == ["stocks_on_warehouses"]
    assert outcome.path.endswith(".zip")
    _, rows = read_rows(outcome.path)
    assert {r["SHOP_SKU"]: r["AVAILABLE_FOR_ORDER"] for r in rows} == {"A-1": 5, "A-2": 0}
    statuses = [e["status"] for e in read_events(rclient, state.job_id)]
    assert statuses[0] == "generating" and statuses[-2:] == ["downloaded", "parsed"]


def test_identical_request_reuses_report_instead_of_waiting_for_quota(market, rclient, tmp_path):
    poller = make_poller(market, rclient, tmp_path, generate=Quota(1, 60))
    first = PollState.new(ReportRequest.build({"businessId": 9, "campaignIds": [33, 32]}, "JSON"))
    step = poller.step(first)
    assert step.state.report_id and not step.finished
    # Same request with the id list in another order: same fingerprint, reused at once.
    twin = PollState.new(ReportRequest.build({"businessId": 9, "campaignIds": [32, 33]}, "JSON"))
    twin_step = poller.step(twin)
    assert twin_step.state.report_id == step.state.report_id and twin_step.state.reused
    # A different request has to wait for the quota window.
    other = poller.step(PollState.new(ReportRequest.build({"campaignId": 31}, "JSON")))
    assert other.state.report_id is None and other.state.last_status == "waiting-quota"
    assert 0 < other.wait_s <= poller.recheck_s  # looks again soon: a twin may generate meanwhile
    outcome, _ = drive(poller, twin_step.state)
    assert outcome.ok and outcome.reused and outcome.rows == 1
    assert generates(market) == 1


def test_failed_no_data_is_a_clear_outcome(market, rclient, tmp_path):
    requests.post(f"{market.url}/_admin/reports/fail-next", json={"subStatus": "TOO_LARGE"}, timeout=5)
    poller = make_poller(market, rclient, tmp_path)
    outcome, _ = drive(poller, PollState.new(ReportRequest.build({"campaignId": 31}, "FILE")))
    assert (outcome.status, outcome.sub_status) == ("FAILED", "TOO_LARGE")
    assert "too large" in outcome.reason
    # An empty selection ends FAILED/NO_DATA.
    outcome, _ = drive(poller, PollState.new(ReportRequest.build({"campaignId": 33}, "CSV")))
    assert (outcome.status, outcome.sub_status) == ("FAILED", "NO_DATA")
    assert outcome.path is None


def test_expired_link_is_fetched_afresh(market, rclient, tmp_path):
    requests.post(f"{market.url}/_admin/reports/dead-links", json={"count": 2}, timeout=5)
    poller = make_poller(market, rclient, tmp_path)
    state = PollState.new(ReportRequest.build({"campaignId": 32}, "FILE"))
    outcome, _ = drive(poller, state)
    assert outcome.ok and outcome.rows == 1 and outcome.path.endswith(".xlsx")
    assert [e["status"] for e in read_events(rclient, state.job_id)].count("link-expired") == 2
    assert state.link_refreshes == 2


def test_active_reports_limit_waits_and_retries(market, rclient, tmp_path):
    requests.post(f"{market.url}/_admin/config", json={"max_active_reports": 1, "report_delay_s": 1.0}, timeout=5)
    poller = make_poller(market, rclient, tmp_path)
    first = poller.step(PollState.new(ReportRequest.build({"campaignId": 31}, "CSV")))
    blocked = poller.step(PollState.new(ReportRequest.build({"campaignId": 32}, "CSV")))
    assert blocked.state.report_id is None and blocked.wait_s > 0
    assert blocked.state.last_status == "waiting-active"
    poller.max_wait_s = 0.3  # the caller's countdown cap also bounds the Market-driven wait
    outcome, _ = drive(poller, blocked.state)
    assert outcome.ok
    assert drive(poller, first.state)[0].ok


# --- replies that end a job at once (issue 12, item 5) ----------------------------------------


def info_calls(market) -> int:
    counts = requests.get(f"{market.url}/_admin/state", timeout=5).json()["requests"]
    return sum(n for k, n in counts.items() if k.startswith("getReportInfo"))


def quirk(market, **fields) -> None:
    requests.post(f"{market.url}/_admin/reports/quirk-next", json=fields, timeout=5).raise_for_status()


def test_done_without_a_file_link_ends_failed_on_the_first_poll_that_sees_it(market, rclient, tmp_path):
    requests.post(f"{market.url}/_admin/config", json={"report_delay_s": 0}, timeout=5)  # DONE at once
    quirk(market, status="DONE", sub_status="NO_DATA", file=False)
    poller = make_poller(market, rclient, tmp_path)
    state = PollState.new(ReportRequest.build({"campaignId": 31}, "CSV"))
    outcome, _ = drive(poller, state)
    assert (outcome.status, outcome.sub_status, outcome.path) == ("FAILED", "NO_DATA", None)
    assert outcome.reason.startswith("DONE without a file link: the Market has no data")
    assert info_calls(market) == 1  # one poll saw DONE without a link, and that was the last
    # Without a sub-status the reason still says what happened.
    quirk(market, status="DONE", file=False)
    outcome, _ = drive(poller, PollState.new(ReportRequest.build({"campaignId": 32}, "CSV")))
    assert (outcome.status, outcome.sub_status) == ("FAILED", None)
    assert outcome.reason == "DONE without a file link: the Market marked the report DONE but gave no file to download"
    assert info_calls(market) == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", ["CANCELLED", "done", ""])
def test_a_status_ymsync_does_not_know_ends_the_job_on_that_poll(market, rclient, tmp_path, status):
    requests.post(f"{market.url}/_admin/config", json={"report_delay_s": 0}, timeout=5)
    quirk(market, status=status)
    poller = make_poller(market, rclient, tmp_path)
    state = PollState.new(ReportRequest.build({"campaignId": 31}, "JSON"))
    outcome, _ = drive(poller, state)
    assert outcome.status == "ERROR" and outcome.report_id
    assert "the Market's reply was not understood: getReportInfo: unexpected response shape" in outcome.reason
    assert "status" in outcome.reason
    assert info_calls(market) == 1
    assert read_events(rclient, state.job_id)[-1]["status"] == "ERROR"


@pytest.mark.parametrize("report_id", ["../x", "/x", "a/../../x", "..", ".hidden", "x\\..\\y", "%2e%2e%2fx",
                                       "x" * 200, "a b", "x\x00y"])
def test_a_report_id_that_is_not_a_safe_file_name_never_becomes_a_path(market, rclient, tmp_path, report_id):
    reports = tmp_path / "reports"
    reports.mkdir()
    quirk(market, report_id=report_id)
    poller = make_poller(market, rclient, reports)
    outcome, _ = drive(poller, PollState.new(ReportRequest.build({"campaignId": 32}, "FILE")))
    assert outcome.status == "ERROR" and outcome.path is None
    assert "report id ymsync will not use as a file name" in outcome.reason
    assert info_calls(market) == 0  # never polled, never downloaded
    assert [p.name for p in tmp_path.rglob("*")] == ["reports"]  # nothing written, inside or out


def test_a_safe_unusual_report_id_still_works(market, rclient, tmp_path):
    quirk(market, report_id="Rep_2026-11.20-abc")
    poller = make_poller(market, rclient, tmp_path)
    outcome, _ = drive(poller, PollState.new(ReportRequest.build({"campaignId": 32}, "FILE")))
    assert outcome.ok and outcome.path == str(tmp_path / "Rep_2026-11.20-abc.xlsx")
