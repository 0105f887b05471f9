"""The Market's own count (issue 20 item 5): every reply's X-RateLimit-Resource-* headers, folded
into the shared quota view by settle, against a real private redis-server."""

from __future__ import annotations

import logging

import pytest
import redis

from ymsync.config.settings import Quota
from ymsync.engine.call_policy import Call, CallPolicy, Kind
from ymsync.engine.quota import MarketCount, QuotaLimiter
from ymsync.market.clock import MarketClock
from ymsync.market.errors import MarketQuotaExceeded, RateLimitInfo
from ymsync.market.models import UpdateResult

M = "updateStocks"


@pytest.fixture
def r(clean_redis: redis.Redis) -> redis.Redis:
    return clean_redis


def limiter(client: redis.Redis, amount: int = 1000, seconds: float = 60.0) -> QuotaLimiter:
    return QuotaLimiter(client, {M: Quota(amount, seconds)})


def test_market_remaining_below_our_count_caps_grants_until_until(r):
    q = limiter(r)
    g = q.acquire(M, "c1", 100)
    # Our log holds 100 of 1000; the Market says 300 are left (a foreign client spent 600).
    q.settle(g, market=MarketCount(limit=1000, remaining=300, until_s=30))
    assert q.acquire(M, "c1", 1000).granted <= 300 - 0
    # Nothing more than the Market said is left, however much our own log has room for.
    refused = q.acquire(M, "c1", 500, 500)
    assert refused.granted == 0 and refused.wait_s > 1


def test_foreign_use_is_reserved_in_the_next_window(r):
    q = limiter(r, 1000, 0.5)
    g = q.acquire(M, "c1", 100)
    q.settle(g, market=MarketCount(limit=1000, remaining=500, until_s=0.0))  # foreign: 400
    # One reading is not believed yet (a request that overtook another reads high once)...
    assert q.market_view(M, "c1")["foreign"] == 0
    g = q.acquire(M, "c1", 50)
    q.settle(g, market=MarketCount(limit=1000, remaining=450, until_s=0.0))  # foreign: 400 again
    assert q.market_view(M, "c1")["foreign"] == 400  # ...two that agree are
    import time
    time.sleep(0.55)  # a period past Until: "what is left" no longer binds; the foreign share still does
    grant = q.acquire(M, "c1", 1000)
    assert grant.granted == 1000 - 400


def test_our_own_freed_units_are_added_back_to_what_the_market_left(r):
    q = limiter(r, 1000, 0.3)
    g = q.acquire(M, "c1", 600)
    q.settle(g, market=MarketCount(limit=1000, remaining=400, until_s=30))  # no foreign
    assert q.acquire(M, "c1", 1000).granted == 400
    import time
    time.sleep(0.35)  # our 600 left our window; the Market freed them no later
    assert q.acquire(M, "c1", 1000).granted == 600


def test_smaller_market_limit_holds_and_warns_once_per_change(r, caplog):
    q = limiter(r, 1000)
    caplog.set_level(logging.WARNING, logger="ymsync.engine.quota")
    for _ in range(3):
        g = q.acquire(M, "c1", 10)
        q.settle(g, market=MarketCount(limit=500, remaining=490, until_s=None))
    warnings = [rec for rec in caplog.records if "limit is 500" in rec.getMessage()]
    assert len(warnings) == 1
    assert q.acquire(M, "c1", 1000).granted <= 500 - 30
    g = q.acquire(M, "c1", 1)
    q.settle(g, market=MarketCount(limit=1000, remaining=900, until_s=None))
    assert sum("back to the configured" in rec.getMessage() for rec in caplog.records) == 1


def test_equal_limit_first_seen_is_silent(r, caplog):
    q = limiter(r, 1000)
    caplog.set_level(logging.WARNING, logger="ymsync.engine.quota")
    g = q.acquire(M, "c1", 10)
    q.settle(g, market=MarketCount(limit=1000, remaining=990, until_s=5))
    assert not caplog.records


def test_the_policy_feeds_success_and_420_headers(r):
    q = limiter(r, 1000)
    policy = CallPolicy(q)
    call = Call(M, "c1", "c1", MarketClock(), want=100)
    for remaining in (200, 100):  # two readings that agree: 700 spent by someone else
        reply = policy.attempt(call, lambda n, r=remaining: UpdateResult(n, RateLimitInfo(limit=1000, remaining=r)))
        assert reply.ok
    view = q.market_view(M, "c1")
    assert view["foreign"] == 700 and view["limit"] == 1000 and view["flast"] == 700

    def refused(_n):
        raise MarketQuotaExceeded("420", status=420, rate_limit=RateLimitInfo(limit=1000, remaining=0))

    assert policy.attempt(Call(M, "c2", "c2", MarketClock(), want=100), refused).kind is Kind.QUOTA
    # A refused request is not in the Market's count: all 1000 it counted are someone else's.
    assert q.market_view(M, "c2")["flast"] == 1000


def test_market_view_has_a_ttl(r):
    q = limiter(r, 1000, 1)
    q.settle(q.acquire(M, "c1", 1), market=MarketCount(limit=1000, remaining=999, until_s=1))
    from ymsync.store import keys
    assert 0 < r.pttl(keys.quota_market(M, "c1")) <= 24 * 3600 * 1000


def _granted_apart(q: QuotaLimiter, n: int, units: int) -> list:
    import time
    grants = []
    for _ in range(n):
        grants.append(q.acquire(M, "c1", units))
        time.sleep(0.003)  # grants a few milliseconds apart, as parallel workers take them
    return grants


def test_parallel_requests_the_market_counted_are_not_taken_off_twice(r):
    """The reply of the latest grant: every earlier request of ours is in the Market's Remaining
    already. Taking them off again (as open) held 4 parallel workers to ~93 % of an idle quota."""
    q = limiter(r, 1000)
    grants = _granted_apart(q, 4, 100)
    q.settle(grants[3], market=MarketCount(limit=1000, remaining=600, until_s=30))  # all 400 counted
    assert q.acquire(M, "c1", 1000).granted == 600  # not 300


def test_an_older_grants_reply_does_not_overwrite_a_fresher_one(r):
    """Replies overtake each other: the latest grant's reply (Remaining 300: a foreign client
    spent 300 beside our 400) is fresher than the first grant's, which the Market answered before
    the other three arrived (Remaining 800)."""
    q = limiter(r, 1000)
    grants = _granted_apart(q, 4, 100)
    q.settle(grants[3], market=MarketCount(limit=1000, remaining=300, until_s=30))
    q.settle(grants[0], market=MarketCount(limit=1000, remaining=800, until_s=30))
    assert q.acquire(M, "c1", 1000).granted == 300


def test_a_refusal_is_not_credited_back_as_market_quota(r):
    """A 420 stays in our own count for its window (the Market may count it), but when it leaves
    our window it is not added to what the Market has left: the Market never had it."""
    import time
    q = limiter(r, 1000, 0.3)
    ok = q.acquire(M, "c1", 500)
    q.settle(ok, market=MarketCount(limit=1000, remaining=0, until_s=30))  # someone spent 500
    assert q.acquire(M, "c1", 1000).granted == 0
    time.sleep(0.35)  # our 500 left both windows; the Market view credits them back
    refused = q.acquire(M, "c1", 200)
    assert refused.granted == 200
    q.settle(refused, 200, counted=False)  # a 420: kept in our log, not the Market's
    time.sleep(0.35)  # the refusal left our window
    assert q.acquire(M, "c1", 1000).granted == 300  # 500 credited, less the 200 granted; not 500


def _settle_at(q: QuotaLimiter, g, remaining: int) -> None:
    q.settle(g, market=MarketCount(limit=6000, remaining=remaining, until_s=0.1))


@pytest.mark.parametrize("market_freed_it_first", [False, True])
def test_a_reply_slower_than_our_oldest_unit_does_not_hold_back_a_window(r, market_freed_it_first):
    # Three 2000-unit requests a window of 6000. The fifth request's reply comes back after the
    # third's units left our log; the Market counted the fifth when it arrived, with the third
    # still in its window (Remaining 0), or just after the third left it (Remaining 2000). Either
    # way 2000 are free now, and the sixth request goes: before, the Remaining of 0 bound as if it
    # were current, and the sixth waited a whole window (bench row 8's lost window).
    import time

    period = 0.6
    q = limiter(r, 6000, period)
    g1 = q.acquire(M, "c1", 2000)
    _settle_at(q, g1, 4000)
    time.sleep(0.1)
    g2 = q.acquire(M, "c1", 2000)
    _settle_at(q, g2, 2000)
    time.sleep(0.1)
    g3 = q.acquire(M, "c1", 2000)
    _settle_at(q, g3, 0)
    time.sleep(period - 0.2 + 0.05)  # g1 has left
    g4 = q.acquire(M, "c1", 2000, 2000)
    assert g4.granted == 2000
    _settle_at(q, g4, 0)
    time.sleep(0.1)  # g2 has left, g3 not yet
    g5 = q.acquire(M, "c1", 2000, 2000)
    assert g5.granted == 2000
    time.sleep(0.12)  # g3 leaves our log before g5's reply is settled
    _settle_at(q, g5, 2000 if market_freed_it_first else 0)
    g6 = q.acquire(M, "c1", 2000, 2000)
    assert g6.granted == 2000, "g3's units left the window: the Market has room for one more request"
    refused = q.acquire(M, "c1", 1, 1)
    assert refused.granted == 0 and refused.wait_s > 0.2, "g4, g5 and g6 fill the window"


def test_a_count_beyond_ours_still_binds_as_it_reads(r):
    # A foreign client spent 2000 of the window: the Market's count exceeds what our log explains,
    # and what it says is left binds (however much our own log has room for).
    q = limiter(r, 6000, 60)
    g = q.acquire(M, "c1", 2000)
    q.settle(g, market=MarketCount(limit=6000, remaining=2000, until_s=30))
    assert q.acquire(M, "c1", 6000).granted == 2000
    assert q.acquire(M, "c1", 1, 1).granted == 0
