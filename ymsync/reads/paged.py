"""The paged-reader core both stock reads share (v2 campaign reads in campaign.py, v3 business
warehouse reads in business.py): one request at a time through the blocking Market call policy,
a walk over ``nextPageToken``, given ids in chunks, each offer once, what the read cost, and an
export written atomically.

The Market may cut a page's ``limit`` silently and answer short or empty pages mid-walk, so only
``nextPageToken`` says when a walk is over; a token already followed would loop forever, so it
fails the read. Answers for given ids are never paged. What differs between the two reads (the
request, its quota and cap, what identifies an offer, the output formats) stays in their modules.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Generic, Hashable, Iterable, Iterator, Protocol, Sequence, TypeVar

from ymsync.files import atomic_writer
from ymsync.engine.call_policy import Call, CallGaveUp, CallPolicy
from ymsync.engine.quota import QuotaLimiter
from ymsync.market import MarketClient, MarketError

MAX_RETRIES = 5  # 5xx / network failures in a row on one request before giving up

O = TypeVar("O")
P = TypeVar("P", bound="Page")


class Page(Protocol):
    @property
    def offers(self) -> Sequence: ...

    @property
    def next_page_token(self) -> str | None: ...


@dataclass
class ReadStats:
    """What a read cost: requests and offers (the quota unit), waits and refusals."""

    offers: int = 0
    pages: int = 0
    requests: int = 0
    duplicates: int = 0  # the same offer on two pages: skipped, but worth knowing
    rate_limited: int = 0  # 420s the Market answered (the limiter should keep this at 0)
    retries: int = 0
    waited_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"offers": self.offers, "pages": self.pages, "requests": self.requests,
                "duplicates": self.duplicates, "rate_limited": self.rate_limited, "retries": self.retries,
                "waited_s": round(self.waited_s, 3)}


@dataclass
class ExportResult:
    path: Path | None
    format: str
    stats: ReadStats = field(default_factory=ReadStats)

    def as_dict(self) -> dict[str, object]:
        return {"path": str(self.path) if self.path else None, "format": self.format, **self.stats.as_dict()}


def unique_ids(ids: Iterable[str], drop_blank: bool = True) -> list[str]:
    """Given ids stripped and repeats dropped (the Market refuses repeats), in order; blanks too
    unless ``drop_blank`` is False (then the Market's refusal of one says what was wrong)."""
    return list(dict.fromkeys(s.strip() for s in ids if s.strip() or not drop_blank))


def chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def each_once(pages: Iterable[Sequence[O]], key: Callable[[O], Hashable], stats: ReadStats) -> Iterator[O]:
    """The offers of ``pages``, each (by ``key``) once; counts pages, offers and duplicates."""
    seen: set[Hashable] = set()
    for offers in pages:
        stats.pages += 1
        for offer in offers:
            k = key(offer)
            if k in seen:
                stats.duplicates += 1
                continue
            seen.add(k)
            stats.offers += 1
            yield offer


def walk(fetch: Callable[[str | None], P], what: str) -> Iterator[P]:
    """Pages from the first (token None) until one has no ``nextPageToken``."""
    token: str | None = None
    tokens: set[str] = set()
    while True:
        page = fetch(token)
        yield page
        if not page.next_page_token:
            return
        if page.next_page_token in tokens:
            # A token we already followed would loop forever; fail loudly instead.
            raise MarketError(f"{what} repeated a page token; read aborted")
        tokens.add(page.next_page_token)
        token = page.next_page_token


def export_to(out: Path | None, stream: IO[str] | None, write: Callable[[IO[str]], object]) -> None:
    """``write`` to ``out`` (atomically: readers never see half a file), else to ``stream``."""
    if out is None:
        write(stream if stream is not None else io.StringIO())
        return
    with atomic_writer(out, newline="", prefix=".part-", suffix=Path(out).suffix) as fh:
        write(fh)


class PagedReader(Generic[P]):
    """One request at a time under the call policy's blocking wrapper: quota, a parallel slot of
    the campaign or business, 420s and unknown outcomes retried (``MAX_RETRIES``), sleeping in
    slices of ``max_wait_s`` so a pause set by another worker is seen soon."""

    def __init__(self, limiter: QuotaLimiter, client: MarketClient, *,
                 sleep: Callable[[float], None] = time.sleep, max_wait_s: float = 5.0) -> None:
        self.limiter, self.client = limiter, client
        self.policy = CallPolicy(limiter)
        self.sleep, self.max_wait_s = sleep, max_wait_s

    def request(self, spec: Call, call: Callable[[int], P], stats: ReadStats, what: str,
                used: Callable[[P], int] | None = None) -> P:
        """One request (``call`` gets the units granted); the Market's own error when it gives up
        (MarketWrongApiMode, 403, 400...: its message says what to do)."""
        try:
            return self.policy.call(spec, call, used, sleep=self.sleep, stats=stats, max_wait_s=float("inf"),
                                    slice_s=self.max_wait_s, retries=MAX_RETRIES, what=what)
        except CallGaveUp as exc:
            raise exc.cause or exc from None


__all__ = ["ExportResult", "MAX_RETRIES", "Page", "PagedReader", "ReadStats", "chunks", "each_once",
           "export_to", "unique_ids", "walk"]
