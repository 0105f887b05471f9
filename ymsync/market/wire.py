"""Stock update bodies in bulk: stamps from epoch milliseconds, bodies from plain tuples, one encoder.

The worker sends up to 2000 SKUs a request, tens of thousands a second: per SKU it does one
division, one cache lookup and one small dict, no ``datetime`` and no ``isoformat()``. The
strings are byte for byte what ``datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()``
gave before (``2025-12-06T07:00:00.123000+00:00``; ``...T07:00:00+00:00`` on a whole second),
which the Market's OpenAPI description accepts as ``date-time`` (tests/unit/test_wire.py checks
both). The body is encoded once, by orjson when it is installed (about 5-10× the standard
library on a 2000-SKU body, bench/wire.py); both encoders give the same bytes.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable

try:  # a C encoder when present; the standard library otherwise (same bytes)
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None
_PASSTHROUGH = 0 if _orjson is None else _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS

# A stock entry: (SKU, count, stamp in epoch milliseconds or None to let the Market stamp it).
StockTuple = tuple[str, int, "int | None"]

# ".123000+00:00" for every millisecond; a whole second has no fraction (as isoformat() wrote it).
_FRACTIONS = ("+00:00",) + tuple(f".{ms:03d}000+00:00" for ms in range(1, 1000))
_SECONDS_CACHED = 4096  # distinct seconds kept: a batch's stamps come from a few seconds


class StampFormatter:
    """Epoch milliseconds → the Market's ISO form, one ``datetime`` per distinct second."""

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}

    def __call__(self, stamp_ms: int) -> str:
        second, ms = divmod(stamp_ms, 1000)
        prefix = self._seconds.get(second)
        if prefix is None:
            if len(self._seconds) >= _SECONDS_CACHED:
                self._seconds.clear()
            prefix = self._seconds[second] = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return prefix + _FRACTIONS[ms]


iso_stamp = StampFormatter()  # per process; a dict lookup and a store are safe across threads


def trimmed(sku: Any) -> Any:
    return sku.strip() if isinstance(sku, str) else sku  # the Market trims; so do we


def campaign_stock_body(entries: Iterable[tuple[str, int, int | None]]) -> dict[str, Any]:
    """``PUT v2/campaigns/{id}/offers/stocks``: ``{"skus": [{"sku", "items": [{"count", "updatedAt"?}]}]}``."""
    skus = []
    for sku, count, stamp_ms in entries:
        item: dict[str, Any] = {"count": count} if stamp_ms is None else {"count": count,
                                                                          "updatedAt": iso_stamp(stamp_ms)}
        skus.append({"sku": trimmed(sku), "items": [item]})
    return {"skus": skus}


def business_stock_body(entries: Iterable[tuple[str, int, int, int | None]]) -> dict[str, Any]:
    """``POST v3/businesses/{id}/offers/stocks/update``: ``{"skuItems": [{"sku", "partnerWarehouseId",
    "count", "updatedAt"?}]}`` from ``(sku, warehouse, count, stamp_ms)``."""
    items = []
    for sku, warehouse, count, stamp_ms in entries:
        entry: dict[str, Any] = {"sku": trimmed(sku), "partnerWarehouseId": warehouse, "count": count}
        if stamp_ms is not None:
            entry["updatedAt"] = iso_stamp(stamp_ms)
        items.append(entry)
    return {"skuItems": items}


def encode_body_stdlib(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def encode_body(payload: Any) -> bytes:
    """The exact bytes ymsync sends: compact JSON, UTF-8 (the Market's 512 KB cap counts these)."""
    if _orjson is not None:
        try:
            # Datetimes and dataclasses go through ``default`` as the standard library sends them.
            return _orjson.dumps(payload, default=str, option=_PASSTHROUGH)
        except TypeError:  # what orjson will not take (an int past 64 bits, say): the standard library's
            pass
    return encode_body_stdlib(payload)


__all__ = ["StampFormatter", "business_stock_body", "campaign_stock_body", "encode_body", "encode_body_stdlib",
           "iso_stamp", "trimmed"]
