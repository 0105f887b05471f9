"""Micro-benchmark: the client's CPU per request for the hard deadline, the old thread hop against
the socket deadline, in the same run: ``.venv/bin/python -m bench.deadline [REQUESTS]``.

A local keep-alive HTTP server in its own process answers every request at once (so only the
client's work is measured, by ``time.process_time``, which counts every thread of this process).
Three clients send the same requests over one pooled connection each:

- ``plain``: requests with no deadline at all (the floor);
- ``thread``: the client before issue 18 item 3: each call submitted to a ThreadPoolExecutor and
  awaited with ``future.result(timeout=connect + read)``;
- ``socket``: ymsync.market.deadline (DeadlineAdapter, each send and read given the time left).

The request carries a 100-SKU body (what it carries costs the same in all three); two replies: an
updateStocks reply (small) and a 64 KiB one (a page of a stock read: more reads per call, each
setting the socket's timeout). Short rounds are interleaved and the best is kept, so a busy
machine's noise falls on all three alike.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import requests
from requests.adapters import HTTPAdapter

from ymsync.market.deadline import DeadlineAdapter, deadline

TIMEOUT = (5.0, 60.0)
DEADLINE_S = sum(TIMEOUT)
BODY = b'{"skus": [' + b",".join(b'{"sku": "SKU-%08d", "items": [{"count": 7}]}' % i for i in range(100)) + b"]}"
REPLIES = {"/small": b'{"status": "OK"}', "/page": b'{"status": "OK", "x": "' + b"y" * 65536 + b'"}'}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every reply waits out the client's delayed ACK

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = REPLIES[self.path]
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"X-RateLimit-Resource-Limit: 100000\r\n\r\n%s" % (len(reply), reply))

    def log_message(self, *args: object) -> None:
        pass


def _serve(port_out: "multiprocessing.queues.Queue[int]") -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def _session(adapter: HTTPAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    return session


def clients(url: str) -> dict[str, Callable[[str], requests.Response]]:
    plain = _session(HTTPAdapter(pool_connections=2, pool_maxsize=8, max_retries=0))
    threaded = _session(HTTPAdapter(pool_connections=2, pool_maxsize=8, max_retries=0))
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ymsync-http")
    socketed = _session(DeadlineAdapter(pool_connections=2, pool_maxsize=8, max_retries=0))

    def send(session: requests.Session, path: str) -> requests.Response:
        return session.request("PUT", url + path, data=BODY, timeout=TIMEOUT, allow_redirects=False,
                               headers={"Content-Type": "application/json; charset=utf-8"})

    def old(path: str) -> requests.Response:
        return pool.submit(send, threaded, path).result(timeout=DEADLINE_S)

    def new(path: str) -> requests.Response:
        with deadline(DEADLINE_S):
            return send(socketed, path)

    return {"plain": lambda path: send(plain, path), "thread": old, "socket": new}


def measure(requests_per_round: int = 300, rounds: int = 15) -> dict[str, float]:
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=10)}"
        variants = clients(url)
        best: dict[str, float] = {}
        for path in REPLIES:
            for name, call in variants.items():
                assert call(path).content == REPLIES[path]  # warm: connection open, pool thread started
            for _ in range(rounds):
                for name, call in variants.items():
                    started = time.process_time()
                    for _ in range(requests_per_round):
                        call(path).content
                    took = (time.process_time() - started) / requests_per_round * 1e6
                    key = f"{path.strip('/')}_{name}_us_per_request"
                    best[key] = min(best.get(key, took), took)
        for path in REPLIES:
            kind = path.strip("/")
            best[f"{kind}_saved_us_per_request"] = (best[f"{kind}_thread_us_per_request"]
                                                    - best[f"{kind}_socket_us_per_request"])
        return best
    finally:
        server.terminate()
        server.join(5)


def main() -> None:
    figures = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
    for name, value in figures.items():
        print(f"{name:36} {value:8.1f}")


if __name__ == "__main__":
    main()
