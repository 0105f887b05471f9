"""The Market Partner API: client, errors, schemas and typed results.

The names below are imported on first use (PEP 562): the producer needs only the schemas, and
importing the client would bring requests into every ``ymsync push`` for nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ymsync.market.client import MarketClient
    from ymsync.market.errors import (ApiError, DownloadRefused, MarketActiveReportsLimit, MarketBadRequest, MarketError,
                                      MarketForbidden, MarketLocked, MarketNetworkError, MarketNotFound,
                                      MarketParallelLimitExceeded, MarketQuotaExceeded, MarketRateLimited,
                                      MarketServerError, MarketUnauthorized, MarketWrongApiMode, RateLimitInfo,
                                      ReportLinkExpired, ReportTooLarge)
    from ymsync.market.models import (DownloadedFile, OfferStock, PartnerWarehouse, ReportInfo, ReportTicket,
                                      StockLevel, StocksPage, UpdateResult, WarehouseModel, WarehouseOfferStock,
                                      WarehousesPage, WarehouseStockLevel, WarehouseStocksPage)
    from ymsync.market.schemas import InvalidRequest

_HOMES = {
    "client": ("MarketClient",),
    "errors": ("ApiError", "DownloadRefused", "MarketActiveReportsLimit", "MarketBadRequest", "MarketError",
               "MarketForbidden", "MarketLocked", "MarketNetworkError", "MarketNotFound",
               "MarketParallelLimitExceeded", "MarketQuotaExceeded", "MarketRateLimited", "MarketServerError",
               "MarketUnauthorized", "MarketWrongApiMode", "RateLimitInfo", "ReportLinkExpired", "ReportTooLarge"),
    "models": ("DownloadedFile", "OfferStock", "PartnerWarehouse", "ReportInfo", "ReportTicket", "StockLevel",
               "StocksPage", "UpdateResult", "WarehouseModel", "WarehouseOfferStock", "WarehouseStockLevel",
               "WarehouseStocksPage", "WarehousesPage"),
    "schemas": ("InvalidRequest",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'ymsync.market' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ymsync.market.{module}"), name)


__all__ = sorted(_MODULE_OF)
