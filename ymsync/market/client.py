"""A typed client for the four Market methods ymsync drives, plus the report file download.

One pooled ``requests.Session`` per client, explicit timeouts, no automatic retries (the
callers own the retry policy, because only they know whether a retry is safe and what it
costs against the quota). Credentials live in per-request headers, are never sent to file
hosts, and never appear in exceptions, reprs or log lines.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote, urljoin, urlsplit

import requests

from ymsync.files import atomic_writer
from ymsync import __version__
from ymsync.config.settings import Credentials, Settings
from ymsync.market import schemas as s
from ymsync.market.business import V3_OPERATIONS, BusinessStockMethods
from ymsync.market.warehouse_groups import WarehouseGroupMethods
from ymsync.market.clock import MarketClock
from ymsync.market.deadline import DeadlineAdapter, deadline, passed
from ymsync.market.errors import (
    ApiError,
    DownloadRefused,
    MarketError,
    MarketNetworkError,
    MarketServerError,
    MarketWrongApiMode,
    RateLimitInfo,
    ReportLinkExpired,
    ReportTooLarge,
    error_for_status,
)
from ymsync.market.wire import EncodedBody
from ymsync.market.models import (
    DownloadedFile,
    OfferStock,
    ReportInfo,
    ReportTicket,
    StockLevel,
    StocksPage,
    UpdateResult,
)

log = logging.getLogger("ymsync.market")

USER_AGENT = f"ymsync/{__version__} python-requests/{requests.__version__}"
_CHUNK = 1024 * 1024
_MAX_REDIRECTS = 5


class MarketClient(BusinessStockMethods, WarehouseGroupMethods):
    """Talks to the Market Partner API (or the sandbox, by pointing ``base_url`` at it); the
    business-level (v3) methods come from :class:`BusinessStockMethods`."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_report_bytes: int = 512 * 1024 * 1024,
        download_hosts: Iterable[str] = ("*.yandex.ru", "*.yandex.net", "*.yandex.com"),
        session: requests.Session | None = None,
        pool_size: int = 8,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.timeout = (connect_timeout, read_timeout)
        # A hard deadline for a whole API call (connect, send, every read): requests' timeouts
        # bound each socket operation, so a reply that trickles in could otherwise take far
        # longer. The adapter's connections give each socket operation only the time left
        # (ymsync.market.deadline); a call past it fails with its outcome unknown.
        self.deadline_s = connect_timeout + read_timeout
        self.clock = MarketClock()
        self.max_report_bytes = max_report_bytes
        self.download_hosts = tuple(download_hosts)
        self.session = session or requests.Session()
        adapter = DeadlineAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self._update_schema = s.UpdateStocksRequestSchema()
        self._get_stocks_schema = s.GetStocksQuerySchema()
        self._report_schema = s.GenerateStocksReportSchema()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> "MarketClient":
        return cls(
            settings.api_url,
            settings.require_credentials(),
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_report_bytes=settings.max_report_bytes,
            download_hosts=settings.download_hosts,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"MarketClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "MarketClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the four methods ------------------------------------------------------------------

    def update_stocks(self, campaign_id: int, levels: Iterable[StockLevel], *, validate: bool = True) -> UpdateResult:
        """``PUT v2/campaigns/{campaignId}/offers/stocks``: the whole batch applies or none of it."""
        body = {"skus": [_stock_entry(level) for level in levels]}
        if validate:
            s.validate_or_raise(self._update_schema, body, "stock update")
        return self.send_stocks_body(campaign_id, body)

    def send_stocks_body(self, campaign_id: int, body: Mapping[str, Any]) -> UpdateResult:
        """The same request from a body already built (ymsync.market.wire: the worker's bulk path,
        values the producer validated; an EncodedBody is sent as its bytes), not validated again."""
        _, rate = self._call("updateStocks", "PUT", f"/v2/campaigns/{int(campaign_id)}/offers/stocks", body=body)
        count = body.count if isinstance(body, EncodedBody) else len(body["skus"])  # not decoded to count
        return UpdateResult(sku_count=count, rate_limit=rate)

    def get_stocks(
        self,
        campaign_id: int,
        *,
        page_token: str | None = None,
        limit: int | None = None,
        offer_ids: list[str] | None = None,
        archived: bool | None = None,
        warehouse_id: int | None = None,
        has_stocks: bool | None = None,
        with_turnover: bool | None = None,
    ) -> StocksPage:
        """One page of ``POST v2/campaigns/{campaignId}/offers/stocks``; follow ``next_page_token``."""
        query = {"page_token": page_token, "limit": limit}
        body = {"offerIds": offer_ids, "archived": archived, "stocksWarehouseId": warehouse_id,
                "hasStocks": has_stocks, "withTurnover": with_turnover}
        query = {k: v for k, v in query.items() if v is not None}
        body = {k: v for k, v in body.items() if v is not None}
        checked = s.validate_or_raise(self._get_stocks_schema, {**query, **body}, "stock read")
        if "offerIds" in checked:
            body["offerIds"] = checked["offerIds"]  # trimmed, as the Market would
        data, rate = self._call("getStocks", "POST", f"/v2/campaigns/{int(campaign_id)}/offers/stocks",
                                params=query, body=body)
        result = _load(s.GetStocksResponseSchema(), data, "getStocks")["result"]
        offers = [
            OfferStock(
                offer_id=offer["offerId"],
                warehouse_id=warehouse["warehouseId"],
                stocks={st["type"]: st["count"] for st in offer["stocks"]},
                turnover=(offer.get("turnoverSummary") or {}).get("turnover"),
                turnover_days=(offer.get("turnoverSummary") or {}).get("turnoverDays"),
                updated_at=offer.get("updatedAt"),
            )
            for warehouse in result["warehouses"]
            for offer in warehouse["offers"]
        ]
        token = (result.get("paging") or {}).get("nextPageToken") or None
        return StocksPage(offers=offers, next_page_token=token, rate_limit=rate)

    def generate_stocks_on_warehouses_report(self, request: Mapping[str, Any], *, format: str = "FILE") -> ReportTicket:
        """``POST v2/reports/stocks-on-warehouses/generate``; returns the report id to poll."""
        try:
            fmt = s.check_report_format(format)
        except s.ValidationError as exc:
            raise s.InvalidRequest("report request", s.flatten_errors(exc.messages)) from None
        body = {k: v for k, v in request.items() if v is not None}
        body = {k: s.report_date(v) if k == "reportDate" else v for k, v in body.items()}
        s.validate_or_raise(self._report_schema, body, "report request")
        data, rate = self._call("generateStocksOnWarehousesReport", "POST",
                                "/v2/reports/stocks-on-warehouses/generate", params={"format": fmt}, body=body)
        result = _load(s.GenerateReportResponseSchema(), data, "generateStocksOnWarehousesReport")["result"]
        return ReportTicket(result["reportId"], result["estimatedGenerationTime"], rate)

    def get_report_info(self, report_id: str) -> ReportInfo:
        """``GET v2/reports/info/{reportId}``; each call mints a fresh file link (valid ~60 min)."""
        if not isinstance(report_id, str) or not 1 <= len(report_id) <= 255:
            raise s.InvalidRequest("report info request", [f"reportId must be 1..255 characters, got {s.show(report_id)}"])
        data, rate = self._call("getReportInfo", "GET", f"/v2/reports/info/{quote(report_id, safe='')}")
        r = _load(s.ReportInfoResponseSchema(), data, "getReportInfo")["result"]
        return ReportInfo(
            report_id=report_id,
            status=r["status"],
            generation_requested_at=r["generationRequestedAt"],
            sub_status=r.get("subStatus"),
            generation_finished_at=r.get("generationFinishedAt"),
            file_url=r.get("file"),
            estimated_generation_ms=r.get("estimatedGenerationTime"),
            rate_limit=rate,
        )

    def download_report(self, url: str, dest: Path) -> DownloadedFile:
        """Stream a report file to ``dest`` (atomically), refusing foreign hosts and oversized files."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        response = self._open_download(url)
        with response:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > self.max_report_bytes:
                raise ReportTooLarge(f"report file is {declared} bytes, the cap is {self.max_report_bytes}")
            size = 0
            with atomic_writer(dest, "wb", prefix=".part-") as out:
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > self.max_report_bytes:
                        raise ReportTooLarge(f"report file exceeded the cap of {self.max_report_bytes} bytes")
                    out.write(chunk)
        return DownloadedFile(dest, size, response.headers.get("Content-Type", ""))

    # --- plumbing --------------------------------------------------------------------------

    def _call(self, operation: str, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Any = None) -> tuple[dict, RateLimitInfo]:
        headers = self._credentials.headers()
        data = None
        if body is not None:
            data = s.encode_body(body)
            headers["Content-Type"] = "application/json; charset=utf-8"
        started = time.monotonic()
        sent_at = time.time()
        try:
            with deadline(self.deadline_s) as ends_at:
                # No redirects: requests would carry the Api-Key header to whatever host answered.
                response = self.session.request(method, self.base_url + path, params=params, data=data,
                                                headers=headers, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            if passed(ends_at):  # the one monotonic check: the deadline, not one slow read
                raise MarketNetworkError(f"{operation}: no reply within {self.deadline_s:g}s",
                                         method=operation) from None
            if isinstance(exc, requests.Timeout):
                raise MarketNetworkError(f"{operation}: timed out ({type(exc).__name__})", method=operation) from None
            raise MarketNetworkError(f"{operation}: connection failed ({type(exc).__name__})", method=operation) from None
        self.clock.observe(response.headers.get("Date"), time.time(), sent_at)
        rate = RateLimitInfo.from_headers(response.headers)
        log.debug("%s %s -> %s in %.0f ms", operation, path, response.status_code, (time.monotonic() - started) * 1000)
        if response.status_code == 200:
            try:
                return response.json(), rate
            except ValueError:
                raise MarketServerError(f"{operation}: HTTP 200 with a body that is not JSON",
                                        status=200, rate_limit=rate, method=operation) from None
        raise _failure(operation, response, rate)

    def _open_download(self, url: str) -> requests.Response:
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_download_url(url)
            try:
                response = self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                raise MarketNetworkError(f"report download: {type(exc).__name__}") from None
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                response.close()
                continue
            if response.status_code == 200:
                return response
            response.close()
            if response.status_code in (403, 404, 410):
                raise ReportLinkExpired(f"report link answered HTTP {response.status_code}; fetch a fresh one",
                                        status=response.status_code)
            cls = MarketServerError if response.status_code >= 500 else MarketError
            raise cls(f"report download: HTTP {response.status_code}", status=response.status_code)
        raise DownloadRefused("report download: too many redirects")

    def _check_download_url(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        api_host = (urlsplit(self.base_url).hostname or "").lower()
        if _origin(url) == _origin(self.base_url):
            # The API's own origin (scheme, host and port): the token already goes there, so its
            # links are as trusted as the API. This is the compose sandbox (http://sandbox:8765).
            return
        if _is_loopback(host):
            # Loopback links are the sandbox's; only trust them when the API itself is local.
            if _is_loopback(api_host) and parts.scheme in ("http", "https"):
                return
        elif parts.scheme == "https" and (host == api_host or any(fnmatch(host, p) for p in self.download_hosts)):
            return
        raise DownloadRefused(f"report link to {parts.scheme}://{host or '?'} is not an allowed download host")


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with the scheme's default port filled in; None if unreadable."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in ("http", "https"):
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _stock_entry(level: StockLevel) -> dict[str, Any]:
    item: dict[str, Any] = {"count": level.count}
    if level.updated_at is not None:
        item["updatedAt"] = level.updated_at.isoformat()
    sku = level.sku.strip() if isinstance(level.sku, str) else level.sku  # the Market trims; so do we
    return {"sku": sku, "items": [item]}


_load = s.load_response


def _failure(operation: str, response: requests.Response, rate: RateLimitInfo) -> MarketError:
    try:
        payload = s.ErrorResponseSchema().load(response.json())
        errors = tuple(ApiError(e["code"], e.get("message") or "") for e in payload.get("errors") or ())
    except (ValueError, s.ValidationError, AttributeError, TypeError):
        errors = ()
    status = response.status_code
    text = "; ".join(str(e) for e in errors) or (response.reason or "no details")
    cls = error_for_status(status, errors)
    message = f"{operation}: HTTP {status}: {text}"
    if cls is MarketWrongApiMode:
        message += _mode_advice(operation)
    return cls(message, status=status, errors=errors, rate_limit=rate, method=operation)


def _mode_advice(operation: str) -> str:
    """Which API mode the cabinet needs, when the Market refused a call for its warehouse groups
    (or for having none)."""
    if operation in V3_OPERATIONS:
        return (". The cabinet has warehouse groups, which the business-level (v3) methods do not serve: "
                "set its API mode to v2 (YM_API_MODE=v2, or mode: v2 for this cabinet in the cabinets file)")
    return (". The cabinet has no warehouse groups, so its FBS/DBS/Express stock goes through the "
            "business-level methods: set its API mode to v3 (YM_API_MODE=v3, or mode: v3 for this "
            "cabinet in the cabinets file)")
