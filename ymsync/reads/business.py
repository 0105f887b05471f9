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

import json
import logging
import time
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from ymsync.market import MarketClient
from ymsync.market.models import WarehouseOfferStock, WarehouseStocksPage
from ymsync.engine.call_policy import Call
from ymsync.engine.quota import QuotaLimiter
from ymsync.reads.paged import ExportResult, PagedReader, ReadStats, chunks, each_once, export_to, unique_ids, walk
from ymsync.store import keys

log = logging.getLogger("ymsync.reads.business")

METHOD = "get_stocks_v3"  # settings.DEFAULT_QUOTAS name (YM_QUOTA_GET_STOCKS_V3)
PAGE_LIMIT = 100  # the Market's maximum (and more is cut silently)
MAX_OFFER_IDS = 500


def business_key(business_id: int) -> str:
    """The limiter key of business paths: quotas, pauses and parallel slots counted per business."""
    return keys.business_target(business_id)


class WarehouseStockReader(PagedReader[WarehouseStocksPage]):
    def __init__(self, limiter: QuotaLimiter, client: MarketClient, *, limit: int = PAGE_LIMIT,
                 sleep: Callable[[float], None] = time.sleep, max_wait_s: float = 5.0) -> None:
        if not 1 <= limit <= PAGE_LIMIT:
            raise ValueError(f"limit must be 1..{PAGE_LIMIT}")
        super().__init__(limiter, client, sleep=sleep, max_wait_s=max_wait_s)
        self.limit = limit

    def read(self, business_id: int, warehouse_id: int, offer_ids: Iterable[str] | None = None,
             stats: ReadStats | None = None) -> Iterator[WarehouseOfferStock]:
        """Every offer on the warehouse (or only ``offer_ids``), each once."""
        stats = stats if stats is not None else ReadStats()
        pages = (self._chunks(business_id, warehouse_id, list(offer_ids), stats) if offer_ids is not None
                 else self._pages(business_id, warehouse_id, stats))
        return each_once(pages, lambda offer: offer.offer_id, stats)

    def _pages(self, business_id: int, warehouse_id: int, stats: ReadStats) -> Iterator[list[WarehouseOfferStock]]:
        def fetch(token: str | None) -> WarehouseStocksPage:
            return self._request(business_id, stats, lambda: self.client.get_stocks_v3(
                business_id, warehouse_id, page_token=token, limit=self.limit))

        for page in walk(fetch, f"getStocksOnPartnerWarehouses: business {business_id}"):
            yield page.offers

    def _chunks(self, business_id: int, warehouse_id: int, ids: list[str],
                stats: ReadStats) -> Iterator[list[WarehouseOfferStock]]:
        for chunk in chunks(unique_ids(ids), MAX_OFFER_IDS):
            page = self._request(business_id, stats, lambda: self.client.get_stocks_v3(
                business_id, warehouse_id, offer_ids=chunk))
            yield page.offers

    def _request(self, business_id: int, stats: ReadStats,
                 call: Callable[[], WarehouseStocksPage]) -> WarehouseStocksPage:
        """One request, one unit of the business's read quota, one of its parallel slots."""
        identity = business_key(business_id)
        return self.request(Call(METHOD, identity, identity, self.client.clock), lambda _units: call(), stats,
                            f"getStocksOnPartnerWarehouses business {business_id}")

    # --- exporting ------------------------------------------------------------------------

    def export(self, business_id: int, warehouse_id: int, *, out: Path | None = None,
               stream: IO[str] | None = None, offer_ids: Iterable[str] | None = None) -> ExportResult:
        """JSON Lines of every offer on the warehouse, to ``out`` (atomically) or ``stream``."""
        result = ExportResult(out, "jsonl")
        offers = self.read(business_id, warehouse_id, offer_ids, result.stats)
        export_to(out, stream, lambda fh: write_jsonl(offers, fh))
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
