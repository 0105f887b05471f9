"""marshmallow schemas for the Market's business-level (v3) stock methods, for cabinets without
warehouse groups: the same strictness and error texts as the campaign-level ones in
:mod:`ymsync.market.schemas`, with the v3 shapes and limits (official description, overlay of
2026-07-29 and 2026-08-04: paths/v3_businesses_businessId_*)."""

from __future__ import annotations

from typing import Any, Mapping

from marshmallow import ValidationError, fields, validate, validates_schema

from ymsync.market.schemas import (
    MAX_BODY_BYTES,
    MAX_COUNT,
    MAX_GET_STOCKS_LIMIT,
    MAX_OFFER_IDS,
    MAX_STAMP_AGE,
    Clock,
    PagingSchema,
    RequestSchema,
    ResponseSchema,
    Sku,
    Stamp,
    StockSchema,
    StrictBool,
    StrictInt,
    encode_body,
    id_list,
    unique_list,
    utcnow,
)

# One request carries items of several warehouses; the quota counts requests, so fill them.
MAX_SKU_ITEMS_PER_UPDATE = 2000
MAX_WAREHOUSES_LIMIT = 30  # getPartnerWarehouses' PageLimit30


class UpdateStockOnWarehouseItemSchema(RequestSchema):
    sku = Sku(required=True)
    partnerWarehouseId = StrictInt(required=True, minimum=1)
    count = StrictInt(required=True, minimum=0, maximum=MAX_COUNT)
    updatedAt = Stamp()


class UpdateStocksOnWarehousesRequestSchema(RequestSchema):
    """Body of ``POST v3/businesses/{businessId}/offers/stocks/update``, with the Market's rules:
    1..2000 items, each (sku, warehouse) pair once, stamps neither ahead of the Market's clock nor
    older than a day (the v2 texts), and the 512 KB body cap of every stock update."""

    skuItems = fields.List(fields.Nested(UpdateStockOnWarehouseItemSchema), required=True)

    def __init__(self, *args: Any, now: Clock = utcnow, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now

    @validates_schema(pass_original=True)
    def _market_rules(self, data: dict, original: Mapping, **kwargs: Any) -> None:
        items = data["skuItems"]
        if not 1 <= len(items) <= MAX_SKU_ITEMS_PER_UPDATE:
            raise ValidationError(f"skuItems holds {len(items)} items, 1 to {MAX_SKU_ITEMS_PER_UPDATE} allowed",
                                  "skuItems")
        seen: dict[tuple[str, int], int] = {}
        errors: dict[int, dict] = {}
        now = self.now()
        for index, item in enumerate(items):
            sku, warehouse = item["sku"], item["partnerWarehouseId"]
            if (sku, warehouse) in seen:
                errors.setdefault(index, {})["sku"] = [
                    f"Duplicate shop-sku '{sku}' for warehouse '{warehouse}' (also item {seen[sku, warehouse]})"]
            seen.setdefault((sku, warehouse), index)
            stamp = item.get("updatedAt")
            if stamp is not None and stamp > now:
                errors.setdefault(index, {})["updatedAt"] = [
                    f"Stock for '{sku}' should not be in the future ({stamp.isoformat()})"]
            elif stamp is not None and now - stamp > MAX_STAMP_AGE:
                errors.setdefault(index, {})["updatedAt"] = [
                    f"Stock for '{sku}' should not be older than a day ({stamp.isoformat()})"]
        if errors:
            raise ValidationError({"skuItems": errors})
        size = len(encode_body(original))
        if size > MAX_BODY_BYTES:
            raise ValidationError(f"The request is too big: {size} bytes, the Market accepts at most {MAX_BODY_BYTES}",
                                  "skuItems")


class GetStocksOnWarehouseQuerySchema(RequestSchema):
    """Query (``pageToken``, ``limit``) and body of ``POST v3/businesses/{businessId}/offers/stocks``:
    one warehouse per request; ``offerIds`` (whole list, no paging, archived included) or pages."""

    pageToken = fields.String(validate=validate.Length(min=1, error="pageToken must not be empty"))
    limit = StrictInt(minimum=1, maximum=MAX_GET_STOCKS_LIMIT)
    partnerWarehouseId = StrictInt(required=True, minimum=1)
    archived = StrictBool()
    offerIds = fields.List(Sku(), allow_none=True, validate=unique_list("offerIds", 1, MAX_OFFER_IDS))

    @validates_schema
    def _combinations(self, data: dict, **kwargs: Any) -> None:
        if data.get("offerIds"):
            clash = [k for k in ("pageToken", "limit", "archived") if data.get(k) is not None]
            if clash:
                raise ValidationError(f"offerIds cannot be combined with {', '.join(clash)}", "offerIds")


class GetPartnerWarehousesQuerySchema(RequestSchema):
    """Query and body of ``POST v3/businesses/{businessId}/warehouses``."""

    pageToken = fields.String(validate=validate.Length(min=1, error="pageToken must not be empty"))
    limit = StrictInt(minimum=1, maximum=MAX_WAREHOUSES_LIMIT)
    warehouseIds = id_list("warehouseIds")


class GenerateBusinessStocksReportSchema(RequestSchema):
    """Body of ``POST v3/businesses/{businessId}/reports/stocks/generate`` (format: a query parameter)."""

    categoryIds = id_list("categoryIds")
    hasStocks = StrictBool()
    partnerWarehouseIds = id_list("partnerWarehouseIds")


# --- responses -----------------------------------------------------------------------------


class WarehouseStockOfferSchema(ResponseSchema):
    offerId = fields.String(required=True)
    stocks = fields.List(fields.Nested(StockSchema), load_default=list)
    updatedAt = fields.String(allow_none=True)


class GetStocksOnWarehouseResultSchema(ResponseSchema):
    partnerWarehouseId = fields.Integer(required=True)
    offers = fields.List(fields.Nested(WarehouseStockOfferSchema), required=True)
    paging = fields.Nested(PagingSchema, allow_none=True)


class GetStocksOnWarehouseResponseSchema(ResponseSchema):
    status = fields.String(required=True)
    result = fields.Nested(GetStocksOnWarehouseResultSchema, required=True)


class WarehouseModelSchema(ResponseSchema):
    placementType = fields.String(required=True)
    apiAvailability = fields.String(required=True)


class PartnerWarehouseSchema(ResponseSchema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    models = fields.List(fields.Nested(WarehouseModelSchema), required=True)


class PartnerWarehousesResultSchema(ResponseSchema):
    warehouses = fields.List(fields.Nested(PartnerWarehouseSchema), required=True)
    paging = fields.Nested(PagingSchema, allow_none=True)


class PartnerWarehousesResponseSchema(ResponseSchema):
    status = fields.String(required=True)
    result = fields.Nested(PartnerWarehousesResultSchema, required=True)
