"""A local stack: a private Redis, the Market sandbox, two Celery workers and Flower.

``ymsync demo`` and ``ymsync dev`` both run it; a :class:`StackProfile` says what differs
(the demo scales the quotas down so a one-minute day shows them at work; ``dev`` keeps the
Market's own). The sandbox plays two cabinets (:mod:`.world`): a v2 one with warehouse groups and
a v3 one with two warehouses; the workers get them from a cabinets file written into the work folder.

Every child runs in its own process group (``start_new_session``), so the demo decides the
order things stop in (workers before the Redis they talk to) and kills each whole group,
prefork pool children included: a Ctrl-C leaves no orphan behind. On Linux each child also
asks the kernel for SIGTERM should the demo itself die without cleaning up.

Celery runs only as subprocesses (``python -m celery -A ymsync_celery.tasks ...``, the installed
name of the repository's ``tasks/``, so a shop's own ``tasks`` module is never picked up): this
module, like the rest of the library, never imports it.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator, Mapping

import requests

from ymsync.embedded import EmbeddedRedis, free_port
from ymsync.sandbox import DEFAULT_QUOTAS, MarketSandbox, SandboxConfig
from ymsync.config.settings import Quota, Settings, child_environ, load_settings
from ymsync.demo import world

TOKEN = "demo-token"  # the demo's; a profile names its own
# Scaled down from the Market's real limits so a one-minute day shows quota at work. The
# sandbox enforces them (it is the referee) and the workers are told the same numbers.
DEMO_QUOTAS = {
    "update_stocks": ("updateStocks", Quota(20_000, 10)),
    "get_stocks": ("getStocks", Quota(20_000, 10)),
    "report_generate": ("generateStocksOnWarehousesReport", Quota(10, 10)),
    "report_info": ("getReportInfo", Quota(100, 10)),
    # v3 (counted in requests, per business): 20 updates of up to 2,000 items per 10 s.
    "update_stocks_v3": ("updateStocksOnPartnerWarehouses", Quota(20, 10)),
    "get_stocks_v3": ("getStocksOnPartnerWarehouses", Quota(500, 10)),
    "stocks_report_v3": ("generateStocksReport", Quota(10, 10)),
}


@dataclass(frozen=True)
class StackProfile:
    """What one use of the stack differs in: names, token, quotas and the workers' timing."""

    name: str  # worker node names (``<name>-stocks@host``) and the Flower user
    token: str  # the one token the sandbox accepts (both cabinets use it)
    token_env: str  # the variable the v2 cabinet's token comes from (the v3 one's is a file)
    # setting name (``YM_QUOTA_<NAME>``) -> (sandbox operation, quota): told to sandbox and workers alike
    quotas: Mapping[str, tuple[str, Quota]] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)  # more settings for every process
    report_delay_s: float = 3.0
    seed: int | None = None


DEMO = StackProfile("demo", TOKEN, world.TOKEN_ENV, DEMO_QUOTAS,
                    # A short day: flush soon after a push; a generous read timeout on a busy laptop.
                    {"YM_FLUSH_DELAY_MS": "100", "YM_HTTP_READ_TIMEOUT": "20"}, report_delay_s=2.0, seed=7)
DEV = StackProfile("dev", "dev-token", "YM_DEV_TOKEN")  # the Market's quotas and ymsync's defaults


@dataclass(frozen=True)
class Ports:
    """Fixed loopback ports (``--port-base``); ``None`` picks a free one."""

    redis: int | None = None
    market: int | None = None
    flower: int | None = None

    @classmethod
    def from_base(cls, base: int) -> "Ports":
        return cls(base, base + 1, base + 2)


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C, SIGTERM or SIGHUP (its terminal closed: that must stop the private
    redis-server and the workers too); the previous handlers come back on exit."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG).
    A best effort for a demo killed with SIGKILL; the normal stop kills the groups itself."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Child:
    """One child process in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name, self.args, self.env, self.cwd, self.log = name, args, env, cwd, log
        self.process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> "Child":
        self._out = open(self.log, "ab")
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        self.process = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                        stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=preexec)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)  # the group outlives a main process that already exited
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group (a worker's warm shutdown), SIGKILL whatever is left after ``grace``."""
        if self.process is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # Pool children may linger a moment after the main process: the group gets a final KILL.
        self.signal_group(signal.SIGKILL)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self._out is not None:
            self._out.close()
            self._out = None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class FlowerAccess:
    url: str
    user: str
    password: str


@dataclass
class LocalStack:
    workdir: Path
    profile: StackProfile = DEMO
    with_flower: bool = True
    ports: Ports = Ports()
    redis: EmbeddedRedis | None = None
    market: MarketSandbox | None = None
    children: list[Child] = field(default_factory=list)
    flower: FlowerAccess | None = None
    env: dict[str, str] = field(default_factory=dict)
    cabinets_file: Path | None = None

    # --- settings shared by this process, its children and (``dev``) the shop's code ----------

    def ymsync_env(self) -> dict[str, str]:
        assert self.redis is not None and self.market is not None
        assert self.cabinets_file is not None
        # The cabinets file names each cabinet's token source; the v2 one reads this variable.
        env = {"REDIS_URL": self.redis.url, "YM_API_URL": self.market.url,
               "YM_CABINETS_FILE": str(self.cabinets_file), self.profile.token_env: self.profile.token,
               "YM_REPORTS_DIR": str(self.workdir / "reports"), **self.profile.extra_env}
        env.update({f"YM_QUOTA_{name.upper()}": str(quota) for name, (_, quota) in self.profile.quotas.items()})
        return env

    def settings(self) -> Settings:
        """The stack's settings, parsed by the same code as any process's (never from os.environ)."""
        return load_settings(self.ymsync_env())

    # --- starting ---------------------------------------------------------------------------

    def start(self, progress: Callable[[str], None] = lambda _: None) -> "LocalStack":
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        profile = self.profile
        progress("starting a private redis-server")
        self.redis = EmbeddedRedis(directory=self.workdir / "redis", port=self.ports.redis).start()
        progress("starting the Market sandbox")
        quotas = {**DEFAULT_QUOTAS, **{op: quota for op, quota in profile.quotas.values()}}
        self.market = MarketSandbox(port=self.ports.market or 0, config=SandboxConfig(
            tokens=(profile.token,), quotas=quotas, report_delay_s=profile.report_delay_s, seed=profile.seed,
            campaigns=world.sandbox_campaigns(), businesses=world.sandbox_businesses(),
            warehouse_groups=world.sandbox_groups())).start()
        self.cabinets_file = world.write_cabinets(self.workdir / "cabinets", profile.token, profile.token_env)
        self.env = child_environ(self.ymsync_env())
        progress("starting the stocks and reports workers")
        self._celery("worker-stocks", ["worker", "-Q", "stocks", "-c", "2", "-n", f"{profile.name}-stocks@%h"])
        self._celery("worker-reports", ["worker", "-Q", "reports", "-c", "1", "-n", f"{profile.name}-reports@%h"])
        if self.with_flower:
            progress("starting Flower")
            self._start_flower()
        return self

    def _celery(self, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> Child:
        args = [sys.executable, "-m", "celery", "-A", "ymsync_celery.tasks", *command]
        if command[0] == "worker":
            args += ["--without-gossip", "--without-mingle", "-E", "--loglevel", "INFO"]
        child = Child(name, args, {**self.env, **(extra_env or {})}, self.workdir,
                      self.workdir / "logs" / f"{name}.log").start()
        self.children.append(child)
        return child

    def _start_flower(self) -> None:
        port = self.ports.flower or free_port()
        user, password = self.profile.name, secrets.token_urlsafe(12)
        # Credentials through Flower's own env variable, not argv: argv shows in `ps` to every user.
        child = self._celery("flower", ["flower", "--address=127.0.0.1", f"--port={port}"],
                             {"FLOWER_BASIC_AUTH": f"{user}:{password}"})
        self.flower = FlowerAccess(f"http://127.0.0.1:{port}", user, password)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.alive:
            try:
                if requests.get(self.flower.url + "/healthcheck", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Flower did not start; its log says:\n{child.tail()}")

    def wait_for_workers(self, timeout: float = 60.0, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Until both workers answer (their scheduler thread runs from then on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not should_stop():
            for child in self.workers():
                if not child.alive:
                    raise RuntimeError(f"{child.name} exited; its log says:\n{child.tail()}")
            # Celery logs "<name> ready." once it consumes; there is no cheaper signal without Celery.
            if all(" ready." in c.log.read_text(errors="replace") for c in self.workers()):
                return
            time.sleep(0.2)
        if not should_stop():
            raise RuntimeError("the workers did not become ready in time")

    def workers(self) -> list[Child]:
        return [c for c in self.children if c.name.startswith("worker-")]

    def dead(self) -> list[Child]:
        """Children that have exited (while the stack should be up: each one is a failure)."""
        return [c for c in self.children if not c.alive]

    # --- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Flower and workers first (they need Redis to shut down cleanly), then Redis and the sandbox."""
        for child in [c for c in self.children if c.name == "flower"] + self.workers():
            child.signal_group(signal.SIGTERM)  # all at once: warm shutdowns run in parallel
        for child in reversed(self.children):
            child.stop(grace=10.0)
        if self.redis is not None:
            self.redis.stop()
        if self.market is not None:
            self.market.stop()

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process is not None] + (
            [self.redis.process.pid] if self.redis and self.redis.process else [])


__all__ = ["DEMO", "DEMO_QUOTAS", "DEV", "TOKEN", "Child", "FlowerAccess", "LocalStack", "Ports", "StackProfile",
           "stop_signals"]
