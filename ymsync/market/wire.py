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
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping

try:  # a C encoder when present; the standard library otherwise (same bytes)
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None
_PASSTHROUGH = 0 if _orjson is None else _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS

# A stock entry: (SKU, count, stamp in epoch milliseconds or None to let the Market stamp it).
StockTuple = tuple[str, int, "int | None"]

# ".123000+00:00" for every millisecond; a whole second has no fraction (as isoformat() wrote it).
_FRACTIONS = ("+00:00",) + tuple(f".{ms:03d}000+00:00" for ms in range(1, 1000))
_FRACTIONS_ENCODED = tuple(f.encode() for f in _FRACTIONS)
_SECONDS_CACHED = 4096  # distinct seconds kept: a batch's stamps come from a few seconds


class StampFormatter:
    """Epoch milliseconds → the Market's ISO form, one ``datetime`` per distinct second."""

    def __init__(self) -> None:
        self._seconds: dict[int, tuple[str, bytes]] = {}  # second -> its text, as str and as UTF-8

    def _second(self, second: int) -> tuple[str, bytes]:
        prefix = self._seconds.get(second)
        if prefix is None:
            if len(self._seconds) >= _SECONDS_CACHED:
                self._seconds.clear()
            text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            prefix = self._seconds[second] = (text, text.encode())
        return prefix

    def __call__(self, stamp_ms: int) -> str:
        second, ms = divmod(stamp_ms, 1000)
        return self._second(second)[0] + _FRACTIONS[ms]

    def encoded(self, stamp_ms: int) -> bytes:
        """The same text as UTF-8 bytes (a body written as bytes: campaign_stock_bytes)."""
        second, ms = divmod(stamp_ms, 1000)
        return self._second(second)[1] + _FRACTIONS_ENCODED[ms]


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


class EncodedBody(Mapping[str, Any]):
    """A request body already encoded: the bytes ymsync sends (``data``) and how many stock
    entries they hold (``count``). It reads as the dict it encodes, decoded on first look, for
    whoever wants the dict (a test double, a debugger); the request path only sends ``data``."""

    __slots__ = ("data", "count", "_decoded")

    def __init__(self, data: bytes, count: int) -> None:
        self.data = data
        self.count = count
        self._decoded: dict[str, Any] | None = None

    def _dict(self) -> dict[str, Any]:
        if self._decoded is None:
            self._decoded = json.loads(self.data)
        return self._decoded

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return f"EncodedBody({len(self.data)} bytes, {self.count} entries)"


# A SKU JSON would escape (a control character, a quote, a backslash: refused or rare) sends the
# whole batch the general way; any other is written as its UTF-8, as the encoder writes it.
_ESCAPED = re.compile(rb'[\x00-\x1f"\\]')
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_WITH_STAMP = b'{"sku":"%s","items":[{"count":%d,"updatedAt":"%s"}]}'
_WITHOUT_STAMP = b'{"sku":"%s","items":[{"count":%d}]}'


def campaign_stock_bytes(pairs: list[bytes], now_ms: int, oldest_ms: int) -> EncodedBody | None:
    """``PUT v2/campaigns/{id}/offers/stocks`` written straight from a take's reply: ``sku,
    b"count|stamp_ms|first_ms"`` pairs as Redis returned them, stamps clamped as
    ``ymsync.engine.stamps.levels`` clamps them (past ``now_ms``: ``now_ms``; before
    ``oldest_ms``: none, the Market stamps it). The same bytes as :func:`encode_body` of
    :func:`campaign_stock_body` (tests/unit/test_wire.py), at about a third of the CPU: no tuple,
    dict or str per SKU (bench/FINDINGS.md). None when a SKU needs escaping (see ``_ESCAPED``)."""
    skus = pairs[0::2]
    joined = b"".join(skus)
    if _ESCAPED.search(joined) is not None:
        return None
    if _NON_ASCII.search(joined) is not None:  # trimmed as text: Unicode has spaces of its own
        skus = [sku.decode().strip().encode() for sku in skus]
    parts = []
    add = parts.append
    for sku, value in zip(skus, pairs[1::2]):
        count, stamp, _first = value.split(b"|")
        stamp_ms = int(stamp)
        if stamp_ms < oldest_ms:
            add(_WITHOUT_STAMP % (sku.strip(), int(count)))
        else:
            add(_WITH_STAMP % (sku.strip(), int(count), iso_stamp.encoded(stamp_ms if stamp_ms < now_ms else now_ms)))
    return EncodedBody(b'{"skus":[' + b",".join(parts) + b"]}", len(parts))


def encode_body_stdlib(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def encode_body(payload: Any) -> bytes:
    """The exact bytes ymsync sends: compact JSON, UTF-8 (the Market's 512 KB cap counts these)."""
    if type(payload) is EncodedBody:
        return payload.data
    if _orjson is not None:
        try:
            # Datetimes and dataclasses go through ``default`` as the standard library sends them.
            return _orjson.dumps(payload, default=str, option=_PASSTHROUGH)
        except TypeError:  # what orjson will not take (an int past 64 bits, say): the standard library's
            pass
    return encode_body_stdlib(payload)


__all__ = ["EncodedBody", "StampFormatter", "business_stock_body", "campaign_stock_body", "campaign_stock_bytes",
           "encode_body", "encode_body_stdlib", "iso_stamp", "trimmed"]
