"""``ymsync demo`` as a user runs it: nothing configured, a real subprocess, a clean end.

Orphans are found by a /proc scan: every process the demo starts runs in (or names) its work
folder, so anything still there after the demo has exited was left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.processes import ROOT, wait_for
from tests.support.spec import spec_variables
from ymsync.config.settings import child_environ

pytestmark = pytest.mark.integration


def processes_of(workdir: Path) -> list[int]:
    """Pids of live processes working in ``workdir`` or naming it on their command line."""
    found = []
    target = str(workdir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((line for line in (entry / "status").read_text().splitlines() if line.startswith("State:")), "")
        except (OSError, StopIteration):
            continue
        if "zombie" in state:
            continue  # exited, waiting for its parent to reap it: not running anything
        if cwd.startswith(target) or target in cmdline:
            found.append(int(entry.name))
    return found


class Demo:
    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        # Nothing configured, like a fresh machine, but for the sandbox's spec check (tests/conftest.py).
        env = child_environ({"PYTHONUNBUFFERED": "1", **spec_variables()})
        self.proc = subprocess.Popen([sys.executable, "-m", "ymsync.cli", "demo", "--workdir", str(workdir), *args],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def cleanup(self) -> None:
        """Only after a failed test: whatever is left, by pid."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in processes_of(self.workdir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture()
def workdir(tmp_path) -> Iterator[Path]:
    path = tmp_path / "demo"
    yield path


def test_demo_plays_a_day_and_ends_with_a_summary_and_no_orphans(workdir):
    demo = Demo(workdir, "--duration", "15", "--no-flower")
    try:
        code = demo.wait(120)
        out = demo.output
        assert code == 0, out
        assert "ymsync demo: summary" in out
        # Campaigns 1001 and 1002 form one warehouse group: one row, one stock, each SKU sent once.
        group = re.search(r"1001\+1002\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)", out)
        assert group, out
        pushed, delivered, dead, left = (int(x.replace(",", "")) for x in group.groups())
        # Two imports of 8,000 SKUs to each campaign (32,000 pushes); coalesced in the group's one
        # target, the Market gets each value once (two separate campaigns would take over 24,000).
        assert pushed >= 32_000 and 12_000 < delivered < 20_000, group.groups()
        assert dead == 0 and left == 0, group.groups()
        assert not re.search(r"│\s*100[12]\s*│", out), out  # no row per campaign
        for campaign in (1001, 1002):  # the Market ends holding the shop's stock, through either campaign
            assert f"campaign {campaign} (warehouse group 1001+1002): the Market holds 8,000/8,000 SKUs" in out, out
        # The hand edit in 1001's cabinet is drift of the group, found once through 1002.
        # Its own warehouse comes from the Market's warehouse list, not a guess from the read.
        assert re.search(r"reconciliation group 1001\+1002 \(one stock, read through 1002\), warehouse \d+ \(market\): "
                         r"[\d,]+ SKUs checked, 25 drifted, \d+ re-queued", out), out
        # The v3 cabinet beside them: business 200, pushed by warehouse, its own row.
        business = re.search(r"b200 v3\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)", out)
        assert business, out
        pushed, delivered, dead, left = (int(x.replace(",", "")) for x in business.groups())
        assert pushed >= 32_000 and delivered > 24_000 and dead == 0 and left == 0, business.groups()
        assert "16,000/16,000 items" in out
        for warehouse in (201, 202):
            assert f"business 200 warehouse {warehouse}: the Market holds 8,000/8,000 SKUs as pushed" in out
        assert re.search(r"reconciliation business 200 \(v3\): [\d,]+ checked over 2 warehouses, \d+ drifted", out)
        # The snapshot chord mixes the campaigns' v2 reports with the business's v3 report.
        assert "report snapshot complete: 32,000 rows" in out, out
        # What the shop pushed to the v3 business against the sandbox admin API's read-back
        # (GET /_admin/business/200/stocks, taken by the demo before it stopped the sandbox).
        final = json.loads((workdir / "business-final.json").read_text(encoding="utf-8"))
        assert set(final["shop"]) == {"201", "202"}
        assert all(len(skus) == 8000 for skus in final["shop"].values())
        assert final["market"] == final["shop"]
        # The cabinets file the workers ran with names token sources, never the token.
        cabinets = (workdir / "cabinets" / "cabinets.toml").read_text()
        assert 'mode = "v3"' in cabinets and "token_file" in cabinets and "token_env" in cabinets
        assert "demo-token" not in cabinets
        assert (workdir / "cabinets" / "shop-v3.token").stat().st_mode & 0o077 == 0
        assert processes_of(workdir) == [], "the demo left processes behind"
    except BaseException:
        demo.cleanup()
        raise


def test_sigint_mid_run_stops_everything(workdir):
    demo = Demo(workdir, "--duration", "60")
    try:
        wait_for(lambda: any(line.startswith("[") for line in demo.lines) or demo.proc.poll() is not None,
                 90, "the day to start")
        assert demo.proc.poll() is None, demo.output
        assert "Flower     http://127.0.0.1:" in demo.output
        running = processes_of(workdir)
        assert len(running) >= 4, running  # redis, two worker mains with pool children, Flower
        started = time.monotonic()
        demo.proc.send_signal(signal.SIGINT)  # Ctrl-C (the children are in their own sessions)
        code = demo.wait(45)
        assert code == 130, demo.output
        assert time.monotonic() - started < 40
        assert "stopped early" in demo.output
        wait_for(lambda: processes_of(workdir) == [], 5, "every child of the demo to be gone")
    except BaseException:
        demo.cleanup()
        raise


def test_sighup_stops_everything_too(workdir):
    """Closing the demo's terminal (SIGHUP) cleans up like Ctrl-C: no redis-server left running."""
    demo = Demo(workdir, "--duration", "60", "--no-flower")
    try:
        wait_for(lambda: any(line.startswith("[") for line in demo.lines) or demo.proc.poll() is not None,
                 90, "the day to start")
        assert demo.proc.poll() is None, demo.output
        running = processes_of(workdir)
        assert any(b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in running), running
        demo.proc.send_signal(signal.SIGHUP)
        code = demo.wait(45)
        assert code == 130, demo.output
        wait_for(lambda: processes_of(workdir) == [], 5, "every child of the demo, its redis-server included, to be gone")
    except BaseException:
        demo.cleanup()
        raise
