"""Stock reads: every offer a campaign holds on the Market, under the shared read quota.

``StockReader.read`` (on the paged-reader core, paged.py) walks ``POST v2/campaigns/{id}/offers/stocks`` page by page, or asks for
given SKUs in chunks of 500 (the Market's cap on ``offerIds``; such answers are never paged).
It never assumes a page size: the Market silently cuts ``limit`` to 100 and may answer short
or empty pages mid-walk, so only ``nextPageToken`` says when the walk is over.

The Market charges the read quota per offer *returned* (100,000 a minute), which is unknown
until the answer arrives. So before each request the reader reserves the most a page can
return (its ``limit``, or the chunk size) from the ``QuotaLimiter`` every worker shares, and
afterwards settles the reservation down to the real count. A reservation smaller than the
wanted page is used by asking for a smaller page, never by hoping the page will be small.
It also takes one of the campaign's parallel-request slots, the same ones the stock pushes
use, because the Market's cap of 4 in-flight requests counts every method on a campaign.

This module knows nothing about Celery; ``tasks/reads.py`` and ``ymsync stocks`` sit on top.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

from ymsync.market import MarketClient, OfferStock, StocksPage
from ymsync.market.schemas import MAX_GET_STOCKS_LIMIT, MAX_OFFER_IDS, InvalidRequest
from ymsync.engine.call_policy import Call
from ymsync.engine.quota import QuotaLimiter
from ymsync.reads.paged import ExportResult, PagedReader, ReadStats, chunks, each_once, export_to, unique_ids, walk
from ymsync.store import keys

log = logging.getLogger("ymsync.reads.campaign")

METHOD = "get_stocks"  # the read quota's name in settings (YM_QUOTA_GET_STOCKS) and the limiter
STOCK_TYPES = ("AVAILABLE", "FIT", "FREEZE", "QUARANTINE", "UTILIZATION", "DEFECT", "EXPIRED")
FORMATS = ("jsonl", "csv")


def parallel_gate(campaign_id: int) -> str:
    """The limiter's parallel-slot key for a campaign; the stock push (engine/flusher.py) uses the same."""
    return keys.campaign_target(campaign_id)


@dataclass(frozen=True)
class ReadOptions:
    """The filters of one read. ``offer_ids`` excludes ``archived`` (the Market's rule)."""

    offer_ids: tuple[str, ...] | None = None
    archived: bool | None = None
    warehouse_id: int | None = None
    with_turnover: bool | None = None

    def __post_init__(self) -> None:
        if self.offer_ids is not None and self.archived is not None:
            # Refuse here, with a clear line, rather than on the first chunk's request.
            raise InvalidRequest("stock read", ["offerIds cannot be combined with archived"])

    def describe(self) -> str:
        parts = [f"{len(self.offer_ids)} offer ids" if self.offer_ids is not None else "all offers"]
        if self.archived:
            parts.append("archived")
        if self.warehouse_id is not None:
            parts.append(f"warehouse {self.warehouse_id}")
        if self.with_turnover:
            parts.append("with turnover")
        return ", ".join(parts)


class StockReader(PagedReader[StocksPage]):
    def __init__(self, limiter: QuotaLimiter, client: MarketClient, *, limit: int = MAX_GET_STOCKS_LIMIT,
                 min_page: int = 20, chunk: int = MAX_OFFER_IDS, sleep: Callable[[float], None] = time.sleep,
                 max_wait_s: float = 5.0) -> None:
        if not 1 <= limit <= MAX_GET_STOCKS_LIMIT or not 1 <= chunk <= MAX_OFFER_IDS:
            raise ValueError(f"limit must be 1..{MAX_GET_STOCKS_LIMIT} and chunk 1..{MAX_OFFER_IDS}")
        super().__init__(limiter, client, sleep=sleep, max_wait_s=max_wait_s)
        self.limit, self.min_page, self.chunk = limit, max(1, min(min_page, limit)), chunk

    # --- reading --------------------------------------------------------------------------

    def read(self, campaign_id: int, options: ReadOptions = ReadOptions(),
             stats: ReadStats | None = None) -> Iterator[OfferStock]:
        """Yield every offer (one per warehouse holding it), each (offer, warehouse) once."""
        stats = stats if stats is not None else ReadStats()
        pages = self._chunks(campaign_id, options, stats) if options.offer_ids is not None \
            else self._pages(campaign_id, options, stats)
        return each_once(pages, lambda offer: (offer.offer_id, offer.warehouse_id), stats)

    def _pages(self, campaign_id: int, options: ReadOptions, stats: ReadStats) -> Iterator[list[OfferStock]]:
        def fetch(token: str | None) -> StocksPage:
            return self._request(campaign_id, stats, self.limit, self.min_page,
                                 lambda size: self.client.get_stocks(
                                     campaign_id, page_token=token, limit=size, archived=options.archived,
                                     warehouse_id=options.warehouse_id, with_turnover=options.with_turnover))

        for page in walk(fetch, f"getStocks: campaign {campaign_id}"):
            yield page.offers

    def _chunks(self, campaign_id: int, options: ReadOptions, stats: ReadStats) -> Iterator[list[OfferStock]]:
        ids = unique_ids(options.offer_ids or (), drop_blank=False)
        # A chunk may return up to one offer per id and warehouse; a quota smaller than a chunk
        # could never grant it whole, so chunks shrink to fit the quota.
        quota = self.limiter.quotas.get(METHOD)
        size = min(self.chunk, quota.amount) if quota is not None else self.chunk
        for chunk in chunks(ids, size):
            page = self._request(campaign_id, stats, len(chunk), len(chunk),
                                 lambda _size: self.client.get_stocks(
                                     campaign_id, offer_ids=chunk, warehouse_id=options.warehouse_id,
                                     with_turnover=options.with_turnover))
            yield page.offers

    def _request(self, campaign_id: int, stats: ReadStats, want: int, minimum: int,
                 call: Callable[[int], StocksPage]) -> StocksPage:
        """One request under the quota (reserving ``want`` offers, at least ``minimum``: a smaller
        grant asks for a smaller page) and one of the campaign's parallel slots; settled to the
        offers the page really returned."""
        spec = Call(METHOD, str(int(campaign_id)), parallel_gate(campaign_id), self.client.clock,
                    want=want, minimum=minimum, counts_response=True)
        return self.request(spec, call, stats, f"getStocks campaign {campaign_id}", lambda page: page.offer_count)

    # --- exporting ------------------------------------------------------------------------

    def export(self, campaign_id: int, options: ReadOptions = ReadOptions(), *, out: Path | None = None,
               stream: IO[str] | None = None, fmt: str | None = None) -> ExportResult:
        """Write every offer to ``out`` (atomically: readers never see half a file) or ``stream``."""
        fmt = fmt or (format_for(out) if out is not None else "jsonl")
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        result = ExportResult(out, fmt)
        offers = self.read(campaign_id, options, result.stats)
        export_to(out, stream, lambda fh: write_offers(offers, fh, fmt, bool(options.with_turnover)))
        return result


def format_for(path: Path | str) -> str:
    """The output format named by a file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {str(path)!r}: use a .csv or .jsonl file name")


def offer_row(offer: OfferStock) -> dict[str, object]:
    """One JSON Lines record; turnover appears only where the Market gave it."""
    row: dict[str, object] = {"offerId": offer.offer_id, "warehouseId": offer.warehouse_id,
                              "stocks": dict(offer.stocks), "updatedAt": offer.updated_at}
    if offer.turnover is not None:
        row["turnover"] = offer.turnover
        row["turnoverDays"] = offer.turnover_days
    return row


def csv_columns(with_turnover: bool) -> list[str]:
    # Fixed columns (a spreadsheet needs them up front); stock types the Market adds later
    # land in OTHER_STOCKS as TYPE=n pairs rather than being dropped.
    cols = ["offerId", "warehouseId", *STOCK_TYPES, "OTHER_STOCKS", "updatedAt"]
    return cols + ["turnover", "turnoverDays"] if with_turnover else cols


def write_offers(offers: Iterable[OfferStock], fh: IO[str], fmt: str, with_turnover: bool = False) -> int:
    n = 0
    if fmt == "jsonl":
        for offer in offers:
            fh.write(json.dumps(offer_row(offer), ensure_ascii=False) + "\n")
            n += 1
        return n
    writer = csv.writer(fh)
    writer.writerow(csv_columns(with_turnover))
    for offer in offers:
        other = ";".join(f"{k}={v}" for k, v in sorted(offer.stocks.items()) if k not in STOCK_TYPES)
        row: list[object] = [offer.offer_id, offer.warehouse_id, *(offer.stocks.get(t, "") for t in STOCK_TYPES),
                             other, offer.updated_at or ""]
        if with_turnover:
            row += [offer.turnover or "", "" if offer.turnover_days is None else offer.turnover_days]
        writer.writerow(row)
        n += 1
    return n


def read_all(reader: StockReader, campaign_id: int, offer_ids: Sequence[str] | None = None) -> list[OfferStock]:
    """Every offer at once (for callers that need the whole picture, like reconciliation)."""
    options = ReadOptions(offer_ids=tuple(offer_ids) if offer_ids is not None else None)
    return list(reader.read(campaign_id, options))

