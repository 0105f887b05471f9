"""The Market sandbox's HTTP face: the four API methods, file downloads and an admin API.

Request checks run in the order the Market applies them: auth (401/403), the parallel cap
(420), validation with ymsync's own schemas (400), the quota (420), faults, then the effect.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import json
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from marshmallow import ValidationError

from ..market import schemas as s
from ..settings import SpecCheckSettings, load_spec_check
from . import business
from .business_state import scope_allows
from .failures import ApiFailure, bad_request, decode_token, encode_token, poison_failure
from .fastpath import fast_update_body
from .reports import ReportDesk
from .state import SandboxConfig, SandboxState, epoch_in, http_date

if TYPE_CHECKING:
    from .spec_check import SpecCheck

MAX_READ_BYTES = 8 * 1024 * 1024


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState, desk: ReportDesk) -> None:
        self.state, self.desk = state, desk
        self.spec_check: SpecCheck | None = None  # test mode: see MarketSandbox
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-reply (a SIGKILLed worker, a timed-out request) is routine
        # here; a traceback on stderr for each would bury the ones that matter.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    _scheduled: str | None = None  # this request's entry of faults.schedule (set per API call)
    protocol_version = "HTTP/1.1"
    server: SandboxServer
    server_version = "ymsync-market-sandbox"
    _token: str | None = None  # the caller's, once authenticated (access checks use its scope)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header is the Market's clock: clients learn its offset from it.
        return email.utils.formatdate(self.server.state.now() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # request logs would print tokens' owners' traffic to stderr; /_admin/state has counters

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # --- routing --------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, self.query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = self._read_body()
        if body is None:
            return
        if path.startswith("/_admin/"):
            return self._admin(method, path, body)
        if method == "GET" and (m := re.fullmatch(r"/_files/([^/]+)/([^/]+)", path)):
            return self._file(m.group(1), m.group(2))
        if self.server.spec_check is not None and not self._conforms(method, path, parts.query, body):
            return
        routes: list[tuple[str, str, Callable[..., Any], str]] = [
            ("PUT", r"/v2/campaigns/([^/]+)/offers/stocks", self._update_stocks, "updateStocks"),
            ("POST", r"/v2/campaigns/([^/]+)/offers/stocks", self._get_stocks, "getStocks"),
            ("POST", r"/v2/reports/stocks-on-warehouses/generate", self._generate, "generateStocksOnWarehousesReport"),
            ("GET", r"/v2/reports/info/([^/]+)", self._info, "getReportInfo"),
        ] + [(verb, pattern, functools.partial(_V3_HANDLERS[op], self), op)
             for op, (verb, pattern) in business.OPERATIONS.items()]
        for verb, pattern, handler, operation in routes:
            match = re.fullmatch(pattern, path)
            if match and verb == method:
                return self._api(operation, handler, body, *[unquote(g) for g in match.groups()])
        self._send_json(404, {"status": "ERROR", "errors": [{"code": "NOT_FOUND", "message": f"no such method: {method} {path}"}]})

    def _conforms(self, method: str, path: str, raw_query: str, body: bytes) -> bool:
        """Test mode: a request the official description refuses is recorded and answered 400,
        before any of the sandbox's own checks (the real Market would refuse it too)."""
        assert self.server.spec_check is not None
        violation = self.server.spec_check.check(method, path, raw_query, self.headers, body)
        if violation is None:
            return True
        self.server.state.record(violation.operation or "-", "-", 400)
        self._send_json(400, {"status": "ERROR", "errors": [{"code": "BAD_REQUEST", "message": violation.reply()}]})
        return False

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_READ_BYTES:
            self.close_connection = True
            self._send_json(413, {"status": "ERROR", "errors": [{"code": "BAD_REQUEST", "message": "The request is too big"}]})
            return None
        return self.rfile.read(length) if length else b""

    def _api(self, operation: str, handler: Callable[..., Any], body: bytes, *args: str) -> None:
        state = self.server.state
        key, gate = "-", None
        arrived = time.time()
        self._scheduled = None
        try:
            token = self._authenticate()
            key, gate = self._limit_key(operation, token, args)
            if not state.enter(gate):
                kind = "campaignId" if gate.startswith("campaign:") else "businessId" if gate.startswith("business:") else "token"
                raise ApiFailure(420, "LIMIT_EXCEEDED", f"Hit rate limit of {state.config.max_parallel} parallel requests "
                                 f"for {kind} {gate.split(':', 1)[1]}")
            try:
                faults = state.config.faults
                self._scheduled = state.next_scheduled_fault(operation)
                delay = faults.latency(state.rng, operation, self._scheduled)
                if delay:
                    time.sleep(delay)
                status, payload, cost, lost = handler(operation, key, body, *args)
            finally:
                state.leave(gate)
        except ApiFailure as failure:
            state.record(operation, key, failure.status, until=failure.until, arrived=arrived)
            headers = {**state.quota_headers(operation, key), **failure.headers} if gate else failure.headers
            return self._send_json(failure.status, {"status": "ERROR", "errors": failure.errors}, headers)
        state.record(operation, key, 0 if lost else status, cost, arrived=arrived)
        if lost:
            self.close_connection = True  # applied, but the client never hears back
            return
        self._send_json(status, payload, state.quota_headers(operation, key))

    def _authenticate(self) -> str:
        token = self.headers.get("Api-Key")
        auth = self.headers.get("Authorization", "")
        if token is None and auth.startswith("Bearer "):
            token = auth[len("Bearer "):]
        if not token:
            raise ApiFailure(401, "UNAUTHORIZED", "The authorization data is not specified in the request")
        if token in self.server.state.revoked:
            raise ApiFailure(401, "UNAUTHORIZED", "The token has expired or was revoked")
        if token not in self.server.state.tokens:
            raise ApiFailure(403, "FORBIDDEN", "The authorization data is incorrect")
        return token

    def _limit_key(self, operation: str, token: str, args: tuple[str, ...]) -> tuple[str, str]:
        """(quota key, parallel gate): per campaign on campaign URLs, per token's cabinet otherwise."""
        self._token = token
        if operation in ("updateStocks", "getStocks"):
            campaign_id = self._campaign_id(args[0])
            return str(campaign_id), f"campaign:{campaign_id}"
        if operation in business.OPERATIONS:
            business_id = self._business_id(args[0])
            return str(business_id), f"business:{business_id}"
        digest = hashlib.sha256(token.encode()).hexdigest()[:10]  # no piece of the token itself
        return f"token:{digest}", f"token:{digest}"

    def _campaign_id(self, raw: str) -> int:
        if not raw.isdigit() or int(raw) < 1:
            raise ApiFailure(400, "BAD_REQUEST", f"campaignId must be an integer >= 1, got {raw!r}")
        campaign_id = int(raw)
        state = self.server.state
        if state.campaign(campaign_id) is None or not scope_allows(
                state.token_scopes.get(self._token), campaign_id=campaign_id, campaign_business=self._business_of):
            raise ApiFailure(403, "FORBIDDEN", f"Access denied to campaignId {campaign_id}")
        return campaign_id

    def _business_id(self, raw: str) -> int:
        if not raw.isdigit() or int(raw) < 1:
            raise ApiFailure(400, "BAD_REQUEST", f"businessId must be an integer >= 1, got {raw!r}")
        business_id, state = int(raw), self.server.state
        if state.business.get(business_id) is None or not scope_allows(
                state.token_scopes.get(self._token), business_id=business_id, campaign_business=self._business_of):
            raise ApiFailure(403, "FORBIDDEN", f"Access denied to businessId {business_id}")
        return business_id

    def _business_of(self, campaign_id: int) -> int | None:
        campaign = self.server.state.campaigns.get(campaign_id)
        return campaign.business_id if campaign is not None else None

    def _charge(self, operation: str, key: str, cost: int) -> None:
        state = self.server.state
        wait = state.admit(operation, key, cost)
        if wait > 0:
            quota = state.config.quotas.get(operation)
            amount, period = (quota.amount, f"{quota.seconds:g}s") if quota else ("?", "?")
            until = epoch_in(wait, state.config.clock_offset_s)
            failure = ApiFailure(420, "LIMIT_EXCEEDED", f"Hit rate limit of '{amount}' requests per '{period}' for "
                                 f"resource '{operation}' (key {key})", {"X-RateLimit-Resource-Until": http_date(until)})
            failure.until = until
            raise failure

    def _faults(self) -> None:
        faults, rng = self.server.state.config.faults, self.server.state.rng
        if self._scheduled is not None:  # the schedule decides alone, no chance involved
            if self._scheduled == "500":
                raise ApiFailure(500, "INTERNAL_ERROR", "Internal error (injected)")
            if self._scheduled == "423":
                raise ApiFailure(423, "LOCKED", "Cabinet is being migrated, retry later (injected)")
            return
        if faults.error_rate and rng.random() < faults.error_rate:
            raise ApiFailure(500, "INTERNAL_ERROR", "Internal error (injected)")
        if faults.locked_rate and rng.random() < faults.locked_rate:
            raise ApiFailure(423, "LOCKED", "Cabinet is being migrated, retry later (injected)")

    def _lost(self) -> bool:
        faults = self.server.state.config.faults
        if self._scheduled is not None:
            return self._scheduled == "lost"
        return bool(faults.lost_reply_rate) and self.server.state.rng.random() < faults.lost_reply_rate

    def _json(self, body: bytes, required: bool) -> Any:
        if not body:
            if required:
                raise ApiFailure(400, "BAD_REQUEST", "Request body is required")
            return {}
        try:
            return json.loads(body)
        except ValueError:
            raise ApiFailure(400, "BAD_REQUEST", "Request body is not valid JSON") from None

    # --- the four methods -----------------------------------------------------------------

    def _update_stocks(self, operation: str, key: str, body: bytes, raw_id: str) -> tuple[int, Any, int, bool]:
        state = self.server.state
        # Noted before any check: a request the Market would refuse still shows a client broke a cap.
        state.note_update_request(len(body), 0)
        payload = self._json(body, required=True)
        entries = payload.get("skus") if isinstance(payload, dict) else None
        state.note_update_request(len(body), len(entries) if isinstance(entries, list) else 0)
        if len(body) > s.MAX_BODY_BYTES:
            raise ApiFailure(400, "BAD_REQUEST", f"The request is too big ({len(body)} bytes)")
        campaign = state.campaign(int(key))
        cabinet = state.business.configured(campaign.business_id) if campaign is not None else None
        if cabinet is not None and not cabinet.groups and campaign.model != "FBY":
            raise business.no_groups_refusal(campaign.id, cabinet.id)
        market_now = datetime.fromtimestamp(state.now(), timezone.utc)
        data = fast_update_body(payload, market_now)
        if data is None:  # anything unusual: the schema decides, and words the 400 exactly
            try:
                data = s.UpdateStocksRequestSchema(now=lambda: market_now).load(payload)
            except ValidationError as exc:
                raise bad_request(exc.messages) from None
        poisoned = state.poisoned_in(int(key), [entry["sku"] for entry in data["skus"]])
        if poisoned:
            raise poison_failure(poisoned)
        self._charge(operation, key, len(data["skus"]))
        self._faults()
        self.server.state.apply_stocks(int(key), data["skus"])
        return 200, {"status": "OK"}, len(data["skus"]), self._lost()

    def _get_stocks(self, operation: str, key: str, body: bytes, raw_id: str) -> tuple[int, Any, int, bool]:
        state, campaign_id = self.server.state, int(key)
        payload = self._json(body, required=False)
        query: dict[str, Any] = {}
        token = self.query.get("page_token") or self.query.get("pageToken")
        if token is not None:
            query["page_token"] = token
        if "limit" in self.query:
            if not self.query["limit"].lstrip("-").isdigit():
                raise ApiFailure(400, "BAD_REQUEST", f"limit must be an integer, got {self.query['limit']!r}")
            query["limit"] = int(self.query["limit"])
        if not isinstance(payload, dict):
            raise ApiFailure(400, "BAD_REQUEST", "Request body must be a JSON object")
        try:
            data = s.GetStocksQuerySchema().load({**payload, **query})
        except ValidationError as exc:
            raise bad_request(exc.messages) from None
        campaign = state.campaign(campaign_id)
        store = state.stocks.get(campaign_id, {})
        archived = state.archived.get(campaign_id, set())
        next_token = None
        if data.get("offerIds"):
            skus = [sku for sku in data["offerIds"] if sku in store]
        else:
            after = decode_token(data.get("page_token"))
            size = min(data.get("limit", 100), state.config.page_cap)
            skus, last = state.page_after(campaign_id, after, size)
            skus = [sku for sku in skus if (sku in archived) == bool(data.get("archived"))]
            next_token = encode_token(last) if last is not None else None
        wid = data.get("stocksWarehouseId")
        if wid is not None and campaign is not None and wid != campaign.warehouse_id:
            skus = []
        offers = []
        for sku in skus:
            record = store.get(sku)
            if record is None or (data.get("hasStocks") is not None and (record.count > 0) != data["hasStocks"]):
                continue
            offer: dict[str, Any] = {"offerId": sku, "updatedAt": record.updated_at.isoformat(),
                                     "stocks": [{"type": "AVAILABLE", "count": record.count},
                                                {"type": "FIT", "count": record.count}]}
            if data.get("withTurnover") and campaign is not None and campaign.model == "FBY":
                offer["turnoverSummary"] = {"turnover": "HIGH", "turnoverDays": 60.0}
            offers.append(offer)
        self._charge(operation, key, len(offers))
        self._faults()
        result: dict[str, Any] = {"warehouses": [{"warehouseId": campaign.warehouse_id if campaign else 0, "offers": offers}]}
        if next_token:
            result["paging"] = {"nextPageToken": next_token}
        return 200, {"status": "OK", "result": result}, len(offers), self._lost()

    def _generate(self, operation: str, key: str, body: bytes) -> tuple[int, Any, int, bool]:
        state, desk = self.server.state, self.server.desk
        payload = self._json(body, required=True)
        try:
            fmt = s.check_report_format(self.query.get("format", "FILE"))
            data = s.GenerateStocksReportSchema().load(payload)
        except ValidationError as exc:
            raise bad_request(exc.messages) from None
        if data.get("campaignId") is not None:
            self._campaign_id(str(data["campaignId"]))
        for cid in data.get("campaignIds") or []:
            self._campaign_id(str(cid))
        if data.get("businessId") is not None and not scope_allows(
                state.token_scopes.get(self._token), business_id=data["businessId"], campaign_business=self._business_of):
            raise ApiFailure(403, "FORBIDDEN", f"Access denied to businessId {data['businessId']}")
        if desk.active(time.monotonic()) >= state.config.max_active_reports:
            raise ApiFailure(420, "LIMIT_EXCEEDED", "Active reports limit exceeded")
        self._charge(operation, key, 1)
        self._faults()
        job = desk.generate(data, fmt)
        estimate = job.quirk.estimate_ms if job.quirk and job.quirk.estimate_ms is not None else int(job.delay_s * 1000)
        result = {"reportId": job.report_id, "estimatedGenerationTime": estimate}
        return 200, {"status": "OK", "result": result}, 1, self._lost()

    def _info(self, operation: str, key: str, body: bytes, report_id: str) -> tuple[int, Any, int, bool]:
        self._charge(operation, key, 1)
        self._faults()
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        result = self.server.desk.info(report_id, f"http://{host}")
        if result is None:
            raise ApiFailure(404, "NOT_FOUND", f"Report {report_id} not found")
        return 200, {"status": "OK", "result": result}, 1, self._lost()

    def _file(self, report_id: str, token: str) -> None:
        job = self.server.desk.file(report_id, token)
        if job is None or job.path is None:
            return self._send_bytes(403, b"Request has expired", "text/plain")
        kind = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if job.fmt == "FILE" else "application/zip"
        self._send_bytes(200, job.path.read_bytes(), kind)

    # --- admin ----------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> None:
        from .admin import handle_admin  # the admin surface is separate so the API stays readable

        try:
            status, payload = handle_admin(self.server, method, path, self.query, body)
        except (ValueError, KeyError, TypeError) as exc:
            status, payload = 400, {"error": str(exc)}
        self._send_json(status, payload)

    # --- output ---------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json; charset=utf-8", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        reason = "Method Failure" if status == 420 else HTTPStatus(status).phrase
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


_V3_HANDLERS = {"updateStocksOnPartnerWarehouses": business.update_stocks,
                "getStocksOnPartnerWarehouses": business.get_stocks,
                "getPartnerWarehouses": business.get_warehouses,
                "generateStocksReport": business.generate_report}


class MarketSandbox:
    """A running sandbox: ``with MarketSandbox() as market: ... market.url ...``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: SandboxConfig | None = None,
                 spec_check: SpecCheckSettings | bool | None = None) -> None:
        """``spec_check``: test mode, each API request checked against the official description
        (needs the test dependencies). None follows ``YM_SANDBOX_SPEC_CHECK`` (unset: off);
        False turns it off (tests that send malformed requests on purpose)."""
        self.state = SandboxState(config or SandboxConfig())
        self.desk = ReportDesk(self.state)
        self.server = SandboxServer((host, port), self.state, self.desk)
        self._thread: threading.Thread | None = None
        if spec_check is None or spec_check is True:
            found = load_spec_check()
            if spec_check is True and found is None:
                raise ValueError("spec_check=True needs YM_SANDBOX_SPEC_CHECK (or pass SpecCheckSettings)")
            spec_check = found
        if isinstance(spec_check, SpecCheckSettings):
            try:
                from .spec_check import SpecCheck  # openapi-core: a test dependency, loaded only in this mode
            except ImportError as exc:
                self.server.server_close()
                raise RuntimeError(f"the sandbox's spec check needs the test extra (pip install "
                                   f"'ymsync[test]'): {exc}") from None
            self.server.spec_check = SpecCheck(spec_check.spec, spec_check.violations_log)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def config(self) -> SandboxConfig:
        return self.state.config

    def start(self) -> "MarketSandbox":
        self._thread = threading.Thread(target=self.server.serve_forever, name="market-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()
        self.desk.close()

    def __enter__(self) -> "MarketSandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
