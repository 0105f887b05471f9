"""The client's hard deadline, kept by the socket reads themselves (no thread per request): a reply
that trickles in a byte at a time, each byte well inside the read timeout but the whole slower
than connect + read timeout, fails as an unknown outcome within the deadline."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from typing import Iterator

import pytest

from ymsync.config.settings import Credentials, Secret
from ymsync.engine.call_policy import Kind, classify
from ymsync.market import MarketClient, MarketNetworkError, StockLevel

CONNECT_S, READ_S = 0.1, 0.2  # a deadline of 0.3 s; each byte below comes within 0.03 s
BYTE_EVERY_S = 0.03
MARGIN_S = 0.25

BODY = b'{"status": "OK"}'
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"X-RateLimit-Resource-Limit: 100000\r\n\r\n" % len(BODY))
# What each path answers: which part trickles (the rest is sent at once).
REPLIES = {
    "/fast": (HEAD + BODY, b""),
    "/slow-head": (b"", HEAD + BODY),
    "/slow-body": (HEAD, BODY * 4),  # more body than Content-Length: the client stops at its length
    "/slow-file": (HEAD.replace(b"application/json", b"text/csv"), b""),  # the body is trickled below
}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            rest += self.request.recv(65536)
        path = head.split(b" ")[1].split(b"?")[0].decode()
        if path.startswith("/v2/campaigns/"):
            path = "/slow-head"
        at_once, trickled = REPLIES[path]
        if path == "/slow-file":
            trickled = b"x" * (len(BODY))
        try:
            self.request.sendall(at_once)
            for i in range(len(trickled)):
                time.sleep(BYTE_EVERY_S)
                self.request.sendall(trickled[i:i + 1])
        except OSError:
            pass  # the client gave up: that is the point


@pytest.fixture(scope="module")
def trickler() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(trickler: str) -> Iterator[MarketClient]:
    with MarketClient(trickler, Credentials(api_key=Secret("t")), connect_timeout=CONNECT_S,
                      read_timeout=READ_S) as c:
        yield c


@pytest.mark.parametrize("path", ["/slow-head", "/slow-body"])
def test_a_trickled_reply_fails_within_the_deadline_as_an_unknown_outcome(client, path):
    started = time.monotonic()
    with pytest.raises(MarketNetworkError, match=r"^getReportInfo: no reply within 0\.3s$") as exc:
        client._call("getReportInfo", "GET", path)
    took = time.monotonic() - started
    assert client.deadline_s - 0.05 <= took < client.deadline_s + MARGIN_S, took
    assert exc.value.outcome_unknown and classify(exc.value) is Kind.UNKNOWN


def test_a_trickled_stock_update_is_of_unknown_outcome(client):
    started = time.monotonic()
    with pytest.raises(MarketNetworkError, match=r"^updateStocks: no reply within 0\.3s$") as exc:
        client.update_stocks(5, [StockLevel("a", 1)])
    assert time.monotonic() - started < client.deadline_s + MARGIN_S
    assert exc.value.sent and exc.value.outcome_unknown


def _client_side_threads() -> int:
    # The test server runs in this process too: its handler threads come and go with its requests
    # (one still sleeping in /slow-head after the client gave up), so they are not counted.
    return sum("process_request_thread" not in t.name for t in threading.enumerate())


def test_no_thread_per_request(client):
    before = _client_side_threads()
    assert client._call("getReportInfo", "GET", "/fast")[0] == {"status": "OK"}
    with pytest.raises(MarketNetworkError):
        client._call("getReportInfo", "GET", "/slow-head")
    # The old client left an "ymsync-http" thread per slot.
    assert _client_side_threads() <= before
    assert not [t for t in threading.enumerate() if t.name.startswith("ymsync-http")]


def test_the_connection_is_usable_after_a_deadline(client):
    with pytest.raises(MarketNetworkError):
        client._call("getReportInfo", "GET", "/slow-body")
    data, rate = client._call("getReportInfo", "GET", "/fast")
    assert data == {"status": "OK"} and rate.limit == 100_000


def test_a_report_download_has_no_call_deadline(client, tmp_path):
    """A file download may take minutes: only each read is bounded (here 16 bytes over ~0.5 s,
    past the 0.3 s call deadline, every byte within the read timeout)."""
    started = time.monotonic()
    got = client.download_report(client.base_url + "/slow-file", tmp_path / "r.csv")
    assert got.size == len(BODY) and (tmp_path / "r.csv").read_bytes() == b"x" * len(BODY)
    assert time.monotonic() - started > client.deadline_s


def test_connections_close_abortively(client):
    """A call given up on must not be sent later by the kernel (a request written into a link that
    went down is retransmitted once it is back): closes are RSTs, which drop unsent bytes. The
    network-namespace case in tests/chaos/test_partitions.py shows the stale writes without it."""
    client._call("getReportInfo", "GET", "/fast")
    pool = client.session.get_adapter(client.base_url).poolmanager.connection_from_url(client.base_url)
    conn = pool._new_conn()  # a connection as the client's pool makes them
    conn.connect()
    try:
        assert struct.unpack("ii", conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) == (1, 0)
    finally:
        conn.close()
