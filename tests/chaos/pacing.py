"""Pacing on the Market's view for the late-apply cases (unknown outcomes, v3 targets): conditions, not sleeps."""

from __future__ import annotations

import time

from tests.support.processes import wait_for

# Late applies at the case's 30 % rate, seeded: the first ten stock updates meet this schedule
# (three land late), so late applies strike early whatever the timing; the rate applies after.
LATE_SCHEDULE = ("ok", "late", "ok", "ok", "late", "ok", "ok", "late", "ok", "ok")


def received(bench, op: str) -> int:
    """Requests of ``op`` the sandbox has received: answered, or still being handled (a late apply)."""
    state = bench.state()
    done = sum(n for k, n in state["requests"].items() if k.split()[0] == op)
    return done + sum(state["in_flight"].values())


def next_wave_when_received(bench, op: str, before: int, cap_s: float = 1.0) -> None:
    """Pace waves on the Market: the next one goes once a request of the last has arrived there,
    or after ``cap_s`` when ymsync holds it back (its SKUs wait behind ones in doubt)."""
    since = time.monotonic()
    wait_for(lambda: received(bench, op) > before or time.monotonic() - since >= cap_s, cap_s + 5,
             "the last wave to reach the Market", interval=0.05)


def late_applies_landed(bench) -> None:
    """Until nothing is being handled at the sandbox: every late apply has landed (the referee saw it)."""
    wait_for(lambda: not bench.state()["in_flight"], 15, "the late applies to land")
