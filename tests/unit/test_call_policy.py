"""The one Market call policy (engine/call_policy.py) on a real Redis limiter: each kind of reply,
what it costs, how long a 420 makes everyone wait (on the Market's clock), the blocking wrapper."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import formatdate

import pytest

from ymsync.config.settings import Quota
from ymsync.store import keys
from ymsync.engine.call_policy import Call, CallGaveUp, CallPolicy, Kind, Ticket, cost_kept
from ymsync.engine.quota import QuotaLimiter
from ymsync.market.clock import MarketClock
from ymsync.market.errors import (MarketActiveReportsLimit, MarketBadRequest, MarketForbidden, MarketNetworkError,
                                  MarketParallelLimitExceeded, MarketQuotaExceeded, MarketServerError,
                                  MarketUnauthorized, RateLimitInfo)

LOCAL = 1_800_000_000.0  # the worker's clock, frozen
AHEAD = 100.0  # the Market's clock runs this far ahead of the worker's


def market_clock() -> MarketClock:
    clock = MarketClock(local=lambda: LOCAL)
    clock.observe(formatdate(LOCAL + AHEAD, usegmt=True), received_at=LOCAL, sent_at=LOCAL)
    return clock


def until(market_seconds_from_now: float) -> RateLimitInfo:
    return RateLimitInfo(until=datetime.fromtimestamp(LOCAL + AHEAD + market_seconds_from_now, timezone.utc))


@pytest.fixture()
def limiter(clean_redis) -> QuotaLimiter:
    return QuotaLimiter(clean_redis, {"m": Quota(100, 60), "reads": Quota(1000, 60)}, max_parallel=2)


def fail(exc: Exception):
    def request(_units: int):
        raise exc
    return request


def test_a_success_costs_what_it_used_and_frees_the_lease(limiter):
    policy = CallPolicy(limiter)
    reply = policy.attempt(Call("m", "b7", "b7", market_clock(), want=10), lambda units: units * 2, used=lambda v: 3)
    assert reply.ok and reply.value == 20
    assert limiter.usage("m", "b7") == (3, 100) and limiter.leases_in_use("b7") == 0


def test_the_parallel_cap_is_shared_by_every_call_on_the_gate(limiter):
    policy = CallPolicy(limiter)
    held = [policy.admit(Call("m", "b7", "b7", market_clock())) for _ in range(2)]
    assert all(isinstance(t, Ticket) for t in held)
    other_method = policy.admit(Call("reads", "b7", "b7", market_clock()))
    assert other_method == pytest.approx(0.05)  # no lease: wait, and the quota unit is given back
    assert limiter.usage("reads", "b7")[0] == 0
    policy.release(held[0])
    assert isinstance(policy.admit(Call("reads", "b7", "b7", market_clock())), Ticket)


def test_a_quota_420_waits_until_its_until_on_the_markets_clock_and_pauses_everyone(limiter):
    policy = CallPolicy(limiter)
    exc = MarketQuotaExceeded("Hit rate limit of '100' requests per '1m' for resource 'm'", status=420,
                              rate_limit=until(10))
    reply = policy.attempt(Call("m", "b7", "b7", market_clock()), fail(exc))
    assert reply.kind is Kind.QUOTA
    # 10 s on the Market's clock; the worker's own clock would have said 110 s.
    assert reply.wait_s == pytest.approx(10, abs=0.01)
    assert 9 < limiter.paused_for("m", "b7") <= 10.01
    assert limiter.usage("m", "b7")[0] == 1  # a 420 is a 4xx reply: counted
    assert limiter.leases_in_use("b7") == 0


def test_a_420_asking_longer_than_the_quota_period_is_capped_at_it(limiter):
    exc = MarketQuotaExceeded("Hit rate limit", status=420, rate_limit=until(3600))
    reply = CallPolicy(limiter).attempt(Call("m", "b7", "b7", market_clock()), fail(exc))
    # The period (60 s), the whole second Until rounds up to, and the clock's spread (1 s here:
    # one Date header, received the instant it was sent) are all a 420 can truly ask.
    assert reply.wait_s == pytest.approx(62)


def test_a_420_until_the_next_whole_second_past_the_period_is_waited_out_in_full(limiter):
    """The chaos storm's defect: the Market's window frees one period after the foreign spend,
    its Until says the whole second after that; a pause cut at the period let workers send
    (and get 200s) while the Market's Until still held. Fails when the cap is the period alone."""
    exc = MarketQuotaExceeded("Hit rate limit", status=420, rate_limit=until(60.9))
    policy = CallPolicy(limiter)
    reply = policy.attempt(Call("m", "b7", "b7", market_clock()), fail(exc))
    assert reply.wait_s == pytest.approx(60.9, abs=0.01)
    assert limiter.paused_for("m", "b7") > 60.8
    assert not isinstance(policy.admit(Call("m", "b7", "b7", market_clock())), Ticket)  # everyone holds


def test_a_parallel_420_waits_a_moment_whatever_its_until(limiter):
    exc = MarketParallelLimitExceeded("Hit rate limit of 4 parallel requests for businessId 7", status=420,
                                      rate_limit=until(30))
    reply = CallPolicy(limiter).attempt(Call("m", "b7", "b7", market_clock()), fail(exc))
    assert reply.kind is Kind.PARALLEL and reply.wait_s == pytest.approx(1.0)
    assert 0 < limiter.paused_for("m", "b7") <= 1.01


def test_active_reports_420_is_its_own_kind_and_pauses_no_quota(limiter):
    exc = MarketActiveReportsLimit("Active reports limit exceeded", status=420, rate_limit=until(20))
    reply = CallPolicy(limiter).attempt(Call("m", "all", None, market_clock()), fail(exc))
    assert reply.kind is Kind.ACTIVE_REPORTS and reply.wait_s == pytest.approx(20, abs=0.01)
    assert limiter.paused_for("m", "all") == 0


@pytest.mark.parametrize("exc, kind, kept", [
    (MarketUnauthorized("revoked", status=401), Kind.HALT, 5),
    (MarketForbidden("no access", status=403), Kind.HALT, 5),
    (MarketBadRequest("bad", status=400), Kind.REFUSED, 5),
    (MarketServerError("down", status=503), Kind.UNKNOWN, 0),
    (MarketNetworkError("timed out", sent=True), Kind.UNKNOWN, 5),
    (MarketNetworkError("refused", sent=False), Kind.NOT_SENT, 0),
])
def test_each_failure_has_its_kind_and_its_cost(limiter, exc, kind, kept):
    reply = CallPolicy(limiter).attempt(Call("m", "b7", "b7", market_clock(), want=5), fail(exc))
    assert reply.kind is kind and reply.error is exc
    assert limiter.usage("m", "b7")[0] == kept
    assert limiter.paused_for("m", "b7") == 0


def test_the_cost_rule_for_a_quota_counting_the_reply():
    refused = MarketBadRequest("bad", status=400)
    assert cost_kept(refused, 100, counts_response=True) == 0  # a refusal returns no offers
    assert cost_kept(refused, 100) == 100
    assert cost_kept(MarketNetworkError("timed out"), 100, counts_response=True) == 100
    assert cost_kept(None, 7) == 7


def test_the_blocking_wrapper_retries_an_unknown_outcome_then_gives_up(limiter):
    naps: list[float] = []
    exc = MarketServerError("down", status=500)
    with pytest.raises(CallGaveUp) as raised:
        CallPolicy(limiter).call(Call("m", "b7", "b7", market_clock()), fail(exc), sleep=naps.append, retries=2)
    assert raised.value.cause is exc and naps == [0.5, 1.0]


def test_the_blocking_wrapper_raises_a_halt_at_once_and_waits_out_a_420(limiter):
    naps: list[float] = []
    with pytest.raises(MarketForbidden):
        CallPolicy(limiter).call(Call("m", "b7", "b7", market_clock()), fail(MarketForbidden("no", status=403)),
                                 sleep=naps.append)
    assert naps == []
    replies = [MarketQuotaExceeded("Hit rate limit", status=420, rate_limit=until(7))]

    def request(units: int) -> str:
        if replies:
            raise replies.pop()
        return "page"

    def sleep(seconds: float) -> None:  # time passes: the pause runs out
        naps.append(seconds)
        limiter.redis.delete(keys.pause("m", "b7"))

    assert CallPolicy(limiter).call(Call("m", "b7", "b7", market_clock()), request, sleep=sleep, slice_s=5) == "page"
    assert naps == [pytest.approx(5)]  # waited in slices, so another worker's pause is seen soon
