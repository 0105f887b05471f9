"""The ``ymsync`` command: thin wrappers over the library (and, for queue work, the tasks).

One module per command group; each registers itself on :data:`main` when imported below.
"""

from __future__ import annotations

import click

from ymsync import __version__


@click.group()
@click.version_option(__version__, prog_name="ymsync")
def main() -> None:
    """Keep a web shop's stock levels in sync with Yandex Market."""


from ymsync.cli import push, sandbox  # noqa: E402,F401  (each registers its commands)
from ymsync.cli import dead_letters  # noqa: E402,F401
from ymsync.cli import reads  # noqa: E402,F401
from ymsync.cli import reports  # noqa: E402,F401
from ymsync.cli import warehouses  # noqa: E402,F401
from ymsync.cli import demo, metrics, migrate  # noqa: E402,F401
from ymsync.cli import check, worker  # noqa: E402,F401

__all__ = ["main"]
