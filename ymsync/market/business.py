"""The Market's business-level (v3) stock methods, for FBS/DBS/Express cabinets without warehouse
groups: a mixin of :class:`ymsync.market.client.MarketClient` (which gives ``_call``), kept apart
so each module stays readable. Cabinets with warehouse groups keep the campaign-level methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ymsync.market import schemas as s
from ymsync.market import schemas_v3 as v3
from ymsync.market.models import (
    PartnerWarehouse,
    ReportTicket,
    UpdateResult,
    WarehouseModel,
    WarehouseOfferStock,
    WarehousesPage,
    WarehouseStockLevel,
    WarehouseStocksPage,
)

if TYPE_CHECKING:
    from ymsync.market.errors import RateLimitInfo

V3_OPERATIONS = frozenset({"updateStocksOnPartnerWarehouses", "getStocksOnPartnerWarehouses",
                           "getPartnerWarehouses", "generateStocksReport"})
# Stateless apart from the clock, which each call passes: one of each serves every client.
_UPDATE = v3.UpdateStocksOnWarehousesRequestSchema()
_GET_STOCKS = v3.GetStocksOnWarehouseQuerySchema()
_WAREHOUSES = v3.GetPartnerWarehousesQuerySchema()
_REPORT = v3.GenerateBusinessStocksReportSchema()


class BusinessStockMethods:
    def _call(self, operation: str, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Any = None) -> "tuple[dict, RateLimitInfo]":
        raise NotImplementedError  # MarketClient's

    def update_stocks_v3(self, business_id: int, items: Iterable[WarehouseStockLevel], *,
                         validate: bool = True) -> UpdateResult:
        """``POST v3/businesses/{businessId}/offers/stocks/update``: up to 2000 (sku, warehouse)
        items across the business's warehouses; the whole batch applies or none of it. The quota
        (50 a minute) counts requests, not items."""
        body = {"skuItems": [_warehouse_stock_entry(item) for item in items]}
        if validate:
            s.validate_or_raise(_UPDATE, body, "stock update")
        _, rate = self._call("updateStocksOnPartnerWarehouses", "POST",
                             f"/v3/businesses/{int(business_id)}/offers/stocks/update", body=body)
        return UpdateResult(sku_count=len(body["skuItems"]), rate_limit=rate)

    def get_stocks_v3(self, business_id: int, warehouse_id: int, *, page_token: str | None = None,
                      limit: int | None = None, offer_ids: list[str] | None = None,
                      archived: bool | None = None) -> WarehouseStocksPage:
        """One page of ``POST v3/businesses/{businessId}/offers/stocks`` for one warehouse; follow
        ``next_page_token``. ``offer_ids`` (at most 500) returns those offers whole, without paging."""
        query = {k: v for k, v in {"pageToken": page_token, "limit": limit}.items() if v is not None}
        body = {k: v for k, v in {"partnerWarehouseId": warehouse_id, "offerIds": offer_ids,
                                  "archived": archived}.items() if v is not None}
        checked = s.validate_or_raise(_GET_STOCKS, {**query, **body}, "stock read")
        if "offerIds" in checked:
            body["offerIds"] = checked["offerIds"]  # trimmed, as the Market would
        data, rate = self._call("getStocksOnPartnerWarehouses", "POST",
                                f"/v3/businesses/{int(business_id)}/offers/stocks", params=query, body=body)
        result = s.load_response(v3.GetStocksOnWarehouseResponseSchema(), data, "getStocksOnPartnerWarehouses")["result"]
        offers = [
            WarehouseOfferStock(
                offer_id=offer["offerId"],
                warehouse_id=result["partnerWarehouseId"],
                stocks={st["type"]: st["count"] for st in offer["stocks"]},
                updated_at=s.parse_stamp(offer.get("updatedAt")),
            )
            for offer in result["offers"]
        ]
        token = (result.get("paging") or {}).get("nextPageToken") or None
        return WarehouseStocksPage(offers=offers, next_page_token=token, rate_limit=rate)

    def get_partner_warehouses(self, business_id: int, *, page_token: str | None = None,
                               limit: int | None = None) -> WarehousesPage:
        """One page of ``POST v3/businesses/{businessId}/warehouses`` (at most 30 a page; 100
        requests an hour): the cabinet's own warehouses, never groups, with their models."""
        query = {k: v for k, v in {"pageToken": page_token, "limit": limit}.items() if v is not None}
        s.validate_or_raise(_WAREHOUSES, query, "warehouses request")
        data, rate = self._call("getPartnerWarehouses", "POST", f"/v3/businesses/{int(business_id)}/warehouses",
                                params=query, body={})
        result = s.load_response(v3.PartnerWarehousesResponseSchema(), data, "getPartnerWarehouses")["result"]
        warehouses = [
            PartnerWarehouse(
                id=w["id"],
                name=w["name"],
                models=tuple(WarehouseModel(m["placementType"], m["apiAvailability"]) for m in w["models"]),
            )
            for w in result["warehouses"]
        ]
        token = (result.get("paging") or {}).get("nextPageToken") or None
        return WarehousesPage(warehouses=warehouses, next_page_token=token, rate_limit=rate)

    def generate_stocks_report_v3(self, business_id: int, *, format: str = "CSV",  # noqa: A002 - the API's name
                                  warehouse_ids: Iterable[int] = (), category_ids: Iterable[int] = (),
                                  has_stocks: bool | None = None) -> ReportTicket:
        """``POST v3/businesses/{businessId}/reports/stocks/generate``: the business stocks sheet
        ("Остатки на складах") of every shop warehouse; poll with :meth:`get_report_info`."""
        try:
            fmt = s.check_report_format(format)
        except s.ValidationError as exc:
            raise s.InvalidRequest("report request", s.flatten_errors(exc.messages)) from None
        body: dict[str, Any] = {"partnerWarehouseIds": list(warehouse_ids) or None,
                                "categoryIds": list(category_ids) or None, "hasStocks": has_stocks}
        body = {k: v for k, v in body.items() if v is not None}
        s.validate_or_raise(_REPORT, body, "report request")
        data, rate = self._call("generateStocksReport", "POST",
                                f"/v3/businesses/{int(business_id)}/reports/stocks/generate",
                                params={"format": fmt}, body=body)
        result = s.load_response(s.GenerateReportResponseSchema(), data, "generateStocksReport")["result"]
        return ReportTicket(result["reportId"], result["estimatedGenerationTime"], rate)


def _warehouse_stock_entry(item: WarehouseStockLevel) -> dict[str, Any]:
    sku = item.sku.strip() if isinstance(item.sku, str) else item.sku  # the Market trims; so do we
    entry: dict[str, Any] = {"sku": sku, "partnerWarehouseId": item.warehouse_id, "count": item.count}
    if item.updated_at is not None:
        entry["updatedAt"] = item.updated_at.isoformat()
    return entry
