"""The Market sandbox's HTTP face: routing, auth, access and parallel caps, file downloads and
an admin API. The methods themselves live in campaign.py (v2) and business.py (v3), behind
:class:`~ymsync.sandbox.call.ApiCall`.

Request checks run in the order the Market applies them: auth (401/403), the parallel cap
(420), validation with ymsync's own schemas (400), the quota (420), faults, then the effect.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ymsync.config.settings import SpecCheckSettings, load_spec_check
from ymsync.sandbox import business, campaign, groups
from ymsync.sandbox.call import ApiCall, MethodHandler
from ymsync.sandbox.failures import ApiFailure
from ymsync.sandbox.reports import ReportDesk
from ymsync.sandbox.state import SandboxConfig, SandboxState

if TYPE_CHECKING:
    from ymsync.sandbox.spec_check import SpecCheck

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
    protocol_version = "HTTP/1.1"
    # Read a request (headers and a 2,000-SKU body) in as few socket calls as the client's sends
    # allow: each lets another thread take the GIL (see _send_bytes).
    rbufsize = 1 << 18
    server: SandboxServer
    server_version = "ymsync-market-sandbox"

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
        for operation, (verb, pattern), handler in _ROUTES:
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

    def _api(self, operation: str, handler: MethodHandler, body: bytes, *args: str) -> None:
        state = self.server.state
        key, gate = "-", None
        arrived, peer = time.time(), str(self.client_address[0])
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        call = ApiCall(state, self.server.desk, self.query, host)
        try:
            call.token = self._authenticate()
            key, gate = self._limit_key(operation, call, args)
            if not state.enter(gate, peer):
                kind = "campaignId" if gate.startswith("campaign:") else "businessId" if gate.startswith("business:") else "token"
                raise ApiFailure(420, "LIMIT_EXCEEDED", f"Hit rate limit of {state.config.max_parallel} parallel requests "
                                 f"for {kind} {gate.split(':', 1)[1]}")
            try:
                faults = state.config.faults
                call.scheduled = state.next_scheduled_fault(operation)
                delay = faults.latency(state.rng, operation, call.scheduled)
                if delay:
                    time.sleep(delay)
                status, payload, cost, lost = handler(call, operation, key, body, *args)
            finally:
                state.leave(gate, peer)
        except ApiFailure as failure:
            state.record(operation, key, failure.status, until=failure.until, arrived=arrived, peer=peer)
            headers = {**state.quota_headers(operation, key), **failure.headers} if gate else failure.headers
            return self._send_json(failure.status, {"status": "ERROR", "errors": failure.errors}, headers)
        state.record(operation, key, 0 if lost else status, cost, arrived=arrived, peer=peer)
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

    def _limit_key(self, operation: str, call: ApiCall, args: tuple[str, ...]) -> tuple[str, str]:
        """(quota key, parallel gate): per campaign on campaign URLs, per token's cabinet otherwise."""
        token = call.token or ""
        if operation in campaign.CAMPAIGN_PATHS:
            campaign_id = call.campaign_id(args[0])
            return str(campaign_id), f"campaign:{campaign_id}"
        if operation in business.OPERATIONS or operation in groups.OPERATIONS:
            business_id = call.business_id(args[0])
            return str(business_id), f"business:{business_id}"
        digest = hashlib.sha256(token.encode()).hexdigest()[:10]  # no piece of the token itself
        return f"token:{digest}", f"token:{digest}"

    def _file(self, report_id: str, token: str) -> None:
        job = self.server.desk.file(report_id, token)
        if job is None or job.path is None:
            return self._send_bytes(403, b"Request has expired", "text/plain")
        kind = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if job.fmt == "FILE" else "application/zip"
        self._send_bytes(200, job.path.read_bytes(), kind)

    # --- admin ----------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> None:
        from ymsync.sandbox.admin import handle_admin  # the admin surface is separate so the API stays readable

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
        # Headers and body in one write (end_headers, then the body appended to the headers' buffer
        # before the one flush): each socket call lets another request's thread take the GIL, and
        # getting it back waited up to the 5 ms switch interval behind a request being parsed.
        pending = getattr(self, "_headers_buffer", None)
        if pending is None:  # an HTTP/0.9 request: no headers go out, only the body
            self.wfile.write(data)
            return
        pending.append(b"\r\n")
        pending.append(data)
        self.flush_headers()


# (operation, (verb, path pattern), handler) for every API method, v2 and v3.
_ROUTES: list[tuple[str, tuple[str, str], MethodHandler]] = [
    (op, route, kind.HANDLERS[op]) for kind in (campaign, business, groups) for op, route in kind.OPERATIONS.items()]


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
                from ymsync.sandbox.spec_check import SpecCheck  # openapi-core: a test dependency, loaded only in this mode
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
