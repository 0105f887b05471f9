"""One Flusher shared by the threads of a worker (``-P threads``): a flush's state belongs to that
flush, never to the Flusher (issue 17, item 3)."""

from __future__ import annotations

import threading

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.flusher import Flusher
from ymsync.engine.producer import push_stocks
from ymsync.engine.quota import QuotaLimiter
from ymsync.market import MarketBadRequest
from ymsync.market.clock import MarketClock
from ymsync.market.errors import ApiError
from ymsync.market.models import UpdateResult


class Market:
    """Campaign 1 refuses its first request (SKU 'BAD'); while it does, another thread flushes
    campaign 2 with a task slot already lost (its keep_going says no)."""

    clock = MarketClock()

    def __init__(self, flusher_of: list[Flusher]) -> None:
        self.flusher_of = flusher_of
        self.sent: dict[int, list[list[str]]] = {1: [], 2: []}

    def update_stocks(self, campaign_id: int, levels, *, validate: bool = True) -> UpdateResult:
        skus = [level.sku for level in levels]
        self.sent[campaign_id].append(skus)
        if campaign_id == 1 and len(self.sent[1]) == 1:
            other = threading.Thread(target=self.flusher_of[0].flush, args=("c2", lambda: False))
            other.start()
            other.join()
            raise MarketBadRequest("HTTP 400", status=400, errors=(ApiError("BAD_REQUEST", "Offer 'BAD' is unknown"),))
        return UpdateResult(len(skus))


def test_a_flush_in_another_thread_does_not_change_what_this_flush_asks(clean_redis):
    buffer = StockBuffer(clean_redis)
    for campaign in (1, 2):
        push_stocks(campaign, [{"sku": sku, "count": 1} for sku in ("A", "B", "BAD", "C")], buffer=buffer)
    flushers: list[Flusher] = []
    market = Market(flushers)
    flushers.append(Flusher(buffer, QuotaLimiter(clean_redis, {"update_stocks": None}), market,  # type: ignore[arg-type]
                            min_batch=1))
    result = flushers[0].flush("c1", lambda: True)
    # Campaign 1's slot was never lost: isolation sent the innocent SKUs and delivered them.
    assert result.delivered == 3 and result.dead == 1, (result, market.sent)
    assert market.sent[2] == []  # campaign 2's flush, its slot lost, sent nothing
