"""``ymsync worker stocks|reports``: run a worker with its launch profile (``workers/*.sh``).

The profiles are installed with the package (``ymsync_celery/workers/``, package data), so a
``pip install ymsync`` has them as well as a checkout and the image. Found as files, never
imported: the library still imports nothing of the Celery side but the CLI's port.
"""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path

import click

from ymsync.cli import main

PROFILES = ("stocks", "reports")


def profile_path(queue: str) -> Path:
    """The installed launch profile of a queue's workers: beside ``ymsync_celery.celeryconfig``
    (located, not loaded: loading it would read the settings), in site-packages or a checkout."""
    spec = find_spec("ymsync_celery.celeryconfig")
    if spec is None or not spec.origin:
        raise click.ClickException("ymsync's Celery side (ymsync_celery) is not installed")
    return Path(spec.origin).parent / "workers" / f"{queue}.sh"


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("queue", type=click.Choice(PROFILES))
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--print-path", is_flag=True, help="Print the profile's installed path and exit (before QUEUE).")
def worker(queue: str, celery_args: tuple[str, ...], print_path: bool) -> None:
    """Run a worker for QUEUE with its profile (concurrency from YM_STOCKS_CONCURRENCY /
    YM_REPORTS_CONCURRENCY); further arguments go to `celery worker`."""
    path = profile_path(queue)
    if not path.is_file():
        raise click.ClickException(f"the {queue} worker profile is not installed at {path}")
    if print_path:
        click.echo(str(path))
        return
    # The profile runs `celery`: the one installed beside this Python, even in a venv not activated.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    os.execvpe("sh", ["sh", str(path), *celery_args], env)  # the worker replaces this process: signals reach it
