"""`ymsync sandbox --port 0` as a real process, driven by a client configured from the environment."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.processes import ROOT, wait_for
from tests.support.spec import spec_check_missing
from ymsync.market import MarketClient, StockLevel
from ymsync.config.settings import load_settings


@pytest.fixture()
def sandbox_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ymsync.cli", "sandbox", "--port", "0", "--campaign", "21", "--campaign", "22:FBY",
         "--report-delay", "0.3", "--token", "cli-token"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    yield proc, line
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sandbox_prints_url_serves_client_and_stops_on_sigterm(sandbox_process, tmp_path: Path) -> None:
    proc, line = sandbox_process
    assert line.startswith("Market sandbox listening on http://127.0.0.1:"), line
    url = line.rsplit(" ", 1)[1].strip()

    settings = load_settings({"YM_API_URL": url, "YM_API_KEY": "cli-token"})
    client = MarketClient.from_settings(settings)
    client.update_stocks(22, [StockLevel("A-1", 7), StockLevel("A-2", 0)])
    page = client.get_stocks(22)
    assert {(o.offer_id, o.available) for o in page.offers} == {("A-1", 7), ("A-2", 0)}

    ticket = client.generate_stocks_on_warehouses_report({"campaignId": 22}, format="JSON")
    info = wait_for(lambda: (i := client.get_report_info(ticket.report_id)).finished and i, 10, "report DONE")
    assert info.status == "DONE"
    downloaded = client.download_report(info.file_url, tmp_path / "report.zip")
    assert downloaded.size == downloaded.path.stat().st_size > 0
    # The process runs in the spec check's test mode (tests/conftest.py sets YM_SANDBOX_SPEC_CHECK):
    # it judged each of the client's calls (update, read, generate, one info poll or more).
    checked = requests.get(f"{url}/_admin/spec-violations", timeout=10).json()
    if spec_check_missing() is None:
        assert checked["enabled"] and checked["violations"] == [] and checked["checked"] >= 4, checked

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert "Market sandbox stopped" in proc.stdout.read()


def test_sandbox_refuses_a_bad_campaign_option() -> None:
    result = subprocess.run([sys.executable, "-m", "ymsync.cli", "sandbox", "--campaign", "x:FBY"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "campaign must look like ID[:MODEL[:BUSINESS]], got 'x:FBY'" in result.stderr


def _start(*args: str, loaded: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ymsync.cli", "sandbox", "--port", "0", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("Market sandbox listening on http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
    proc.stdout.readline()  # "point ymsync at it: ..."
    assert proc.stdout.readline().rstrip().endswith(f": {loaded} SKUs loaded")
    return proc, line.rsplit(" ", 1)[1].strip()


def _stocks(url: str, campaign: int) -> dict[str, int]:
    client = MarketClient.from_settings(load_settings({"YM_API_URL": url, "YM_API_KEY": "sandbox-token"}))
    return {o.offer_id: o.available for o in client.get_stocks(campaign).offers}


def test_state_file_keeps_stock_across_a_restart_and_a_sigkill(tmp_path: Path) -> None:
    state = tmp_path / "data" / "sandbox-state.json"
    proc, url = _start("--state-file", str(state), loaded=0)
    try:
        client = MarketClient.from_settings(load_settings({"YM_API_URL": url, "YM_API_KEY": "sandbox-token"}))
        client.update_stocks(31, [StockLevel("K-1", 4), StockLevel("K-2", 0)])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()

    proc, url = _start("--state-file", str(state), loaded=2)
    try:
        assert _stocks(url, 31) == {"K-1": 4, "K-2": 0}  # loaded, not re-sent
        client = MarketClient.from_settings(load_settings({"YM_API_URL": url, "YM_API_KEY": "sandbox-token"}))
        client.update_stocks(31, [StockLevel("K-1", 9)])
        # Saved a moment after the change, so even a SIGKILL (no shutdown code at all) keeps it.
        wait_for(lambda: '"K-1":[9,' in state.read_text(), 10, "the change to reach the state file")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()

    proc, url = _start("--state-file", str(state), loaded=2)
    try:
        assert _stocks(url, 31) == {"K-1": 9, "K-2": 0}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_unreadable_state_file_is_one_clean_line(tmp_path: Path) -> None:
    state = tmp_path / "broken.json"
    state.write_text("{not json")
    done = subprocess.run([sys.executable, "-m", "ymsync.cli", "sandbox", "--port", "0", "--state-file", str(state)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: {state}: cannot read the sandbox state"), done.stderr
    assert "Traceback" not in done.stderr
