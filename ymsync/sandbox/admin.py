"""The sandbox's admin API: inspect its state, plant data, inject faults (tests and the demo).

No auth: the sandbox binds to loopback and exists to be poked at. Routes (JSON in and out):

GET  /_admin/state                 counters, per-quota peaks, parallel peaks, stale writes, requests in
                                   flight per gate and per client address (in_flight, in_flight_peers),
                                   and the largest updateStocks request (max_request_skus, max_request_bytes)
GET  /_admin/stocks/{campaign}     {sku: {count, updatedAt}}
POST /_admin/stocks/{campaign}     {sku: count, ...}: set stock behind the API's back
POST /_admin/archive/{campaign}    [sku, ...]: mark offers archived
POST /_admin/poison/{campaign}     [sku, ...] or {skus, named?}: any updateStocks holding one is refused
                                   whole with a 400 naming it ("Stock for 'X' cannot be updated: ..."),
                                   or, with named false, with one error that names no SKU
POST /_admin/faults                {error_rate, lost_reply_rate, locked_rate, latency_min_ms, latency_max_ms,
                                    late_apply_rate, late_apply_s, schedule: ["ok"|"500"|"423"|"lost"|"late", ...]}
                                   (schedule: the next stock updates meet these in arrival order, then the rates)
POST /_admin/quotas                {operation: "AMOUNT/SECONDS" | "0"}
POST /_admin/consume               {operation, key, amount?, pause_s?}: a foreign client's usage
POST /_admin/foreign               {campaign | business, share, operation?}: a foreign client spends SHARE (0..1) of
                                   that quota window (default updateStocks / updateStocksOnPartnerWarehouses) every
                                   window from now on (0 stops it); the headers' Remaining counts it
POST /_admin/hold                  {gate ("campaign:ID"), slots?, seconds}: a foreign client holds parallel slots
POST /_admin/revoke                {token}: later calls with it answer 401
POST /_admin/restore               {token}: a revoked token works again
POST /_admin/config                {report_delay_s?, link_ttl_s?, max_parallel?, max_active_reports?}
POST /_admin/reports/fail-next     {subStatus}: the next report ends FAILED with it
POST /_admin/reports/quirk-next    {report_id?, status?, sub_status?, file?, estimate_ms?, count?}: the next COUNT
                                   reports get this id / end with this status (DONE without a file, a
                                   status ymsync does not know) / answer this generation estimate
POST /_admin/reports/expire-links  every file link minted so far stops working
POST /_admin/reports/dead-links    {count}: the next COUNT file links minted are already expired
GET  /_admin/spec-violations       test mode (YM_SANDBOX_SPEC_CHECK): {enabled, spec, checked, violations:
                                   [{operation, method, path, message, t}]}: requests that broke the official
                                   OpenAPI description (each was answered 400); kept across resets
Businesses (the business-level v3 methods; see business_state.py):
POST /_admin/businesses            {id, groups?, warehouses: [{id, name?, models?: [{placementType,
                                   apiAvailability}]}]} or a list of them: configure (replace) cabinets; once
                                   any is configured, unknown businesses/warehouses are refused
GET  /_admin/businesses            [{id, groups, warehouses}, ...] as configured
POST /_admin/business/{id}/groups  {groups: bool}: the cabinet has warehouse groups (v3 stock calls refused,
                                   v2 updateStocks allowed) or not (v2 updateStocks of its FBS/DBS/Express
                                   campaigns refused)
GET  /_admin/business/{id}/stocks  {warehouse_id: {sku: {count, updatedAt}}}
POST /_admin/business/{id}/stocks  {warehouse_id: {sku: count}}: set stock behind the API's back
POST /_admin/business/{id}/archive [sku, ...]: mark offers archived (reads skip them unless archived=true)
POST /_admin/business/{id}/poison  {skus: [...], warehouse?, named?}: any v3 update holding one (on that
                                   warehouse, or any) is refused whole, naming it unless named is false
POST /_admin/tokens                {token, businesses?: [id], campaigns?: [id]}: a token that works, limited
                                   to those (403 elsewhere) when either list is given
GET  /_admin/state's "businesses":  per business {groups, warehouses, skus, item_units, stale_writes};
                                   "stale_writes" counts both APIs (v3: per (warehouse, sku))

GET  /_admin/log?since=UNIX_TIME   recent API calls (t, arrived, op, key, status, cost, peer: the
                                   client's address; a quota 420 adds until)
POST /_admin/reset                 forget stock, quotas and counters
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TYPE_CHECKING, Any

from ymsync.config.settings import parse_quota

if TYPE_CHECKING:
    from ymsync.sandbox.server import SandboxServer

_CONFIG_KEYS = {"report_delay_s": float, "link_ttl_s": float, "max_parallel": int, "max_active_reports": int,
                "page_cap": int}


def handle_admin(server: "SandboxServer", method: str, path: str, query: dict[str, str],
                 body: bytes) -> tuple[int, Any]:
    state, desk = server.state, server.desk
    data = json.loads(body) if body else {}
    route = path[len("/_admin/"):].rstrip("/")
    if method == "GET" and route == "state":
        snapshot = state.snapshot()
        snapshot["reports"] = len(desk.jobs)
        snapshot["faults"] = dataclasses.asdict(state.config.faults)
        return 200, snapshot
    if method == "GET" and route == "spec-violations":
        check = server.spec_check
        return 200, check.snapshot() if check is not None else {"enabled": False, "checked": 0, "violations": []}
    if match := re.fullmatch(r"stocks/(\d+)", route):
        campaign_id = int(match.group(1))
        if method == "POST":
            state.plant(campaign_id, {str(k): int(v) for k, v in data.items()})
            return 200, {"planted": len(data)}
        with state.lock:
            store = dict(state.stocks.get(campaign_id, {}))
        return 200, {sku: {"count": r.count, "updatedAt": r.updated_at.isoformat()} for sku, r in store.items()}
    if route == "businesses" or route == "tokens" or route.startswith("business/"):
        from ymsync.sandbox.business_admin import handle_business_admin  # the v3 cabinets' own routes

        return handle_business_admin(server, method, route, data)
    if method != "POST" and route != "log":
        return 405, {"error": f"use POST for /_admin/{route}"}
    if match := re.fullmatch(r"archive/(\d+)", route):
        with state.lock:
            state.archived.setdefault(int(match.group(1)), set()).update(map(str, data))
            state.revision += 1
        return 200, {"archived": len(data)}
    if match := re.fullmatch(r"poison/(\d+)", route):
        skus, named = (data, True) if isinstance(data, list) else (data["skus"], bool(data.get("named", True)))
        state.poison(int(match.group(1)), [str(sku) for sku in skus], named)
        return 200, {"poisoned": len(skus)}
    if route == "faults":
        unknown = set(data) - {f.name for f in dataclasses.fields(state.config.faults)}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        state.config.faults = dataclasses.replace(state.config.faults, **{
            k: tuple(v) if k == "schedule" else float(v) for k, v in data.items()})
        if "schedule" in data:
            with state.lock:
                state.scheduled = 0  # a new schedule starts with the next stock update
        return 200, dataclasses.asdict(state.config.faults)
    if route == "quotas":
        with state.lock:
            for operation, raw in data.items():
                state.config.quotas[operation] = parse_quota(operation, str(raw))
                for key in [k for k in state.windows if k[0] == operation]:
                    del state.windows[key]
        return 200, {op: str(q) if q else "0" for op, q in state.config.quotas.items()}
    if route == "consume":
        state.consume_foreign(data["operation"], str(data["key"]), int(data.get("amount", 0)),
                              float(data.get("pause_s", 0)))
        return 200, {"ok": True}
    if route == "foreign":
        share = float(data["share"])
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be 0..1, got {share}")
        if "business" in data:
            key, operation = str(int(data["business"])), str(data.get("operation", "updateStocksOnPartnerWarehouses"))
        else:
            key, operation = str(int(data["campaign"])), str(data.get("operation", "updateStocks"))
        state.set_foreign(operation, key, share)
        return 200, {"operation": operation, "key": key, "share": share}
    if route == "hold":
        gate = str(data["gate"])
        if not re.fullmatch(r"(campaign|business|token):[\w-]+", gate):
            raise ValueError(f"gate must look like campaign:ID, got {gate!r}")
        slots, seconds = int(data.get("slots", state.config.max_parallel)), float(data["seconds"])
        if not (1 <= slots <= 100 and 0 < seconds <= 600):
            raise ValueError("slots must be 1..100 and seconds 0..600")
        state.hold_slots(gate, slots, seconds)
        return 200, {"held": slots, "gate": gate, "seconds": seconds}
    if route == "revoke":
        with state.lock:
            state.revoked.add(data["token"])
        return 200, {"ok": True}
    if route == "restore":
        with state.lock:
            state.revoked.discard(data["token"])
        return 200, {"ok": True}
    if route == "config":
        for key, value in data.items():
            if key not in _CONFIG_KEYS:
                raise ValueError(f"unknown config key {key!r}; known: {sorted(_CONFIG_KEYS)}")
            setattr(state.config, key, _CONFIG_KEYS[key](value))
        return 200, {k: getattr(state.config, k) for k in _CONFIG_KEYS}
    if route == "reports/fail-next":
        desk.fail_next.append(str(data.get("subStatus", "NO_DATA")))
        return 200, {"queued": len(desk.fail_next)}
    if route == "reports/quirk-next":
        from ymsync.sandbox.reports import ReportQuirk

        count = int(data.pop("count", 1))
        unknown = set(data) - {f.name for f in dataclasses.fields(ReportQuirk)}
        if unknown or not 1 <= count <= 100:
            raise ValueError(f"unknown quirk settings {sorted(unknown)} or count outside 1..100")
        quirk = ReportQuirk(**data)
        with desk.lock:
            desk.quirks_next.extend([quirk] * count)
            return 200, {"queued": len(desk.quirks_next)}
    if route == "reports/expire-links":
        return 200, {"expired": desk.expire_links()}
    if route == "reports/dead-links":
        with desk.lock:
            desk.dead_links += int(data.get("count", 1))
            return 200, {"dead_links": desk.dead_links}
    if route == "log":
        since = float(query.get("since", 0))
        with state.lock:
            return 200, [entry for entry in state.log if entry["t"] >= since]
    if route == "reset":
        with state.lock:
            state.stocks.clear()
            state.revision += 1
            state.archived.clear()
            state._sorted.clear()
            state.link_groups()  # a warehouse group's campaigns share one stock again
            state.windows.clear()
            state.foreign.clear()
            state.paused_until.clear()
            state.parallel_peak.clear()
            state.parallel_refused.clear()
            state.requests.clear()
            state.sku_units.clear()
            state.revoked.clear()
            state.log.clear()
            state.stale_writes = 0
            state.max_request_skus = state.max_request_bytes = 0
            state.poisoned.clear()
            state.business.reset()
        return 200, {"ok": True}
    return 404, {"error": f"no admin route {method} /_admin/{route}"}
