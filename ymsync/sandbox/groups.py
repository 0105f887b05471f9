"""The sandbox's getPagedWarehouses (``POST v2/businesses/{businessId}/warehouses``): every
warehouse of a business with its campaign and, for a warehouse in a group, ``groupInfo``.

Each sandbox campaign has one warehouse (``CampaignConfig.warehouse_id``); the campaigns of a
configured warehouse group (``SandboxConfig.warehouse_groups``) share one stock and answer here
with one ``groupInfo`` (id ``GROUP_ID_BASE + first campaign``). Quota: 100 an hour per business;
the business's parallel cap, like every business path.
"""

from __future__ import annotations

from typing import Any

from ymsync.sandbox.call import ApiCall
from ymsync.sandbox.failures import ApiFailure, decode_token, encode_token

OPERATIONS = {"getPagedWarehouses": ("POST", r"/v2/businesses/([^/]+)/warehouses")}
GROUP_ID_BASE = 900_000
MAX_LIMIT = 30  # PageLimit30
COMPONENTS = {"ADDRESS", "STATUS"}

Reply = tuple[int, dict[str, Any], int, bool]


def get_paged_warehouses(call: ApiCall, operation: str, key: str, body: bytes, raw_id: str) -> Reply:
    state = call.state
    payload = call.json(body, required=False) if body else {}
    if not isinstance(payload, dict):
        raise ApiFailure(400, "BAD_REQUEST", "Request body must be a JSON object")
    components = payload.get("components") or []
    if not isinstance(components, list) or set(components) - COMPONENTS:
        raise ApiFailure(400, "BAD_REQUEST", f"components must be a list of ADDRESS, STATUS; got {components!r}")
    wanted = payload.get("campaignIds") or []
    if not isinstance(wanted, list) or len(wanted) > 25 or not all(isinstance(c, int) and c > 0 for c in wanted):
        raise ApiFailure(400, "BAD_REQUEST", "campaignIds must be a list of at most 25 campaign ids")
    raw_limit = call.query.get("limit", "15")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiFailure(400, "BAD_REQUEST", f"limit must be between 1 and {MAX_LIMIT}, got {raw_limit!r}")
    after = decode_token(call.query.get("pageToken") or call.query.get("page_token"))
    if after is not None and not after.isdigit():
        raise ApiFailure(400, "BAD_REQUEST", "pageToken is not valid")
    business_id = int(key)
    with state.lock:
        campaigns = sorted((c for c in state.campaigns.values() if c.business_id == business_id
                            and (not wanted or c.id in wanted)), key=lambda c: c.warehouse_id)
        groups = dict(state.group_of)
    start = 0 if after is None else next((i for i, c in enumerate(campaigns) if c.warehouse_id > int(after)),
                                         len(campaigns))
    page = campaigns[start:start + int(raw_limit)]
    rows = []
    for c in page:
        row: dict[str, Any] = {"id": c.warehouse_id, "name": f"Склад {c.id}", "campaignId": c.id,
                               "express": c.model == "EXPRESS"}
        group = groups.get(c.id)
        if group:
            row["groupInfo"] = {"id": GROUP_ID_BASE + group[0], "name": f"Группа {group[0]}"}
        if "STATUS" in components:
            row["status"] = {"status": "OTHER"}
        rows.append(row)
    call.charge(operation, key, 1)
    call.faults()
    result: dict[str, Any] = {"warehouses": rows}
    if page and start + len(page) < len(campaigns):
        result["paging"] = {"nextPageToken": encode_token(str(page[-1].warehouse_id))}
    return 200, {"status": "OK", "result": result}, 1, call.lost()


HANDLERS = {"getPagedWarehouses": get_paged_warehouses}
