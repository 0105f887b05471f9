"""v3 warehouse reads (real Redis limiter, scripted Market) and the reconciliation's comparison."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from ymsync.market import MarketServerError, MarketWrongApiMode
from ymsync.market.clock import MarketClock
from ymsync.market.models import WarehouseOfferStock, WarehouseStocksPage
from ymsync.engine.quota import QuotaLimiter
from ymsync.reads.business import METHOD, WarehouseStockReader
from ymsync.reads.reconcile_business import DRIFT, MISSING, WarehouseReconciler, compare
from ymsync.config.settings import Quota

NOW_MS = 1_800_000_000_000


def offer(sku: str, fit: int, warehouse: int = 11, stamp_ms: int | None = None) -> WarehouseOfferStock:
    at = datetime.fromtimestamp(stamp_ms / 1000, timezone.utc) if stamp_ms else None
    return WarehouseOfferStock(sku, warehouse, {"FIT": fit, "AVAILABLE": fit}, at)


class ScriptedMarket:
    clock = MarketClock()  # a client's clock of the Market (420s' Until are measured on it)

    def __init__(self, offers: list[WarehouseOfferStock], size: int = 3) -> None:
        self.offers, self.size = offers, size
        self.calls: list[dict] = []
        self.failures: list[Exception] = []

    def get_stocks_v3(self, business_id, warehouse_id, *, page_token=None, limit=None, offer_ids=None):
        self.calls.append({"business": business_id, "warehouse": warehouse_id, "token": page_token,
                           "limit": limit, "offer_ids": offer_ids})
        if self.failures:
            raise self.failures.pop(0)
        mine = [o for o in self.offers if o.warehouse_id == warehouse_id]
        if offer_ids is not None:
            return WarehouseStocksPage([o for o in mine if o.offer_id in offer_ids], None)
        start = int(page_token or 0)
        nxt = start + self.size
        return WarehouseStocksPage(mine[start:nxt], str(nxt) if nxt < len(mine) else None)


def _reader(clean_redis, market, quota=Quota(500, 60)):
    limiter = QuotaLimiter(clean_redis, {METHOD: quota})
    return WarehouseStockReader(limiter, market, sleep=lambda s: None), limiter


def test_walks_pages_with_limit_100_and_counts_requests_per_business(clean_redis, tmp_path):
    market = ScriptedMarket([offer(f"S{i}", i) for i in range(7)] + [offer("X", 1, warehouse=12)])
    reader, limiter = _reader(clean_redis, market)
    result = reader.export(7, 11, out=tmp_path / "w.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert [r["offerId"] for r in rows] == [f"S{i}" for i in range(7)]
    assert rows[3] == {"offerId": "S3", "warehouseId": 11, "stocks": {"FIT": 3, "AVAILABLE": 3}, "updatedAt": None}
    assert [c["limit"] for c in market.calls] == [100, 100, 100] and market.calls[1]["token"] == "3"
    assert (result.stats.requests, result.stats.offers) == (3, 7)
    assert limiter.usage(METHOD, "b7") == (3, 500)  # counted in requests, keyed per business
    assert limiter.leases_in_use("b7") == 0


def test_offer_ids_asked_500_at_a_time(clean_redis):
    market = ScriptedMarket([offer(f"S{i}", 1) for i in range(3)])
    reader, _ = _reader(clean_redis, market)
    ids = [f"S{i}" for i in range(1200)]
    assert len(list(reader.read(7, 11, ids))) == 3
    assert [len(c["offer_ids"]) for c in market.calls] == [500, 500, 200]


def test_wrong_mode_is_not_retried_and_says_which_mode(clean_redis):
    market = ScriptedMarket([offer("A", 1)])
    market.failures = [MarketWrongApiMode("getStocksOnPartnerWarehouses: HTTP 400: the cabinet has warehouse "
                                          "groups; set YM_API_MODE=v2", status=400)]
    reader, limiter = _reader(clean_redis, market)
    with pytest.raises(MarketWrongApiMode, match="YM_API_MODE=v2"):
        list(reader.read(7, 11))
    assert len(market.calls) == 1 and limiter.usage(METHOD, "b7")[0] == 1  # a 400 reply is counted (README)


def test_server_errors_retried(clean_redis):
    market = ScriptedMarket([offer("A", 1)])
    market.failures = [MarketServerError("boom", status=503)]
    reader, _ = _reader(clean_redis, market)
    assert [o.offer_id for o in reader.read(7, 11)] == ["A"]
    assert len(market.calls) == 2


def test_compare_grace_returns_and_drift():
    old = NOW_MS - 3600_000
    delivered = {
        (11, "same"): (5, old, old),
        (11, "drift"): (5, old, old),
        (11, "gone"): (2, old, old),
        (11, "fresh"): (9, NOW_MS - 10_000, NOW_MS - 10_000),  # inside the 5-minute grace
        (12, "other"): (1, old, old),  # another warehouse's record: not this reconciliation's
    }
    offers = [offer("same", 5), offer("drift", 3, stamp_ms=old + 5), offer("fresh", 0),
              offer("drift", 40, warehouse=900)]  # FBS returns warehouse: never drift
    result = compare(7, 11, delivered, offers, now_ms=NOW_MS, grace_s=300)
    assert (result.checked, result.in_motion, result.other_warehouse) == (3, 1, 1)
    assert [(r.sku, r.ours, r.market, r.status) for r in result.rows] == [("drift", 5, 3, DRIFT),
                                                                          ("gone", 2, None, MISSING)]
    assert result.rows[0].market_updated_ms == old + 5
    late = compare(7, 11, delivered, offers, now_ms=NOW_MS + 600_000, grace_s=300)
    assert [r.sku for r in late.rows] == ["drift", "fresh", "gone"]  # past the grace, a stale value is drift


def test_reconciler_reads_only_delivered_skus_and_skips_redelivered(clean_redis):
    old = NOW_MS - 3600_000
    market = ScriptedMarket([offer("A", 1), offer("B", 7), offer("C", 3)])
    reader, _ = _reader(clean_redis, market)
    snapshots = [{(11, "A"): (1, old, old), (11, "B"): (2, old, old)},
                 {(11, "A"): (1, old, old), (11, "B"): (8, old + 1, old + 1)}]  # B re-delivered during the read
    reconciler = WarehouseReconciler(reader, lambda b, w: snapshots.pop(0), clock=lambda: NOW_MS / 1000)
    result = reconciler.run(7, 11)
    assert market.calls[0]["offer_ids"] == ["A", "B"]
    assert (result.checked, result.in_motion, result.drift) == (1, 1, 0)


def test_a_420_pauses_every_reader_of_the_business_not_others(clean_redis):
    from ymsync.market import MarketQuotaExceeded

    market = ScriptedMarket([offer("A", 1)])
    market.failures = [MarketQuotaExceeded("420: Hit rate limit", status=420)]
    limiter = QuotaLimiter(clean_redis, {METHOD: Quota(500, 60)})
    seen: list[tuple[float, float]] = []

    def sleep(seconds: float) -> None:  # what every other process would see while this one waits
        seen.append((limiter.paused_for(METHOD, "b7"), limiter.paused_for(METHOD, "b8")))
        time.sleep(min(seconds, 0.05))

    reader = WarehouseStockReader(limiter, market, sleep=sleep)
    assert [o.offer_id for o in reader.read(7, 11)] == ["A"]
    assert len(market.calls) == 2
    assert seen and seen[0][0] > 0.5 and all(other == 0 for _, other in seen)  # keyed per business
    assert limiter.usage(METHOD, "b7")[0] == 2  # a 420 is a 4xx reply: the Market counts it (README)
