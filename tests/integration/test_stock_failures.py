"""The stock push pipeline when things break: poison SKUs, killed workers, revoked tokens, flaky Market.

Real private Redis, real Celery worker processes, the sandbox over HTTP as the referee.
"""

from __future__ import annotations

import math
import signal
import threading

import pytest

from tests.support.processes import wait_for
from tests.support.stock_harness import sandbox_config
from ymsync.store import keys
from ymsync.market import MarketClient
from ymsync.engine.flusher import Flusher
from ymsync.engine.quota import QuotaLimiter
from ymsync.config.settings import Credentials, Quota, Secret
from ymsync.market.schemas import MAX_SKUS_PER_UPDATE
from ymsync.sandbox import Faults

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("named", [True, False], ids=["market-names-it", "market-names-none"])
def test_a_poison_sku_is_isolated_and_the_rest_of_its_batch_delivered(bench_for, named):
    bench = bench_for(sandbox_config())
    campaign = 901
    levels = [(f"B-{i:04d}", i) for i in range(MAX_SKUS_PER_UPDATE)]
    poison = "B-1234"
    bench.admin(f"poison/{campaign}", {"skus": [poison], "named": named})
    bench.push(campaign, levels)  # exactly one full batch, queued before any worker runs
    bench.start_worker("poison", concurrency=2)

    expected = {sku: n for sku, n in levels if sku != poison}
    bench.wait_latest(campaign, 30, expected)
    wait_for(lambda: bench.buffer.dead_letters(campaign) and bench.settled(campaign), 10, "the poison to settle")

    dead = bench.buffer.dead_letters(campaign)
    assert [d["sku"] for d in dead] == [poison]
    if named:
        assert dead[0]["reason"] == f"Stock for '{poison}' cannot be updated: the offer is blocked"
    else:
        assert "Stocks cannot be updated: an offer in the request is blocked" in dead[0]["reason"]
    assert dead[0]["count"] == 1234
    assert len(bench.buffer.delivered(campaign)) == MAX_SKUS_PER_UPDATE - 1
    calls = bench.requests_by_status()
    # Named, one retry without it; unnamed, a bisection: two requests a level, log2(2000) levels.
    bound = 2 if named else 1 + 2 * math.ceil(math.log2(MAX_SKUS_PER_UPDATE))
    assert sum(calls.values()) <= bound, calls
    assert set(calls) == {200, 400}, calls
    assert bench.stocks(campaign) == expected  # nothing more arrived later


def test_sigkill_mid_flush_loses_nothing_and_writes_nothing_stale(bench_for):
    bench = bench_for(sandbox_config(faults=Faults(latency_min_ms=300, latency_max_ms=700)))
    campaign = 1001
    # Lease = YM_UNKNOWN_OUTCOME_S (2 s on the bench) + YM_LEASE_MARGIN_S (10 s in production, 2 s
    # here): the dead worker's batch comes back after 4 s; a flush slot outlives its request's
    # deadline (connect + read timeout) by the same margin.
    env = {"YM_HTTP_CONNECT_TIMEOUT": "1", "YM_HTTP_READ_TIMEOUT": "2", "YM_LEASE_MARGIN_S": "2"}
    bench.push(campaign, [(f"K-{i:05d}", i) for i in range(20_000)])
    victim = bench.start_worker("victim", concurrency=2, **env)
    batches = keys.campaign_keys(campaign)["batches"]
    wait_for(lambda: bench.units(campaign) >= 2000, 30, "delivery to be under way")
    # Newer values for half the SKUs, some of them inside the batches about to be orphaned.
    bench.push(campaign, [(f"K-{i:05d}", 50_000 + i) for i in range(0, 20_000, 2)])
    wait_for(lambda: bench.redis.zcard(batches) > 0, 10, "a batch in flight")
    victim.kill(signal.SIGKILL)
    orphaned = bench.redis.zcard(batches)
    assert orphaned > 0

    bench.start_worker("heir", concurrency=3, **env)
    # The orphan's lease (4 s) bounds recovery, well inside this wait (under 30 s: no slot or queue
    # timeout of the dead worker may stand in the way).
    bench.wait_latest(campaign, 26)
    wait_for(lambda: bench.settled(campaign), 10, "the buffer to drain")
    state = bench.state()
    assert state["stale_writes"] == 0
    assert bench.buffer.stats(campaign).get("reclaimed", 0) > 0  # the orphaned batch really came back
    assert not bench.buffer.dead_letters(campaign)


# A refused token (401/403): chaos case 11 (tests/chaos/test_unknown_outcomes.py) and the CLI's 403 test.


def test_latest_wins_across_retries_with_500s_and_lost_replies(bench_for):
    # Seeded: the first ten updates meet 500s and lost replies at about the rates (twice each),
    # so both strike during the first waves whatever the timing; the rates apply after.
    schedule = ("ok", "500", "ok", "lost", "ok", "500", "ok", "ok", "lost", "ok")
    faults = Faults(error_rate=0.2, lost_reply_rate=0.15, latency_min_ms=20, latency_max_ms=80, schedule=schedule)
    bench = bench_for(sandbox_config(faults=faults, seed=11))
    campaign = 1201
    skus = [f"L-{i:04d}" for i in range(3000)]
    bench.push(campaign, [(sku, 0) for sku in skus])
    bench.start_worker("flaky-a", concurrency=2)
    bench.start_worker("flaky-b", concurrency=2)
    # Waves of newer values land while earlier ones are pending, in flight or being retried,
    # until the faults have struck twice each (the schedule has them do so in the first waves).
    before = 0
    for wave in range(1, 40):
        wait_for(lambda: bench.units(campaign) > before, 30, f"wave {wave - 1} under way")
        calls = bench.requests_by_status()
        if wave > 4 and calls.get(500, 0) >= 2 and calls.get(0, 0) >= 2:
            break
        before = bench.units(campaign)  # read before the push: its delivery must raise it
        bench.push(campaign, [(sku, wave * 10_000 + i) for i, sku in enumerate(skus) if i % 3 == wave % 3])
    bench.wait_latest(campaign, 45)
    wait_for(lambda: bench.settled(campaign), 10, "the buffer to drain")

    state = bench.state()
    assert state["stale_writes"] == 0
    calls = bench.requests_by_status()
    assert calls.get(500, 0) >= 2 and calls.get(0, 0) >= 2, calls  # the faults really struck
    assert not bench.buffer.dead_letters(campaign)
    assert bench.buffer.stats(campaign).get("retries", 0) > 0


def test_a_batch_reclaimed_during_isolation_is_never_sent_afterwards(bench_for):
    """In process (the timing must be exact): a Flusher bisecting a refused batch waits for quota;
    meanwhile its lease is lost (a long GC pause, say), the sweeper hands the SKUs back, and a
    newer value goes out through another flusher. The first one must then send nothing more:
    its older value would overwrite the newer one. Quota waits alone must never cost the lease."""
    bench = bench_for(sandbox_config(None))
    campaign = 1301
    bench.admin(f"poison/{campaign}", {"skus": ["Z-p"], "named": False})
    bench.push(campaign, [("Z-a", 1), ("Z-b", 2), ("Z-c", 3), ("Z-p", 4)])
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    # 4 SKUs a 4 s window: the refused first request uses it all, so isolation must wait ~4 s.
    tight = QuotaLimiter(bench.redis, {"update_stocks": Quota(4, 4)})
    zombie = Flusher(bench.buffer, tight, client, lease_s=0.5)
    worker = threading.Thread(target=zombie.flush, args=(campaign,), daemon=True)
    worker.start()
    try:
        batches = keys.campaign_keys(campaign)["batches"]
        wait_for(lambda: bench.requests_by_status().get(400) == 1, 5, "the first refusal")
        wait_for(lambda: bench.redis.zcard(batches) == 1, 1, "the batch to be in flight")
        bench.quiet_period(1.5)  # three lease lengths into the wait
        assert bench.buffer.reclaim_expired(campaign) == 0  # renewed for the wait: nothing to reclaim

        bench.push(campaign, [("Z-a", 100)])  # newer, pending behind the busy SKU
        bench.redis.zadd(batches, {bench.redis.zrange(batches, 0, 0)[0]: 0})  # the lease is lost
        assert bench.buffer.reclaim_expired(campaign) == 4
        assert bench.buffer.pending(campaign) == 4  # Z-a's newer value won over the returned one
        rescuer = Flusher(bench.buffer, QuotaLimiter(bench.redis, {"update_stocks": None}), client, lease_s=30)
        rescuer.flush(campaign)
        assert bench.stocks(campaign) == {"Z-a": 100, "Z-b": 2, "Z-c": 3}
    finally:
        worker.join(15)
    assert not worker.is_alive()

    assert bench.stocks(campaign) == {"Z-a": 100, "Z-b": 2, "Z-c": 3}
    assert bench.state()["stale_writes"] == 0
    assert [d["sku"] for d in bench.buffer.dead_letters(campaign)] == ["Z-p"]
