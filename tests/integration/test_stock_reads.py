"""Stock reads and reconciliation: the reader against the sandbox over HTTP, tasks on real
``reports`` workers, reconciliation against values a real ``stocks`` worker delivered."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
import requests
from celery import Celery

from tests.support.processes import ROOT, CeleryWorker, wait_for
from ymsync.store import keys
from ymsync import push_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.market import MarketClient, StockLevel
from ymsync.engine.quota import QuotaLimiter
from ymsync.reads.campaign import ReadOptions, ReadStats, StockReader
from ymsync.reads.reconcile import Reconciler
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.config.settings import Credentials, Quota, Secret

FBS, FBY = 701, 702
TOKEN = "sandbox-token"


def make_market(get_stocks: Quota | None = None) -> MarketSandbox:
    config = SandboxConfig(campaigns=(CampaignConfig(FBS), CampaignConfig(FBY, model="FBY")),
                           quotas={"updateStocks": Quota(100_000, 60), "getStocks": get_stocks,
                                   "generateStocksOnWarehousesReport": None, "getReportInfo": None})
    return MarketSandbox(config=config)


@pytest.fixture()
def market():
    with make_market(Quota(100_000, 60)) as sandbox:
        yield sandbox


def reader_for(market: MarketSandbox, client: redis.Redis, quota: Quota = Quota(100_000, 60)) -> StockReader:
    limiter = QuotaLimiter(client, {"get_stocks": quota})
    return StockReader(limiter, MarketClient(market.url, Credentials(api_key=Secret(TOKEN))))


def plant(market: MarketSandbox, campaign: int, levels: dict[str, int]) -> None:
    requests.post(f"{market.url}/_admin/stocks/{campaign}", json=levels, timeout=10).raise_for_status()


def sandbox_stocks(market: MarketSandbox, campaign: int) -> dict[str, int]:
    data = requests.get(f"{market.url}/_admin/stocks/{campaign}", timeout=10).json()
    return {sku: v["count"] for sku, v in data.items()}


def get_stocks_calls(market: MarketSandbox, since: float) -> list[dict]:
    log = requests.get(f"{market.url}/_admin/log", params={"since": since}, timeout=10).json()
    return [e for e in log if e["op"] == "getStocks"]


def env_for(redis_server, market: MarketSandbox, tmp_path, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": TOKEN,
            "YM_FLUSH_DELAY_MS": "50", "YM_REPORTS_DIR": str(tmp_path / "out"), **extra}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ymsync.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_pagination_covers_every_sku_exactly_once_whatever_the_page_size(market, clean_redis):
    skus = {f"P-{i:05d}": i % 17 for i in range(1234)}
    plant(market, FBS, skus)
    requests.post(f"{market.url}/_admin/archive/{FBS}", json=["P-00007", "P-01000"], timeout=5).raise_for_status()
    reader = reader_for(market, clean_redis)
    assert reader.limit == 100  # the spec's cap since 2026-08-04 (larger values are cut silently)

    since = time.time()
    seen = [(o.offer_id, o.available) for o in reader.read(FBS)]
    archived = [o.offer_id for o in reader.read(FBS, ReadOptions(archived=True))]

    ids = [sku for sku, _ in seen]
    assert len(ids) == len(set(ids)) == 1232
    assert dict(seen) == {k: v for k, v in skus.items() if k not in ("P-00007", "P-01000")}
    assert sorted(archived) == ["P-00007", "P-01000"]
    calls = get_stocks_calls(market, since)
    assert len(calls) == 2 * 13 and all(c["status"] == 200 for c in calls)
    # The window holds what the Market charged (offers returned), not the 100 reserved per page.
    assert reader.limiter.usage("get_stocks", str(FBS))[0] == 1234 == sum(c["cost"] for c in calls)


def test_offer_ids_are_asked_500_at_a_time(market, clean_redis):
    plant(market, FBS, {f"Q-{i:05d}": 3 for i in range(1150)})
    wanted = [f"Q-{i:05d}" for i in range(1200)]  # the last 50 are unknown to the Market
    since = time.time()
    offers = list(reader_for(market, clean_redis).read(FBS, ReadOptions(offer_ids=tuple(wanted))))
    assert sorted(o.offer_id for o in offers) == wanted[:1150]
    assert [c["cost"] for c in get_stocks_calls(market, since)] == [500, 500, 150]


def test_a_420_pauses_every_reader_and_the_read_still_completes(market, clean_redis):
    plant(market, FBS, {f"L-{i:03d}": 1 for i in range(250)})
    # A foreign client on the campaign makes the Market answer 420 for a moment.
    requests.post(f"{market.url}/_admin/consume", json={"operation": "getStocks", "key": str(FBS), "pause_s": 0.5},
                  timeout=5).raise_for_status()
    reader = reader_for(market, clean_redis)
    stats = ReadStats()
    ids = [o.offer_id for o in reader.read(FBS, stats=stats)]
    assert sorted(ids) == [f"L-{i:03d}" for i in range(250)]
    assert stats.rate_limited == 1  # one 420, then the shared pause held every later request back
    assert stats.waited_s > 0


def test_cli_writes_csv_with_turnover_and_refuses_offer_ids_with_archived(market, redis_server, clean_redis,
                                                                          tmp_path):
    plant(market, FBY, {"T-1": 4, "T-2": 0})
    env = env_for(redis_server, market, tmp_path)
    out = tmp_path / "fby.csv"
    done = run_cli(env, "stocks", "--campaign", str(FBY), "--with-turnover", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 offers in 1 pages" in done.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["offerId"], r["AVAILABLE"], r["turnover"], r["turnoverDays"]) for r in rows] == [
        ("T-1", "4", "HIGH", "60.0"), ("T-2", "0", "HIGH", "60.0")]

    lines = run_cli(env, "stocks", "--campaign", str(FBY), "--offer-ids", "T-2,T-9")
    assert lines.returncode == 0, lines.stderr
    assert [json.loads(line)["offerId"] for line in lines.stdout.splitlines()] == ["T-2"]

    refused = run_cli(env, "stocks", "--campaign", str(FBY), "--offer-ids", "T-1", "--archived")
    assert refused.returncode == 2 and "--offer-ids cannot be combined with --archived" in refused.stderr


def test_read_tasks_on_real_workers_write_files_and_share_a_small_quota(redis_server, clean_redis, tmp_path):
    quota = Quota(300, 2)  # the sandbox and ymsync agree on a quota small enough to bite
    with make_market(quota) as market:
        plant(market, FBS, {f"R-{i:04d}": i for i in range(450)})
        plant(market, FBY, {f"R-{i:04d}": i for i in range(3)})
        env = env_for(redis_server, market, tmp_path, YM_QUOTA_GET_STOCKS="300/2")
        worker = CeleryWorker(env, queues="reports", concurrency=2, name="reads",
                              log_path=tmp_path / "worker.log").start()
        probe = Celery(broker=redis_server.url, backend=redis_server.url)
        try:
            # Two reads of one campaign at once: 900 offers against 300 per 2 s, one shared window.
            first = probe.send_task("ymsync.reads.stocks", (FBS,), {"out": "reads/a.jsonl"}, queue="reports")
            second = probe.send_task("ymsync.reads.stocks", (FBS,), {"out": "reads/b.csv"}, queue="reports")
            bad = probe.send_task("ymsync.reads.stocks", (FBS,), {"out": "../escape.jsonl"}, queue="reports")
            a, b = first.get(timeout=40), second.get(timeout=40)
            assert "inside YM_REPORTS_DIR" in bad.get(timeout=10)["error"]
            # Nothing delivered yet: reconciliation checks nothing, and still leaves its file.
            rec = probe.send_task("ymsync.reads.reconcile", (FBY,), {"out": "rec.json"}, queue="reports").get(timeout=20)
            assert (rec["checked"], rec["drift"]) == (0, 0)
            assert json.load(open(rec["path"], encoding="utf-8"))["rows"] == []
        finally:
            worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
        state = requests.get(f"{market.url}/_admin/state", timeout=5).json()

    assert a["offers"] == b["offers"] == 450 and a["duplicates"] == b["duplicates"] == 0
    assert a["path"] == str(tmp_path / "out" / "reads" / "a.jsonl")
    lines = [json.loads(line) for line in open(a["path"], encoding="utf-8")]
    assert sorted(r["offerId"] for r in lines) == [f"R-{i:04d}" for i in range(450)]
    assert len(list(csv.DictReader(open(b["path"], encoding="utf-8")))) == 450
    assert state["requests"].get("getStocks 420", 0) == 0, state["requests"]
    assert state["quotas"][f"getStocks:{FBS}"]["peak"] <= 300
    assert a["waited_s"] + b["waited_s"] > 0  # the limiter, not luck, kept the Market happy
    assert not (tmp_path / "escape.jsonl").exists()


def test_reconcile_finds_planted_drift_and_fix_repairs_it(market, redis_server, clean_redis, tmp_path):
    buffer = StockBuffer(clean_redis)
    ours = {f"D-{i:03d}": 10 + i for i in range(60)}
    push_stocks(FBS, [{"sku": k, "count": v} for k, v in ours.items()], buffer=buffer)
    env = env_for(redis_server, market, tmp_path)
    worker = CeleryWorker(env, queues="stocks", concurrency=1, name="push", log_path=tmp_path / "push.log").start()
    try:
        wait_for(lambda: len(buffer.delivered(FBS)) == 60, 30, "60 SKUs delivered")
        assert sandbox_stocks(market, FBS) == ours
        drifted = {"D-003": 0, "D-017": 999, "D-042": 5}
        plant(market, FBS, drifted)  # someone edits the cabinet behind ymsync's back

        found = run_cli(env, "reconcile", "--campaign", str(FBS), "--json")
        assert found.returncode == 0, found.stderr
        report = json.loads(found.stdout)
        assert (report["checked"], report["drift"], report["requeued"]) == (60, 3, 0)
        assert {r["sku"]: (r["ours"], r["market"], r["status"]) for r in report["rows"]} == {
            sku: (ours[sku], count, "drift") for sku, count in drifted.items()}
        assert all(r["delivered_at"] for r in report["rows"])

        table = run_cli(env, "reconcile", "--campaign", str(FBS), "--fix")
        assert table.returncode == 0, table.stderr
        assert "3 drifted, 3 re-queued" in table.stdout and "D-017" in table.stdout

        wait_for(lambda: sandbox_stocks(market, FBS) == ours, 30, "the sandbox to hold our values again")
        wait_for(lambda: buffer.pending(FBS) == 0 and buffer.in_flight(FBS) == 0, 10, "the fix delivered")
    finally:
        worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
    again = Reconciler(buffer, reader_for(market, clean_redis)).run(FBS)
    assert (again.checked, again.drift) == (60, 0)
    assert requests.get(f"{market.url}/_admin/state", timeout=5).json()["stale_writes"] == 0


def test_fix_resends_what_a_market_lost(market, redis_server, clean_redis, tmp_path):
    """A Market that forgot every value ymsync delivered (the sandbox restarted without its
    state, a reset test cabinet): a re-push sends nothing (the values are unchanged), but
    reconciliation lists each SKU as missing and --fix sends them all again."""
    buffer = StockBuffer(clean_redis)
    ours = {f"L-{i:03d}": 3 + i for i in range(40)}
    push_stocks(FBS, [{"sku": k, "count": v} for k, v in ours.items()], buffer=buffer)
    env = env_for(redis_server, market, tmp_path)
    worker = CeleryWorker(env, queues="stocks", concurrency=1, name="push", log_path=tmp_path / "push.log").start()
    try:
        wait_for(lambda: len(buffer.delivered(FBS)) == 40, 30, "40 SKUs delivered")
        requests.post(f"{market.url}/_admin/reset", timeout=10).raise_for_status()
        assert sandbox_stocks(market, FBS) == {}

        found = json.loads(run_cli(env, "reconcile", "--campaign", str(FBS), "--json").stdout)
        assert (found["checked"], found["drift"], found["requeued"]) == (40, 40, 0)
        assert {r["status"] for r in found["rows"]} == {"missing"}

        table = run_cli(env, "reconcile", "--campaign", str(FBS), "--fix")
        assert table.returncode == 0, table.stderr
        assert "40 drifted, 40 re-queued" in table.stdout and "missing, re-queued" in table.stdout
        wait_for(lambda: sandbox_stocks(market, FBS) == ours, 30, "the sandbox to hold our values again")
    finally:
        worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
    again = Reconciler(buffer, reader_for(market, clean_redis)).run(FBS)
    assert (again.checked, again.drift) == (40, 0)


def test_fix_never_buries_a_newer_value_and_a_later_update_still_wins(market, clean_redis):
    buffer = StockBuffer(clean_redis)
    client = MarketClient(market.url, Credentials(api_key=Secret(TOKEN)))
    t0 = datetime.now(timezone.utc) - timedelta(minutes=10)
    stamp = int(t0.timestamp() * 1000)
    buffer.ingest(FBS, [("A", 5, stamp), ("B", 6, stamp)])
    batch = buffer.take(FBS, 10, 100_000, 60)
    client.update_stocks(FBS, [StockLevel(e.sku, e.count, t0) for e in batch.entries])  # what a flush does
    buffer.settle(batch, "delivered")
    buffer.ingest(FBS, [("A", 7, stamp + 60_000)])  # the shop moved on; not delivered yet
    plant(market, FBS, {"A": 1, "B": 1})

    result = Reconciler(buffer, reader_for(market, clean_redis)).run(FBS, fix=True)
    rows = {r.sku: r for r in result.rows}
    assert (rows["A"].status, rows["A"].fixed) == ("pending", False)
    assert (rows["B"].status, rows["B"].fixed) == ("drift", True)
    assert clean_redis.hget(keys.campaign_keys(FBS)["buf"], "A").split(b"|")[:2] == [b"7", str(stamp + 60_000).encode()]
    # The fix is stamped just after the Market's drifted value, not "now": a shop update made
    # after the drift still wins even if it reaches ymsync after the fix.
    market_ms = int(datetime.fromisoformat(
        requests.get(f"{market.url}/_admin/stocks/{FBS}", timeout=5).json()["B"]["updatedAt"]).timestamp() * 1000)
    assert rows["B"].market_updated_ms == market_ms
    assert clean_redis.hget(keys.campaign_keys(FBS)["buf"], "B").split(b"|")[:2] == [b"6", str(market_ms + 1).encode()]
    later = buffer.ingest(FBS, [("B", 8, market_ms + 2)])
    assert later.accepted == 1
