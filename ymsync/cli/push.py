"""``ymsync push`` and ``ymsync status``: the stock pipeline from a shell (``ymsync dead-letters``:
dead_letters.py)."""

from __future__ import annotations

import json
import sys
import time
from functools import lru_cache

import click
import redis

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.delivery import DeliveryTracker, Progress, server_time_ms
from ymsync.engine.inputs import UnreadableInput, open_input, read_items
from ymsync.store import keys
from ymsync.engine.producer import (InvalidInput, ItemError, check_business_updates, check_listed, check_updates,
                                    queue_updates)
from ymsync.errors import Unavailable
from ymsync.engine.group_target import campaign_stock_target
from ymsync.engine.targets import business_target
from ymsync.engine.quota import QuotaLimiter
from ymsync.config.settings import Settings, SettingsError, get_settings
from ymsync.engine.status import all_statuses, campaign_status
from ymsync.cli import main
from ymsync.store.client import state_client

EXIT_INVALID = 1  # invalid input: nothing queued
EXIT_UNDELIVERED = 3  # --wait: some SKUs were dead-lettered, or the wait timed out
EXIT_UNAVAILABLE = 4  # Redis could not take the updates (within YM_PRODUCER_TIMEOUT_S)


@lru_cache(maxsize=1)
def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def _redis() -> redis.Redis:
    return state_client(_settings(), timeout_s=30)


def _buffer() -> StockBuffer:
    return StockBuffer.from_settings(_redis(), _settings())


def _limiter() -> QuotaLimiter:
    s = _settings()
    return QuotaLimiter(_redis(), s.quotas, max_parallel=s.max_parallel)


@main.command()
@click.option("--campaign", "campaign_id", type=click.IntRange(min=1), help="Market campaign id (v2 cabinets).")
@click.option("--business", "business_id", type=click.IntRange(min=1),
              help="Business id (v3 cabinets): values addressed by warehouse (a warehouse column or --warehouse).")
@click.option("--warehouse", type=click.IntRange(min=1), help="With --business: the warehouse of lines without one.")
@click.argument("file", default="-", metavar="FILE|-")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]),
              help="Input format; default: from the extension, else sniffed (CSV needs a header).")
@click.option("--skip-invalid", is_flag=True, help="Queue the valid updates and report the invalid ones.")
@click.option("--wait", is_flag=True, help="Show progress until every SKU is delivered or dead-lettered.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="With --wait: give up after seconds.")
def push(campaign_id: int | None, business_id: int | None, warehouse: int | None, file: str, fmt: str | None,
         skip_invalid: bool, wait: bool, timeout: float | None) -> None:
    """Queue stock updates from a CSV (sku,count[,updatedAt][,warehouse]) or JSON Lines file.

    --campaign N for a v2 cabinet (campaign-level stock), --business N for a v3 one (stock by
    warehouse: a warehouse column or field, or --warehouse for all lines).

    Every line is checked first; if any is invalid nothing is queued (exit 1) unless
    --skip-invalid. With --wait, exits 3 if any SKU was dead-lettered or the campaign is halted
    (the Market refused the token; the backlog is kept). Exits 4 if Redis cannot take the
    updates within YM_PRODUCER_TIMEOUT_S (the message says whether they may have been queued).
    """
    try:
        with open_input(file) as stream:
            read = read_items(stream, file, fmt)
    except (OSError, UnreadableInput) as exc:
        raise click.ClickException(str(exc)) from None
    if (campaign_id is None) == (business_id is None):
        raise click.UsageError("give one of --campaign (v2 cabinets) and --business (v3 cabinets)")
    if warehouse is not None and business_id is None:
        raise click.UsageError("--warehouse goes with --business")
    if business_id is not None:
        checked = check_business_updates(read.items, read.labels, warehouse=warehouse, business_id=business_id,
                                         warehouses=_warehouse_check())
        where, target_id = f"business {business_id}", business_target(business_id)
    else:
        try:
            check_listed(campaign_id, _settings().cabinets)
        except InvalidInput as exc:
            click.echo(f"{exc.errors[0].message}; nothing queued", err=True)
            sys.exit(EXIT_INVALID)
        checked = check_updates(read.items, read.labels)
        where, target_id = f"campaign {campaign_id}", campaign_stock_target(campaign_id)
    errors = sorted(read.problems + checked.errors, key=_line_number)
    if errors:
        for line in errors:
            click.echo(f"{file}: {line}", err=True)
        if not skip_invalid:
            click.echo(f"{len(errors)} invalid line(s); nothing queued (--skip-invalid queues the valid rest)",
                       err=True)
            sys.exit(EXIT_INVALID)
    if not checked.updates:
        click.echo("nothing to queue", err=True)
        sys.exit(EXIT_INVALID if errors else 0)
    buffer = _buffer()
    # Queued as push_stocks queues: no retries, YM_PRODUCER_TIMEOUT_S to connect and per reply.
    producer = StockBuffer.from_settings(state_client(_settings(), bounded=True),
                                         _settings())
    try:
        pushed_after = server_time_ms(producer)
        result = queue_updates(producer, target_id, checked.updates, what=where)
    except redis.RedisError as exc:  # the clock read before anything was queued
        click.echo(Unavailable(where, len(checked.updates), f"{type(exc).__name__}: {exc}"), err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except Unavailable as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_UNAVAILABLE)
    skipped = f", {len(errors)} invalid skipped" if errors else ""
    click.echo(f"queued {len(checked.updates)} update(s) for {where}: {result.accepted} accepted, "
               f"{result.unchanged} unchanged (the Market already has them), "
               f"{result.stale} older than (or equal to) a value already held{skipped}")
    if wait:
        tracker = DeliveryTracker(buffer, target_id, checked.updates, pushed_after)
        progress, halted = _wait(tracker, timeout)
        click.echo(f"delivered {progress.delivered} of {progress.total} SKU(s), {progress.dead} dead-lettered")
        if halted:
            click.echo(f"{where} is {halted}; its {progress.total - progress.settled} pending SKU(s) "
                       "are kept and go out once the token works (a probe checks every few minutes)", err=True)
            sys.exit(EXIT_UNDELIVERED)
        if progress.dead:
            shown = ", ".join(tracker.dead_skus[:10]) + (" …" if len(tracker.dead_skus) > 10 else "")
            click.echo(f"dead-lettered: {shown} (see: ymsync dead-letters list)", err=True)
        if not progress.done:
            click.echo(f"timed out with {progress.total - progress.settled} SKU(s) still pending", err=True)
        if progress.dead or not progress.done:
            sys.exit(EXIT_UNDELIVERED)


def _line_number(error: str) -> int:
    # A checked item's error carries its label ("line 7"); the reader's problems are plain lines.
    label = error.label if isinstance(error, ItemError) else error.split(":", 1)[0]
    return int(label[5:]) if label.startswith("line ") and label[5:].isdigit() else 0


def _wait(tracker: DeliveryTracker, timeout: float | None) -> tuple[Progress, str | None]:
    """Until every SKU settles, ``timeout`` passes or the campaign halts (the Market refused the
    token: nothing will move until it works again); (progress, the halt's reason or None)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    limiter = _limiter()
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (TextColumn("campaign {task.fields[campaign]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[note]}"), TimeElapsedColumn())
    with Bar(*columns, transient=False, disable=not sys.stderr.isatty(),
             console=Console(stderr=True)) as bar:
        task = bar.add_task("push", total=tracker.total, campaign=tracker.campaign_id, note="")
        while True:
            progress = tracker.poll()
            state = campaign_status(tracker.buffer, limiter, tracker.campaign_id)
            quota = f"quota {state.quota_used}/{state.quota_amount}" if state.quota_amount else "quota off"
            paused = f", paused: {state.pause_reason}" if state.paused_until else ""
            note = f"dead {progress.dead}, pending {state.pending}, in flight {state.in_flight}, {quota}{paused}"
            bar.update(task, completed=progress.settled, note=note)
            if progress.done or (deadline is not None and time.monotonic() > deadline):
                return progress, None
            if state.pause_reason and state.pause_reason.startswith("halted") and not state.in_flight:
                return progress, state.pause_reason
            time.sleep(0.25)


@main.command()
@click.option("--campaign", "campaign_id", type=click.IntRange(min=1), help="Only this campaign.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(campaign_id: int | None, as_json: bool) -> None:
    """Per campaign and business: pending, in flight, delivered, dead-lettered, quota used, paused until."""
    buffer, limiter = _buffer(), _limiter()
    try:
        rows = [campaign_status(buffer, limiter, campaign_id)] if campaign_id else all_statuses(buffer, limiter)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis at {_settings().redis_url}: {exc}") from None
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    from ymsync.cli.output import console, status_table

    console().print(status_table(rows) if rows else "no campaigns yet")


def _warehouse_check():
    """The cabinets' warehouse directory: refuses unknown or unavailable warehouses at enqueue."""
    from ymsync.cli import cabinet as ctx
    from ymsync.reads.warehouses import WarehouseDirectory

    return WarehouseDirectory(ctx.redis_client(), ctx.client, ctx.limiter).refusals
