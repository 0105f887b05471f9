"""Stock reads: every offer a campaign holds on the Market, under the shared read quota.

``StockReader.read`` walks ``POST v2/campaigns/{id}/offers/stocks`` page by page, or asks for
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
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

from ymsync.files import atomic_writer
from ymsync.market import MarketClient, MarketError, OfferStock, StocksPage
from ymsync.market.schemas import MAX_GET_STOCKS_LIMIT, MAX_OFFER_IDS, InvalidRequest
from ymsync.engine.call_policy import Call, CallGaveUp, CallPolicy
from ymsync.engine.quota import QuotaLimiter
from ymsync.store import keys

log = logging.getLogger("ymsync.reads.campaign")

METHOD = "get_stocks"  # the read quota's name in settings (YM_QUOTA_GET_STOCKS) and the limiter
STOCK_TYPES = ("AVAILABLE", "FIT", "FREEZE", "QUARANTINE", "UTILIZATION", "DEFECT", "EXPIRED")
FORMATS = ("jsonl", "csv")
_MAX_RETRIES = 5  # 5xx / network failures in a row on one request before giving up


def parallel_gate(campaign_id: int) -> str:
    """The limiter's parallel-slot key for a campaign; the stock push (engine/flusher.py) uses the same."""
    return keys.campaign_target(campaign_id)


@dataclass
class ReadStats:
    """What a read cost: requests and offers (the quota unit), waits and refusals."""

    offers: int = 0
    pages: int = 0
    requests: int = 0
    duplicates: int = 0  # the same (offer, warehouse) on two pages: skipped, but worth knowing
    rate_limited: int = 0  # 420s the Market answered (the limiter should keep this at 0)
    retries: int = 0
    waited_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"offers": self.offers, "pages": self.pages, "requests": self.requests,
                "duplicates": self.duplicates, "rate_limited": self.rate_limited, "retries": self.retries,
                "waited_s": round(self.waited_s, 3)}


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


@dataclass
class ExportResult:
    path: Path | None
    format: str
    stats: ReadStats = field(default_factory=ReadStats)

    def as_dict(self) -> dict[str, object]:
        return {"path": str(self.path) if self.path else None, "format": self.format, **self.stats.as_dict()}


class StockReader:
    def __init__(self, limiter: QuotaLimiter, client: MarketClient, *, limit: int = MAX_GET_STOCKS_LIMIT,
                 min_page: int = 20, chunk: int = MAX_OFFER_IDS, sleep: Callable[[float], None] = time.sleep,
                 max_wait_s: float = 5.0) -> None:
        if not 1 <= limit <= MAX_GET_STOCKS_LIMIT or not 1 <= chunk <= MAX_OFFER_IDS:
            raise ValueError(f"limit must be 1..{MAX_GET_STOCKS_LIMIT} and chunk 1..{MAX_OFFER_IDS}")
        self.limiter, self.client = limiter, client
        self.policy = CallPolicy(limiter)
        self.limit, self.min_page, self.chunk = limit, max(1, min(min_page, limit)), chunk
        self.sleep = sleep
        self.max_wait_s = max_wait_s  # sleep in slices so a pause set by another worker is seen soon

    # --- reading --------------------------------------------------------------------------

    def read(self, campaign_id: int, options: ReadOptions = ReadOptions(),
             stats: ReadStats | None = None) -> Iterator[OfferStock]:
        """Yield every offer (one per warehouse holding it), each (offer, warehouse) once."""
        stats = stats if stats is not None else ReadStats()
        seen: set[tuple[str, int]] = set()
        pages = self._chunks(campaign_id, options, stats) if options.offer_ids is not None \
            else self._pages(campaign_id, options, stats)
        for offers in pages:
            stats.pages += 1
            for offer in offers:
                key = (offer.offer_id, offer.warehouse_id)
                if key in seen:
                    stats.duplicates += 1
                    continue
                seen.add(key)
                stats.offers += 1
                yield offer

    def _pages(self, campaign_id: int, options: ReadOptions, stats: ReadStats) -> Iterator[list[OfferStock]]:
        token: str | None = None
        tokens: set[str] = set()
        while True:
            page = self._request(campaign_id, stats, self.limit, self.min_page,
                                 lambda size: self.client.get_stocks(
                                     campaign_id, page_token=token, limit=size, archived=options.archived,
                                     warehouse_id=options.warehouse_id, with_turnover=options.with_turnover))
            yield page.offers
            if not page.next_page_token:
                return
            if page.next_page_token in tokens:
                # A token we already followed would loop forever; fail loudly instead.
                raise MarketError(f"getStocks: campaign {campaign_id} repeated a page token; read aborted")
            tokens.add(page.next_page_token)
            token = page.next_page_token

    def _chunks(self, campaign_id: int, options: ReadOptions, stats: ReadStats) -> Iterator[list[OfferStock]]:
        ids = list(dict.fromkeys(s.strip() for s in options.offer_ids or ()))  # the Market refuses repeats
        # A chunk may return up to one offer per id and warehouse; a quota smaller than a chunk
        # could never grant it whole, so chunks shrink to fit the quota.
        quota = self.limiter.quotas.get(METHOD)
        size = min(self.chunk, quota.amount) if quota is not None else self.chunk
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
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
        try:
            return self.policy.call(spec, call, lambda page: page.offer_count, sleep=self.sleep, stats=stats,
                                    max_wait_s=float("inf"), slice_s=self.max_wait_s, retries=_MAX_RETRIES,
                                    what=f"getStocks campaign {campaign_id}")
        except CallGaveUp as exc:
            raise exc.cause or exc from None

    # --- exporting ------------------------------------------------------------------------

    def export(self, campaign_id: int, options: ReadOptions = ReadOptions(), *, out: Path | None = None,
               stream: IO[str] | None = None, fmt: str | None = None) -> ExportResult:
        """Write every offer to ``out`` (atomically: readers never see half a file) or ``stream``."""
        fmt = fmt or (format_for(out) if out is not None else "jsonl")
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        result = ExportResult(out, fmt)
        offers = self.read(campaign_id, options, result.stats)
        if out is None:
            write_offers(offers, stream if stream is not None else io.StringIO(), fmt, bool(options.with_turnover))
            return result
        with atomic_writer(out, newline="", prefix=".part-", suffix=Path(out).suffix) as fh:
            write_offers(offers, fh, fmt, bool(options.with_turnover))
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

