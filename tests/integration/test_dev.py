"""``ymsync dev`` as a shop developer runs it: a real subprocess whose printed environment the
shop's code (here, this test process) uses to push, then SIGTERM and nothing left running.

Its processes are found by parent pid before the stop (redis-server, each worker's main process
and pool children, Flower), so one that outlives the stop, reparented elsewhere, is still caught.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.support.processes import ROOT, wait_for
from tests.support.spec import spec_variables
from ymsync import push_stocks
from ymsync.config.settings import child_environ, get_settings
from ymsync.demo.dev import FLOWER_AUTH_VARIABLE, FLOWER_URL_VARIABLE, READY

pytestmark = pytest.mark.integration
CAMPAIGN = 1001  # one of the cabinets ymsync dev's sandbox plays


def _running(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "zombie" not in state  # exited, waiting to be reaped: runs nothing


def _descendants(root: int) -> dict[int, str]:
    """Live descendants of ``root``: pid -> command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("PPid:"))
                parents[int(entry.name)] = int(ppid.split()[1])
            except (OSError, StopIteration):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    commands = {}
    for pid in found:
        try:
            commands[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return {pid: cmd for pid, cmd in commands.items() if _running(pid)}


class Dev:
    def __init__(self, tmp_path: Path) -> None:
        self.workdir = tmp_path / "dev"
        self.stderr = tmp_path / "dev.stderr"
        # Nothing of the developer's shell configured, but for the sandbox's spec check (tests/conftest.py).
        env = child_environ({"PYTHONUNBUFFERED": "1", **spec_variables()})
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "ymsync.cli", "dev", "--workdir", str(self.workdir)],
                                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr.read_text(errors="replace")

    def environment(self) -> dict[str, str]:
        """The export lines, read the way a shell's ``eval`` would (shell quoting undone)."""
        env = {}
        for line in self.lines:
            if line.startswith("export "):
                name, _, value = shlex.split(line[len("export "):])[0].partition("=")
                env[name] = value
        return env


def test_dev_prints_a_working_environment_and_stops_every_process(tmp_path, monkeypatch):
    dev = Dev(tmp_path)
    started: dict[int, str] = {}
    try:
        wait_for(lambda: READY in dev.lines or dev.proc.poll() is not None, 90, "ymsync dev to be ready")
        assert dev.proc.poll() is None, dev.output()
        env = dev.environment()
        assert {"REDIS_URL", "YM_API_URL", "YM_CABINETS_FILE", FLOWER_URL_VARIABLE} <= set(env), dev.output()
        assert (dev.workdir / "env.sh").read_text().count("export ") == len(env)
        assert (dev.workdir / "env.sh").stat().st_mode & 0o077 == 0  # holds a token and Flower's password

        started = _descendants(dev.proc.pid)
        commands = list(started.values())
        assert any("redis-server" in c for c in commands), commands
        assert sum(" worker " in c and "-Q stocks" in c for c in commands) >= 1, commands
        assert sum(" worker " in c and "-Q reports" in c for c in commands) >= 1, commands
        assert any(" flower " in c for c in commands), commands

        # The shop's code: only the printed environment, read by ymsync's settings as in any process.
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            result = push_stocks(CAMPAIGN, [{"sku": "DEV-SKU-1", "count": 7}])
        finally:
            get_settings.cache_clear()
        assert result.accepted == 1, result
        stocks = f"{env['YM_API_URL']}/_admin/stocks/{CAMPAIGN}"
        wait_for(lambda: requests.get(stocks, timeout=5).json().get("DEV-SKU-1", {}).get("count") == 7, 30,
                 "the pushed count to reach the sandbox through dev's stocks worker", interval=0.2)

        flower, auth = env[FLOWER_URL_VARIABLE], tuple(env[FLOWER_AUTH_VARIABLE].split(":", 1))
        assert requests.get(flower + "/", timeout=5).status_code == 401
        assert requests.get(flower + "/", auth=auth, timeout=5).status_code == 200

        dev.proc.send_signal(signal.SIGTERM)
        assert dev.proc.wait(45) == 0, dev.output()
        wait_for(lambda: not any(_running(pid) for pid in started), 5, "every process ymsync dev started to be gone")
        assert not (dev.workdir / "env.sh").exists()  # it named ports nothing listens on any more
    except BaseException:
        if dev.proc.poll() is None:
            os.killpg(dev.proc.pid, signal.SIGKILL)
            dev.proc.wait()
        for pid in started or {}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
