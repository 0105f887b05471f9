"""The sandbox's campaign-level (v2) methods: updateStocks, getStocks, the stocks-on-warehouses
report's generate and the report info.

Each handler gets an :class:`~ymsync.sandbox.call.ApiCall` (its whole interface to the request),
runs after auth, the campaign's access check and its parallel cap (4 in flight per campaign),
and answers ``(status, payload, cost, lost)``. Checks run in the Market's order: validation
(400), the quota (420), faults, then the effect.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from marshmallow import ValidationError

from ymsync.market import schemas as s
from ymsync.sandbox import business
from ymsync.sandbox.call import ApiCall, Reply
from ymsync.sandbox.failures import ApiFailure, bad_request, decode_token, encode_token, poison_failure
from ymsync.sandbox.fastpath import fast_update_body, update_entries

OPERATIONS = {
    "updateStocks": ("PUT", r"/v2/campaigns/([^/]+)/offers/stocks"),
    "getStocks": ("POST", r"/v2/campaigns/([^/]+)/offers/stocks"),
    "generateStocksOnWarehousesReport": ("POST", r"/v2/reports/stocks-on-warehouses/generate"),
    "getReportInfo": ("GET", r"/v2/reports/info/([^/]+)"),
}
# Operations whose path names a campaign: quota and parallel cap are per campaign.
CAMPAIGN_PATHS = frozenset({"updateStocks", "getStocks"})


def update_stocks(call: ApiCall, operation: str, key: str, body: bytes, raw_id: str) -> Reply:
    state = call.state
    # Noted before any check: a request the Market would refuse still shows a client broke a cap.
    state.note_update_request(len(body), 0)
    payload = call.json(body, required=True, fast=True)
    entries = payload.get("skus") if isinstance(payload, dict) else None
    state.note_update_request(len(body), len(entries) if isinstance(entries, list) else 0)
    if len(body) > s.MAX_BODY_BYTES:
        raise ApiFailure(400, "BAD_REQUEST", f"The request is too big ({len(body)} bytes)")
    campaign = state.campaign(int(key))
    cabinet = state.business.configured(campaign.business_id) if campaign is not None else None
    if cabinet is not None and not cabinet.groups and campaign.model != "FBY":
        raise business.no_groups_refusal(campaign.id, cabinet.id)
    market_now = datetime.fromtimestamp(state.now(), timezone.utc)
    updates = fast_update_body(payload, market_now)
    if updates is None:  # anything unusual: the schema decides, and words the 400 exactly
        payload = call.json(body, required=True)  # as json.loads reads it (see ApiCall.json)
        try:
            updates = update_entries(s.UpdateStocksRequestSchema(now=lambda: market_now).load(payload))
        except ValidationError as exc:
            raise bad_request(exc.messages) from None
    poisoned = state.poisoned_in(int(key), [sku for sku, _count, _stamp in updates])
    if poisoned:
        raise poison_failure(poisoned)
    call.charge(operation, key, len(updates))
    call.faults()
    state.apply_stocks(int(key), updates)
    return 200, {"status": "OK"}, len(updates), call.lost()


def get_stocks(call: ApiCall, operation: str, key: str, body: bytes, raw_id: str) -> Reply:
    state, campaign_id = call.state, int(key)
    payload = call.json(body, required=False)
    query: dict[str, Any] = {}
    token = call.query.get("page_token") or call.query.get("pageToken")
    if token is not None:
        query["page_token"] = token
    if "limit" in call.query:
        if not call.query["limit"].lstrip("-").isdigit():
            raise ApiFailure(400, "BAD_REQUEST", f"limit must be an integer, got {call.query['limit']!r}")
        query["limit"] = int(call.query["limit"])
    if not isinstance(payload, dict):
        raise ApiFailure(400, "BAD_REQUEST", "Request body must be a JSON object")
    try:
        data = s.GetStocksQuerySchema().load({**payload, **query})
    except ValidationError as exc:
        raise bad_request(exc.messages) from None
    campaign = state.campaign(campaign_id)
    store = state.stocks.get(campaign_id, {})
    archived = state.archived.get(campaign_id, set())
    next_token = None
    if data.get("offerIds"):
        skus = [sku for sku in data["offerIds"] if sku in store]
    else:
        after = decode_token(data.get("page_token"))
        size = min(data.get("limit", 100), state.config.page_cap)
        skus, last = state.page_after(campaign_id, after, size)
        skus = [sku for sku in skus if (sku in archived) == bool(data.get("archived"))]
        next_token = encode_token(last) if last is not None else None
    wid = data.get("stocksWarehouseId")
    if wid is not None and campaign is not None and wid != campaign.warehouse_id:
        skus = []
    offers = []
    for sku in skus:
        record = store.get(sku)
        if record is None or (data.get("hasStocks") is not None and (record.count > 0) != data["hasStocks"]):
            continue
        offer: dict[str, Any] = {"offerId": sku, "updatedAt": record.updated_at.isoformat(),
                                 "stocks": [{"type": "AVAILABLE", "count": record.count},
                                            {"type": "FIT", "count": record.count}]}
        if data.get("withTurnover") and campaign is not None and campaign.model == "FBY":
            offer["turnoverSummary"] = {"turnover": "HIGH", "turnoverDays": 60.0}
        offers.append(offer)
    call.charge(operation, key, len(offers))
    call.faults()
    result: dict[str, Any] = {"warehouses": [{"warehouseId": campaign.warehouse_id if campaign else 0, "offers": offers}]}
    if next_token:
        result["paging"] = {"nextPageToken": next_token}
    return 200, {"status": "OK", "result": result}, len(offers), call.lost()


def generate_report(call: ApiCall, operation: str, key: str, body: bytes) -> Reply:
    state, desk = call.state, call.desk
    payload = call.json(body, required=True)
    try:
        fmt = s.check_report_format(call.query.get("format", "FILE"))
        data = s.GenerateStocksReportSchema().load(payload)
    except ValidationError as exc:
        raise bad_request(exc.messages) from None
    if data.get("campaignId") is not None:
        call.campaign_id(str(data["campaignId"]))
    for cid in data.get("campaignIds") or []:
        call.campaign_id(str(cid))
    if data.get("businessId") is not None and not call.may_use_business(data["businessId"]):
        raise ApiFailure(403, "FORBIDDEN", f"Access denied to businessId {data['businessId']}")
    if desk.active(time.monotonic()) >= state.config.max_active_reports:
        raise ApiFailure(420, "LIMIT_EXCEEDED", "Active reports limit exceeded")
    call.charge(operation, key, 1)
    call.faults()
    job = desk.generate(data, fmt)
    estimate = job.quirk.estimate_ms if job.quirk and job.quirk.estimate_ms is not None else int(job.delay_s * 1000)
    result = {"reportId": job.report_id, "estimatedGenerationTime": estimate}
    return 200, {"status": "OK", "result": result}, 1, call.lost()


def report_info(call: ApiCall, operation: str, key: str, body: bytes, report_id: str) -> Reply:
    call.charge(operation, key, 1)
    call.faults()
    result = call.desk.info(report_id, f"http://{call.host}")
    if result is None:
        raise ApiFailure(404, "NOT_FOUND", f"Report {report_id} not found")
    return 200, {"status": "OK", "result": result}, 1, call.lost()


# operation -> its handler; the server routes OPERATIONS' paths here.
HANDLERS = {"updateStocks": update_stocks, "getStocks": get_stocks,
            "generateStocksOnWarehousesReport": generate_report, "getReportInfo": report_info}

__all__ = ["CAMPAIGN_PATHS", "HANDLERS", "OPERATIONS"]
