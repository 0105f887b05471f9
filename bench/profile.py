"""Profile the throughput run with py-spy: where the sandbox, the workers and Redis spend CPU.

py-spy samples each process from outside (no code changes, real worker processes); the
summary lists the CPU each process used during the run and its top frames by own time, with
frames that only wait on a socket or a selector left out. Needs ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import cases
from .rig import LOGS, Rig

# Frames that mean "waiting": a sampler sees them even though the process uses no CPU there.
_WAITING = ("readinto", "select", "_read_from_socket", "recv", "_recv", "poll", "wait", "accept", "sleep",
            "readline (socket", "get_request")
N = 200_000


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _top(path: Path, limit: int = 8) -> list[tuple[float, str]]:
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        if any(w in leaf for w in _WAITING):
            continue
        own[leaf] += int(n)
        total += int(n)
    return [(n / total, frame) for frame, n in own.most_common(limit)] if total else []


def profile_throughput(rig: Rig) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "py-spy is not installed (`pip install -e '.[bench]'`): no profile."
    rig.clean("0")
    app = cases.ym_app(rig)
    names = cases.skus(N, "X")
    from ymsync.store import keys

    assert rig.redis is not None
    cases.push(rig, names)
    rig.redis.zrem(keys.DUE, keys.campaign_target(cases.CAMPAIGN))  # not due until t0: no flush before it
    out: list[str] = []
    with cases.ymsync_workers(rig, 1, 4).start() as w:
        cases.wait_ready(app, 1)
        cases.wait_for(lambda: len(w.pids()) >= 5, 30, "the worker's 4 pool processes")
        assert rig.sandbox.process is not None and rig.redis_server.process is not None
        procs = {"sandbox": rig.sandbox.process.pid, "redis-server": rig.redis_server.process.pid}
        for i, pid in enumerate(w.pids()):
            procs["worker main" if i == 0 else f"worker child {i}"] = pid
        spies = {}
        for name, pid in procs.items():
            if name == "redis-server":
                continue
            spies[name] = subprocess.Popen(
                [spy, "record", "-p", str(pid), "-f", "raw", "-r", "250", "-d", "60", "-o", str(LOGS / f"spy-{pid}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        before = {name: _cpu_seconds(pid) for name, pid in procs.items()}
        from ymsync.engine.schedule import Schedule

        t0 = time.time()
        Schedule(rig.redis).activate(keys.campaign_target(cases.CAMPAIGN), 0)
        end = cases.wait_units(rig.sandbox, cases.CAMPAIGN, N, 120, 0.05)
        used = {name: _cpu_seconds(pid) - before[name] for name, pid in procs.items()}
        for p in spies.values():
            p.send_signal(2)  # py-spy writes its output on SIGINT
        for p in spies.values():
            p.wait(30)
    elapsed = end - t0
    out.append(f"{N:,} SKUs already in the buffer, one worker `-c 4`, quotas off, sampled with py-spy at 250 Hz "
               f"(which slows what it samples a little): {N / elapsed:,.0f} SKUs/s over {elapsed:.1f} s.\n")
    out.append("| process | CPU used (cores) | top frames by own time, waiting left out |")
    out.append("| --- | --- | --- |")
    for name, pid in procs.items():
        path = LOGS / f"spy-{pid}.txt"
        frames = "; ".join(f"{share:.0%} `{frame}`" for share, frame in _top(path, 5)) if path.exists() else "–"
        out.append(f"| {name} | {used[name] / elapsed:.2f} | {frames} |")
    return "\n".join(out)
