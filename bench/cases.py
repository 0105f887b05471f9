"""The benchmarks. Each runs ymsync and the plain Celery baseline (``bench/baseline.py``) in turn
against the same sandbox and redis-server, and returns a list of result rows.

A row: ``{"bench", "metric", "ymsync", "baseline", "unit", "goal", "met", "note"}``; the runner
adds the ratio and writes the table. Times come from the sandbox's own call log (``t`` is the
wall clock when a request was applied), so "applied" means applied at the Market, not sent.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from .rig import LOGS, ROOT, Rig, Workers, wait_for, wait_units

CAMPAIGN = 1001
Row = dict[str, Any]


def row(bench: str, metric: str, ours: float | None, base: float | None, unit: str, goal: str = "",
        met: bool | None = None, note: str = "", better: str = "higher") -> Row:
    return {"bench": bench, "metric": metric, "ymsync": ours, "baseline": base, "unit": unit, "goal": goal,
            "met": met, "note": note, "better": better}


def skus(n: int, prefix: str = "SKU") -> list[str]:
    return [f"{prefix}-{i:08d}" for i in range(n)]


# --- starting the two systems ---------------------------------------------------------------


def ymsync_workers(rig: Rig, count: int, concurrency: int, quota: str = "0", queues: str = "stocks",
                   app: str = "tasks", **env: str) -> Workers:
    """``app``: the Celery app module the workers load (``tasks``)."""
    return Workers(app, rig.env(YM_QUOTA_UPDATE_STOCKS=quota, **env), count, concurrency, queues, "ym")


def baseline_workers(rig: Rig, count: int, concurrency: int, rate_limit: str = "", queues: str = "baseline") -> Workers:
    return Workers("bench.baseline", rig.env(BASELINE_RATE_LIMIT=rate_limit), count, concurrency, queues, "bl")


def wait_ready(app: Any, count: int, timeout: float = 60) -> None:
    """Every worker instance answers a ping (booted, consuming)."""
    wait_for(lambda: len(app.control.ping(timeout=0.5)) >= count, timeout, f"{count} workers to answer a ping",
             interval=0.2)


def ym_app(rig: Rig, **env: str) -> Any:
    rig.apply_env(**env)
    from tasks import app

    app.conf.broker_url = app.conf.result_backend = rig.redis_url
    return app


def bl_app(rig: Rig) -> Any:
    os.environ.update(rig.env())
    import bench.baseline as b

    b.app.conf.broker_url = b.app.conf.result_backend = rig.redis_url
    b.API_URL = rig.sandbox.url
    return b


def push(rig: Rig, names: list[str], counts: list[int] | None = None, chunk: int = 10_000,
         stamps: list[str] | None = None) -> None:
    from ymsync import push_stocks
    from ymsync.engine.buffer import StockBuffer

    buf = StockBuffer(rig.redis)
    items = [{"sku": s, "count": (counts[i] if counts else i % 100)} for i, s in enumerate(names)]
    if stamps:
        for item, stamp in zip(items, stamps):
            item["updatedAt"] = stamp
    for start in range(0, len(items), chunk):
        push_stocks(CAMPAIGN, items[start:start + chunk], buffer=buf)


def delay_all(b: Any, names: list[str], counts: list[int] | None = None) -> None:
    """The baseline's producer: one ``delay()`` per update, over one pooled connection."""
    with b.app.producer_or_acquire() as producer:
        for i, s in enumerate(names):
            b.push_stock.apply_async((CAMPAIGN, s, counts[i] if counts else i % 100), producer=producer)


# --- 1. quota utilisation -------------------------------------------------------------------

QUOTA_AMOUNT, QUOTA_SECONDS, WINDOWS = 20_000, 10, 3


def _utilisation(rig: Rig, start_workers: Callable[[], Workers], backlog: int) -> dict[str, Any]:
    """Start the workers on a standing backlog and measure WINDOWS periods of sustained use.

    From the first applied call (t0) to the first call at or after t0 + WINDOWS periods (tk):
    share = SKUs applied in [t0, tk) / (quota rate × (tk - t0)). Counting only [t0, t0 + 3P)
    would flatter a bursty sender (three full bursts fit in it even if each burst starts late);
    ending at the next burst charges every late start.
    """
    t_start = time.time()
    span = WINDOWS * QUOTA_SECONDS
    with start_workers():
        first = wait_for(lambda: rig.sandbox.log(since=t_start), 90, "the first update to reach the sandbox",
                         interval=0.1)
        t0 = min(e["t"] for e in first)
        time.sleep(max(0.0, t0 + span - time.time()))
        wait_for(lambda: rig.sandbox.log(since=t0 + span), 2 * QUOTA_SECONDS, "a call after the measured windows",
                 interval=0.05)
        log = rig.sandbox.log(since=t_start)
        state = rig.sandbox.state()
    tk = min(e["t"] for e in log if e["t"] >= t0 + span)
    used = sum(e["cost"] for e in log if e["status"] == 200 and t0 <= e["t"] < tk)
    window = state["quotas"].get(f"updateStocks:{CAMPAIGN}", {})
    by_status = {int(k.split()[1]): v for k, v in state["requests"].items() if k.startswith("updateStocks ")}
    return {"share": used / (QUOTA_AMOUNT / QUOTA_SECONDS * (tk - t0)), "used": used, "r420": by_status.get(420, 0),
            "peak": window.get("peak", 0), "requests": sum(by_status.values()), "span": tk - t0,
            "backlog_left": backlog - state["campaigns"].get(str(CAMPAIGN), {}).get("sku_units", 0)}


def bench_quota(rig: Rig) -> list[Row]:
    quota = f"{QUOTA_AMOUNT}/{QUOTA_SECONDS}"
    rows: list[Row] = []
    for n in (1, 4):
        backlog = QUOTA_AMOUNT * (WINDOWS + 2)
        rig.clean(quota)
        ym_app(rig)
        push(rig, skus(backlog))
        ours = _utilisation(rig, lambda: ymsync_workers(rig, n, 1, quota).start(), backlog)

        rig.clean(quota)
        b = bl_app(rig)
        bl_backlog = 40_000
        delay_all(b, skus(bl_backlog))
        rate = f"{QUOTA_AMOUNT // QUOTA_SECONDS}/s"
        base = _utilisation(rig, lambda: baseline_workers(rig, n, 1, rate).start(), bl_backlog)
        label = f"1. quota {quota}, {n} worker process{'es' if n > 1 else ''}"
        rows += [
            row(label, "share of quota used", ours["share"] * 100, base["share"] * 100, "%", "≥ 97 %",
                ours["share"] >= 0.97,
                f"SKUs applied from the first call to the first call ≥ {WINDOWS} windows later "
                f"({ours['span']:.1f} s), over quota rate × that time; ymsync {ours['used']:,} SKUs in "
                f"{ours['requests']} requests, baseline {base['used']:,} SKUs in {base['requests']} requests "
                f"(rate_limit {rate} per worker, each task one SKU)"),
            row(label, "HTTP 420 answers", ours["r420"], base["r420"], "", "0", ours["r420"] == 0, better="lower"),
            row(label, "peak SKUs in any window", ours["peak"], base["peak"], f"/ {QUOTA_AMOUNT}",
                f"≤ {QUOTA_AMOUNT}", ours["peak"] <= QUOTA_AMOUNT, better="none"),
        ]
    return rows


# --- 2. throughput ceiling --------------------------------------------------------------------

THROUGHPUT_N, BASELINE_THROUGHPUT_N = 300_000, 3_000


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each process of the run used: the sandbox, redis-server, the workers, this driver."""

    def __init__(self, rig: Rig, workers: Workers) -> None:
        assert rig.sandbox.process is not None and rig.redis_server.process is not None
        self.pids = {"sandbox": [rig.sandbox.process.pid], "redis": [rig.redis_server.process.pid],
                     "workers": workers.pids()}
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}
        now["producer"] = time.process_time()
        return now

    def per_unit_us(self, units: int) -> dict[str, float]:
        end = self._now()
        return {name: (end[name] - self.start[name]) / units * 1e6 for name in end}


def _end_to_end(rig: Rig, names: list[str], app_name: str = "tasks",
                footprint: dict[str, Any] | None = None) -> tuple[float, dict[str, float], str]:
    """Updates/s from the first push_stocks call to the last SKU applied, workers already up;
    and the CPU microseconds each process spent per update."""
    rig.clean("0")
    app = ym_app(rig)
    with ymsync_workers(rig, 1, 4, app=app_name).start() as w:
        wait_ready(app, 1)
        wait_for(lambda: len(w.pids()) >= 5, 30, "the worker's 4 pool processes")
        meter = CpuMeter(rig, w)
        t0 = time.time()
        push(rig, names)
        pushed = time.time()
        end = wait_units(rig.sandbox, CAMPAIGN, len(names), 120, 0.05)
        cpu = meter.per_unit_us(len(names))
        if footprint is not None:
            footprint["ymsync_rss"] = w.rss_mb()
    return len(names) / (end - t0), cpu, f"push_stocks took {pushed - t0:.1f} s of the {end - t0:.1f} s"


def _cpu_note(cpu: dict[str, float]) -> str:
    total = sum(cpu.values())
    parts = ", ".join(f"{name} {us:.1f}" for name, us in sorted(cpu.items(), key=lambda kv: -kv[1]))
    return f"CPU per update {total:.1f} µs ({parts}), a ceiling of {2e6 / total:,.0f}/s on 2 idle cores"


def _pipeline_only(rig: Rig, names: list[str], app_name: str = "tasks") -> float:
    """The same updates already in the buffer, then one flush is started: the pipeline alone."""
    from ymsync.store import keys

    rig.clean("0")
    app = ym_app(rig)
    assert rig.redis is not None
    push(rig, names)
    rig.redis.zrem(keys.DUE, keys.campaign_target(CAMPAIGN))  # not due until t0: no flush before it
    with ymsync_workers(rig, 1, 4, app=app_name).start():
        wait_ready(app, 1)
        from ymsync.engine.schedule import Schedule

        t0 = time.time()
        Schedule(rig.redis).activate(keys.campaign_target(CAMPAIGN), 0)
        end = wait_units(rig.sandbox, CAMPAIGN, len(names), 120, 0.05)
    return len(names) / (end - t0)


def bench_throughput(rig: Rig, footprint: dict[str, Any]) -> list[Row]:
    names = skus(THROUGHPUT_N, "T")
    ours, cpu, note = _end_to_end(rig, names, footprint=footprint)
    pipeline = _pipeline_only(rig, names)

    rig.clean("0")
    b = bl_app(rig)
    with baseline_workers(rig, 1, 4).start() as w:
        wait_ready(b.app, 1)
        t0 = time.time()
        delay_all(b, skus(BASELINE_THROUGHPUT_N, "T"))
        end = wait_units(rig.sandbox, CAMPAIGN, BASELINE_THROUGHPUT_N, 300, 0.05)
        footprint["baseline_rss"] = w.rss_mb()
    base = BASELINE_THROUGHPUT_N / (end - t0)
    goal = "≥ 50,000/s and ≥ 20 × baseline"
    label = "2. throughput, quotas off"
    return [
        row(label, "SKU updates/s, enqueue → applied", ours, base, "/s", goal, ours >= 50_000 and ours >= 20 * base,
            f"ymsync: {THROUGHPUT_N:,} updates via push_stocks in 10k chunks, 1 worker -c 4; {note}; "
            f"{_cpu_note(cpu)}. Baseline: {BASELINE_THROUGHPUT_N:,} delay() calls, 1 worker -c 4"),
        row(label, "SKU updates/s, buffer pre-filled → applied", pipeline, base, "/s",
            note="the pipeline alone (no producer competing for the 2 cores); baseline figure as above"),
    ]


# --- 3. producer enqueue rate ------------------------------------------------------------------

PRODUCER_N, BASELINE_PRODUCER_N = 200_000, 20_000


def bench_producer(rig: Rig) -> list[Row]:
    rig.clean("0")
    ym_app(rig)
    names = skus(PRODUCER_N, "P")
    t0 = time.perf_counter()
    push(rig, names)
    helper = PRODUCER_N / (time.perf_counter() - t0)

    rig.clean("0")
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, dir=LOGS) as f:
        out = csv.writer(f)
        out.writerow(["sku", "count"])
        out.writerows((s, i % 100) for i, s in enumerate(names))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ymsync.cli", "push", "--campaign", str(CAMPAIGN), f.name], cwd=ROOT,
                   env={**os.environ, **rig.env()}, check=True, stdout=subprocess.DEVNULL)
    cli = PRODUCER_N / (time.perf_counter() - t0)
    Path(f.name).unlink()

    rig.clean("0")
    b = bl_app(rig)
    t0 = time.perf_counter()
    delay_all(b, skus(BASELINE_PRODUCER_N, "P"))
    base = BASELINE_PRODUCER_N / (time.perf_counter() - t0)
    return [
        row("3. producer", "push_stocks() updates/s", helper, base, "/s",
            note=f"{PRODUCER_N:,} updates in 10k chunks (validated, then ingested); baseline: "
                 f"{BASELINE_PRODUCER_N:,} delay() calls on one pooled producer"),
        row("3. producer", "`ymsync push FILE` updates/s", cli, base, "/s",
            note=f"a {PRODUCER_N:,}-line CSV, whole command including interpreter start"),
    ]


# --- 4. coalescing ----------------------------------------------------------------------------

HOT_UPDATES, HOT_SKUS, BASELINE_HOT_UPDATES = 60_000, 2_000, 3_000


def _hot_stream(n: int, seed: int = 7) -> tuple[list[str], list[int]]:
    """Zipf-like: a few SKUs get most updates (a sale on a handful of items)."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(HOT_SKUS)]
    pool = skus(HOT_SKUS, "H")
    names = rng.choices(pool, weights, k=n)
    return names, [rng.randrange(0, 50) for _ in range(n)]


def bench_coalescing(rig: Rig) -> list[Row]:
    quota = "100000/60"  # the Market's real quota
    rig.clean(quota)
    app = ym_app(rig)
    names, counts = _hot_stream(HOT_UPDATES)
    base_time = datetime.now(timezone.utc) - timedelta(minutes=10)
    stamps = [(base_time + timedelta(milliseconds=i)).isoformat() for i in range(HOT_UPDATES)]
    with ymsync_workers(rig, 1, 4, "100000/60").start():
        wait_ready(app, 1)
        for start in range(0, HOT_UPDATES, 1000):  # a stream: 1000 updates every 50 ms
            push(rig, names[start:start + 1000], counts[start:start + 1000], stamps=stamps[start:start + 1000])
            time.sleep(0.05)
        final = dict(zip(names, counts))
        wait_for(lambda: _matches(rig, final), 120, "the sandbox to hold every latest value", interval=0.2)
    ours = rig.sandbox.units(CAMPAIGN) / HOT_UPDATES

    rig.clean(quota)
    b = bl_app(rig)
    names, counts = _hot_stream(BASELINE_HOT_UPDATES)
    with baseline_workers(rig, 1, 4, "1666/s").start():
        wait_ready(b.app, 1)
        delay_all(b, names, counts)
        wait_units(rig.sandbox, CAMPAIGN, BASELINE_HOT_UPDATES, 300, 0.1)
        final = dict(zip(names, counts))
        wrong = sum(1 for s, v in rig.sandbox.admin(f"stocks/{CAMPAIGN}").items() if v["count"] != final.get(s))
    base = rig.sandbox.units(CAMPAIGN) / BASELINE_HOT_UPDATES
    return [row("4. coalescing, hot-SKU stream", "API SKU units per update", ours, base, "", better="lower",
                note=f"ymsync: {HOT_UPDATES:,} updates over {HOT_SKUS:,} SKUs (Zipf), 1000 every 50 ms, quota "
                     f"{quota}; every final value right. Baseline: {BASELINE_HOT_UPDATES:,} updates; "
                     f"{wrong} SKUs ended on a stale value (parallel tasks reorder)")]


def _matches(rig: Rig, final: dict[str, int]) -> bool:
    have = rig.sandbox.admin(f"stocks/{CAMPAIGN}")
    return all(have.get(s, {}).get("count") == v for s, v in final.items())


# --- 5. idle latency ----------------------------------------------------------------------------

LATENCY_SAMPLES = 40


def _latencies(rig: Rig, send: Callable[[str], None]) -> list[float]:
    out = []
    rng = random.Random(3)
    for i in range(LATENCY_SAMPLES):
        time.sleep(rng.uniform(0.2, 0.5))  # idle between updates
        t0 = time.time()
        send(f"L-{i:05d}")
        hit = wait_for(lambda: rig.sandbox.log(since=t0), 30, "the update to be applied", interval=0.005)
        out.append(min(e["t"] for e in hit) - t0)
    return sorted(out)


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def bench_latency(rig: Rig) -> list[Row]:
    rig.clean("100000/60")
    app = ym_app(rig)
    from ymsync import push_stocks

    with ymsync_workers(rig, 1, 4, "100000/60").start():
        wait_ready(app, 1)
        push_stocks(CAMPAIGN, [{"sku": "warm-up", "count": 1}])
        time.sleep(1)
        ours = _latencies(rig, lambda s: push_stocks(CAMPAIGN, [{"sku": s, "count": 1}]))
    rig.clean("100000/60")
    b = bl_app(rig)
    with baseline_workers(rig, 1, 4, "1666/s").start():
        wait_ready(b.app, 1)
        b.push_stock.delay(CAMPAIGN, "warm-up", 1)
        time.sleep(1)
        base = _latencies(rig, lambda s: b.push_stock.delay(CAMPAIGN, s, 1))
    note = (f"{LATENCY_SAMPLES} single-SKU updates, 0.2-0.5 s apart, idle workers; ymsync with the default "
            f"YM_FLUSH_DELAY_MS=250 debounce; p99 of {LATENCY_SAMPLES} samples is their maximum")
    return [
        row("5. idle latency", "p50 enqueue → applied", _pct(ours, 50), _pct(base, 50), "s", "≤ 0.5 s",
            _pct(ours, 50) <= 0.5, note, better="lower"),
        row("5. idle latency", "p99 enqueue → applied", _pct(ours, 99), _pct(base, 99), "s", "≤ 1.5 s",
            _pct(ours, 99) <= 1.5, better="lower"),
    ]


# --- 6. report path ---------------------------------------------------------------------------

REPORT_DELAY_S, REPORT_SKUS = 3.0, 5_000


def _report_run(rig: Rig, start: Callable[[], Any]) -> dict[str, Any]:
    rig.sandbox.admin(f"stocks/{CAMPAIGN}", {s: i % 10 for i, s in enumerate(skus(REPORT_SKUS, "R"))})
    t0 = time.time()
    path = start()
    gen = [e for e in rig.sandbox.log(since=t0, op="generateStocksOnWarehousesReport") if e["status"] == 200]
    done_at = gen[0]["t"] + REPORT_DELAY_S
    info = rig.sandbox.log(since=t0, op="getReportInfo")
    return {"after_done": Path(path).stat().st_mtime - done_at, "info_calls": len(info), "total": time.time() - t0}


def bench_report(rig: Rig) -> list[Row]:
    rig.clean("0", report_delay_s=REPORT_DELAY_S)
    app = ym_app(rig)
    with ymsync_workers(rig, 1, 2, queues="reports").start():
        wait_ready(app, 1)

        def ours_start() -> str:
            result = app.send_task("ymsync.reports.stocks_on_warehouses", args=[{"campaignId": CAMPAIGN}, "CSV"])
            out = result.get(timeout=120)
            assert out["status"] == "DONE", out
            return out["rows_path"]

        ours = _report_run(rig, ours_start)
    rig.clean("0", report_delay_s=REPORT_DELAY_S)
    b = bl_app(rig)
    b.app.conf.task_ignore_result = False
    with baseline_workers(rig, 1, 2).start():
        wait_ready(b.app, 1)

        def base_start() -> str:
            out = b.report.apply_async((CAMPAIGN,), ignore_result=False).get(timeout=120)
            assert out["status"] == "DONE", out
            return out["path"]

        base = _report_run(rig, base_start)
    note = (f"sandbox reports take {REPORT_DELAY_S:g} s; {REPORT_SKUS:,} SKUs, CSV; ymsync paces info calls by "
            f"estimatedGenerationTime, the baseline polls every 5 s")
    return [
        row("6. report path", "report DONE → parsed rows on disk", ours["after_done"], base["after_done"], "s",
            note=note, better="lower"),
        row("6. report path", "info calls made", ours["info_calls"], base["info_calls"], "", better="lower"),
        row("6. report path", "request → parsed rows on disk", ours["total"], base["total"], "s", better="lower"),
    ]


# --- 7. footprint -----------------------------------------------------------------------------

FOOTPRINT_N, BASELINE_FOOTPRINT_N = 100_000, 20_000


def bench_footprint(rig: Rig, footprint: dict[str, Any]) -> list[Row]:
    assert rig.redis is not None
    rig.clean("0")
    ym_app(rig)
    before = rig.redis.info("memory")["used_memory"]
    push(rig, skus(FOOTPRINT_N, "F"))
    ours = (rig.redis.info("memory")["used_memory"] - before) / FOOTPRINT_N
    from ymsync.store import keys

    k = keys.campaign_keys(CAMPAIGN)
    generations = f"{keys.target_prefix(keys.campaign_target(CAMPAIGN))}hwm:*"
    hwm = sum(rig.redis.memory_usage(key, samples=0) for key in rig.redis.scan_iter(generations))
    parts = {**{name: rig.redis.memory_usage(k[name], samples=0) / FOOTPRINT_N for name in ("buf", "queue")},
             "hwm": hwm / FOOTPRINT_N}

    rig.clean("0")
    b = bl_app(rig)
    before = rig.redis.info("memory")["used_memory"]
    delay_all(b, skus(BASELINE_FOOTPRINT_N, "F"))
    base = (rig.redis.info("memory")["used_memory"] - before) / BASELINE_FOOTPRINT_N
    keys_total = sum(parts.values())
    rows = [row("7. footprint", "Redis bytes per pending SKU, MEMORY USAGE of the buffer keys", keys_total, None, "B",
                "≤ 200", keys_total <= 200,
                f"{FOOTPRINT_N:,} pending SKUs (names like F-00000042): pending value (buf) {parts['buf']:.0f} B + "
                f"delivery order (queue) {parts['queue']:.0f} B + a separate latest-wins record (hwm: none since "
                f"the pending value is its own; it holds only values that left otherwise, e.g. dead letters) "
                f"{parts['hwm']:.0f} B", better="lower"),
            row("7. footprint", "Redis bytes per pending SKU, INFO used_memory delta", ours, base, "B", "≤ 200",
                ours <= 200, f"everything Redis allocated meanwhile, over the same {FOOTPRINT_N:,} SKUs (hash tables "
                f"mid-rehash hold two bucket arrays); baseline: {BASELINE_FOOTPRINT_N:,} pending delay() messages",
                better="lower")]
    if "ymsync_rss" in footprint:
        o, bl = footprint["ymsync_rss"], footprint["baseline_rss"]
        rows.append(row("7. footprint", "worker RSS, largest process", o["max_process_peak_mb"],
                        bl["max_process_peak_mb"], "MB", "≤ 150 MB", o["max_process_peak_mb"] <= 150,
                        f"VmHWM from /proc after the throughput run; all {o['processes']} processes of the -c 4 "
                        f"worker: {o['total_mb']:.0f} MB (baseline {bl['total_mb']:.0f} MB)", better="lower"))
    return rows
