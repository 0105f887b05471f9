"""``ymsync demo``: the whole system on one machine with nothing configured, playing a shop's day.

:func:`run_demo` starts the stack (:mod:`.stack`), plays the day (:mod:`.day`) with a live view
(:mod:`.view`), prints the summary and stops everything, also on Ctrl-C, SIGTERM or SIGHUP (its terminal closed). The report
snapshot needs Celery's chord, so the caller (the CLI, through its task-queue port ``ymsync.cli.port``) passes a
factory for a :class:`~.day.SnapshotGateway`; the library itself never imports Celery.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.live import Live

from ymsync.demo import view
from ymsync.demo.day import Day, DayResult, SnapshotGateway
from ymsync.config.settings import configure
from ymsync.files import write_json_atomic
from ymsync.demo.stack import DEMO, LocalStack, stop_signals
from ymsync.demo.world import BUSINESS, CAMPAIGNS, V2_BUSINESS, WAREHOUSES

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass(frozen=True)
class DemoOptions:
    duration: float = 60.0
    flower: bool = True
    catalog: int = 8000  # SKUs per campaign and per v3 warehouse
    workdir: Path | None = None  # default: a fresh folder under the system temp dir (kept: reports, logs)


def run_demo(options: DemoOptions, gateway_factory: Callable[[str], SnapshotGateway] | None,
             console: Console | None = None) -> int:
    """Run the demo; return the process exit code (0 done, 1 failed, 130 stopped by a signal)."""
    console = console or Console()
    with stop_signals() as stop:
        return _run(options, gateway_factory, console, stop)


def _run(options: DemoOptions, gateway_factory: Callable[[str], SnapshotGateway] | None, console: Console,
         stop: threading.Event) -> int:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="ymsync-demo-"))
    stack = LocalStack(workdir, DEMO, with_flower=options.flower)
    day: Day | None = None
    try:
        console.print(f"[bold]ymsync demo[/] · working folder {workdir}")
        stack.start(progress=lambda what: console.print(f"  {what}…"))
        if not stop.is_set():
            stack.wait_for_workers(should_stop=stop.is_set)
        if stop.is_set():
            console.print("stopped before the day began")
            return EXIT_INTERRUPTED
        _announce(console, stack)
        # This process plays the shop: its push_stocks calls run with the stack's settings (the
        # cabinets file names the warehouse group, so a push naming 1001 or 1002 goes to the group's
        # one target), the way a framework configures them as it starts.
        configure(stack.ymsync_env())
        gateway = gateway_factory(stack.settings().redis_url) if gateway_factory else None
        assert stack.market is not None
        day = Day(stack.settings(), stack.market, gateway, options.duration, catalog=options.catalog)
        result = _play(console, day, stop)
        # The v3 business at the end, from the sandbox's admin API, beside what the shop pushed.
        write_json_atomic(workdir / "business-final.json", result.business_final, indent=1)
        console.print(view.summary(result))
        if not result.completed:
            return EXIT_INTERRUPTED
        dead = [c.name for c in stack.dead()]
        if dead:
            console.print(f"[red]these processes died during the demo:[/] {', '.join(dead)} (logs in {workdir / 'logs'})")
            return EXIT_FAILED
        return EXIT_OK
    except RuntimeError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return EXIT_FAILED
    finally:
        _say(console, "stopping workers, Flower, Redis and the sandbox…")
        if day is not None:
            day.close()
        stack.stop()
        configure(None)
        _say(console, f"stopped. Logs and reports are in {workdir}")


def _say(console: Console, text: str) -> None:
    """Print, unless the terminal is gone (after SIGHUP a write may fail): stopping matters more."""
    try:
        console.print(text)
    except OSError:
        pass


def _announce(console: Console, stack: LocalStack) -> None:
    assert stack.redis is not None and stack.market is not None
    console.print(f"  redis      {stack.redis.url}")
    console.print(f"  Market     {stack.market.url} (sandbox; admin API at {stack.market.url}/_admin/state)")
    console.print(f"  cabinets   {stack.cabinets_file}: business {V2_BUSINESS} (v2, warehouse groups: campaigns "
                  f"{', '.join(map(str, CAMPAIGNS))}), business {BUSINESS} (v3: warehouses "
                  f"{', '.join(map(str, WAREHOUSES))})")
    console.print("  workers    stocks queue (2 processes), reports queue (1 process)")
    if stack.flower is not None:
        f = stack.flower
        console.print(f"  Flower     {f.url}  user [bold]{f.user}[/]  password [bold]{f.password}[/]")
    console.print(f"  metrics    REDIS_URL={stack.redis.url} ymsync metrics --port 9808")


def _play(console: Console, day: Day, stop: threading.Event) -> DayResult:
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            return day.play(stop, lambda snap: live.update(view.live(snap)))
    last = [0.0]

    def show(snap: Any) -> None:
        # Not a terminal (a pipe, CI): a plain line every couple of seconds instead of redraws.
        if time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            console.print(view.plain(snap), soft_wrap=True)

    result = day.play(stop, show)
    for line in day.events:
        console.print(line, soft_wrap=True)
    return result


__all__ = ["DemoOptions", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "run_demo"]
