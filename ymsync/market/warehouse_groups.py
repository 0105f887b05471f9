"""getPagedWarehouses (``POST v2/businesses/{businessId}/warehouses``): a business's warehouses
with the campaign each belongs to and, for a warehouse in a group, ``groupInfo``. How ymsync
learns a v2 cabinet's warehouse groups when the cabinets file declares none.

A mixin of :class:`ymsync.market.client.MarketClient` (which gives ``_call``). The request is
checked against the official description before it is sent: query ``pageToken`` and ``limit``
(1-30), an optional body whose lists, when given, are non-empty (``components`` of ADDRESS,
STATUS; at most 25 ``campaignIds``), so only what is set is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from marshmallow import fields, validate

from ymsync.market import schemas as s
from ymsync.market.errors import RateLimitInfo

MAX_LIMIT = 30  # PageLimit30
MAX_CAMPAIGN_IDS = 25


class GetPagedWarehousesRequestSchema(s.RequestSchema):
    """Query and body of getPagedWarehouses, as one mapping."""

    pageToken = fields.String(validate=validate.Length(min=1, error="pageToken must not be empty"))
    limit = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_LIMIT))
    components = fields.List(fields.String(validate=validate.OneOf(("ADDRESS", "STATUS"))),
                             validate=validate.Length(min=1))
    campaignIds = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)),
                              validate=validate.Length(min=1, max=MAX_CAMPAIGN_IDS))


class GroupInfoSchema(s.ResponseSchema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)


class WarehouseDetailsSchema(s.ResponseSchema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    campaignId = fields.Integer(required=True)
    express = fields.Boolean(load_default=False)
    groupInfo = fields.Nested(GroupInfoSchema, allow_none=True)


class PagedWarehousesResultSchema(s.ResponseSchema):
    warehouses = fields.List(fields.Nested(WarehouseDetailsSchema), required=True)
    paging = fields.Nested(s.PagingSchema, allow_none=True)


class PagedWarehousesResponseSchema(s.ResponseSchema):
    status = fields.String(required=True)
    result = fields.Nested(PagedWarehousesResultSchema, required=True)


_REQUEST = GetPagedWarehousesRequestSchema()
_RESPONSE = PagedWarehousesResponseSchema()


@dataclass(frozen=True)
class MarketWarehouse:
    """One warehouse of a business as getPagedWarehouses lists it."""

    id: int
    name: str
    campaign_id: int
    group_id: int | None = None  # groupInfo.id: warehouses with the same one share one stock
    group_name: str | None = None


@dataclass(frozen=True)
class PagedWarehousesPage:
    warehouses: list[MarketWarehouse]
    next_page_token: str | None
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)


class WarehouseGroupMethods:
    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> tuple[dict, RateLimitInfo]:
        raise NotImplementedError  # MarketClient's

    def get_paged_warehouses(self, business_id: int, *, page_token: str | None = None, limit: int | None = None,
                             campaign_ids: Iterable[int] = ()) -> PagedWarehousesPage:
        """One page of getPagedWarehouses (100 requests an hour per business)."""
        query = {k: v for k, v in {"pageToken": page_token, "limit": limit}.items() if v is not None}
        body: dict[str, Any] = {"campaignIds": [int(c) for c in campaign_ids]} if campaign_ids else {}
        s.validate_or_raise(_REQUEST, {**query, **body}, "warehouses request")
        data, rate = self._call("getPagedWarehouses", "POST", f"/v2/businesses/{int(business_id)}/warehouses",
                                params=query, body=body)
        result = s.load_response(_RESPONSE, data, "getPagedWarehouses")["result"]
        rows = [MarketWarehouse(w["id"], w["name"], w["campaignId"],
                                (w.get("groupInfo") or {}).get("id"), (w.get("groupInfo") or {}).get("name"))
                for w in result["warehouses"]]
        token = (result.get("paging") or {}).get("nextPageToken") or None
        return PagedWarehousesPage(rows, token, rate)


__all__ = ["MarketWarehouse", "PagedWarehousesPage", "WarehouseGroupMethods"]
