"""``ymsync report ...``: queue Market reports for the ``reports`` workers and watch them.

The request is validated here, before anything is queued, so a typo costs nothing (a bad
request that reached the Market would also burn the 1-per-2-minutes generate quota). The
worker does the Market calls; ``--wait`` follows its status transitions through Redis.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click
import redis

from ymsync.market.schemas import InvalidRequest
from ymsync.reports.poller import read_events
from ymsync.reports.request import ReportRequest
from ymsync.config.settings import SettingsError, get_settings
from ymsync.cli import main
from ymsync.cli.port import TaskQueue, task_queue
from ymsync.store.client import state_client

_FINAL = {"DONE": 0, "FAILED": 1, "ERROR": 1}


@main.group()
def report() -> None:
    """Market reports, generated and fetched by the reports workers."""


def _ints(values: tuple[str, ...], option: str) -> list[int] | None:
    """``--warehouse 1,2 --warehouse 3`` → [1, 2, 3]; a non-number is refused by name."""
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            try:
                out.append(int(part))
            except ValueError:
                raise click.UsageError(f"{option}: {part!r} is not an integer id") from None
    return out or None


@report.command("stocks-on-warehouses")
@click.option("--campaign", type=int, help="Campaign id: stock on the Market's (FBY) or the shop's warehouse.")
@click.option("--warehouse", "warehouses", multiple=True, metavar="ID[,ID…]", help="With --campaign (FBY): warehouses.")
@click.option("--report-date", metavar="YYYY-MM-DD", help="With --campaign (FBY): the report covers the day before.")
@click.option("--business", type=int, help="Business id: stock on every shop warehouse of the business.")
@click.option("--campaigns", "campaign_ids", multiple=True, metavar="ID[,ID…]", help="With --business: only these shops.")
@click.option("--category", "categories", multiple=True, metavar="ID[,ID…]", help="With --business: Market categories.")
@click.option("--has-stocks", "has_stocks", flag_value=True, default=None, help="With --business: only offers in stock.")
@click.option("--no-stocks", "has_stocks", flag_value=False, help="With --business: only offers out of stock.")
@click.option("--format", "fmt", type=click.Choice(["CSV", "JSON", "FILE"], case_sensitive=False), default="CSV",
              show_default=True, help="CSV or JSON (a ZIP), or FILE (an XLSX with Russian captions).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="With --wait: copy the file here (the worker keeps its own in YM_REPORTS_DIR).")
@click.option("--wait/--no-wait", default=False, help="Follow the job live until the file is in.")
@click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(min=1), help="Seconds --wait waits.")
def stocks_on_warehouses(campaign: int | None, warehouses: tuple[str, ...], report_date: str | None,
                         business: int | None, campaign_ids: tuple[str, ...], categories: tuple[str, ...],
                         has_stocks: bool | None, fmt: str, out_dir: str | None, wait: bool, timeout: float) -> None:
    """Generate the stocks-on-warehouses report, download it and count its rows.

    Either --campaign ID [--warehouse …] [--report-date D] or --business ID [--campaigns …]
    [--category …] [--has-stocks | --no-stocks]."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    if campaign is not None and business is None and not warehouses and not report_date:
        # DBS/FBS/Express: businessId + campaignIds (the spec marks campaignId as soon unavailable
        # for them); FBY campaigns (fby_campaigns / YM_FBY_CAMPAIGNS) keep campaignId.
        try:
            body = settings.cabinets.by_campaign(campaign).stocks_report_body(campaign)
        except LookupError:
            body = {"campaignId": campaign}
        if "businessId" in body:
            click.echo(f"note: asking as businessId={body['businessId']} + campaignIds={campaign} "
                       "(campaignId is going away for DBS/FBS/Express reports)", err=True)
            campaign, business, campaign_ids = None, int(body["businessId"]), (str(body["campaignIds"][0]),)
    request = _build(campaign, warehouses, report_date, business, campaign_ids, categories, has_stocks, fmt)
    queue = task_queue()  # the Celery app only once the request is known good
    job_id = queue.send_report(request)
    click.echo(f"queued report job {job_id} ({request.describe()}) on the reports queue")
    if not wait:
        click.echo("follow it with --wait, or in Flower (task ymsync.reports.stocks_on_warehouses)")
        return
    outcome = _follow(queue, job_id, state_client(settings, timeout_s=30), timeout)
    if out_dir and outcome.get("status") == "DONE":
        outcome = _copy_out(outcome, Path(out_dir))
    sys.exit(_show(outcome))


@report.command("stocks")
@click.option("--business", type=click.IntRange(min=1), required=True, help="Business (cabinet) id.")
@click.option("--warehouse", "warehouses", multiple=True, metavar="ID[,ID…]",
              help="Only these warehouses of the business (see: ymsync warehouses --business ID).")
@click.option("--category", "categories", multiple=True, metavar="ID[,ID…]", help="Only these Market categories.")
@click.option("--has-stocks", "has_stocks", flag_value=True, default=None, help="Only offers in stock.")
@click.option("--no-stocks", "has_stocks", flag_value=False, help="Only offers out of stock.")
@click.option("--format", "fmt", type=click.Choice(["CSV", "JSON", "FILE"], case_sensitive=False), default="CSV",
              show_default=True, help="CSV or JSON (a ZIP), or FILE (an XLSX with Russian captions).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="With --wait: copy the file here (the worker keeps its own in YM_REPORTS_DIR).")
@click.option("--wait/--no-wait", default=False, help="Follow the job live until the file is in.")
@click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(min=1), help="Seconds --wait waits.")
def business_stocks(business: int, warehouses: tuple[str, ...], categories: tuple[str, ...], has_stocks: bool | None,
                    fmt: str, out_dir: str | None, wait: bool, timeout: float) -> None:
    """The business stocks report (v3 generateStocksReport): stock on the business's own warehouses.

    For cabinets without warehouse groups (mode v3); 1 per 2 minutes a business (1 a minute with
    the Medium subscription)."""
    from ymsync.cli.cabinet import cabinet, settings as cabinet_settings

    try:
        request = ReportRequest.business_stocks(business, fmt.upper(),
                                                warehouse_ids=_ints(warehouses, "--warehouse") or (),
                                                category_ids=_ints(categories, "--category") or (),
                                                has_stocks=has_stocks)
    except InvalidRequest as exc:
        raise click.UsageError(str(exc)) from None
    settings = cabinet_settings()
    cabinet(business, mode="v3", what="the business stocks report (generateStocksReport)")
    queue = task_queue()
    job_id = queue.send_report(request)
    click.echo(f"queued report job {job_id} ({request.describe()}) on the reports queue")
    if not wait:
        click.echo("follow it with --wait, or in Flower (task ymsync.reports.business_stocks)")
        return
    outcome = _follow(queue, job_id, state_client(settings, timeout_s=30), timeout)
    if out_dir and outcome.get("status") == "DONE":
        outcome = _copy_out(outcome, Path(out_dir))
    sys.exit(_show(outcome))


def _copy_out(outcome: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Copy the report and its parsed rows into ``--out``. The worker only ever writes inside
    its YM_REPORTS_DIR; when that is not visible from here, say so and keep the worker's path."""
    copied = dict(outcome)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for key in ("path", "rows_path"):
            source = Path(outcome[key]) if outcome.get(key) else None
            if source is None or not source.is_file():
                click.echo(f"note: {source} is on the worker's disk, not visible here; not copied", err=True)
                continue
            copied[key] = str(Path(shutil.copy2(source, folder / source.name)).resolve())
    except OSError as exc:
        # The report itself is done and kept by the worker: say where, and why the copy failed.
        reason = exc.strerror or type(exc).__name__
        raise click.ClickException(f"the report is done ({outcome.get('path')}), but copying it to {folder} "
                                   f"failed: {reason} ({exc.filename or folder})") from None
    return copied


def _build(campaign: int | None, warehouses: tuple[str, ...], report_date: str | None, business: int | None,
           campaign_ids: tuple[str, ...], categories: tuple[str, ...], has_stocks: bool | None,
           fmt: str) -> ReportRequest:
    problems = []
    if (campaign is None) == (business is None):
        problems.append("pass exactly one of --campaign and --business")
    if campaign is not None:
        problems += [f"{opt} is only for --business reports" for opt, given in
                     (("--campaigns", campaign_ids), ("--category", categories),
                      ("--has-stocks/--no-stocks", has_stocks is not None)) if given]
    if business is not None:
        problems += [f"{opt} is only for --campaign (FBY) reports" for opt, given in
                     (("--warehouse", warehouses), ("--report-date", report_date)) if given]
    if problems:
        raise click.UsageError("; ".join(problems))
    body: dict[str, Any] = {"campaignId": campaign, "businessId": business,
                            "warehouseIds": _ints(warehouses, "--warehouse"), "reportDate": report_date,
                            "campaignIds": _ints(campaign_ids, "--campaigns"),
                            "categoryIds": _ints(categories, "--category"), "hasStocks": has_stocks}
    try:
        return ReportRequest.build(body, fmt.upper())
    except InvalidRequest as exc:
        raise click.UsageError(str(exc)) from None


def _follow(queue: TaskQueue, job_id: str, client: redis.Redis, timeout: float) -> dict[str, Any]:
    """Print each status transition as the worker records it; return the job's outcome."""
    seen = 0
    deadline = time.monotonic() + timeout
    while True:
        finished = queue.result(job_id)  # checked before reading events, so the last ones are never missed
        for event in read_events(client, job_id, seen):
            seen += 1
            stamp = time.strftime("%H:%M:%S", time.localtime(event["t"]))
            click.echo(f"  {stamp}  {event['status']:<14} {event['message']}")
        if finished is not None:
            _, value = finished
            break
        if time.monotonic() > deadline:
            raise click.ClickException(f"still running after {timeout:g}s; job {job_id} goes on in the worker")
        time.sleep(0.2)
    if not isinstance(value, dict):
        return {"status": "ERROR", "reason": f"the task failed: {type(value).__name__}: {value}"}
    return value


def _show(outcome: dict[str, Any]) -> int:
    status = outcome.get("status", "ERROR")
    if status == "DONE":
        click.echo(outcome.get("path"))
        sheets = ", ".join(outcome.get("sheets") or [])
        click.echo(f"{outcome.get('rows', 0)} rows ({sheets}); parsed rows in {outcome.get('rows_path')}")
        for drift, label in (("unknown_columns", "new columns ignored"), ("missing_columns", "columns missing")):
            if outcome.get(drift):
                click.echo(f"note: {label}: {', '.join(outcome[drift])}")
        return 0
    sub = f" {outcome['sub_status']}" if outcome.get("sub_status") else ""
    click.echo(f"report {status}{sub}: {outcome.get('reason') or 'no reason given'}", err=True)
    return _FINAL.get(status, 1)


__all__ = ["report"]
