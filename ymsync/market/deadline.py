"""A hard deadline for a whole HTTP call without a thread per request.

requests' (and urllib3's) timeouts bound each socket operation, so a reply that trickles in a
byte at a time, each byte inside the read timeout, can outlast them by any amount; urllib3's
``Timeout(total=…)`` only shortens the first read. Here the connections of a
:class:`DeadlineAdapter` look up the deadline of the call under way (set with :func:`deadline`,
a context variable, so threads and tasks each see their own) and give every socket operation
only the time left: each send, and each read of the status line, the headers and the body. A
read that would start past the deadline raises ``TimeoutError`` at once, which urllib3 and
requests report as a read timeout; the caller tells a deadline from a slow read with one
monotonic check (:func:`passed`).

Every connection is also closed with an RST (``SO_LINGER`` 0): when a call is given up, the
kernel must not keep sending its request. A plain close leaves unsent bytes (a request written
into a link that has just gone down) in the kernel, which retransmits them once the link is back,
possibly long after ``YM_UNKNOWN_OUTCOME_S``: the Market would then apply values older than ones
delivered since (measured: ``tests/chaos/test_partitions.py``). An abortive close drops them.

Outside a :func:`deadline` block (report downloads, which may take minutes) the connections
behave exactly like urllib3's: the per-operation timeouts only.
"""

from __future__ import annotations

import io
import socket
import struct
import time
from contextlib import contextmanager
from contextvars import ContextVar
from http.client import HTTPResponse
from typing import Any, Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# The monotonic time by which the call under way must end; None: no deadline.
_DEADLINE: ContextVar[float | None] = ContextVar("ymsync_http_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Every request sent inside the block ends within ``seconds`` from now (or fails with a
    timeout); yields the deadline on the monotonic clock."""
    at = time.monotonic() + seconds
    token = _DEADLINE.set(at)
    try:
        yield at
    finally:
        _DEADLINE.reset(token)


def passed(at: float) -> bool:
    return time.monotonic() >= at


def _time_left(at: float, cap: float | None) -> float:
    left = at - time.monotonic()
    if left <= 0:
        raise TimeoutError("the call's deadline passed")
    return left if cap is None else min(cap, left)


class _DeadlineReader(io.RawIOBase):
    """The socket's reader, each read given the time left before the deadline (at most the
    per-read timeout the socket had when the reply began)."""

    def __init__(self, sock: Any, at: float) -> None:
        super().__init__()
        self._sock = sock
        self._at = at
        self._cap = sock.gettimeout()
        # The standard library's reader counts as a reference to the socket: a connection that
        # closes after the headers (Connection: close) keeps it open until the body is read.
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(_time_left(self._at, self._cap))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocketView:
    """What :class:`http.client.HTTPResponse` asks of a socket (``makefile``), with the reads
    bounded by the deadline."""

    def __init__(self, sock: Any, at: float) -> None:
        self._sock, self._at = sock, at

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._at))


class _DeadlineResponse(HTTPResponse):
    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        at = _DEADLINE.get()
        super().__init__(sock if at is None else _DeadlineSocketView(sock, at), *args, **kwargs)


# Close with an RST: whatever the kernel still holds for the Market is dropped, never sent late.
ABORTIVE_CLOSE = (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _DeadlineSending:
    """Mixed into urllib3's connections: sends get the time left too, replies are read through
    :class:`_DeadlineResponse`, and a close is abortive (see the module's docstring)."""

    response_class = _DeadlineResponse
    sock: Any
    timeout: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Passed, not a class attribute: urllib3 binds its default socket options at import.
        options = kwargs.get("socket_options") or HTTPConnection.default_socket_options
        kwargs["socket_options"] = [*options, ABORTIVE_CLOSE]
        super().__init__(*args, **kwargs)

    def send(self, data: Any) -> None:
        at = _DEADLINE.get()
        if at is not None and self.sock is not None:
            cap = self.timeout if isinstance(self.timeout, (int, float)) else None
            self.sock.settimeout(_time_left(at, cap))
        super().send(data)  # type: ignore[misc]


class DeadlineHTTPConnection(_DeadlineSending, HTTPConnection):
    pass


class DeadlineHTTPSConnection(_DeadlineSending, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = DeadlineHTTPSConnection


_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections keep the deadline of :func:`deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools bring their own connections
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


__all__ = ["DeadlineAdapter", "deadline", "passed"]
