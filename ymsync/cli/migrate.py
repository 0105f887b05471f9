"""``ymsync migrate``: move an older ymsync's Redis state (0.1's, or one tag per quota) to the current
layout (one shot)."""

from __future__ import annotations

import click

from ymsync.engine.migrate import migrate as run_migration
from ymsync.cli import main
from ymsync.cli.push import _buffer, _redis


@main.command()
@click.option("--dry-run", is_flag=True, help="Only count what would move.")
def migrate(dry_run: bool) -> None:
    """Upgrade Redis state written by an older ymsync (stop every worker first).

    From 0.1: pending and in-flight values, latest-wins and delivered records, dead letters and
    counters move to the hash-tagged keys; campaigns with pending values are scheduled. From a
    release with one tag per quota (``{q:1001}``, ``{g:c1001}``): quota logs, pauses, the
    Market's counts and parallel leases move under their target's tag, with their TTL.
    Idempotent: a second run finds nothing to move."""
    result = run_migration(_redis(), _buffer(), dry_run=dry_run)
    verb = "would move" if dry_run else "moved"
    tagged = result.tagged
    click.echo(f"{verb}: {len(result.campaigns)} campaign(s), {result.pending} pending value(s), "
               f"{result.dead} dead letter(s), {result.records} per-SKU record(s), "
               f"{tagged.get('quota', 0)} quota log(s), {tagged.get('pause', 0)} pause(s), "
               f"{tagged.get('market', 0)} Market count(s), {tagged.get('lease', 0)} parallel gate(s)"
               + ("" if dry_run else f"; {result.deleted_keys} old key(s) deleted"))
