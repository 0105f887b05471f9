"""The sandbox's business-level (v3) methods, for cabinets without warehouse groups.

Each handler gets an :class:`~ymsync.sandbox.call.ApiCall` (its whole interface to the request),
runs after auth, the business's access check and its parallel cap (4 in flight per business),
and answers ``(status, payload, cost, lost)``.
Quotas are per business and count requests. A cabinet with warehouse groups is refused the
stock methods (read, update, report) the way the Market words it, naming the campaign-level
method to use instead; its warehouse list still answers (individual warehouses only).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from marshmallow import ValidationError

from ymsync.market import schemas as s
from ymsync.market import schemas_v3 as v3
from ymsync.sandbox.business_state import BusinessConfig, WarehouseConfig
from ymsync.sandbox.call import ApiCall, Reply
from ymsync.sandbox.failures import ApiFailure, bad_request, decode_token, encode_token

OPERATIONS = {
    "updateStocksOnPartnerWarehouses": ("POST", r"/v3/businesses/([^/]+)/offers/stocks/update"),
    "getStocksOnPartnerWarehouses": ("POST", r"/v3/businesses/([^/]+)/offers/stocks"),
    "getPartnerWarehouses": ("POST", r"/v3/businesses/([^/]+)/warehouses"),
    "generateStocksReport": ("POST", r"/v3/businesses/([^/]+)/reports/stocks/generate"),
}
# What the Market tells a cabinet with warehouse groups to use instead.
_V2_INSTEAD = {
    "updateStocksOnPartnerWarehouses": "PUT v2/campaigns/{campaignId}/offers/stocks",
    "getStocksOnPartnerWarehouses": "POST v2/campaigns/{campaignId}/offers/stocks",
    "generateStocksReport": "POST v2/reports/stocks-on-warehouses/generate",
}
MAX_ITEM_ERRORS = 50  # a request of 2000 bad items answers with the first 50, as a long list helps nobody


def groups_refusal(operation: str, business_id: int) -> ApiFailure:
    return ApiFailure(400, "BAD_REQUEST", f"The method is not available for business {business_id}: the cabinet has "
                      f"warehouse groups. Use {_V2_INSTEAD[operation]}")


def no_groups_refusal(campaign_id: int, business_id: int) -> ApiFailure:
    """A campaign-level stock update for an FBS/DBS/Express campaign of a cabinet without groups."""
    return ApiFailure(400, "BAD_REQUEST", f"The method is available only for a cabinet with warehouse groups; "
                      f"campaign {campaign_id} (business {business_id}) has none. Use "
                      f"POST v3/businesses/{{businessId}}/offers/stocks/update")


def business_of(call: ApiCall, key: str) -> BusinessConfig:
    business = call.state.business.get(int(key))
    assert business is not None  # the server's access check of the path came first
    return business


def update_stocks(call: ApiCall, operation: str, key: str, body: bytes, raw_id: str) -> Reply:
    state = call.state
    store = state.business
    state.note_update_request(len(body), 0)  # before any check: a refused request still shows a broken cap
    payload = call.json(body, required=True)
    items = payload.get("skuItems") if isinstance(payload, dict) else None
    state.note_update_request(len(body), len(items) if isinstance(items, list) else 0)
    business = business_of(call, key)
    if business.groups:
        raise groups_refusal(operation, business.id)
    if len(body) > s.MAX_BODY_BYTES:
        raise ApiFailure(400, "BAD_REQUEST", f"The request is too big ({len(body)} bytes)")
    market_now = datetime.fromtimestamp(state.now(), timezone.utc)
    try:
        data = v3.UpdateStocksOnWarehousesRequestSchema(now=lambda: market_now).load(payload)
    except ValidationError as exc:
        raise bad_request(exc.messages) from None
    problems = []
    for item in data["skuItems"]:
        sku, wid = item["sku"], item["partnerWarehouseId"]
        warehouse = store.warehouse(business, wid)
        if warehouse is None:
            problems.append(f"Stock for '{sku}' cannot be updated: warehouse {wid} is not a warehouse of "
                            f"business {business.id}")
        elif not warehouse.available:
            models = ", ".join(f"{p}: {a}" for p, a in warehouse.models) or "no models"
            problems.append(f"Stock for '{sku}' cannot be updated: warehouse {wid} has no work model available "
                            f"through the API ({models})")
    poisoned = store.poisoned_in(business.id, data["skuItems"])
    problems += [f"Stock for '{sku}' cannot be updated on warehouse {wid}: the offer is blocked"
                 for sku, wid, named in poisoned if named]
    if not all(named for _, _, named in poisoned):
        problems.append("Stocks cannot be updated: an offer in the request is blocked")
    if problems:
        failure = ApiFailure(400, "BAD_REQUEST", "")
        failure.errors = [{"code": "BAD_REQUEST", "message": m} for m in problems[:MAX_ITEM_ERRORS]]
        failure.message = "; ".join(problems[:MAX_ITEM_ERRORS])
        raise failure
    call.charge(operation, key, 1)  # the quota counts requests, however many items
    call.faults()
    stale = store.apply(business.id, data["skuItems"])
    if stale:
        with state.lock:
            state.stale_writes += stale  # one referee for both APIs: any older value over a newer one
    return 200, {"status": "OK"}, 1, call.lost()


def _page_query(call: ApiCall, cap: int | None) -> dict[str, Any]:
    """``pageToken`` (or its alias ``page_token``) and ``limit`` from the query string; a limit
    over ``cap`` is cut silently, as the Market cuts getStocks' (PageLimit100Truncate)."""
    query: dict[str, Any] = {}
    token = call.query.get("pageToken") or call.query.get("page_token")
    if token is not None:
        query["pageToken"] = token
    if "limit" in call.query:
        raw = call.query["limit"]
        if not raw.lstrip("-").isdigit():
            raise ApiFailure(400, "BAD_REQUEST", f"limit must be an integer, got {raw!r}")
        query["limit"] = min(int(raw), cap) if cap is not None else int(raw)
    return query


def get_stocks(call: ApiCall, operation: str, key: str, body: bytes, raw_id: str) -> Reply:
    state = call.state
    store = state.business
    payload = call.json(body, required=True)
    if not isinstance(payload, dict):
        raise ApiFailure(400, "BAD_REQUEST", "Request body must be a JSON object")
    business = business_of(call, key)
    if business.groups:
        raise groups_refusal(operation, business.id)
    try:
        data = v3.GetStocksOnWarehouseQuerySchema().load({**payload, **_page_query(call, s.MAX_GET_STOCKS_LIMIT)})
    except ValidationError as exc:
        raise bad_request(exc.messages) from None
    wid = data["partnerWarehouseId"]
    if store.warehouse(business, wid) is None:
        raise ApiFailure(400, "BAD_REQUEST", f"partnerWarehouseId {wid} is not a warehouse of business {business.id}")
    stock = store.stock(business.id)
    next_token = None
    if data.get("offerIds"):
        with state.lock:
            shelf = stock.stocks.get(wid, {})
            records = [(sku, shelf[sku]) for sku in data["offerIds"] if sku in shelf]
    else:
        size = min(data.get("limit", 50), state.config.page_cap)
        records, last = store.page_after(business.id, wid, decode_token(data.get("pageToken")), size)
        with state.lock:
            records = [(sku, r) for sku, r in records if (sku in stock.archived) == bool(data.get("archived"))]
        next_token = encode_token(last) if last is not None else None
    offers = [{"offerId": sku, "updatedAt": record.updated_at.isoformat(),
               "stocks": [{"type": "FIT", "count": record.count}, {"type": "AVAILABLE", "count": record.count}]}
              for sku, record in records]
    call.charge(operation, key, 1)
    call.faults()
    result: dict[str, Any] = {"partnerWarehouseId": wid, "offers": offers}
    if next_token:
        result["paging"] = {"nextPageToken": next_token}
    return 200, {"status": "OK", "result": result}, 1, call.lost()


def get_warehouses(call: ApiCall, operation: str, key: str, body: bytes, raw_id: str) -> Reply:
    payload = call.json(body, required=False)
    if not isinstance(payload, dict):
        raise ApiFailure(400, "BAD_REQUEST", "Request body must be a JSON object")
    components = payload.pop("components", None)
    if components is not None and (not isinstance(components, list) or set(components) - {"ADDRESS"}):
        raise ApiFailure(400, "BAD_REQUEST", f"components must be a list of ADDRESS, got {components!r}")
    try:
        data = v3.GetPartnerWarehousesQuerySchema().load({**payload, **_page_query(call, None)})
    except ValidationError as exc:
        raise bad_request(exc.messages) from None
    business = business_of(call, key)
    after = decode_token(data.get("pageToken"))
    if after is not None and not after.isdigit():
        raise ApiFailure(400, "BAD_REQUEST", "pageToken is not valid")
    wanted = set(data.get("warehouseIds") or ())
    listed = sorted((w for w in business.warehouses if not wanted or w.id in wanted), key=lambda w: w.id)
    start = 0 if after is None else next((i for i, w in enumerate(listed) if w.id > int(after)), len(listed))
    size = data.get("limit", 15)
    page = listed[start:start + size]
    call.charge(operation, key, 1)
    call.faults()
    result: dict[str, Any] = {"warehouses": [_warehouse_json(w, components) for w in page]}
    if start + size < len(listed) and page:
        result["paging"] = {"nextPageToken": encode_token(str(page[-1].id))}
    return 200, {"status": "OK", "result": result}, 1, call.lost()


def _warehouse_json(warehouse: WarehouseConfig, components: list[str] | None) -> dict[str, Any]:
    out = warehouse.to_json()
    if components and "ADDRESS" in components:
        out["address"] = {"city": "Москва", "street": "Складская", "number": str(warehouse.id),
                          "gps": {"latitude": 55.75, "longitude": 37.62}}
    return out


def generate_report(call: ApiCall, operation: str, key: str, body: bytes, raw_id: str) -> Reply:
    state, desk = call.state, call.desk
    payload = call.json(body, required=False)
    try:
        fmt = s.check_report_format(call.query.get("format", "FILE"))
        data = v3.GenerateBusinessStocksReportSchema().load(payload)
    except ValidationError as exc:
        raise bad_request(exc.messages) from None
    business = business_of(call, key)
    if business.groups:
        raise groups_refusal(operation, business.id)
    for wid in data.get("partnerWarehouseIds") or ():
        if state.business.warehouse(business, wid) is None:
            raise ApiFailure(400, "BAD_REQUEST", f"partnerWarehouseIds: {wid} is not a warehouse of business {business.id}")
    if desk.active(time.monotonic()) >= state.config.max_active_reports:
        raise ApiFailure(420, "LIMIT_EXCEEDED", "Active reports limit exceeded")
    call.charge(operation, key, 1)
    call.faults()
    job = desk.generate_business(business, data, fmt)
    estimate = job.quirk.estimate_ms if job.quirk and job.quirk.estimate_ms is not None else int(job.delay_s * 1000)
    return 200, {"status": "OK", "result": {"reportId": job.report_id, "estimatedGenerationTime": estimate}}, 1, call.lost()


# operation -> its handler; the server routes OPERATIONS' paths here.
HANDLERS = {"updateStocksOnPartnerWarehouses": update_stocks, "getStocksOnPartnerWarehouses": get_stocks,
            "getPartnerWarehouses": get_warehouses, "generateStocksReport": generate_report}
