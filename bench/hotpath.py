"""Benchmark 13: the hot path, measured the way issue 18 checks it.

300,000 updates over 10 campaigns (30,000 SKUs each), pushed by a separate producer process with
``push_stocks`` in chunks of 10,000, round robin over the campaigns; one ``celery worker -c 4``
started as an operator starts it; the Market sandbox with quotas off. Measured from /proc and
from the redis-server itself, not from ymsync's own counters:

- updates/s from the producer's first ``push_stocks`` call until the sandbox has applied every
  SKU of all 10 campaigns (its admin state, polled every 50 ms);
- CPU per update of the producer process, every worker process (main + pool) and redis-server,
  the sandbox's apart (it stands for the Market);
- Redis round trips per updateStocks request: the redis-server's ``total_reads_processed``
  delta over the run (producer, workers, their schedulers, the Celery broker and result backend:
  all on that one server) over the updateStocks requests the sandbox counted;
- where they go: ``INFO commandstats`` deltas per request.

A pre-filled variant pushes the same updates first (no worker running, the targets taken off
the due-time schedule), then starts the clock and makes them all due: the pipeline alone.

``--hot-ref REF`` (``python -m bench --only hot --hot-ref REF``) runs the same measurements
against another git ref's code, checked out with ``git worktree add`` in a temporary directory:
the producer and the worker processes run that code (working directory and PYTHONPATH there),
the sandbox and redis-server stay the rig's. Its figures go in the baseline column.

Each variant runs ``--hot-rounds`` times (3 by default), the variants alternating; the table gives
each figure's median over the runs and the notes every run's rate and Redis CPU: on these shared
cores one run's figures swing by a third, both ways.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol

import redis

from ymsync.store import keys

from .cases import Row, cpu_seconds, row
from .rig import ROOT, Rig, Workers, wait_for

CAMPAIGNS = list(range(1001, 1011))
PER_CAMPAIGN, CHUNK = 30_000, 10_000
TOTAL = PER_CAMPAIGN * len(CAMPAIGNS)
TOP_COMMANDS = 8
PRODUCER = Path(__file__).with_name("hot_producer.py")
LABEL = (f"13. hot path, issue 18 method: {TOTAL:,} updates over {len(CAMPAIGNS)} campaigns, "
         f"1 worker -c 4, quotas off")
# The script path comes as an argument: run by path, the script's own directory (bench/) would come
# first on sys.path; with -c the working directory does, i.e. the checkout being measured.
RUN_PRODUCER = "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"


@contextmanager
def checkout(ref: str | None) -> Iterator[Path]:
    """This checkout, or ``ref`` checked out (detached) in a temporary git worktree, removed after."""
    if ref is None:
        yield ROOT
        return
    path = Path(tempfile.mkdtemp(prefix="ymsync-hot-")) / "src"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), ref], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
        path.parent.rmdir()


class Producer:
    """``bench/hot_producer.py`` in its own process, running the code of ``code``."""

    def __init__(self, mode: str, code: Path, env: dict[str, str]) -> None:
        args = [sys.executable, "-c", RUN_PRODUCER, str(PRODUCER), mode, str(CHUNK), str(PER_CAMPAIGN),
                *map(str, CAMPAIGNS)]
        self.process = subprocess.Popen(args, cwd=code, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        ready = self.stdout.readline().split()
        assert ready and ready[0] == "ready", f"the producer did not start (exit {self.process.poll()})"
        self.module = ready[1]  # the ymsync it imported: proves which checkout runs
        assert Path(self.module).is_relative_to(code), f"the producer imported {self.module}, not {code}'s"

    def go(self) -> dict[str, float]:
        self.stdin.write("go\n")
        self.stdin.flush()
        line = self.stdout.readline()
        assert line, f"the producer failed (exit {self.process.wait()})"
        return json.loads(line)

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(30)


def redis_counters(client: redis.Redis) -> tuple[int, dict[str, int]]:
    """The server's ``total_reads_processed`` (one per socket read of any client's commands: a
    pipeline or a script call is one, a large one a few) and calls per command (``evalsha``,
    ``client|setname``). These INFO calls count as well: a delta between two snapshots holds 2 of them."""
    reads = int(client.info("stats")["total_reads_processed"])
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in client.info("commandstats").items()}
    return reads, calls


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}


def applied(rig: Rig) -> bool:
    """The sandbox has applied every SKU of every campaign (each SKU is pushed once)."""
    have = rig.sandbox.state()["campaigns"]
    return sum(have.get(str(c), {}).get("sku_units", 0) for c in CAMPAIGNS) >= TOTAL


class Probe(Protocol):
    """Watches a run from its start (the producer told to go) to its end (all applied)."""

    def start(self, pids: dict[str, list[int]]) -> None: ...

    def stop(self, pids: dict[str, list[int]]) -> None: ...


def run(rig: Rig, code: Path, prefilled: bool, probe: Probe | None = None) -> dict[str, Any]:
    """One measured run of ``code``'s producer and worker against the rig's sandbox and redis-server;
    ``probe`` (``bench/hotmonitor.py``) is started just before the producer is told to go and
    stopped once all is applied, while every process still runs."""
    rig.clean("0")
    # YM_PRODUCER_TIMEOUT_S: a 10k-chunk ingest may wait more than the default 1 s for its reply on
    # 2 shared cores, which would end the run rather than measure it (as in benchmark 2b).
    env = rig.env(YM_QUOTA_UPDATE_STOCKS="0", YM_PRODUCER_TIMEOUT_S="10", PYTHONPATH=str(code),
                  CELERY_BROKER_URL=rig.redis_url, CELERY_RESULT_BACKEND=rig.redis_url)
    proc_env = {**os.environ, **env}
    assert rig.redis is not None
    before_prefill = redis_counters(rig.redis)[0]
    # Pre-filling, nothing else runs: the reads it takes are the producer's alone.
    producer = Producer("prefill", code, proc_env) if prefilled else None
    producer_reads = redis_counters(rig.redis)[0] - before_prefill if prefilled else None
    workers = Workers("tasks", env, 1, 4, "stocks", "hot", cwd=code)
    try:
        with workers.start() as w:
            w.workers[0].wait_ready(rig.redis_url)
            wait_for(lambda: len(w.pids()) >= 5, 30, "the worker's 4 pool processes")
            producer = producer or Producer("push", code, proc_env)
            assert rig.sandbox.process is not None and rig.redis_server.process is not None
            pids = {"producer": [producer.process.pid], "workers": w.pids(),
                    "redis": [rig.redis_server.process.pid], "sandbox": [rig.sandbox.process.pid]}
            if probe is not None:
                probe.start(pids)
            cpu0, (reads0, calls0) = _cpu(pids), redis_counters(rig.redis)
            clock = producer.go()
            wait_for(lambda: applied(rig), 300, f"{TOTAL:,} SKU units applied over {len(CAMPAIGNS)} campaigns")
            end = time.time()
            cpu1, (reads1, calls1) = _cpu(pids), redis_counters(rig.redis)
            if probe is not None:
                probe.stop(pids)
    finally:
        if producer is not None:
            producer.close()
    statuses = rig.sandbox.requests_by_status()
    requests = sum(statuses.values())
    # Flush tasks begun (the scheduler's counter, kept in Redis by either version's flush task).
    tasks = float(rig.redis.hget(keys.SCHEDULER_STATS, "flush_tasks") or 0)
    first = min(e["t"] for e in rig.sandbox.log(since=clock["t0"]))  # the sandbox's clock of the first request
    calls = {name: n - calls0.get(name, 0) for name, n in calls1.items() if n > calls0.get(name, 0)}
    return {"rate": TOTAL / (end - clock["t0"]), "push_s": clock["t1"] - clock["t0"], "total_s": end - clock["t0"],
            "cpu": {name: (cpu1[name] - cpu0[name]) / TOTAL * 1e6 for name in pids}, "requests": requests,
            "statuses": statuses, "reads": reads1 - reads0, "calls": calls, "prefilled": prefilled,
            "producer_reads": producer_reads, "first_s": first - clock["t0"], "tasks": tasks}


def _producer_share(pre: dict[str, Any]) -> str:
    """The producer's reads per updateStocks request of the same updates (2,000 SKUs a request)."""
    reads = pre["producer_reads"]
    return f"{reads:,} reads for {TOTAL:,} updates, {reads / pre['requests']:.2f} per request"


def _top(calls: dict[str, int], requests: int) -> str:
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:TOP_COMMANDS]
    return ", ".join(f"{name.upper()} {n / requests:.2f}" for name, n in top)


def _describe(got: dict[str, Any], who: str) -> str:
    cpu = got["cpu"]
    parts = ", ".join(f"{name} {cpu[name]:.1f}" for name in ("producer", "workers", "redis"))
    statuses = ", ".join(f"{n} × {status}" for status, n in sorted(got["statuses"].items()))
    start = (f"pre-filling took the producer {got['producer_reads']:,} reads; making the 10 targets due"
             if got["prefilled"] else "push_stocks")
    return (f"{who}: {start} took {got['push_s']:.1f} s of the {got['total_s']:.1f} s, the first updateStocks "
            f"request was applied {got['first_s']:.2f} s after the start; CPU µs per update "
            f"{parts} (sandbox apart: {cpu['sandbox']:.1f}); {got['reads']:,} reads by redis-server over "
            f"{got['requests']:,} updateStocks requests ({statuses}), {got['tasks']:.0f} flush tasks "
            f"({got['tasks'] / got['requests']:.2f} per request); commands per request: "
            f"{_top(got['calls'], got['requests'])}")


def measure(rig: Rig, ref: str | None, rounds: int = 3) -> dict[str, dict[str, Any]]:
    """Both variants of this checkout, and of ``ref`` if given, ``rounds`` times (alternating, so a
    change in the machine's load during the run weighs on both alike), as the medians of the runs:
    one run's figures on these shared cores swing by a third."""
    runs: dict[str, list[dict[str, Any]]] = {}
    with checkout(ref) as other:
        for n in range(rounds):
            for prefilled in (False, True):
                variants = (("ours", ROOT), ("ref", other)) if ref else (("ours", ROOT),)
                for who, code in variants if n % 2 == 0 else tuple(reversed(variants)):
                    key = f"{who}{'-prefilled' if prefilled else ''}"
                    got = run(rig, code, prefilled)
                    runs.setdefault(key, []).append(got)
                    print(f"  round {n + 1} {key}: {got['rate']:,.0f}/s, {got['reads'] / got['requests']:.2f} round "
                          f"trips/request; {_describe(got, key)}", flush=True)
    return {key: _median_run(got) for key, got in runs.items()}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures as the medians of ``runs`` (each figure apart); what is not a figure (the
    commands, the statuses) from the run of the median rate. ``runs`` keeps them all."""
    mid = sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]
    out = dict(mid, runs=runs)
    for name in ("rate", "push_s", "total_s", "reads", "requests", "first_s", "tasks"):
        out[name] = statistics.median(r[name] for r in runs)
    out["cpu"] = {name: statistics.median(r["cpu"][name] for r in runs) for name in mid["cpu"]}
    return out


def _spread(got: dict[str, Any], who: str) -> str:
    """Each run's rate and redis-server CPU per update, in the order run."""
    runs = got["runs"]
    return (f"{who}, {len(runs)} runs: " + "; ".join(f"{r['rate']:,.0f}/s, redis {r['cpu']['redis']:.2f} µs"
                                                   for r in runs))


def monitored(rig: Rig) -> tuple[float, str]:
    """A further end-to-end run of this checkout under MONITOR: commands clients sent per request
    (the round trips' content) and by which process; its rate and CPU are not kept."""
    from .hotmonitor import LUA, CommandMonitor, describe

    assert rig.redis is not None
    monitor = CommandMonitor(rig.redis)
    got = run(rig, ROOT, False, probe=monitor)
    summary = monitor.summary(got["requests"])
    sent = sum(sum(calls.values()) for who, calls in summary.items() if who != LUA)
    note = describe(summary)
    print(f"  monitored: {sent:.2f} commands sent per request; {note}", flush=True)
    return sent, note


def bench_hot(rig: Rig, ref: str | None = None, rounds: int = 3) -> list[Row]:
    got = measure(rig, ref, rounds)
    sent, by_process = monitored(rig)
    ours, pre = got["ours"], got["ours-prefilled"]
    base, base_pre = got.get("ref"), got.get("ref-prefilled")

    def pick(run: dict[str, Any] | None, fn: Any) -> float | None:
        return None if run is None else fn(run)

    def hot_cpu(r: dict[str, Any]) -> float:
        return r["cpu"]["producer"] + r["cpu"]["workers"] + r["cpu"]["redis"]

    def trips(r: dict[str, Any]) -> float:
        return r["reads"] / r["requests"]

    def commands(r: dict[str, Any]) -> float:
        return sum(r["calls"].values()) / r["requests"]

    versus = f"; baseline column: git ref {ref}'s code (producer and worker), same sandbox and redis-server" if ref \
        else "; no baseline (run with --hot-ref REF to measure another git ref's code beside this one)"
    medians = f"Medians of {len(ours['runs'])} runs of each, alternating; "
    detail = medians + _describe(ours, "this code") + (f". {_describe(base, ref)}" if base else "") + ". " \
        + _spread(ours, "this code") + (f". {_spread(base, ref)}" if base else "")
    detail_pre = medians + _describe(pre, "this code") + (f". {_describe(base_pre, ref)}" if base_pre else "") \
        + ". " + _spread(pre, "this code") + (f". {_spread(base_pre, ref)}" if base_pre else "")
    rate, rate_pre, cpu, redis_cpu = ours["rate"], pre["rate"], hot_cpu(ours), ours["cpu"]["redis"]
    return [
        row(LABEL, "SKU updates/s, first push_stocks → all applied", rate, pick(base, lambda r: r["rate"]), "/s",
            "≥ 70,000/s", rate >= 70_000,
            f"a producer process pushes {PER_CAMPAIGN:,} SKUs to each of {len(CAMPAIGNS)} campaigns in "
            f"{CHUNK:,}-update push_stocks calls, round robin over the campaigns; 1 worker -c 4 already up; "
            f"until the sandbox's state shows all {TOTAL:,} SKU units applied{versus}. {detail}"),
        row(LABEL, "CPU µs per update, producer + workers + redis-server", cpu, pick(base, hot_cpu), "", "≤ 20",
            cpu <= 20, "from /proc/PID/stat over the run: the producer process, the worker's 5 processes, "
            "redis-server; the sandbox (the Market's side) is reported apart in the first row's note",
            better="lower"),
        row(LABEL, "redis-server CPU µs per update", redis_cpu, pick(base, lambda r: r["cpu"]["redis"]), "", "≤ 5",
            redis_cpu <= 5, "the one redis-server holds ymsync's state, the Celery broker and the result backend",
            better="lower"),
        row(LABEL, "Redis round trips per updateStocks request", trips(ours), pick(base, trips), "", "≤ 4",
            trips(ours) <= 4,
            "the redis-server's INFO stats total_reads_processed delta over the run (everything: producer, "
            "workers, their schedulers, broker and result-backend traffic, 2 of the bench's INFO calls) over the "
            "updateStocks requests the sandbox counted; a large request (the producer's 10,000-update "
            "scripts) can take more than one read. Of these, the producer's alone (its reads while it pre-fills "
            f"the buffer for the pre-filled run, nothing else running): {_producer_share(pre)}"
            + (f"; {ref}: {_producer_share(base_pre)}" if base_pre else ""), better="lower"),
        row(LABEL, "Redis commands per updateStocks request", commands(ours), pick(base, commands), "",
            note="INFO commandstats deltas over the run, all commands; Redis counts the commands its Lua scripts "
                 "call as well, so these are not all round trips. Top 8 by calls per request: this code "
                 f"{_top(ours['calls'], ours['requests'])}" + (f"; {ref}: {_top(base['calls'], base['requests'])}"
                                                               if base else ""), better="lower"),
        row(LABEL, "Redis commands per updateStocks request sent by clients (MONITOR run)", sent, None, "",
            note="a further end-to-end run of this code with a MONITOR client attached (its rate and CPU not "
                 "kept: MONITOR slows the server), counting commands by the process whose socket sent them "
                 "(/proc/net/tcp → /proc/PID/fd), per updateStocks request; a pipeline or MULTI/EXEC sends "
                 "several in one round trip. By process, with its 4 most frequent commands: " + by_process,
            better="lower"),
        row(LABEL, "SKU updates/s, buffer pre-filled → all applied", rate_pre, pick(base_pre, lambda r: r["rate"]),
            "/s", "≥ 100,000/s", rate_pre >= 100_000,
            "the same updates pushed first with no worker flushing (the 10 targets taken off the due-time "
            "schedule), then the clock starts and all 10 are made due: the pipeline alone (worker, "
            f"redis-server, sandbox). {detail_pre}"),
        row(LABEL, "Redis round trips per updateStocks request, pre-filled", trips(pre), pick(base_pre, trips), "",
            note="as above, from the moment the targets are made due", better="lower"),
    ]
