"""A 420 from the sandbox (the typed format's shape, ``errors[{code, message}]``, checked against the
official OpenAPI) is told apart by kind and handled by it: a quota 420 pauses the quota until the
Market's Until and is counted as ``rate_limited_quota``."""

from __future__ import annotations

import pytest

from tests.support.stock_harness import sandbox_config
from ymsync.config.settings import Credentials, Quota, Secret
from ymsync.engine.flusher import Flusher
from ymsync.engine.quota import QuotaLimiter
from ymsync.market import MarketClient, MarketQuotaExceeded
from ymsync.market.wire import campaign_stock_body
from ymsync.store import keys

pytestmark = pytest.mark.integration


def test_a_quota_420_is_read_by_kind_and_pauses_the_quota(bench_for):
    bench = bench_for(sandbox_config(Quota(1, 60)))
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    client.send_stocks_body(1001, campaign_stock_body([("K-0", 1, None)]))  # the window's one SKU
    with pytest.raises(MarketQuotaExceeded) as caught:
        client.send_stocks_body(1001, campaign_stock_body([("K-0", 2, None)]))
    assert caught.value.kind == "quota" and caught.value.code == "LIMIT_EXCEEDED" and caught.value.until is not None

    bench.push(1001, [("K-1", 3)])  # ymsync does not know the window is spent: the Market says so
    flusher = Flusher(bench.buffer, QuotaLimiter(bench.redis, {"update_stocks": None}), client, lease_s=10)
    result = flusher.flush("c1001")
    assert result.delivered == 0 and result.next_in and result.next_in > 1
    stats = bench.buffer.stats(1001)
    assert stats.get("rate_limited_quota") == 1 and not stats.get("rate_limited_parallel")
    assert bench.redis.pttl(keys.pause("update_stocks", "1001")) > 1000  # paused until the Market's Until
