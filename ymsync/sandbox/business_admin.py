"""Admin routes for the sandbox's businesses (documented in admin.py's docstring)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ymsync.sandbox.business_state import BusinessConfig, TokenScope

if TYPE_CHECKING:
    from ymsync.sandbox.server import SandboxServer


def handle_business_admin(server: "SandboxServer", method: str, route: str, data: Any) -> tuple[int, Any]:
    state = server.state
    store = state.business
    if route == "businesses":
        if method == "GET":
            with state.lock:
                return 200, [b.to_json() for b in store.configs.values()] if store.strict else []
        configs = [BusinessConfig.from_json(item) for item in (data if isinstance(data, list) else [data])]
        for config in configs:
            store.configure(config)
        return 200, {"configured": [c.id for c in configs]}
    if route == "tokens":
        token = str(data["token"])
        if not token:
            raise ValueError("token must not be empty")
        with state.lock:
            state.tokens.add(token)
            state.revoked.discard(token)
            if "businesses" in data or "campaigns" in data:
                state.token_scopes[token] = TokenScope(frozenset(map(int, data.get("businesses") or ())),
                                                       frozenset(map(int, data.get("campaigns") or ())))
            else:
                state.token_scopes.pop(token, None)
        return 200, {"ok": True, "restricted": token in state.token_scopes}
    match = re.fullmatch(r"business/(\d+)/(groups|stocks|archive|poison)", route)
    if match is None:
        return 404, {"error": f"no admin route {method} /_admin/{route}"}
    business_id, what = int(match.group(1)), match.group(2)
    if what == "stocks" and method == "GET":
        return 200, store.read(business_id)
    if method != "POST":
        return 405, {"error": f"use POST for /_admin/{route}"}
    if what == "groups":
        current = store.get(business_id)
        if current is None:
            raise ValueError(f"business {business_id} is not configured")
        store.configure(BusinessConfig(current.id, current.warehouses, bool(data["groups"])))
        return 200, store.configured(business_id).to_json()  # type: ignore[union-attr]
    if what == "stocks":
        levels = {int(wid): {str(sku): int(count) for sku, count in skus.items()} for wid, skus in data.items()}
        return 200, {"planted": store.plant(business_id, levels)}
    if what == "archive":
        store.archive(business_id, [str(sku) for sku in data])
        return 200, {"archived": len(data)}
    stock = store.stock(business_id)
    warehouse = int(data["warehouse"]) if data.get("warehouse") is not None else None
    with state.lock:
        stock.poisoned.update({(warehouse, str(sku)): bool(data.get("named", True)) for sku in data["skus"]})
    return 200, {"poisoned": len(data["skus"])}
