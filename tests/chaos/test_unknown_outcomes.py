"""Chaos: never an older value over a newer one (requests that land late, stamps, clocks, tokens).

Real prefork workers, a private Redis, the sandbox over HTTP as the referee: it applies updates
in arrival order and counts every write whose stamp is older than the value it holds
(``stale_writes``). Every case asserts that count is 0 and the final state is exact.
"""

from __future__ import annotations

import random
import time

import pytest
from celery import Celery

from tests.chaos.pacing import LATE_SCHEDULE, late_applies_landed, next_wave_when_received, received
from tests.support.processes import wait_for
from tests.support.stock_harness import sandbox_config
from ymsync import push_stocks
from ymsync.engine.producer import stamp_items
from ymsync.sandbox import Faults
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.status import campaign_status

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def test_late_applied_requests_never_overwrite_newer_values(bench_for, case):
    """Late applies: 30 % of requests land 3 s after a client with a 1 s read timeout gave up"""
    faults = Faults(late_apply_rate=0.3, late_apply_s=3.0, schedule=LATE_SCHEDULE)
    bench = bench_for(sandbox_config(faults=faults, seed=12))
    campaign, waves, per = 3101, 16, 2000
    skus = [f"LATE-{i:05d}" for i in range(per)]
    env = {"YM_HTTP_CONNECT_TIMEOUT": "1", "YM_HTTP_READ_TIMEOUT": "1", "YM_UNKNOWN_OUTCOME_S": "4.5"}
    for n in range(2):
        bench.start_worker(f"late{n}", concurrency=2, **env)
    started = time.monotonic()
    for wave in range(waves):
        before = received(bench, "updateStocks")
        bench.push(campaign, [(sku, wave * 10_000 + i) for i, sku in enumerate(skus)])
        next_wave_when_received(bench, "updateStocks", before)
    bench.wait_latest(campaign, 90)
    wait_for(lambda: bench.settled(campaign), 15, "the buffer to drain")
    late_applies_landed(bench)
    state = bench.state()
    calls = bench.requests_by_status()
    stats = bench.buffer.stats(campaign)
    case.figures.update({"waves": waves, "skus_per_wave": per, "late_apply_rate": 0.3, "late_apply_s": 3.0,
                         "read_timeout_s": 1.0, "unknown_outcome_s": 4.5, "requests": calls,
                         "skus_held_in_doubt": stats.get("in_doubt", 0), "stale_writes": state["stale_writes"],
                         "seconds": round(time.monotonic() - started, 1)})
    case.check("some requests timed out and landed late", stats.get("in_doubt", 0) > 0, stats)
    case.check("0 writes older than the value the Market held", state["stale_writes"] == 0, state["stale_writes"])
    case.check("the Market ends with the newest value of every SKU", bench.stocks(campaign) == bench.latest[campaign])
    case.check("nothing dead-lettered", not bench.buffer.dead_letters(campaign))
    case.check("0 x 420", calls.get(420, 0) == 0, calls)


def test_messages_run_shuffled_and_twice_the_newest_by_enqueue_time_wins(bench_for, case):
    """Stamps at enqueue: update messages run shuffled and some twice on a prefork pool"""
    bench = bench_for(sandbox_config())
    campaign, rounds, per_round = 3201, 6, 30
    for n in range(2):
        bench.start_worker(f"shuffle{n}", concurrency=3)
    producer = Celery(broker=bench.redis_url)
    rng = random.Random(7)
    expected: dict[str, int] = {}
    sent = 0
    for r in range(rounds):
        sku = f"ONE-{r}"
        # Stamped at enqueue, one after another: message k holds the k-th value.
        messages = [stamp_items([{"sku": sku, "count": r * 1000 + k}]) for k in range(per_round)]
        expected[sku] = r * 1000 + per_round - 1
        order = messages + rng.sample(messages, per_round // 3)  # a third run twice (redelivered)
        rng.shuffle(order)
        for items in order:
            producer.send_task("ymsync.stocks.update", args=[campaign, items], queue="stocks")
            sent += 1
    wait_for(lambda: bench.settled(campaign) and bench.stocks(campaign) == expected, 60,
             "the newest value of every SKU at the Market", interval=0.2)
    state = bench.state()
    case.figures.update({"skus": rounds, "messages": sent, "shuffled": True, "repeated": rounds * (per_round // 3),
                         "stale_writes": state["stale_writes"]})
    case.check("the newest value by enqueue time won for every SKU", bench.stocks(campaign) == expected)
    case.check("0 writes older than the value the Market held", state["stale_writes"] == 0)
    case.check("nothing dead-lettered", not bench.buffer.dead_letters(campaign))


def test_a_worker_clock_10s_ahead_of_the_market_loses_nothing(bench_for, case):
    """Clocks: every worker and producer runs 10 s ahead of the Market's clock"""
    # The sandbox's clock runs 10 s behind the real one, so this machine (workers, producer) is
    # 10 s ahead of the Market: its Date headers, stamp rules and Until all use its own clock.
    bench = bench_for(sandbox_config(clock_offset_s=-10.0))
    campaign = 3301
    bench.start_worker("ahead", concurrency=2)
    skus = [f"AHEAD-{i:04d}" for i in range(3000)]
    expected: dict[str, int] = {}
    for wave in range(4):
        items = stamp_items([{"sku": sku, "count": wave * 10_000 + i} for i, sku in enumerate(skus)])  # "now", ahead
        for start in range(0, len(items), 1000):
            push_stocks(campaign, items[start:start + 1000], buffer=bench.buffer)
        expected.update((item["sku"], item["count"]) for item in items)
        time.sleep(0.5)
    wait_for(lambda: bench.settled(campaign) and bench.stocks(campaign) == expected, 60,
             "every value at the Market", interval=0.2)
    state = bench.state()
    calls = bench.requests_by_status()
    case.figures.update({"clock_ahead_s": 10, "skus": len(skus), "waves": 4, "requests": calls,
                         "stale_writes": state["stale_writes"]})
    case.check("every SKU holds its newest value", bench.stocks(campaign) == expected)
    case.check("nothing dead-lettered", not bench.buffer.dead_letters(campaign), bench.buffer.dead_letters(campaign)[:2])
    case.check("0 writes older than the value the Market held", state["stale_writes"] == 0)
    case.check("at most one request refused for its stamps (before the first Date header was seen)",
               calls.get(400, 0) <= 2, calls)


PROBE_S = 2.0  # YM_HALT_PROBE_S: production probes every 120 s; the behaviour is the same, only shorter
PROBES = 4  # probes the halted campaign must make (and see refused) before the token works again


def test_a_refused_token_halts_probes_and_then_delivers_everything(bench_for, case):
    """Refused token: 401 until the halted campaign has probed 4 times, then 200; the backlog waits, nothing is dead-lettered"""
    bench = bench_for(sandbox_config())
    campaign, total = 3401, 20_000
    env = {"YM_HALT_PROBE_S": f"{PROBE_S:g}"}
    bench.start_worker("token", concurrency=2, **env)
    bench.push(campaign, [(f"TOK-{i:05d}", i) for i in range(2000)])
    bench.wait_latest(campaign, 30)
    bench.admin("revoke", {"token": "sandbox-token"})
    revoked_at = time.time()
    bench.push(campaign, [(f"TOK-{i:05d}", 100_000 + i) for i in range(total)])
    wait_for(lambda: bench.halted(campaign), 20, "the campaign to halt")
    halted_at = time.time()
    limiter = QuotaLimiter(bench.redis, {})
    status = campaign_status(bench.buffer, limiter, campaign)
    case.check("status says halted and why", status.pause_reason is not None and "HTTP 401" in status.pause_reason,
               status)

    def refused_since(t: float) -> list[dict]:
        return [e for e in bench.log() if e["status"] == 401 and e["t"] > t]

    def probed() -> bool:
        letters = bench.buffer.dead_letters(campaign)
        assert not letters, letters[:1]  # halted means kept, never dead-lettered
        return len(refused_since(halted_at)) >= PROBES

    # The halt lasts while the probes keep being refused: wait for PROBES of them, not a fixed time.
    wait_for(probed, PROBES * PROBE_S * 3 + 10, f"{PROBES} probes of the halted campaign", interval=0.2)
    # The sandbox logs a refusal as it answers; the worker halts again once the answer reaches it.
    wait_for(lambda: bench.halted(campaign), PROBE_S + 10, "the halt after the last refused probe", interval=0.05)
    assert bench.buffer.pending(campaign) > 0, "the backlog waits while refused"
    refused = refused_since(revoked_at - 1)
    refused_for = time.time() - revoked_at
    bench.admin("restore", {"token": "sandbox-token"})
    restored_at = time.time()
    bench.wait_latest(campaign, 60)
    delivered_after = time.time() - restored_at
    state = bench.state()
    case.figures.update({"refused_for_s": round(refused_for, 1), "probe_every_s": PROBE_S,
                         "requests_401": len(refused), "delivered_s_after_restore": round(delivered_after, 1),
                         "skus": total, "stale_writes": state["stale_writes"]})
    # Up to 4 requests already under way when the token was revoked, then one probe per PROBE_S.
    bound = 4 + refused_for / PROBE_S + 2
    case.check("a few probes while refused, not a retry loop", len(refused) <= bound, (len(refused), bound))
    case.check("everything delivered once the token works", bench.stocks(campaign) == bench.latest[campaign])
    case.check("0 dead letters", not bench.buffer.dead_letters(campaign))
    case.check("0 writes older than the value the Market held", state["stale_writes"] == 0)
