"""``ymsync`` starts cheaply: ``ymsync --help`` imports no command module and none of the heavy
dependencies, and ``ymsync push`` only what pushing needs (issue 18: a shop that runs ``ymsync push
FILE`` per file pays the start every time). What gets imported is checked, not seconds: a timed test
would fail on a busy machine and pass on a slow import that happens to run alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ymsync.cli import COMMANDS, load_all, main

ROOT = Path(__file__).resolve().parents[2]

# Never needed to print help or to queue updates from a file.
NEVER_FOR_PUSH = {"celery", "kombu", "billiard", "openpyxl", "prometheus_client", "rich", "requests", "urllib3",
                  "flower", "ymsync_celery", "ymsync.sandbox", "ymsync.market.client", "ymsync.reports",
                  "ymsync.reads", "ymsync.demo"}
# Nor for the command list: not even the clients.
NEVER_FOR_HELP = NEVER_FOR_PUSH | {"redis", "marshmallow", "ymsync.engine", "ymsync.market", "ymsync.config",
                                   "ymsync.store"}


def imported_by(*argv: str) -> set[str]:
    """Every module a fresh interpreter has loaded after running ``ymsync ARGV``."""
    probe = ("import json, sys\n"
             "from ymsync.cli import main\n"
             "try:\n"
             f"    main({list(argv)!r}, prog_name='ymsync')\n"
             "except SystemExit:\n"
             "    pass\n"
             "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Usage: ymsync" in done.stdout, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def offending(modules: set[str], banned: set[str]) -> list[str]:
    return sorted(m for m in modules if m in banned or any(m.startswith(b + ".") for b in banned))


def test_help_imports_no_command_module_nor_any_heavy_dependency():
    modules = imported_by("--help")
    assert offending(modules, NEVER_FOR_HELP) == []
    assert sorted(m for m in modules if m.startswith("ymsync")) == ["ymsync", "ymsync.cli"]


def test_push_imports_what_pushing_needs_and_nothing_else():
    modules = imported_by("push", "--help")
    assert {"ymsync.cli.push", "ymsync.engine.producer", "redis"} <= modules
    assert offending(modules, NEVER_FOR_PUSH) == []
    # The other commands' modules stay unloaded.
    assert sorted(m for m in modules if m.startswith("ymsync.cli.")) == ["ymsync.cli.push"]


def test_the_listing_names_every_command_where_it_is_registered():
    commands = load_all()
    assert set(commands) == set(COMMANDS)
    for name, command in commands.items():
        module, summary = COMMANDS[name]
        assert command.callback.__module__ == module or isinstance(command, click.Group), name
        assert summary == " ".join((command.help or "").split("\n\n")[0].split()), name


@pytest.mark.parametrize("width", [45, 80, 200])
def test_the_lazy_listing_reads_as_click_would_print_it(width):
    commands = load_all()
    for name, command in commands.items():
        stand_in = click.Command(name, help=COMMANDS[name][1])
        assert stand_in.get_short_help_str(width) == command.get_short_help_str(width), name


def test_every_command_runs_through_the_lazy_group():
    shown = CliRunner().invoke(main, ["--help"])
    assert shown.exit_code == 0
    for name in COMMANDS:
        assert f"\n  {name} " in shown.output
        sub = CliRunner().invoke(main, [name, "--help"], prog_name="ymsync")
        assert sub.exit_code == 0, (name, sub.output)
        assert f"Usage: ymsync {name}" in sub.output


def test_library_names_still_import_from_the_package():
    import ymsync
    import ymsync.market
    from ymsync.engine.producer import push_stocks
    from ymsync.market.client import MarketClient

    assert ymsync.push_stocks is push_stocks
    assert ymsync.market.MarketClient is MarketClient
    with pytest.raises(AttributeError):
        ymsync.market.NoSuchThing  # noqa: B018
