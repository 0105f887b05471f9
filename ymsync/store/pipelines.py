"""A pipeline of script calls in one round trip.

redis-py asks ``SCRIPT EXISTS`` before every pipeline that calls a script, which is a second
round trip per pipeline: a producer's ``push_stocks`` and a flush round's first look each paid
it. The server keeps its scripts until it restarts, fails over or is flushed, so
:func:`execute` sends the pipeline as it is and handles the rare miss instead: a script call the
server answers ``NOSCRIPT`` did not run, and runs again in order after the rest, through redis-py's
own path, which loads the script first.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.exceptions import NoScriptError


def execute(pipe: redis.client.Pipeline, *, then: tuple[Any, ...] | None = None) -> list[Any]:
    """Run a non-transactional ``pipe``; replies in order, errors as exceptions in the list (as
    ``execute(raise_on_error=False)``). ``then``: a command queued last in ``pipe`` (``WAIT``)
    that must come after every write, queued again after any script call that ran again."""
    if pipe.transaction or not getattr(pipe, "scripts", None):
        return pipe.execute(raise_on_error=False)
    scripts = {script.sha: script for script in pipe.scripts}
    stack = [(args, options) for args, options in pipe.command_stack]
    pipe.scripts = set()  # no SCRIPT EXISTS before it
    replies = pipe.execute(raise_on_error=False)
    missed = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if not missed:
        return replies
    again = pipe  # execute() reset it: the same connection pool (a Cluster node's own)
    for i in missed:
        args, options = stack[i]
        again.scripts.add(scripts[args[1]])  # redis-py loads it before this run
        again.execute_command(*args, **options)
    if then is not None:
        again.execute_command(*then)
    rerun = again.execute(raise_on_error=False)
    for i, reply in zip(missed, rerun):
        replies[i] = reply
    if then is not None:
        replies[-1] = rerun[-1]
    return replies


def raise_first(replies: list[Any]) -> list[Any]:
    """``replies``, or the first error among them raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


__all__ = ["execute", "raise_first"]
