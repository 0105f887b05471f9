"""The ``ymsync`` command: thin wrappers over the library (and, for queue work, the tasks).

One module per command group; each registers its commands on :data:`main` when imported. The
modules are imported only when their command runs (or its ``--help`` is asked for): a shop that
runs ``ymsync push FILE`` per file would otherwise pay for importing the whole library, Celery's
port, the sandbox and rich on every call. ``ymsync --help`` lists the commands from
:data:`COMMANDS` without importing any of them (tests/unit/test_cli_startup.py checks the summaries
there against the commands' own help, and what ``--help`` imports).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from ymsync import __version__

# Command name → (the module that registers it, the first paragraph of its help). The summary is
# the command's docstring's first paragraph, repeated here so the listing needs no import.
COMMANDS: dict[str, tuple[str, str]] = {
    "cabinets": ("ymsync.cli.warehouses",
                 "The configured cabinets: business, API mode, subscription, campaigns, where the token comes from."),
    "check": ("ymsync.cli.check",
              "Is this deployment ready? Settings, Redis, broker and workers, each cabinet's token."),
    "dead-letters": ("ymsync.cli.dead_letters",
                     "Stock values the Market refused or that failed too long: list, replay, purge."),
    "demo": ("ymsync.cli.demo",
             "Run ymsync end to end on a private Redis and the Market sandbox, playing a shop's day."),
    "dev": ("ymsync.cli.dev",
            "Run Redis, the Market sandbox, a stocks and a reports worker and Flower until Ctrl-C, and "
            "print the environment a shop's code needs as export lines (eval or source them)."),
    "metrics": ("ymsync.cli.metrics",
                "Serve ymsync's metrics on http://HOST:PORT/metrics until Ctrl-C or SIGTERM."),
    "migrate": ("ymsync.cli.migrate",
                "Upgrade Redis state written by an older ymsync (stop every worker first)."),
    "push": ("ymsync.cli.push",
             "Queue stock updates from a CSV (sku,count[,updatedAt][,warehouse]) or JSON Lines file."),
    "reconcile": ("ymsync.cli.reads",
                  "Compare the Market's stock with the last values ymsync delivered, and list the drift."),
    "report": ("ymsync.cli.reports", "Market reports, generated and fetched by the reports workers."),
    "retire": ("ymsync.cli.retire",
               "Retire SKUs the shop no longer sells: their pending values, latest-wins and delivered records "
               "and dead letters go, and reconciliation no longer re-queues them. With --final-count the count "
               "is sent first, as an ordinary update (its delivery then leaves no record)."),
    "sandbox": ("ymsync.cli.sandbox",
                "Run the local Market sandbox (a real HTTP server) until Ctrl-C or SIGTERM."),
    "status": ("ymsync.cli.push",
               "Per campaign and business: pending, in flight, delivered, dead-lettered, quota used, paused until."),
    "stocks": ("ymsync.cli.reads",
               "Read every offer's stock on the Market, page by page, within the shared read quota."),
    "warehouses": ("ymsync.cli.warehouses",
                   "List each cabinet's warehouses: id, name, work models and whether the API may stock them."),
    "worker": ("ymsync.cli.worker",
               "Run a worker for QUEUE with its profile (concurrency from YM_STOCKS_CONCURRENCY / "
               "YM_REPORTS_CONCURRENCY); further arguments go to `celery worker`."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use; the listing is read from :data:`COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name][0])  # its decorators register it on main
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing calls get_command for every name, importing every module: list the
        # loaded commands as click does and the others from their summaries, through a stand-in
        # command so the shortening is click's own.
        shown: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            if not command.hidden:
                shown.append((name, command))
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in shown])


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="ymsync")
def main() -> None:
    """Keep a web shop's stock levels in sync with Yandex Market."""


def load_all() -> dict[str, Any]:
    """Every command, imported (for tools that inspect them all: completion, tests, docs)."""
    for module, _ in COMMANDS.values():
        importlib.import_module(module)
    return dict(main.commands)


__all__ = ["COMMANDS", "LazyGroup", "load_all", "main"]
