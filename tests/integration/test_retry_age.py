"""Retryable failures are retried with backoff only for YM_RETRY_MAX_AGE, then dead-lettered.

In process (a Flusher over HTTP against the sandbox, a real private Redis) because the policy
turns on the age of a value, which a test can only make short here.
"""

from __future__ import annotations

import time

import pytest

from tests.support.stock_harness import sandbox_config
from ymsync.store import keys
from ymsync.market import MarketClient
from ymsync.engine.flusher import Flusher
from ymsync.engine.quota import QuotaLimiter
from ymsync.sandbox import Faults
from ymsync.config.settings import Credentials, Secret

pytestmark = pytest.mark.integration
CAMPAIGN = 1401


def test_500s_back_off_then_dead_letter_after_the_retry_age(bench_for):
    bench = bench_for(sandbox_config(None, faults=Faults(error_rate=1.0)))
    bench.push(CAMPAIGN, [("R-1", 1), ("R-2", 2)])
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    flusher = Flusher(bench.buffer, QuotaLimiter(bench.redis, {"update_stocks": None}), client,
                      retry_max_age_s=1.0, lease_s=10, unknown_outcome_s=0.3)

    first = flusher.flush(CAMPAIGN)
    assert (first.delivered, first.dead, first.requests) == (0, 0, 1)
    assert first.next_in is not None and 0.1 <= first.next_in <= 60  # a backoff, not a tight loop
    # A 500 may have been applied: the SKUs are held (in flight) until it could no longer land.
    assert bench.buffer.in_flight(CAMPAIGN) == 2 and bench.buffer.pending(CAMPAIGN) == 0
    assert flusher.flush(CAMPAIGN).requests == 0  # still backing off: nothing is sent
    time.sleep(0.35)
    bench.buffer.reclaim_expired(CAMPAIGN)
    assert bench.buffer.pending(CAMPAIGN) == 2  # back in the buffer, not lost

    deadline = time.monotonic() + 10
    requests = 1
    while bench.buffer.dead_letters(CAMPAIGN) == [] and time.monotonic() < deadline:
        bench.redis.delete(keys.campaign_keys(CAMPAIGN)["backoff"])  # skip the wait, keep the age
        requests += flusher.flush(CAMPAIGN).requests
        time.sleep(0.35)  # the doubt window of the request just failed
    letters = bench.buffer.dead_letters(CAMPAIGN)
    assert sorted(d["sku"] for d in letters) == ["R-1", "R-2"]
    assert all(d["reason"].startswith("gave up after 1s: ") for d in letters)
    assert bench.buffer.pending(CAMPAIGN) == 0
    assert bench.buffer.stats(CAMPAIGN)["retries"] == requests
    assert bench.stocks(CAMPAIGN) == {}
