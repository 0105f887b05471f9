"""WarehouseDirectory on a real Redis: paging, the shared cache and quota, stale fallback, check()."""

from __future__ import annotations

import threading

import pytest

from ymsync.store import keys
from ymsync.market import MarketForbidden, MarketServerError
from ymsync.market.clock import MarketClock
from ymsync.market.models import PartnerWarehouse, WarehouseModel, WarehousesPage
from ymsync.engine.quota import QuotaLimiter
from ymsync.config.settings import Quota
from ymsync.reads.warehouses import METHOD, WarehouseDirectory, WarehousesUnavailable

OK = (WarehouseModel("FBS", "AVAILABLE"),)
OFF = (WarehouseModel("FBS", "DISABLED_BY_INACTIVITY"), WarehouseModel("DBS", "DISABLED_BY_PARTNER"))


class FakeMarket:
    """getPartnerWarehouses over ``warehouses``, ``size`` a page; counts calls; may fail."""

    clock = MarketClock()  # a client's clock of the Market (420s' Until are measured on it)

    def __init__(self, warehouses: list[PartnerWarehouse], size: int = 2) -> None:
        self.warehouses, self.size = warehouses, size
        self.calls: list[tuple[int, str | None, int | None]] = []
        self.fail: Exception | None = None
        self.lock = threading.Lock()

    def get_partner_warehouses(self, business_id: int, *, page_token=None, limit=None) -> WarehousesPage:
        with self.lock:
            self.calls.append((business_id, page_token, limit))
        if self.fail is not None:
            raise self.fail
        start = int(page_token or 0)
        nxt = start + self.size
        return WarehousesPage(self.warehouses[start:nxt], str(nxt) if nxt < len(self.warehouses) else None)


def _directory(clean_redis, market: FakeMarket, quota: str = "100/3600", **kw) -> tuple[WarehouseDirectory, QuotaLimiter]:
    amount, seconds = quota.split("/")
    limiter = QuotaLimiter(clean_redis, {METHOD: Quota(int(amount), float(seconds))})
    return WarehouseDirectory(clean_redis, lambda b: market, lambda b: limiter, **kw), limiter


WAREHOUSES = [PartnerWarehouse(11, "Север", OK), PartnerWarehouse(12, "Юг", OFF),
              PartnerWarehouse(13, "Восток", (WarehouseModel("DBS", "DISABLED_BY_PARTNER"),) + OK)]


def test_all_pages_read_once_then_served_from_cache(clean_redis):
    market = FakeMarket(WAREHOUSES)
    directory, limiter = _directory(clean_redis, market)
    listing = directory.get(7)
    assert [w.id for w in listing.warehouses] == [11, 12, 13]
    assert [(c[1], c[2]) for c in market.calls] == [(None, 30), ("2", 30)]  # limit <= 30, pages followed
    assert limiter.usage(METHOD, "b7") == (2, 100)  # each page is one request of the hourly quota
    again = WarehouseDirectory(clean_redis, lambda b: market, lambda b: limiter).get(7)  # another process
    assert again.warehouses == listing.warehouses and len(market.calls) == 2
    assert clean_redis.ttl(keys.warehouses(7)) > 0


def test_refresh_on_demand_and_after_ttl(clean_redis):
    market = FakeMarket(WAREHOUSES, size=30)
    directory, _ = _directory(clean_redis, market, ttl_s=0.2)
    directory.get(7)
    directory.get(7, refresh=True)
    assert len(market.calls) == 2
    import time
    time.sleep(0.3)
    directory.get(7)
    assert len(market.calls) == 3


def test_check_names_unknown_and_unavailable_warehouses(clean_redis):
    directory, _ = _directory(clean_redis, FakeMarket(WAREHOUSES))
    assert directory.check(7, [11, 13, 11]) == []
    errors = directory.check(7, [11, 12, 99])
    assert errors[0].startswith("warehouse 12 (Юг): no model is AVAILABLE to the API (FBS: DISABLED_BY_INACTIVITY")
    assert errors[1].startswith("warehouse 99: not a warehouse of business 7")
    assert "11 (Север)" in errors[1]
    assert directory.check(7, []) == []


def test_unknown_warehouse_rechecks_a_list_older_than_a_minute_only(clean_redis):
    market = FakeMarket(WAREHOUSES, size=30)
    directory, _ = _directory(clean_redis, market, recheck_unknown_s=60)
    directory.check(7, [99])
    directory.check(7, [99])
    assert len(market.calls) == 1  # a flood of bad pushes must not burn the 100-an-hour quota
    market.warehouses = WAREHOUSES + [PartnerWarehouse(99, "Новый", OK)]
    fresh, _ = _directory(clean_redis, market, recheck_unknown_s=0)
    assert fresh.check(7, [99]) == []  # the list was old enough: fetched again, the new warehouse found
    assert len(market.calls) == 2


def test_quota_spent_serves_stale_copy_or_says_why(clean_redis):
    market = FakeMarket(WAREHOUSES, size=30)
    directory, limiter = _directory(clean_redis, market, quota="1/3600", ttl_s=0.0, max_wait_s=0.5)
    assert not directory.get(7).stale
    stale = directory.get(7)  # ttl 0: wants a refresh, but the hour's one request is spent
    assert stale.stale and [w.id for w in stale.warehouses] == [11, 12, 13]
    assert len(market.calls) == 1
    clean_redis.delete(keys.warehouses(7))
    with pytest.raises(WarehousesUnavailable, match="quota .*warehouses_v3.* is spent"):
        directory.get(7)
    assert directory.check(7, [11]) and "cannot check warehouses 11 now" in directory.check(7, [11])[0]


def test_market_failures(clean_redis):
    market = FakeMarket(WAREHOUSES)
    directory, limiter = _directory(clean_redis, market)
    market.fail = MarketServerError("getPartnerWarehouses: HTTP 503: down", status=503)
    with pytest.raises(WarehousesUnavailable, match="503"):
        directory.get(7)
    market.fail = MarketForbidden("getPartnerWarehouses: HTTP 403: token not allowed", status=403)
    with pytest.raises(MarketForbidden):
        directory.get(7)
    assert "token not allowed" in directory.check(7, [11])[0]
    # The Market's rule: a 4xx reply is counted (both 403s), a 5xx is not (the 503).
    assert limiter.usage(METHOD, "b7")[0] == 2


def test_concurrent_refreshes_fetch_once(clean_redis):
    market = FakeMarket(WAREHOUSES, size=30)
    real = market.get_partner_warehouses
    gate = threading.Event()

    def slow(*args, **kwargs):
        gate.wait(2)
        return real(*args, **kwargs)

    market.get_partner_warehouses = slow  # type: ignore[method-assign]
    directory, _ = _directory(clean_redis, market)
    results = []
    threads = [threading.Thread(target=lambda: results.append(directory.get(7))) for _ in range(4)]
    for t in threads:
        t.start()
    import time
    time.sleep(0.3)  # all four are inside get() before the Market answers
    gate.set()
    for t in threads:
        t.join(10)
    assert len(results) == 4 and all(r.warehouses == results[0].warehouses for r in results)
    assert len(market.calls) == 1


def test_check_of_an_unconfigured_business_is_an_error_not_a_crash(clean_redis):
    from ymsync.config.cabinets import CabinetNotFound

    def no_cabinet(business_id: int):
        raise CabinetNotFound(f"no cabinet configured for business {business_id} (configured: 7)")

    directory = WarehouseDirectory(clean_redis, no_cabinet, no_cabinet)
    assert directory.check(9, [11]) == ["no cabinet configured for business 9 (configured: 7)"]
