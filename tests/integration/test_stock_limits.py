"""The stock push pipeline against the Market's limits, judged by the sandbox over HTTP.

Real private Redis, real Celery worker processes (prefork), the sandbox as the referee: it
records every request's size, the sliding-window peaks and the parallel peaks.
"""

from __future__ import annotations

import pytest

from tests.support.processes import wait_for
from tests.support.stock_harness import sandbox_config
from ymsync.market.schemas import MAX_BODY_BYTES, MAX_SKU_LENGTH, MAX_SKUS_PER_UPDATE, SKU_RE, sku_problem
from ymsync.sandbox import Faults
from ymsync.config.settings import Quota

pytestmark = pytest.mark.integration

def heavy_sku(i: int, fill: str) -> str:
    """A maximal-length SKU whose JSON form is as large as the schema allows: every char of
    ``fill`` escapes to two bytes or takes four in UTF-8."""
    head, tail = f"{i:05d}", "#"  # unique; no whitespace at either end (the Market trims)
    body = (fill * MAX_SKU_LENGTH)[:MAX_SKU_LENGTH - len(head) - len(tail)]
    sku = head + body + tail
    assert len(sku) == MAX_SKU_LENGTH and sku_problem(sku) is None and SKU_RE.fullmatch(sku)
    return sku

def test_no_request_exceeds_2000_skus_or_512_kb_even_with_maximal_skus(bench_for):
    bench = bench_for(sandbox_config())
    short = [(f"S-{i:05d}", i) for i in range(4500)]
    # '"' and '\\' double when JSON-escaped, a tab becomes "\t", U+1F600 is 4 bytes of UTF-8:
    # the worst the schema lets through (control characters other than tab are refused).
    heavy = [(heavy_sku(i, '"\\\U0001F600Ж\t'), i) for i in range(1200)]
    heavy += [(heavy_sku(5000 + i, "\U0001F600"), i) for i in range(800)]
    bench.push(601, short)
    bench.push(602, heavy)
    bench.start_worker("caps")

    bench.wait_latest(601, 60)
    bench.wait_latest(602, 60)
    state = bench.state()
    assert state["max_request_skus"] == MAX_SKUS_PER_UPDATE  # full batches, never more
    assert state["max_request_bytes"] <= MAX_BODY_BYTES
    # The heavy SKUs could only go a few hundred a request: the byte cap was what bound them,
    # and batches were packed close to it rather than cut needlessly small.
    assert state["max_request_bytes"] > 0.9 * MAX_BODY_BYTES, state["max_request_bytes"]
    assert bench.requests_by_status() == {200: state["requests"]["updateStocks 200"]}, state["requests"]
    assert state["campaigns"]["601"]["sku_units"] == len(short)
    assert state["campaigns"]["602"]["sku_units"] == len(heavy)
    assert state["stale_writes"] == 0

def test_three_prefork_workers_share_one_quota_and_parallel_cap(bench_for):
    # Three windows' worth of backlog at a 2 s window: every worker meets a full window at least
    # twice, in about 6 s rather than the 20 s of 12,000 SKUs at 3,000 per 5 s.
    quota = Quota(3000, 2)
    bench = bench_for(sandbox_config(quota, max_parallel=4, faults=Faults(latency_min_ms=30, latency_max_ms=120)))
    campaign = 701
    bench.push(campaign, [(f"Q-{i:05d}", i % 97) for i in range(6_000)])
    env = {"YM_QUOTA_UPDATE_STOCKS": "3000/2", "YM_MAX_PARALLEL": "4"}
    for n in range(3):
        bench.start_worker(f"quota{n}", concurrency=2, **env)

    # Newer values for SKUs that are delivered, in flight or still pending, mid-stream.
    wait_for(lambda: bench.units(campaign) >= 3000, 30, "the first window to be delivered")
    bench.push(campaign, [(f"Q-{i:05d}", 1000 + i) for i in range(0, 6_000, 5)])
    bench.wait_latest(campaign, 40)

    state = bench.state()
    window = state["quotas"][f"updateStocks:{campaign}"]
    assert window["rejected"] == 0 and window["peak"] <= quota.amount, window
    # The quota mattered: at least one window was filled to most of its amount.
    assert window["peak"] > quota.amount // 2, window
    assert 420 not in bench.requests_by_status(), state["requests"]
    assert 0 < state["parallel_peak"][f"campaign:{campaign}"] <= 4, state["parallel_peak"]
    assert state["stale_writes"] == 0
    # Everything that was sent fitted in the windows that passed: nothing was sent twice in bulk.
    assert state["campaigns"][str(campaign)]["sku_units"] <= 7_200

def test_a_420_with_until_pauses_every_worker_until_then(bench_for):
    # Slow enough that the backlog takes seconds at 4 requests in flight: the pause lands mid-stream.
    bench = bench_for(sandbox_config(faults=Faults(latency_min_ms=300, latency_max_ms=500)))
    campaign = 801
    bench.push(campaign, [(f"P-{i:05d}", i) for i in range(40_000)])
    bench.start_worker("pause-a", concurrency=2)
    bench.start_worker("pause-b", concurrency=2)

    wait_for(lambda: bench.units(campaign) >= 6000, 30, "delivery to be under way")
    # A foreign client on the same campaign exhausted the quota: 420s with Until for a while.
    bench.admin("consume", {"operation": "updateStocks", "key": str(campaign), "pause_s": 2.5})
    bench.wait_latest(campaign, 40)

    log = bench.log()
    refused = [e for e in log if e["status"] == 420]
    assert refused, "the pause never produced a 420"
    first = refused[0]
    until = first["until"]
    assert until - first["t"] > 1.5  # Until really lay in the future
    during = [(round(e["t"] - first["t"], 3), e["status"]) for e in log if first["t"] < e["t"] < until]
    # Only requests already on their way when the first 420 came back may still arrive (and
    # get 420 too): at most the 3 other parallel slots, and once more each for a flush that
    # checked the pause a moment before it was set. Nothing after that until Until.
    assert all(status == 420 for _, status in during), during
    assert len(during) <= 2 * 4 - 1, during
    # They were in flight already: they end within about one request's latency (0.5 s here),
    # with generous slack for two loaded cores.
    assert all(t < 2.5 for t, _ in during), during
    # No tight retry loop: the pause produced a handful of 420s, not hundreds.
    assert len(refused) <= 2 * 4, refused
    after = [e for e in log if e["t"] >= until]
    assert after and all(e["status"] == 200 for e in after), after[:5]
    assert bench.state()["stale_writes"] == 0
    wait_for(lambda: bench.settled(campaign), 10, "the buffer to drain")
