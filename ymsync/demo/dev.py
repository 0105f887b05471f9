"""``ymsync dev``: the local stack (:mod:`.stack`) kept up for a shop's own code to use.

Once the workers answer it prints the environment that code needs as ``export`` lines on stdout
(progress and problems go to stderr, so stdout is only what a shell can ``eval`` or ``source``),
writes the same lines to an env file (mode 0600: it holds the sandbox token and Flower's
password), and stays up until Ctrl-C, SIGTERM or SIGHUP, or until one of its processes dies.
Everything then stops the way the demo stops (workers before the Redis they use, whole process
groups), and the env file goes with it: it would name ports nothing listens on any more.
"""

from __future__ import annotations

import shlex
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ymsync.demo import world
from ymsync.demo.stack import DEV, LocalStack, Ports, stop_signals
from ymsync.files import atomic_writer

EXIT_OK, EXIT_FAILED = 0, 1
READY = "# ready: ymsync dev stays up until Ctrl-C or SIGTERM"
# Not ymsync settings (YM_*) and not Flower's own options (FLOWER_* configures Flower itself).
FLOWER_URL_VARIABLE, FLOWER_AUTH_VARIABLE = "YMSYNC_FLOWER_URL", "YMSYNC_FLOWER_AUTH"


@dataclass(frozen=True)
class DevOptions:
    workdir: Path | None = None  # default: a fresh folder under the system temp dir (kept: logs, reports)
    flower: bool = True
    ports: Ports = Ports()
    env_file: Path | None = None  # default: env.sh in the work folder


def shop_environment(stack: LocalStack) -> dict[str, str]:
    """What the workers run with (so the shop's code and ``ymsync`` commands agree with them), and
    where Flower is."""
    env = stack.ymsync_env()
    if stack.flower is not None:
        env[FLOWER_URL_VARIABLE] = stack.flower.url
        env[FLOWER_AUTH_VARIABLE] = f"{stack.flower.user}:{stack.flower.password}"
    return env


def export_lines(stack: LocalStack) -> list[str]:
    assert stack.market is not None
    header = [
        "# ymsync dev: a private Redis, the Market sandbox, a stocks and a reports worker"
        + (", Flower" if stack.flower is not None else ""),
        f"# cabinets: business {world.V2_BUSINESS} (v2, campaigns {', '.join(map(str, world.CAMPAIGNS))}), "
        f"business {world.BUSINESS} (v3, warehouses {', '.join(map(str, world.WAREHOUSES))})",
        f"# sandbox admin API: {stack.market.url}/_admin/state",
    ]
    return header + [f"export {name}={shlex.quote(value)}" for name, value in shop_environment(stack).items()]


def run_dev(options: DevOptions, out: TextIO, err: TextIO) -> int:
    """Run until stopped; return the exit code (0 stopped by a signal, 1 failed or a process died)."""
    with stop_signals() as stop:
        return _run(options, out, err, stop)


def _run(options: DevOptions, out: TextIO, err: TextIO, stop: threading.Event) -> int:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="ymsync-dev-"))
    env_file = options.env_file or workdir / "env.sh"
    stack = LocalStack(workdir, DEV, with_flower=options.flower, ports=options.ports)
    wrote_env = False
    try:
        _note(err, f"ymsync dev · working folder {workdir}")
        stack.start(progress=lambda what: _note(err, f"  {what}…"))
        if not stop.is_set():
            stack.wait_for_workers(should_stop=stop.is_set)
        if stop.is_set():
            return EXIT_OK
        lines = export_lines(stack)
        with atomic_writer(env_file) as fh:  # a temporary file: created 0600, kept so by the rename
            fh.write("\n".join(lines) + "\n")
        wrote_env = True
        out.write("\n".join([*lines, f"# the same lines: . {shlex.quote(str(env_file))}", READY]) + "\n")
        out.flush()
        while not stop.wait(0.5):
            dead = stack.dead()
            if dead:
                for child in dead:
                    _note(err, f"{child.name} exited; its log ({child.log}) says:\n{child.tail()}")
                return EXIT_FAILED
        return EXIT_OK
    except (RuntimeError, OSError) as exc:  # a child that would not start, a fixed port in use
        fixed = options.ports != Ports()
        _note(err, f"ymsync dev failed: {exc}" + (" (--port-base: its three ports must be free)" if fixed else ""))
        return EXIT_FAILED
    finally:
        _note(err, "stopping workers, Flower, Redis and the sandbox…")
        stack.stop()
        if wrote_env:
            env_file.unlink(missing_ok=True)
        _note(err, f"stopped. Logs are in {workdir / 'logs'}")


def _note(err: TextIO, text: str) -> None:
    """Print, unless the terminal is gone (after SIGHUP a write may fail): stopping matters more."""
    try:
        err.write(text + "\n")
        err.flush()
    except (OSError, ValueError):
        pass


__all__ = ["DevOptions", "EXIT_FAILED", "EXIT_OK", "FLOWER_AUTH_VARIABLE", "FLOWER_URL_VARIABLE", "READY",
           "export_lines", "run_dev", "shop_environment"]
