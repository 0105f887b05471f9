"""``ymsync migrate``: move a 0.1 stock engine's Redis state to the current layout (one shot)."""

from __future__ import annotations

import click

from ymsync.engine.migrate import migrate as run_migration
from ymsync.cli import main
from ymsync.cli.push import _buffer, _redis


@main.command()
@click.option("--dry-run", is_flag=True, help="Only count what would move.")
def migrate(dry_run: bool) -> None:
    """Upgrade Redis state written by ymsync 0.1 (stop every stocks worker first).

    Pending and in-flight values, latest-wins and delivered records, dead letters and counters
    move to the hash-tagged keys; campaigns with pending values are scheduled. Idempotent: a
    second run finds nothing to move."""
    result = run_migration(_redis(), _buffer(), dry_run=dry_run)
    verb = "would move" if dry_run else "moved"
    click.echo(f"{verb}: {len(result.campaigns)} campaign(s), {result.pending} pending value(s), "
               f"{result.dead} dead letter(s), {result.records} per-SKU record(s)"
               + ("" if dry_run else f"; {result.deleted_keys} old key(s) deleted"))
