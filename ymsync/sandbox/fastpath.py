"""A fast path for the sandbox's campaign-level stock update: plainly valid bodies skip the schema."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ymsync.market import schemas as s

_ITEM_KEYS = ({"count"}, {"count", "updatedAt"})
# Printable ASCII, 1 to 255 characters, no space at either end: a SKU sku_problem always accepts.
_PLAIN_SKU = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")


def fast_update_body(payload: Any, now: datetime | None = None) -> dict[str, Any] | None:
    """What ``UpdateStocksRequestSchema().load(payload)`` returns, for a body plainly valid; else None.

    The schema costs ~20 us a SKU (a 2000-SKU request: ~40 ms of one core, which capped the
    sandbox below the rates the bench measures). This checks the same rules in one pass and
    gives up at the first doubt (unknown or missing keys, a wrong type, a duplicate, a stamp
    in the future or over a day old), leaving the schema to refuse the body with its own
    messages. Size: the handler has already refused a raw body over MAX_BODY_BYTES, and the
    compact re-encoding the schema measures is never longer than valid JSON it was parsed
    from (no whitespace, UTF-8 instead of escapes), so that rule cannot fail here.
    """
    if type(payload) is not dict or len(payload) != 1:
        return None
    skus = payload.get("skus")
    if type(skus) is not list or not 1 <= len(skus) <= s.MAX_SKUS_PER_UPDATE:
        return None
    now = s.utcnow() if now is None else now
    oldest = now - s.MAX_STAMP_AGE
    seen: set[str] = set()
    out = []
    sku_problem, parse_stamp = s.sku_problem, s.parse_stamp
    for entry in skus:
        if type(entry) is not dict or len(entry) != 2:
            return None
        sku, items = entry.get("sku"), entry.get("items")
        if type(sku) is not str or type(items) is not list or len(items) != 1:
            return None
        sku = sku.strip()
        if sku in seen or (_PLAIN_SKU.fullmatch(sku) is None and sku_problem(sku) is not None):
            return None
        seen.add(sku)
        item = items[0]
        if type(item) is not dict or item.keys() not in _ITEM_KEYS:
            return None
        count = item["count"]
        if type(count) is not int or not 0 <= count <= s.MAX_COUNT:
            return None
        if "updatedAt" in item:
            stamp = parse_stamp(item["updatedAt"])
            if stamp is None or stamp > now or stamp < oldest:
                return None
            out.append({"sku": sku, "items": [{"count": count, "updatedAt": stamp}]})
        else:
            out.append({"sku": sku, "items": [{"count": count}]})
    return {"skus": out}
