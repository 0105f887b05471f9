"""Stock reads of one business warehouse: ``POST v3/businesses/{id}/offers/stocks`` (v3).

``getStocksOnPartnerWarehouses`` answers for one ``partnerWarehouseId`` a request, pages of at
most 100 (larger limits are cut silently, so only ``nextPageToken`` ends a walk) or up to 500
given ``offerIds`` (never paged). Its quota, 500 requests a minute per business, counts
requests: each request takes one unit of the ``get_stocks_v3`` quota that every worker and
shell shares through the :class:`QuotaLimiter` (key ``b<id>``), and one of the business's
parallel slots (the same key), so reads never push the stock updates into a 420.

A read of a cabinet with warehouse groups is refused by the Market (``MarketWrongApiMode``):
that is raised at once, never retried, and its message says which mode to set.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from ymsync.files import atomic_writer
from ymsync.market import MarketClient, MarketError, MarketParallelLimitExceeded, MarketRateLimited
from ymsync.market.models import WarehouseOfferStock, WarehouseStocksPage
from ymsync.market.schemas import InvalidRequest
from ymsync.engine.quota import Grant, QuotaLimiter
from ymsync.reads.campaign import ExportResult, ReadStats

log = logging.getLogger("ymsync.reads.campaign")

METHOD = "get_stocks_v3"  # settings.DEFAULT_QUOTAS name (YM_QUOTA_GET_STOCKS_V3)
PAGE_LIMIT = 100  # the Market's maximum (and more is cut silently)
MAX_OFFER_IDS = 500
_MAX_RETRIES = 5
_MAX_RATE_LIMITED_S = 600.0


def business_key(business_id: int) -> str:
    """The limiter key of business paths: quotas, pauses and parallel slots counted per business."""
    return f"b{int(business_id)}"


class WarehouseStockReader:
    def __init__(self, limiter: QuotaLimiter, client: MarketClient, *, limit: int = PAGE_LIMIT,
                 sleep: Callable[[float], None] = time.sleep, max_wait_s: float = 5.0) -> None:
        if not 1 <= limit <= PAGE_LIMIT:
            raise ValueError(f"limit must be 1..{PAGE_LIMIT}")
        self.limiter, self.client, self.limit = limiter, client, limit
        self.sleep, self.max_wait_s = sleep, max_wait_s

    def read(self, business_id: int, warehouse_id: int, offer_ids: Iterable[str] | None = None,
             stats: ReadStats | None = None) -> Iterator[WarehouseOfferStock]:
        """Every offer on the warehouse (or only ``offer_ids``), each once."""
        stats = stats if stats is not None else ReadStats()
        seen: set[str] = set()
        pages = (self._chunks(business_id, warehouse_id, list(offer_ids), stats) if offer_ids is not None
                 else self._pages(business_id, warehouse_id, stats))
        for offers in pages:
            stats.pages += 1
            for offer in offers:
                if offer.offer_id in seen:
                    stats.duplicates += 1
                    continue
                seen.add(offer.offer_id)
                stats.offers += 1
                yield offer

    def _pages(self, business_id: int, warehouse_id: int, stats: ReadStats) -> Iterator[list[WarehouseOfferStock]]:
        token: str | None = None
        tokens: set[str] = set()
        while True:
            page = self._request(business_id, stats, lambda: self.client.get_stocks_v3(
                business_id, warehouse_id, page_token=token, limit=self.limit))
            yield page.offers
            if not page.next_page_token:
                return
            if page.next_page_token in tokens:
                raise MarketError(f"getStocksOnPartnerWarehouses: business {business_id} repeated a page token; "
                                  "read aborted")
            tokens.add(page.next_page_token)
            token = page.next_page_token

    def _chunks(self, business_id: int, warehouse_id: int, ids: list[str],
                stats: ReadStats) -> Iterator[list[WarehouseOfferStock]]:
        unique = list(dict.fromkeys(i.strip() for i in ids if i.strip()))  # the Market refuses repeats
        for start in range(0, len(unique), MAX_OFFER_IDS):
            chunk = unique[start:start + MAX_OFFER_IDS]
            page = self._request(business_id, stats, lambda: self.client.get_stocks_v3(
                business_id, warehouse_id, offer_ids=chunk))
            yield page.offers

    def _request(self, business_id: int, stats: ReadStats,
                 call: Callable[[], WarehouseStocksPage]) -> WarehouseStocksPage:
        key = business_key(business_id)
        failures, limited_since = 0, None
        while True:
            grant = self._grant(key, stats)
            lease = self._lease(key, stats)
            try:
                stats.requests += 1
                page = call()
            except MarketRateLimited as exc:
                self.limiter.settle(grant, 0)  # the Market does not count refused requests
                stats.rate_limited += 1
                limited_since = limited_since or time.monotonic()
                if time.monotonic() - limited_since > _MAX_RATE_LIMITED_S:
                    raise
                wait = max(0.05, exc.until.timestamp() - time.time()) if exc.until else 1.0
                if isinstance(exc, MarketParallelLimitExceeded):
                    wait = min(wait, 1.0)
                self.limiter.pause(METHOD, key, wait)
                log.warning("getStocksOnPartnerWarehouses business %s: 420, pausing reads %.1fs", business_id, wait)
                continue
            except MarketError as exc:
                self.limiter.settle(grant, 1 if exc.retryable else 0)
                failures += 1
                if not exc.retryable or failures > _MAX_RETRIES:
                    raise  # MarketWrongApiMode, 403, 400...: the message says what to do
                stats.retries += 1
                self._wait(min(30.0, 0.5 * 2 ** (failures - 1)), stats)
                continue
            except InvalidRequest:
                self.limiter.settle(grant, 0)
                raise
            except BaseException:
                self.limiter.settle(grant)
                raise
            finally:
                self.limiter.release(key, lease)
            self.limiter.settle(grant)
            return page

    def _grant(self, key: str, stats: ReadStats) -> Grant:
        while True:
            grant = self.limiter.acquire(METHOD, key, 1)
            if grant.granted:
                return grant
            self._wait(grant.wait_s, stats)

    def _lease(self, key: str, stats: ReadStats) -> str:
        while True:
            lease = self.limiter.lease(key)
            if lease is not None:
                return lease
            self._wait(0.05, stats)

    def _wait(self, seconds: float, stats: ReadStats) -> None:
        seconds = max(0.01, min(seconds, self.max_wait_s))
        stats.waited_s += seconds
        self.sleep(seconds)

    # --- exporting ------------------------------------------------------------------------

    def export(self, business_id: int, warehouse_id: int, *, out: Path | None = None,
               stream: IO[str] | None = None, offer_ids: Iterable[str] | None = None) -> ExportResult:
        """JSON Lines of every offer on the warehouse, to ``out`` (atomically) or ``stream``."""
        result = ExportResult(out, "jsonl")
        offers = self.read(business_id, warehouse_id, offer_ids, result.stats)
        if out is None:
            write_jsonl(offers, stream if stream is not None else io.StringIO())
            return result
        with atomic_writer(out, prefix=".part-", suffix=Path(out).suffix) as fh:
            write_jsonl(offers, fh)
        return result


def offer_record(offer: WarehouseOfferStock) -> dict[str, object]:
    return {"offerId": offer.offer_id, "warehouseId": offer.warehouse_id, "stocks": dict(offer.stocks),
            "updatedAt": offer.updated_at.isoformat() if offer.updated_at else None}


def write_jsonl(offers: Iterable[WarehouseOfferStock], fh: IO[str]) -> int:
    n = 0
    for offer in offers:
        fh.write(json.dumps(offer_record(offer), ensure_ascii=False) + "\n")
        n += 1
    return n


__all__ = ["METHOD", "WarehouseStockReader", "business_key", "offer_record", "write_jsonl"]
