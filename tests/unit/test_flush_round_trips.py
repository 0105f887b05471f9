"""What a flush round costs in Redis round trips (issue 18), counted by a real, private redis-server
(``total_reads_processed``), with a Market stand-in that answers every request at once."""

from __future__ import annotations

import redis

from ymsync.config.settings import Quota
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.flusher import Flusher
from ymsync.engine.producer import push_stocks
from ymsync.engine.quota import QuotaLimiter
from ymsync.market.clock import MarketClock
from ymsync.market.models import UpdateResult
from ymsync.store import keys


class Market:
    clock = MarketClock()

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_stocks_body(self, campaign_id: int, body: dict) -> UpdateResult:
        self.sent.append(len(body["skus"]))
        return UpdateResult(len(body["skus"]))


def reads(r: redis.Redis) -> int:
    return int(r.info("stats")["total_reads_processed"])


def test_a_round_of_three_requests_costs_four_round_trips(clean_redis) -> None:
    # The round's first look (slot, lateness, hold-offs, batches) begins the first request; each
    # settlement begins the next; the last one's finds nothing and frees the task slot in the same call.
    r = clean_redis
    buffer = StockBuffer(r)
    market = Market()
    flusher = Flusher(buffer, QuotaLimiter(r, {"update_stocks": Quota(100_000, 60)}), market,  # type: ignore[arg-type]
                      min_batch=1)
    schedule = buffer.schedule
    push_stocks(1001, [{"sku": f"W{i}", "count": i} for i in range(10)], buffer=buffer)
    warm = schedule.claim("c1001")
    assert warm is not None
    flusher.flush("c1001", slot=warm, due_ms=1)  # the scripts load once
    push_stocks(1001, [{"sku": f"S{i}", "count": i} for i in range(5_000)], buffer=buffer)
    slot = schedule.claim("c1001")
    assert slot is not None
    before = reads(r)
    result = flusher.flush("c1001", slot=slot, due_ms=1)
    assert reads(r) - before == 5, "the first look, three settlements and this INFO"
    assert market.sent[-3:] == [2000, 2000, 1000] and result.requests == 3 and result.delivered == 5_000
    assert result.slot_freed and not result.takeable and r.zscore(keys.target_keys("c1001")["tasks"], slot) is None


def test_a_round_waits_out_a_short_quota_wait_and_ends_on_a_long_one(clean_redis) -> None:
    # The quota frees within QUOTA_WAIT_IN_ROUND_S: the round keeps its task slot, waits, and sends
    # the next request itself (ending would cost that request a flush task's trip). A longer wait
    # ends the round: the slot freed in the same call, the wait written back for the scheduler.
    from ymsync.engine.flusher import QUOTA_WAIT_IN_ROUND_S

    r = clean_redis
    buffer = StockBuffer(r)
    schedule = buffer.schedule
    period = QUOTA_WAIT_IN_ROUND_S * 0.6
    for quota, sent in ((Quota(2000, period), [2000, 2000, 1000]), (Quota(2000, 10 * QUOTA_WAIT_IN_ROUND_S), [2000])):
        r.flushall()
        market = Market()
        flusher = Flusher(buffer, QuotaLimiter(r, {"update_stocks": quota}), market,  # type: ignore[arg-type]
                          min_batch=1)
        push_stocks(1001, [{"sku": f"S{i}", "count": i} for i in range(5_000)], buffer=buffer)
        slot = schedule.claim("c1001")
        assert slot is not None
        result = flusher.flush("c1001", slot=slot, due_ms=1)
        assert market.sent == sent and result.requests == len(sent)
        if len(sent) == 3:
            assert result.slot_freed and result.next_in is None  # ended with nothing left, as any round
        else:
            assert result.slot_freed and result.next_in is not None and result.next_in > QUOTA_WAIT_IN_ROUND_S
            assert r.zscore(keys.target_keys("c1001")["tasks"], slot) is None
