"""Typed values the Market client takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from ymsync.market.errors import RateLimitInfo


class StockLevel(NamedTuple):
    """One SKU's stock as sent to the Market; ``updated_at`` None lets the Market stamp it."""

    sku: str
    count: int
    updated_at: datetime | None = None


@dataclass(frozen=True)
class UpdateResult:
    sku_count: int
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)


@dataclass(frozen=True)
class OfferStock:
    """One offer on one warehouse, as ``getStocks`` reports it."""

    offer_id: str
    warehouse_id: int
    stocks: dict[str, int]
    turnover: str | None = None
    turnover_days: float | None = None
    updated_at: str | None = None

    @property
    def available(self) -> int | None:
        return self.stocks.get("AVAILABLE")


@dataclass(frozen=True)
class StocksPage:
    offers: list[OfferStock]
    next_page_token: str | None
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)

    @property
    def offer_count(self) -> int:
        """What the Market charges against the read quota: offers returned."""
        return len(self.offers)


@dataclass(frozen=True)
class ReportTicket:
    report_id: str
    estimated_generation_ms: int
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)


@dataclass(frozen=True)
class ReportInfo:
    report_id: str
    status: str
    generation_requested_at: str
    sub_status: str | None = None
    generation_finished_at: str | None = None
    file_url: str | None = None
    estimated_generation_ms: int | None = None
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)

    @property
    def done(self) -> bool:
        return self.status == "DONE"

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"

    @property
    def finished(self) -> bool:
        return self.status in ("DONE", "FAILED")

    def __repr__(self) -> str:
        # The file link is a bearer credential for an hour: keep it out of logs and Flower.
        link = "<link>" if self.file_url else None
        return (f"ReportInfo(report_id={self.report_id!r}, status={self.status!r}, "
                f"sub_status={self.sub_status!r}, file_url={link})")


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size: int
    content_type: str = ""


# --- the business-level (v3) stock methods -------------------------------------------------


@dataclass(frozen=True)
class WarehouseStockLevel:
    """One SKU's stock on one of the business's own warehouses, as sent to the v3 update;
    ``updated_at`` None lets the Market stamp it."""

    sku: str
    warehouse_id: int
    count: int
    updated_at: datetime | None = None


@dataclass(frozen=True)
class WarehouseModel:
    """One work model of a warehouse (``program``: FBS, DBS or EXPRESS) and whether the API may
    drive it (``api_availability``: AVAILABLE, or why not: DISABLED_BY_INACTIVITY, ...)."""

    program: str
    api_availability: str


@dataclass(frozen=True)
class PartnerWarehouse:
    id: int
    name: str
    models: tuple[WarehouseModel, ...]

    @property
    def available(self) -> bool:
        """Stock may be pushed to it: some model of it is open to the API."""
        return any(model.api_availability == "AVAILABLE" for model in self.models)


@dataclass(frozen=True)
class WarehousesPage:
    warehouses: list[PartnerWarehouse]
    next_page_token: str | None
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)


@dataclass(frozen=True)
class WarehouseOfferStock:
    """One offer on one warehouse, as ``getStocksOnPartnerWarehouses`` reports it (``stocks``:
    type -> count, the types FIT, FREEZE, AVAILABLE, QUARANTINE, UTILIZATION, DEFECT, EXPIRED)."""

    offer_id: str
    warehouse_id: int
    stocks: dict[str, int]
    updated_at: datetime | None

    @property
    def available(self) -> int | None:
        return self.stocks.get("AVAILABLE")


@dataclass(frozen=True)
class WarehouseStocksPage:
    offers: list[WarehouseOfferStock]
    next_page_token: str | None
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)
