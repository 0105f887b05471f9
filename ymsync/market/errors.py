"""The small exception family every Market failure maps to.

Callers decide by type (and ``retryable``) what to do: back off, split a batch, pause a
campaign or give up. Messages carry the API's own code and text, never a credential.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Mapping


@dataclass(frozen=True)
class ApiError:
    code: str
    message: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


@dataclass(frozen=True)
class RateLimitInfo:
    """The ``X-RateLimit-Resource-*`` headers of one response (any may be absent)."""

    limit: int | None = None
    remaining: int | None = None
    until: datetime | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> "RateLimitInfo":
        return cls(
            limit=_int_or_none(headers.get("X-RateLimit-Resource-Limit")),
            remaining=_int_or_none(headers.get("X-RateLimit-Resource-Remaining")),
            until=parse_http_date(headers.get("X-RateLimit-Resource-Until")),
        )


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_http_date(value: str | None) -> datetime | None:
    """An RFC 822/1123 date (``Sun, 22 Nov 2026 10:00:00 GMT``) as an aware datetime."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else None


class MarketError(Exception):
    """Base of every failure talking to the Market."""

    status: int | None = None
    retryable = False
    # The request may have been applied although no success came back (timeouts, dropped
    # connections, 5xx, 423): whoever sent it must not send a value over it until it can no
    # longer land. Known outcomes (200, 4xx but 423) are never in doubt.
    outcome_unknown = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: tuple[ApiError, ...] = (),
        rate_limit: RateLimitInfo | None = None,
        method: str = "",
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.errors = errors
        self.rate_limit = rate_limit or RateLimitInfo()
        self.method = method

    @property
    def code(self) -> str:
        return self.errors[0].code if self.errors else ""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):  # keep keyword state across pickling (Celery result backends)
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[MarketError], message: str, state: dict) -> MarketError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class MarketNetworkError(MarketError):
    """Timeout, refused or dropped connection: the request may or may not have applied
    (``sent`` False: it never left this process, so it did not)."""

    retryable = True

    def __init__(self, message: str, *, sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.sent = sent

    @property
    def outcome_unknown(self) -> bool:  # type: ignore[override]
        return self.sent


class MarketBadRequest(MarketError):
    """400: the Market rejected the whole request; ``errors`` holds every reason."""

    status = 400


class MarketUnauthorized(MarketError):
    status = 401


class MarketForbidden(MarketError):
    status = 403


class MarketNotFound(MarketError):
    status = 404


class MarketWrongApiMode(MarketError):
    """The Market refused a stock call because of how the cabinet keeps its stock: a v3
    (business-level) call for a cabinet with warehouse groups, or a v2 campaign stock call for an
    FBS/DBS/Express cabinet without them. Nothing was applied; retrying cannot help, and the stock
    in it is not poison: the operator must switch the cabinet's API mode (``mode``, named in the
    message along with ``YM_API_MODE``)."""

    status = 400

    @property
    def mode_to_set(self) -> str | None:
        """"v2" or "v3": the mode this cabinet needs, when the message says."""
        match = re.search(r"YM_API_MODE=(v[23])", self.message)
        return match.group(1) if match else None


class MarketRateLimited(MarketError):
    """420: some limit was hit; wait until ``until`` (if the Market said) and try again.
    ``kind`` names which of the three (``RATE_LIMIT_KINDS``) in logs and metrics."""

    status = 420
    retryable = True
    kind = "quota"

    @property
    def until(self) -> datetime | None:
        return self.rate_limit.until


class MarketQuotaExceeded(MarketRateLimited):
    """420 "Hit rate limit of 'N' requests per 'period' for resource 'R'"."""

    @property
    def resource(self) -> str | None:
        match = _QUOTA_RE.search(self.message)
        return match.group("resource") if match else None


class MarketParallelLimitExceeded(MarketRateLimited):
    """420 "Hit rate limit of 4 parallel requests for campaignId …": retry in a moment."""

    kind = "parallel"


class MarketActiveReportsLimit(MarketRateLimited):
    """420 "Active reports limit exceeded": too many reports generating at once."""

    kind = "active-reports"


class MarketLocked(MarketError):
    """423: the cabinet is being migrated; retry later."""

    status = 423
    retryable = True
    outcome_unknown = True


class MarketServerError(MarketError):
    """5xx (and 503 maintenance): retry later."""

    retryable = True
    outcome_unknown = True


class ReportLinkExpired(MarketError):
    """The report file link is no longer valid; ask ``get_report_info`` for a fresh one."""


class ReportTooLarge(MarketError):
    """The report file exceeded the configured size cap; nothing was kept."""


class DownloadRefused(MarketError):
    """The file link points somewhere ymsync is not allowed to fetch from."""


_QUOTA_RE = re.compile(r"Hit rate limit of '?(?P<amount>\d+)'? requests per '?(?P<period>[^' ]+)'?"
                       r" for resource '?(?P<resource>[^' ]+)'?")
_BY_STATUS: dict[int, type[MarketError]] = {
    400: MarketBadRequest,
    401: MarketUnauthorized,
    403: MarketForbidden,
    404: MarketNotFound,
    423: MarketLocked,
}


# How the Market words a refusal caused by warehouse groups (or their absence), in either language.
WAREHOUSE_GROUPS_RE = re.compile(r"warehouse groups?|групп\w* склад", re.IGNORECASE)


# The three kinds of 420, in one table: (typed ``code`` or None for any, message pattern or None for
# any) -> class; the first row matched by any error of the reply wins. The Market's
# typed error format (ApiTypedErrorDTO: ``code`` from ApiErrorCodeType) has one code per resource's
# per-period limit, REQUEST_LIMIT_EXCEEDED, and none for the parallel cap or the active-reports cap:
# those keep LIMIT_EXCEEDED (the classic format's code for all three, and the sandbox's) and are told
# apart by their message, in English or Russian. A 420 matching no row is a quota 420 (wait for Until).
RATE_LIMIT_KINDS: tuple[tuple[str | None, re.Pattern[str] | None, type[MarketRateLimited]], ...] = (
    (None, re.compile(r"parallel requests|параллельн\w* запрос", re.IGNORECASE), MarketParallelLimitExceeded),
    (None, re.compile(r"active reports limit|активн\w* отч[её]т", re.IGNORECASE), MarketActiveReportsLimit),
    ("REQUEST_LIMIT_EXCEEDED", None, MarketQuotaExceeded),
    ("LIMIT_EXCEEDED", _QUOTA_RE, MarketQuotaExceeded),
)


def rate_limit_kind(errors: tuple[ApiError, ...]) -> type[MarketRateLimited]:
    """The class (and so the kind) of a 420 from its errors, by ``RATE_LIMIT_KINDS``."""
    for code, pattern, cls in RATE_LIMIT_KINDS:
        for e in errors:
            if (code is None or e.code == code) and (pattern is None or pattern.search(e.message)):
                return cls
    return MarketQuotaExceeded


def error_for_status(status: int, errors: tuple[ApiError, ...]) -> type[MarketError]:
    """Pick the exception class for a failed response."""
    if status in (400, 403, 404) and any(WAREHOUSE_GROUPS_RE.search(e.message) for e in errors):
        return MarketWrongApiMode
    if status == 420:
        return rate_limit_kind(errors)
    if status >= 500:
        return MarketServerError
    return _BY_STATUS.get(status, MarketError)
