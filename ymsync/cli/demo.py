"""``ymsync demo``: everything on one machine with nothing configured (see ``ymsync/demo``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ymsync.cli import main
from ymsync.cli.port import task_queue


class QueueGateway:
    """Starts the demo's report snapshot through the real tasks (the CLI's task-queue port), on the
    demo's private Redis whatever the developer's own environment says."""

    def __init__(self, redis_url: str) -> None:
        self.queue = task_queue(redis_url)

    def send_snapshot(self, requests: list[Any]) -> str:
        return self.queue.send_snapshot(requests)

    def result(self, task_id: str) -> dict[str, Any] | None:
        finished = self.queue.result(task_id)
        if finished is None:
            return None
        state, value = finished
        return value if isinstance(value, dict) else {"status": "failed", "failed": [f"{state}: {value!r}"]}


@main.command()
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(min=5),
              help="Seconds the shop's day lasts (start-up and the final settling come on top).")
@click.option("--no-flower", "no_flower", is_flag=True, help="Do not start Flower.")
@click.option("--catalog", default=8000, show_default=True, type=click.IntRange(min=100, max=100_000),
              help="SKUs per campaign and per v3 warehouse in the stock imports.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for logs and reports (default: a new one under the temp dir).")
def demo(duration: float, no_flower: bool, catalog: int, workdir: Path | None) -> None:
    """Run ymsync end to end on a private Redis and the Market sandbox, playing a shop's day."""
    from ymsync.demo import DemoOptions, run_demo

    from rich.console import Console

    # Piped (CI, a log file): wide enough for the summary table instead of rich's 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    code = run_demo(DemoOptions(duration=duration, flower=not no_flower, catalog=catalog, workdir=workdir),
                    QueueGateway, console)
    sys.exit(code)
