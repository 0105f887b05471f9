"""The bench rig: a private redis-server, the Market sandbox in its own process, real workers.

Reuses the test suite's process helpers (``tests/support``): the same private redis-server
on a free loopback port and the same ``celery worker`` child processes the integration tests
run. The sandbox runs as ``ymsync sandbox`` in its own process so that its HTTP work does not
share a GIL with the bench driver; its admin API switches quotas and resets it between runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests

from tests.support.processes import ROOT, CeleryWorker, wait_for
from tests.support.redis_server import RedisServer, free_port
from ymsync.embedded import stop_process

TOKEN = "sandbox-token"
LOGS = ROOT / "bench" / ".logs"


class Sandbox:
    """``ymsync sandbox`` as a child process; ``admin()`` talks to its admin API."""

    def __init__(self, report_delay_s: float = 3.0, max_parallel: int = 4) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "ymsync.cli", "sandbox", "--port", str(self.port),
                     "--report-delay", str(report_delay_s), "--max-parallel", str(max_parallel)]
        self.process: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()

    def start(self) -> "Sandbox":
        LOGS.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.args, cwd=ROOT, stdout=open(LOGS / "sandbox.log", "ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._up, 20, "the sandbox to listen")
        return self

    def _up(self) -> bool:
        try:
            return self.http.get(self.url + "/_admin/state", timeout=1).ok
        except requests.RequestException:
            return False

    def admin(self, route: str, payload: Any = None, **params: Any) -> Any:
        url = f"{self.url}/_admin/{route}"
        r = (self.http.post(url, json=payload, timeout=30) if payload is not None
             else self.http.get(url, params=params, timeout=30))
        r.raise_for_status()
        return r.json()

    def reset(self, update_stocks: str = "0", **config: Any) -> None:
        """Forget everything; set the updateStocks quota (``AMOUNT/SECONDS`` or ``0``)."""
        self.admin("reset", {})
        self.admin("quotas", {"updateStocks": update_stocks, "getStocks": "0"})
        if config:
            self.admin("config", config)

    def state(self) -> dict[str, Any]:
        return self.admin("state")

    def units(self, campaign: int) -> int:
        return self.state()["campaigns"].get(str(campaign), {}).get("sku_units", 0)

    def log(self, since: float = 0.0, op: str = "updateStocks") -> list[dict[str, Any]]:
        return [e for e in self.admin("log", since=since) if e["op"] == op]

    def requests_by_status(self, op: str = "updateStocks") -> dict[int, int]:
        return {int(k.split()[1]): v for k, v in self.state()["requests"].items() if k.split()[0] == op}

    def stop(self) -> None:
        stop_process(self.process)


class _Worker(CeleryWorker):
    """A ``celery worker`` started in ``cwd``: ``-m celery`` puts its working directory first on
    ``sys.path``, so ``tasks``, ``celeryconfig`` and ``ymsync`` come from that checkout."""

    def __init__(self, env: dict[str, str], cwd: Path, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self.cwd = cwd

    def start(self) -> "_Worker":
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self


class Workers:
    """``count`` worker instances of app ``app`` (``tasks`` or ``bench.baseline``), each ``-c concurrency``;
    ``cwd``: the checkout whose code they run (this one unless another git ref's worktree is given)."""

    def __init__(self, app: str, env: dict[str, str], count: int = 1, concurrency: int = 1,
                 queues: str = "stocks", name: str = "w", cwd: Path = ROOT) -> None:
        self.workers: list[CeleryWorker] = []
        LOGS.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            w = _Worker(env, cwd, queues=queues, concurrency=concurrency, name=f"{name}{i}",
                        log_path=LOGS / f"{name}{i}.log")
            w.args[w.args.index("-A") + 1] = app
            w.args[w.args.index("--loglevel") + 1] = "WARNING"  # per-task INFO lines would cost the workers CPU
            self.workers.append(w)

    def start(self) -> "Workers":
        """Start every worker once (``with workers.start():`` does not start a second set)."""
        for w in self.workers:
            if w.process is None:
                w.start()
        return self

    def pids(self) -> list[int]:
        """Every process of every worker: main processes and their pool children."""
        out = []
        for w in self.workers:
            if w.process is None:
                continue
            out.append(w.process.pid)
            out.extend(_children(w.process.pid))
        return out

    def rss_mb(self) -> dict[str, float]:
        """Largest current and peak (VmHWM) RSS of one worker process, and the total, in MB."""
        cur, hwm = [], []
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            cur.append(int(fields["VmRSS"].split()[0]) / 1024)
            hwm.append(int(fields["VmHWM"].split()[0]) / 1024)
        return {"max_process_mb": max(cur, default=0.0), "max_process_peak_mb": max(hwm, default=0.0),
                "total_mb": sum(cur), "processes": len(cur)}

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def __enter__(self) -> "Workers":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (forked from any of its threads)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


class Rig:
    """One redis-server and one sandbox for the whole run; flushed and reset between measurements."""

    def __init__(self) -> None:
        self.redis_server = RedisServer()
        self.sandbox = Sandbox()
        self.redis: redis.Redis | None = None

    def start(self) -> "Rig":
        self.redis_server.start()
        self.sandbox.start()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        return self

    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    def env(self, **extra: str) -> dict[str, str]:
        return {"REDIS_URL": self.redis_url, "YM_API_URL": self.sandbox.url, "YM_API_KEY": TOKEN,
                "YM_REPORTS_DIR": str(LOGS / "reports"), **extra}

    def apply_env(self, **extra: str) -> None:
        """Point this process's ymsync settings at the rig (the producer side runs in-process)."""
        os.environ.update(self.env(**extra))
        from ymsync.config.settings import get_settings

        get_settings.cache_clear()

    def clean(self, update_stocks: str = "0", **config: Any) -> None:
        assert self.redis is not None
        self.redis.flushall()
        self.sandbox.reset(update_stocks, **config)

    def stop(self) -> None:
        self.sandbox.stop()
        self.redis_server.stop()


def wait_units(sandbox: Sandbox, campaign: int, target: int, timeout: float, interval: float = 0.05) -> float:
    """Wait until the sandbox has applied ``target`` SKU units for ``campaign``; the time it saw that."""
    wait_for(lambda: sandbox.units(campaign) >= target, timeout,
             f"{target} SKU units applied for campaign {campaign}", interval=interval)
    return time.time()


__all__ = ["LOGS", "Rig", "Sandbox", "TOKEN", "Workers", "wait_for", "wait_units"]
