"""A validated stocks-on-warehouses report request and its canonical fingerprint.

The Market's schema rules live in :mod:`ymsync.market.schemas`; this module adds the rules
that schema cannot express on its own (filters that only make sense for one owner) and a
canonical form: two requests asking for the same report must produce the same fingerprint,
whatever order their id lists came in, so a second caller can reuse the first one's report
instead of spending the 1-per-2-minutes generate quota.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from ymsync.market import schemas as s
from ymsync.market import schemas_v3 as v3
from ymsync.reports.kinds import ReportKind, report_kind

# Filters the Market documents for FBY/LaaS campaign reports only: with a businessId it would
# ignore them silently and hand back a report the caller did not ask for.
_CAMPAIGN_ONLY = ("warehouseIds", "reportDate")
_LIST_FIELDS = ("warehouseIds", "categoryIds", "campaignIds", "partnerWarehouseIds")
APIS = ("v2", "v3")  # v2: stocks-on-warehouses (campaign/business); v3: the business stocks report
# Moscow is UTC+3: a reportDate "tomorrow" in UTC may already be today for the Market.
_MARKET_TZ = timezone(timedelta(hours=3))


@dataclass(frozen=True)
class ReportRequest:
    """A request the Market will accept: body fields in the API's camelCase, plus the format."""

    body: Mapping[str, Any] = field(hash=False)
    format: str = "FILE"
    # "v3": POST v3/businesses/{businessId}/reports/stocks/generate; ``body`` then holds businessId
    # (the path's) and the generate body: partnerWarehouseIds, categoryIds, hasStocks.
    api: str = "v2"

    @classmethod
    def business_stocks(cls, business_id: int, format: str = "CSV", *, warehouse_ids: Any = (),
                        category_ids: Any = (), has_stocks: bool | None = None) -> "ReportRequest":
        """The v3 business stocks report (generateStocksReport) of one business."""
        return cls.build({"businessId": business_id, "partnerWarehouseIds": list(warehouse_ids) or None,
                          "categoryIds": list(category_ids) or None, "hasStocks": has_stocks}, format, api="v3")

    @classmethod
    def build(cls, body: Mapping[str, Any], format: str = "FILE", api: str = "v2") -> "ReportRequest":
        """Check ``body`` and ``format``; raise :class:`InvalidRequest` listing every problem.

        One path for both kinds: the format, the body's shape, then the kind's own checks
        (:data:`_CHECKS`), then one canonical form."""
        check = _CHECKS.get(api) if isinstance(api, str) else None
        if check is None:
            raise s.InvalidRequest("report request", [f"api must be v2 or v3, got {s.show(api)}"])
        problems: list[str] = []
        fmt = str(format).upper() if isinstance(format, str) else format
        try:
            s.check_report_format(fmt)
        except s.ValidationError as exc:
            problems.extend(s.flatten_errors(exc.messages))
        if not isinstance(body, Mapping):
            raise s.InvalidRequest("report request", [f"request must be an object, got {s.show(body)}"] + problems)
        checked, more = check({k: v for k, v in body.items() if v is not None})
        problems.extend(more)
        if problems:
            raise s.InvalidRequest("report request", problems)
        return cls(_canonical(checked), str(fmt), api)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReportRequest":
        """The inverse of :meth:`to_dict` (task arguments travel as JSON); re-validates."""
        if not isinstance(data, Mapping):
            raise s.InvalidRequest("report request", [f"expected an object, got {s.show(data)}"])
        return cls.build(data.get("request") or {}, data.get("format", "FILE"), data.get("api", "v2"))

    def to_dict(self) -> dict[str, Any]:
        # "api" only for v3, so a v2 request's fingerprint (its dedup key) is what it always was.
        out = {"request": dict(self.body), "format": self.format}
        return {**out, "api": self.api} if self.api != "v2" else out

    @property
    def business_id(self) -> int | None:
        return self.body.get("businessId")

    @property
    def campaign_id(self) -> int | None:
        return self.body.get("campaignId")

    @property
    def fingerprint(self) -> str:
        """Stable across processes and list orders; the dedup key for identical requests."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def owner(self) -> str:
        """``campaign=22`` or ``business=7``: who the report is about."""
        if "campaignId" in self.body:
            return f"campaign={self.body['campaignId']}"
        return f"business={self.body['businessId']}"

    def describe(self) -> str:
        """A short, payload-free label for logs and Flower's argsrepr."""
        extras = ["v3"] if self.api == "v3" else []
        for key in ("warehouseIds", "partnerWarehouseIds", "campaignIds", "categoryIds"):
            if key in self.body:
                extras.append(f"{key}={len(self.body[key])}")
        for key in ("reportDate", "hasStocks"):
            if key in self.body:
                extras.append(f"{key}={self.body[key]}")
        return " ".join([self.owner, self.format, *extras])

    @property
    def kind(self) -> ReportKind:
        """How this report is generated and counted (reports/kinds.py)."""
        return report_kind(self.api)

    @property
    def file_extension(self) -> str:
        return "xlsx" if self.format == "FILE" else "zip"


def _load(schema: Any, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    try:
        return schema.load(raw), []
    except s.ValidationError as exc:
        return {}, s.flatten_errors(exc.messages)


def _check_v2(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """stocks-on-warehouses: the schema, then the rules it cannot express (see :func:`_owner_rules`)."""
    raw = {k: s.report_date(v) if k == "reportDate" else v for k, v in raw.items()}
    checked, problems = _load(s.GenerateStocksReportSchema(), raw)
    return checked, problems + (_owner_rules(checked) if checked else [])


def _check_v3(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The business stocks report: businessId is the path's, the rest the generate body."""
    business = raw.pop("businessId", None)
    problems = []
    if not isinstance(business, int) or isinstance(business, bool) or business < 1:
        problems.append(f"businessId: a positive integer is required, got {s.show(business)}")
    checked, more = _load(v3.GenerateBusinessStocksReportSchema(), raw)
    return {**checked, "businessId": business}, problems + more


# Each kind's checks of a body (``None`` values already dropped): (checked fields, problems).
_CHECKS: dict[str, Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]]] = {"v2": _check_v2, "v3": _check_v3}


def _owner_rules(checked: Mapping[str, Any]) -> list[str]:
    problems = []
    if checked.get("businessId") is not None:
        for key in _CAMPAIGN_ONLY:
            if checked.get(key) is not None:
                problems.append(f"{key}: only allowed with campaignId (the Market applies it to FBY/LaaS "
                                f"campaign reports only)")
    when = checked.get("reportDate")
    if isinstance(when, date) and when > datetime.now(_MARKET_TZ).date() + timedelta(days=1):
        problems.append(f"reportDate: {when.isoformat()} is in the future (the report covers the day before it)")
    return problems


def _canonical(checked: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(checked):
        value = checked[key]
        if value is None:
            continue
        if key in _LIST_FIELDS:
            value = sorted(value)  # the Market treats these as sets; so does the fingerprint
        elif key == "reportDate":
            value = value.isoformat()
        out[key] = value
    return out


__all__ = ["ReportRequest"]
