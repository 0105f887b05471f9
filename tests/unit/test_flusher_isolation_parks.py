"""The Flusher never sleeps (issue 17): isolating a refused SKU when the quota has no room for the
next request parks the work (the batch stays leased) and returns the wait, which the scheduler
writes back as the due time; the next flush goes on where it stopped, and a newer value pushed
meanwhile lands after the older one, never under it."""

from __future__ import annotations

import time

from ymsync.config.settings import Quota
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.flusher import Flusher
from ymsync.engine.producer import push_stocks
from ymsync.engine.quota import QuotaLimiter
from ymsync.market import MarketBadRequest
from ymsync.market.clock import MarketClock
from ymsync.market.errors import ApiError
from ymsync.market.models import UpdateResult
from ymsync.store import keys

WINDOW_S = 1.0


class Market:
    """Refuses any request carrying 'BAD' without naming it (so the batch is halved)."""

    clock = MarketClock()

    def __init__(self) -> None:
        self.sent: list[dict[str, int]] = []
        self.stock: dict[str, int] = {}

    def update_stocks(self, campaign_id: int, levels, *, validate: bool = True) -> UpdateResult:
        request = {level.sku: level.count for level in levels}
        self.sent.append(request)
        if "BAD" in request:
            raise MarketBadRequest("HTTP 400", status=400, errors=(ApiError("BAD_REQUEST", "an offer is wrong"),))
        self.stock.update(request)
        return UpdateResult(len(request))


def flusher(clean_redis, market: Market) -> tuple[StockBuffer, Flusher]:
    buffer = StockBuffer(clean_redis)
    # 4 SKUs a window: the refused first request spends it all, so isolation must wait.
    limiter = QuotaLimiter(clean_redis, {"update_stocks": Quota(4, WINDOW_S)})
    return buffer, Flusher(buffer, limiter, market, min_batch=1, lease_s=30)  # type: ignore[arg-type]


def test_isolation_waiting_for_quota_returns_the_wait_and_keeps_the_batch(clean_redis):
    market = Market()
    buffer, f = flusher(clean_redis, market)
    push_stocks(1, [{"sku": sku, "count": 1} for sku in ("A", "B", "C", "BAD")], buffer=buffer)

    started = time.monotonic()
    first = f.flush("c1")
    took = time.monotonic() - started
    assert took < WINDOW_S / 2, f"the flush slept {took:.2f}s waiting for quota"
    assert first.requests == 1 and first.delivered == 0 and first.dead == 0
    assert first.next_in is not None and 0 < first.next_in <= WINDOW_S + 0.1
    # The batch stays ours, renewed past the wait: its values are neither pending nor reclaimable.
    assert buffer.in_flight("c1") == 4 and buffer.pending("c1") == 0
    assert buffer.reclaim_expired("c1") == 0
    assert clean_redis.hlen(keys.isolating("c1")) == 1

    push_stocks(1, [{"sku": "A", "count": 100}], buffer=buffer)  # newer, behind the busy SKU
    results = []
    for _ in range(20):
        time.sleep(results[-1].next_in if results and results[-1].next_in else 0)
        results.append(f.flush("c1"))
        if buffer.pending("c1") == 0 and buffer.in_flight("c1") == 0:
            break
    assert market.stock == {"A": 100, "B": 1, "C": 1}
    # The whole batch was refused once, never sent again: the isolation went on where it stopped.
    assert sum(1 for request in market.sent if len(request) == 4) == 1
    # A's older value went out before the newer one, never after it.
    assert [r["A"] for r in market.sent if "A" in r and len(r) < 4] == [1, 100]
    assert [d["sku"] for d in buffer.dead_letters("c1")] == ["BAD"]
    assert clean_redis.hlen(keys.isolating("c1")) == 0


def test_parked_isolation_whose_lease_was_lost_sends_nothing(clean_redis):
    market = Market()
    buffer, f = flusher(clean_redis, market)
    push_stocks(1, [{"sku": sku, "count": 1} for sku in ("A", "B", "C", "BAD")], buffer=buffer)
    assert f.flush("c1").next_in
    batches = keys.campaign_keys(1)["batches"]
    parked = clean_redis.zrange(batches, 0, 0)[0]
    assert clean_redis.hexists(keys.isolating("c1"), parked)
    clean_redis.zadd(batches, {parked: 0})  # the lease is lost
    assert buffer.reclaim_expired("c1") == 4
    push_stocks(1, [{"sku": "A", "count": 100}], buffer=buffer)

    time.sleep(WINDOW_S + 0.1)
    sent_before = len(market.sent)
    f.flush("c1")
    # The parked work was dropped unsent; what went out is the buffer's newest values, A=100 first taken.
    assert len(market.sent) > sent_before
    assert all(r.get("A", 100) == 100 for r in market.sent[sent_before:])
    assert not clean_redis.hexists(keys.isolating("c1"), parked)
