"""marshmallow schemas mirroring the Market's official description for the methods ymsync drives.

Requests are checked strictly (unknown fields refused) so a bad value is refused before it is
queued or sent; responses are read leniently because the Market adds fields without notice.
Every error names the field and shows the offending value.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

SKU_RE = re.compile(r"(?=.*\S.*)[^\x00-\x08\x0A-\x1f\x7f]{1,255}")
MAX_SKU_LENGTH = 255
MAX_COUNT = 2_000_000_000
MAX_SKUS_PER_UPDATE = 2000
MAX_OFFER_IDS = 500
MAX_GET_STOCKS_LIMIT = 100  # since 2026-08-04 (PageLimit100Truncate): larger values are cut silently
MAX_BODY_BYTES = 512 * 1024
MAX_STAMP_AGE = timedelta(days=1)
# Producers' clocks drift; a stamp a little ahead is kept, one far ahead would beat every later update.
PRODUCER_CLOCK_SKEW = timedelta(minutes=5)
REPORT_FORMATS = ("FILE", "CSV", "JSON")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def show(value: object, limit: int = 60) -> str:
    """A short, printable rendering of an offending value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def encode_body(payload: Any) -> bytes:
    """The exact bytes ymsync sends: compact JSON, UTF-8 (the Market's 512 KB cap counts these)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sku_problem(value: object) -> str | None:
    """Why ``value`` (already trimmed) is not a valid shop SKU, or None if it is."""
    if not isinstance(value, str):
        return f"SKU must be a string, got {show(value)}"
    if not value or value.isspace():
        return f"SKU is empty or blank: {show(value)}"
    if len(value) > MAX_SKU_LENGTH:
        return f"SKU is {len(value)} characters long, at most {MAX_SKU_LENGTH} allowed: {show(value)}"
    if not SKU_RE.fullmatch(value):
        bad = next(c for c in value if c < " " and c != "\t" or c == "\x7f")
        return f"SKU contains control character {bad!r}: {show(value)}"
    if any("\ud800" <= c <= "\udfff" for c in value):
        # A lone surrogate (from broken JSON escapes) cannot be encoded as UTF-8 for Redis or the Market.
        return f"SKU is not valid Unicode text (lone surrogate): {show(value)}"
    return None


class Sku(fields.Field):
    """A shop SKU: trimmed (the Market trims too), then checked against the official pattern."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        trimmed = value.strip() if isinstance(value, str) else value
        problem = sku_problem(trimmed)
        if problem:
            raise ValidationError(problem)
        return trimmed


class StrictInt(fields.Field):
    """An integer that refuses booleans, floats and strings (JSON ``true`` is not ``1``)."""

    def __init__(self, *, minimum: int | None = None, maximum: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum, self.maximum = minimum, maximum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        name = self.data_key or attr or "value"
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{name} must be an integer, got {show(value)}")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            if self.maximum is None:
                raise ValidationError(f"{name} must be at least {self.minimum}, got {value}")
            raise ValidationError(f"{name} must be between {self.minimum} and {self.maximum}, got {value}")
        return value


class StrictBool(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{self.data_key or attr} must be true or false, got {show(value)}")
        return value


class Stamp(fields.Field):
    """ISO 8601 date-time with a UTC offset; naive stamps are ambiguous and refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        parsed = parse_stamp(value)
        if parsed is None:
            raise ValidationError(
                f"updatedAt must be an ISO 8601 date-time with a UTC offset "
                f"(e.g. 2026-11-22T10:00:00+03:00), got {show(value)}"
            )
        return parsed

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.isoformat()


def parse_stamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def unique_list(name: str, min_items: int = 1, max_items: int | None = None) -> Callable[[list], None]:
    """Validator: a list of ``min..max`` items with no duplicates (the spec's uniqueItems)."""

    def check(items: list) -> None:
        if len(items) < min_items:
            raise ValidationError(f"{name} must not be empty")
        if max_items is not None and len(items) > max_items:
            raise ValidationError(f"{name} holds {len(items)} items, at most {max_items} allowed")
        dupes = [item for item, n in Counter(items).items() if n > 1]
        if dupes:
            raise ValidationError(f"{name} must be unique, repeated: {', '.join(show(d) for d in dupes[:5])}")

    return check


class RequestSchema(Schema):
    """A request body, as strict as the Market: an unknown field is an error."""
    class Meta:
        unknown = RAISE


class ResponseSchema(Schema):
    """A reply: fields the Market adds later are dropped, so a newer Market never breaks a read."""
    class Meta:
        unknown = EXCLUDE


# --- producer input and updateStocks -------------------------------------------------------


class StockUpdateSchema(RequestSchema):
    """One update as a producer gives it: ``{sku, count, updatedAt?}``; any past stamp is fine."""

    sku = Sku(required=True)
    count = StrictInt(required=True, minimum=0, maximum=MAX_COUNT)
    updatedAt = Stamp(load_default=None, allow_none=True)

    def __init__(self, *args: Any, now: Clock = utcnow, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now

    @validates_schema
    def _not_ahead(self, data: dict, **kwargs: Any) -> None:
        stamp = data.get("updatedAt")
        if stamp is not None and stamp > self.now() + PRODUCER_CLOCK_SKEW:
            raise ValidationError(f"updatedAt is in the future: {stamp.isoformat()}", "updatedAt")


class UpdateStockItemSchema(RequestSchema):
    count = StrictInt(required=True, minimum=0, maximum=MAX_COUNT)
    updatedAt = Stamp()


class UpdateStockSchema(RequestSchema):
    sku = Sku(required=True)
    items = fields.List(fields.Nested(UpdateStockItemSchema), required=True, validate=validate.Length(
        equal=1, error="items must hold exactly one entry, got {input}"))


class UpdateStocksRequestSchema(RequestSchema):
    """Body of ``PUT v2/campaigns/{campaignId}/offers/stocks``, with the Market's extra rules."""

    skus = fields.List(fields.Nested(UpdateStockSchema), required=True)

    def __init__(self, *args: Any, now: Clock = utcnow, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now

    @validates_schema(pass_original=True)
    def _market_rules(self, data: dict, original: Mapping, **kwargs: Any) -> None:
        skus = data["skus"]
        if not 1 <= len(skus) <= MAX_SKUS_PER_UPDATE:
            raise ValidationError(f"skus holds {len(skus)} items, 1 to {MAX_SKUS_PER_UPDATE} allowed", "skus")
        seen: dict[str, int] = {}
        errors: dict[int, dict] = {}
        now = self.now()
        for index, entry in enumerate(skus):
            sku = entry["sku"]
            if sku in seen:
                errors.setdefault(index, {})["sku"] = [f"Duplicate shop-sku '{sku}' (also item {seen[sku]})"]
            seen.setdefault(sku, index)
            stamp = entry["items"][0].get("updatedAt")
            if stamp is not None and stamp > now:
                errors.setdefault(index, {})["items"] = {0: {"updatedAt": [f"Stock for '{sku}' should not be in the future ({stamp.isoformat()})"]}}
            elif stamp is not None and now - stamp > MAX_STAMP_AGE:
                errors.setdefault(index, {})["items"] = {0: {"updatedAt": [f"Stock for '{sku}' should not be older than a day ({stamp.isoformat()})"]}}
        if errors:
            raise ValidationError({"skus": errors})
        size = len(encode_body(original))
        if size > MAX_BODY_BYTES:
            raise ValidationError(f"The request is too big: {size} bytes, the Market accepts at most {MAX_BODY_BYTES}", "skus")


# --- getStocks ---------------------------------------------------------------------------


class GetStocksQuerySchema(RequestSchema):
    """Query (``page_token``, ``limit``) and body filters of ``POST .../offers/stocks`` together,
    because the Market's rules tie them: with ``offerIds`` there is no paging and no ``archived``."""

    page_token = fields.String(validate=validate.Length(min=1, error="page_token must not be empty"))
    limit = StrictInt(minimum=1, maximum=MAX_GET_STOCKS_LIMIT)
    stocksWarehouseId = StrictInt(minimum=1)
    hasStocks = StrictBool()
    withTurnover = StrictBool()
    archived = StrictBool()
    offerIds = fields.List(Sku(), allow_none=True, validate=unique_list("offerIds", 1, MAX_OFFER_IDS))

    @validates_schema
    def _combinations(self, data: dict, **kwargs: Any) -> None:
        if data.get("offerIds"):
            clash = [k for k in ("page_token", "limit", "archived") if data.get(k) is not None]
            if clash:
                raise ValidationError(f"offerIds cannot be combined with {', '.join(clash)}", "offerIds")
        if data.get("hasStocks") is not None and data.get("stocksWarehouseId") is None:
            raise ValidationError("hasStocks is only allowed together with stocksWarehouseId", "hasStocks")


# --- stocks-on-warehouses report -------------------------------------------------------------

def id_list(name: str) -> fields.List:
    """An optional list of distinct positive ids (the reports' filters), errors named after ``name``."""
    return fields.List(StrictInt(minimum=1, data_key=f"{name} item"), allow_none=True, validate=unique_list(name))


class GenerateStocksReportSchema(RequestSchema):
    """Body of ``POST v2/reports/stocks-on-warehouses/generate``."""

    campaignId = StrictInt(minimum=1)
    businessId = StrictInt(minimum=1)
    warehouseIds = id_list("warehouseIds")
    reportDate = fields.Date(error_messages={"invalid": "reportDate must be a date like 2026-11-22"})
    categoryIds = id_list("categoryIds")
    hasStocks = StrictBool()
    campaignIds = id_list("campaignIds")

    @validates_schema
    def _one_owner(self, data: dict, **kwargs: Any) -> None:
        has_campaign, has_business = data.get("campaignId") is not None, data.get("businessId") is not None
        if has_campaign == has_business:
            raise ValidationError("pass exactly one of campaignId and businessId", "campaignId")
        if data.get("campaignIds") and not has_business:
            raise ValidationError("campaignIds is only allowed together with businessId", "campaignIds")


def check_report_format(fmt: object) -> str:
    if fmt not in REPORT_FORMATS:
        raise ValidationError(f"format must be one of {', '.join(REPORT_FORMATS)}, got {show(fmt)}", "format")
    return str(fmt)


# --- responses -----------------------------------------------------------------------------


class ApiErrorSchema(ResponseSchema):
    code = fields.String(required=True)
    message = fields.String(load_default="")


class ErrorResponseSchema(ResponseSchema):
    status = fields.String()
    errors = fields.List(fields.Nested(ApiErrorSchema), load_default=list, allow_none=True)


class StockSchema(ResponseSchema):
    type = fields.String(required=True)
    count = fields.Integer(required=True)


class TurnoverSchema(ResponseSchema):
    turnover = fields.String(required=True)
    turnoverDays = fields.Float()


class WarehouseOfferSchema(ResponseSchema):
    offerId = fields.String(required=True)
    stocks = fields.List(fields.Nested(StockSchema), load_default=list)
    turnoverSummary = fields.Nested(TurnoverSchema, allow_none=True)
    updatedAt = fields.String(allow_none=True)


class WarehouseOffersSchema(ResponseSchema):
    warehouseId = fields.Integer(required=True)
    offers = fields.List(fields.Nested(WarehouseOfferSchema), required=True)


class PagingSchema(ResponseSchema):
    nextPageToken = fields.String(allow_none=True)
    prevPageToken = fields.String(allow_none=True)


class GetStocksResultSchema(ResponseSchema):
    paging = fields.Nested(PagingSchema, allow_none=True)
    warehouses = fields.List(fields.Nested(WarehouseOffersSchema), required=True)


class GetStocksResponseSchema(ResponseSchema):
    status = fields.String(required=True)
    result = fields.Nested(GetStocksResultSchema, required=True)


class GenerateReportResultSchema(ResponseSchema):
    reportId = fields.String(required=True)
    estimatedGenerationTime = fields.Integer(required=True)


class GenerateReportResponseSchema(ResponseSchema):
    status = fields.String(required=True)
    result = fields.Nested(GenerateReportResultSchema, required=True)


class ReportInfoResultSchema(ResponseSchema):
    status = fields.String(required=True, validate=validate.OneOf(["PENDING", "PROCESSING", "FAILED", "DONE"]))
    subStatus = fields.String(allow_none=True)
    generationRequestedAt = fields.String(required=True)
    generationFinishedAt = fields.String(allow_none=True)
    file = fields.String(allow_none=True)
    estimatedGenerationTime = fields.Integer(allow_none=True)


class ReportInfoResponseSchema(ResponseSchema):
    status = fields.String(required=True)
    result = fields.Nested(ReportInfoResultSchema, required=True)


# --- error rendering -----------------------------------------------------------------------


def flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    """``{"skus": {3: {"sku": ["…"]}}}`` → ``["skus[3].sku: …"]``, in a stable order."""
    if isinstance(messages, str):
        return [f"{prefix}: {messages}" if prefix else messages]
    if isinstance(messages, list):
        return [line for item in messages for line in flatten_errors(item, prefix)]
    out: list[str] = []
    for key, value in messages.items():
        if key == "_schema":
            path = prefix
        elif isinstance(key, int):
            path = f"{prefix}[{key}]"
        else:
            path = f"{prefix}.{key}" if prefix else str(key)
        out.extend(flatten_errors(value, path))
    return out


class InvalidRequest(ValueError):
    """A request ymsync refused to send; ``errors`` lists every problem with its field."""

    def __init__(self, what: str, errors: Iterable[str]) -> None:
        self.errors = list(errors)
        super().__init__(f"invalid {what}: " + "; ".join(self.errors))


def load_response(schema: Schema, data: Any, operation: str) -> dict:
    """A Market reply read leniently; one that lacks what ymsync needs is the Market's fault (5xx-like)."""
    from ymsync.market.errors import MarketServerError

    try:
        return schema.load(data)
    except ValidationError as exc:
        detail = "; ".join(flatten_errors(exc.messages))[:300]
        raise MarketServerError(f"{operation}: unexpected response shape ({detail})", status=200,
                                method=operation) from None


def validate_or_raise(schema: Schema, payload: Any, what: str) -> Any:
    try:
        return schema.load(payload)
    except ValidationError as exc:
        raise InvalidRequest(what, flatten_errors(exc.messages)) from None


def report_date(value: date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, date) else value
