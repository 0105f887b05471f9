"""``ymsync check``: one command an operator runs before going live (and after any change).

Settings parse; Redis answers and evicts nothing; the broker answers and every ymsync queue has a
consumer; every cabinet's token is accepted by the Market (one cheap call within its quota). A
table, then exit 1 if anything failed (warnings alone exit 0).
"""

from __future__ import annotations

import json

import click

from ymsync import checks
from ymsync.checks import FAIL, OK, WARN, Finding
from ymsync.cli import main
from ymsync.config.settings import SettingsError, get_settings
from ymsync.store.client import state_client

_STYLE = {OK: "green", WARN: "yellow", FAIL: "bold red"}


@main.command()
@click.option("--campaign", "campaigns", multiple=True, type=click.IntRange(min=1),
              help="Probe a v2 cabinet's token on this campaign when its cabinet lists none (repeatable).")
@click.option("--skip-market", is_flag=True, help="Do not call the Market (no token probe).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(campaigns: tuple[int, ...], skip_market: bool, as_json: bool) -> None:
    """Is this deployment ready? Settings, Redis, broker and workers, each cabinet's token."""
    findings = _findings(campaigns, skip_market)
    if as_json:
        click.echo(json.dumps([f.__dict__ for f in findings], indent=2, ensure_ascii=False))
    else:
        _print(findings)
    if checks.failed(findings):
        raise SystemExit(1)


def _findings(campaigns: tuple[int, ...], skip_market: bool) -> list[Finding]:
    try:
        settings = get_settings()
        cabinets = settings.require_cabinets()
    except SettingsError as exc:  # nothing else can be checked without settings
        return [Finding("settings", FAIL, str(exc))]
    found = [Finding("settings", OK, f"{len(cabinets)} cabinet(s) from {cabinets.source}")]
    client = state_client(settings, connect_timeout_s=3, timeout_s=5)
    try:
        found += checks.check_redis(settings, client)
        redis_ok = not any(f.check == "redis" and f.status == FAIL for f in found)
        from ymsync.cli.port import task_queue

        found += checks.check_consumers(task_queue().consumers, settings.broker_url)
        for cabinet in cabinets:
            if skip_market:
                found.append(Finding(f"token {cabinet.name}", WARN, "not probed (--skip-market)"))
            elif not redis_ok:  # the probe takes its quota from Redis, shared with every worker
                found.append(Finding(f"token {cabinet.name}", FAIL, "not probed: Redis is unreachable"))
            else:
                found.append(checks.check_token(settings, client, cabinet, campaigns))
    finally:
        client.close()
    return found


def _print(findings: list[Finding]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("check", "status", "detail")
    table.columns[2].overflow = "fold"  # a detail is read whole, never cut short
    for f in findings:
        table.add_row(f.check, f"[{_STYLE[f.status]}]{f.status}[/]", f.detail)
    console = Console()
    console.print(table)
    worst = FAIL if checks.failed(findings) else WARN if any(f.status == WARN for f in findings) else OK
    console.print({OK: "ready", WARN: "ready, with warnings", FAIL: "NOT ready"}[worst], style=_STYLE[worst])
