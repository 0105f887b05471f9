"""The Market Partner API: client, errors, schemas and typed results."""

from ymsync.market.client import MarketClient
from ymsync.market.errors import (
    ApiError,
    DownloadRefused,
    MarketActiveReportsLimit,
    MarketBadRequest,
    MarketError,
    MarketForbidden,
    MarketLocked,
    MarketNetworkError,
    MarketNotFound,
    MarketParallelLimitExceeded,
    MarketQuotaExceeded,
    MarketRateLimited,
    MarketServerError,
    MarketUnauthorized,
    MarketWrongApiMode,
    RateLimitInfo,
    ReportLinkExpired,
    ReportTooLarge,
)
from ymsync.market.models import (
    DownloadedFile,
    OfferStock,
    PartnerWarehouse,
    ReportInfo,
    ReportTicket,
    StockLevel,
    StocksPage,
    UpdateResult,
    WarehouseModel,
    WarehouseOfferStock,
    WarehousesPage,
    WarehouseStockLevel,
    WarehouseStocksPage,
)
from ymsync.market.schemas import InvalidRequest

__all__ = [
    "ApiError", "DownloadRefused", "DownloadedFile", "InvalidRequest", "MarketActiveReportsLimit",
    "MarketBadRequest", "MarketClient", "MarketError", "MarketForbidden", "MarketLocked",
    "MarketNetworkError", "MarketNotFound", "MarketParallelLimitExceeded", "MarketQuotaExceeded",
    "MarketRateLimited", "MarketServerError", "MarketUnauthorized", "MarketWrongApiMode", "OfferStock",
    "PartnerWarehouse", "RateLimitInfo", "ReportInfo", "ReportLinkExpired", "ReportTicket", "ReportTooLarge",
    "StockLevel", "StocksPage", "UpdateResult", "WarehouseModel", "WarehouseOfferStock", "WarehouseStockLevel",
    "WarehouseStocksPage", "WarehousesPage",
]
