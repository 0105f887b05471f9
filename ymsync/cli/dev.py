"""``ymsync dev``: a local development stack that stays up (see ``ymsync/demo/dev.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ymsync.cli import main


@main.command()
@click.option("--port-base", type=click.IntRange(1024, 65533),
              help="Fixed ports: Redis on PORT, the sandbox on PORT+1, Flower on PORT+2 (default: free ones).")
@click.option("--no-flower", "no_flower", is_flag=True, help="Do not start Flower.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for logs, reports and the cabinets file (default: a new one under the temp dir).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the export lines here (default: env.sh in the work folder); removed on stop.")
def dev(port_base: int | None, no_flower: bool, workdir: Path | None, env_file: Path | None) -> None:
    """Run Redis, the Market sandbox, a stocks and a reports worker and Flower until Ctrl-C, and
    print the environment a shop's code needs as export lines (eval or source them)."""
    from ymsync.demo.dev import DevOptions, run_dev
    from ymsync.demo.stack import Ports

    ports = Ports.from_base(port_base) if port_base is not None else Ports()
    sys.exit(run_dev(DevOptions(workdir=workdir, flower=not no_flower, ports=ports, env_file=env_file),
                     sys.stdout, sys.stderr))
