"""Real processes for integration tests: Celery workers and the sandbox CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll ``predicate`` until truthy; fail naming ``what`` (conditions, never bare sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class CeleryWorker:
    """``celery -A tasks worker`` as a child process with its own environment."""

    def __init__(self, env: Mapping[str, str], queues: str = "stocks", concurrency: int = 2,
                 name: str = "w1", pool: str = "prefork", log_path: Path | None = None) -> None:
        self.env = {**os.environ, **env}
        self.name = name
        self.args = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queues,
                     "-c", str(concurrency), "-P", pool, "-n", f"{name}@%h", "--without-gossip",
                     "--without-mingle", "-E", "--loglevel", "INFO"]
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "CeleryWorker":
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def wait_ready(self, broker_url: str, timeout: float = 60) -> None:
        """Until this worker answers a ping (consumers up, its schedulers started)."""
        from celery import Celery

        probe = Celery(broker=broker_url)
        try:
            wait_for(lambda: any(name.startswith(f"{self.name}@") for reply in probe.control.ping(timeout=0.5)
                                 for name in reply) or self.process.poll() is not None,
                     timeout, f"worker {self.name} to answer ping")
            assert self.process.poll() is None, f"worker {self.name} exited with {self.process.returncode}"
        finally:
            probe.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group (main process and pool children)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(30)

    def stop(self) -> None:
        """A graceful (SIGTERM) shutdown, for a test that needs one: the worker finishes its tasks and
        releases its scheduler locks. Teardown that tests nothing about shutdown uses :meth:`kill`."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
