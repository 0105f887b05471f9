"""The Flusher's request body (issue 18 item 3): a campaign-level batch is written straight from the
take's reply (``wire.campaign_stock_bytes``), and a batch with a SKU JSON escapes goes the general
way; both carry what was pushed, stamps clamped alike. A real, private redis-server; a Market
stand-in that keeps what it was sent."""

from __future__ import annotations

import json
from typing import Any, Mapping

from ymsync.config.settings import Quota
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.flusher import Flusher
from ymsync.engine.producer import push_stocks
from ymsync.engine.quota import QuotaLimiter
from ymsync.market.clock import MarketClock
from ymsync.market.models import UpdateResult
from ymsync.market.wire import EncodedBody, encode_body


class Market:
    clock = MarketClock()

    def __init__(self) -> None:
        self.bodies: list[Mapping[str, Any]] = []

    def send_stocks_body(self, campaign_id: int, body: Mapping[str, Any]) -> UpdateResult:
        self.bodies.append(body)
        return UpdateResult(len(body["skus"]))


def sent(body: Mapping[str, Any]) -> dict[str, int]:
    decoded = json.loads(encode_body(body))  # the bytes the client sends, either way
    return {e["sku"]: e["items"][0]["count"] for e in decoded["skus"]}


def test_a_campaign_batch_goes_as_bytes_written_from_the_take_and_an_escaped_sku_the_general_way(clean_redis) -> None:
    buffer = StockBuffer(clean_redis)
    market = Market()
    flusher = Flusher(buffer, QuotaLimiter(clean_redis, {"update_stocks": Quota(100_000, 60)}), market,  # type: ignore[arg-type]
                      min_batch=1)
    plain = {f"SKU-{i}": i for i in range(50)} | {"Ящик-1": 7}
    push_stocks(1001, [{"sku": sku, "count": count} for sku, count in plain.items()], buffer=buffer)
    result = flusher.flush("c1001")
    assert result.delivered == len(plain)
    (body,) = market.bodies
    assert type(body) is EncodedBody and sent(body) == plain  # non-ASCII is written as it is
    stamps = [e["items"][0].get("updatedAt") for e in json.loads(body.data)["skus"]]
    assert all(s and s.endswith("+00:00") for s in stamps)

    push_stocks(1001, [{"sku": 'Q"1', "count": 3}, {"sku": "SKU-1", "count": 99}], buffer=buffer)
    assert flusher.flush("c1001").delivered == 2
    assert type(market.bodies[-1]) is dict and sent(market.bodies[-1]) == {'Q"1': 3, "SKU-1": 99}
