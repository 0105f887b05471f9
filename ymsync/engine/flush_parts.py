"""What every part of a stock flush shares: its options and its collaborators.

The Flusher (flusher.py: the round loop and fan-out) hands one :class:`FlushParts` to the failure
policy (flush_failure.py) and to the isolation of refused SKUs (isolation.py), so each of those
modules holds one concern and none reaches back into the Flusher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import redis

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.call_policy import Call, CallPolicy
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.schedule import Schedule
from ymsync.engine.targets import Target
from ymsync.store import keys

if TYPE_CHECKING:
    from ymsync.config.settings import Settings
    from ymsync.market import MarketClient


@dataclass(frozen=True)
class FlushOptions:
    """How a flush behaves (one set per worker; see README "Failure policy").

    ``budget_s``: how long one round may keep sending; ``retry_max_age_s``: a value failing longer
    is dead-lettered; ``halt_s``: after a 401/403, how long until one probe; ``lease_s``: how long a
    taken batch is ours; ``min_batch``: the fewest units a counted-in-SKUs request waits for;
    ``unknown_outcome_s``: how long a request of unknown outcome may still land (at most
    ``lease_s``); ``batch_wait_s``: how long a part-filled request waits for company when the
    quota counts requests; ``max_backoff_s``: the longest backoff after failures;
    ``fanout_after_s``: a round asks for a parallel sibling only when its backlog would keep it
    busy longer than this at its last request's pace (0: whenever the quota has room)."""

    budget_s: float = 5.0
    retry_max_age_s: float = 24 * 3600
    halt_s: float = 900.0
    lease_s: float = 120.0
    min_batch: int = 200
    unknown_outcome_s: float = 110.0
    batch_wait_s: float = 1.0
    max_backoff_s: float = 60.0
    fanout_after_s: float = 1.0

    def __post_init__(self) -> None:
        # The batch's lease must outlive the doubt about its request, or its values come back
        # (and may be sent again) while the request may still land.
        object.__setattr__(self, "unknown_outcome_s", min(self.unknown_outcome_s, self.lease_s))

    @classmethod
    def from_settings(cls, settings: "Settings", lease_s: float) -> "FlushOptions":
        return cls(retry_max_age_s=settings.retry_max_age_s, lease_s=lease_s,
                   unknown_outcome_s=settings.unknown_outcome_s, halt_s=settings.halt_probe_s,
                   max_backoff_s=settings.max_backoff_s, batch_wait_s=settings.batch_wait_s,
                   budget_s=settings.flush_budget_s, fanout_after_s=settings.fanout_after_s)


@dataclass(frozen=True)
class FlushParts:
    """The collaborators of a flush; shared by every thread of a worker, so it holds no flush's state."""

    buffer: StockBuffer
    limiter: QuotaLimiter
    policy: CallPolicy
    schedule: Schedule
    client_for: Callable[[Target], "MarketClient"]
    options: FlushOptions

    @property
    def redis(self) -> redis.Redis:
        return self.buffer.redis

    def call(self, t: Target, want: int, minimum: int) -> Call:
        return Call(t.method, t.quota_key, t.gate, self.client_for(t).clock, want=want, minimum=minimum)

    def bound(self, t: Target) -> Target:
        """``t`` sending through its carrier: for a warehouse group, its first campaign the Market
        has not refused (``keys.refused_carrier``); all refused, the first (the group halts)."""
        campaigns = t.carriers()
        if not campaigns:
            return t
        refused = self.redis.mget([keys.refused_carrier(t.name, c) for c in campaigns])
        return t.carried_by(next((c for c, r in zip(campaigns, refused) if r is None), campaigns[0]))

    def cost(self, t: Target, skus: int) -> int:
        """Quota units a request of ``skus`` values costs: one request, or its SKUs."""
        return 1 if t.per_request else skus

    @staticmethod
    def hold_keys(t: Target) -> list[str]:
        """The keys whose TTL holds the target's requests back: a 420 pause, a halt, a backoff."""
        k = keys.target_keys(t.name)
        return [keys.pause(t.method, t.quota_key), k["halt"], k["backoff"]]

    def held_off(self, t: Target) -> float:
        """Seconds until the target may send again: the longest of pause, halt and backoff."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self.hold_keys(t):
            pipe.pttl(key)
        return max(0, *pipe.execute()) / 1000

    def watch_lease(self, t: Target, seconds: float) -> None:
        """If this worker dies holding a batch, the scheduler looks once its lease is out."""
        self.schedule.watch(t.name, server_ms(self.redis) + int(seconds * 1000) + 100)


@dataclass
class Tally:
    """What part of a round did: (delivered, dead, requests) and, when it must stop, after how many
    seconds the target wants to run again (``wait``; None: go on)."""

    delivered: int = 0
    dead: int = 0
    requests: int = 0
    wait: float | None = None

    def add(self, other: "Tally") -> "Tally":
        self.delivered, self.dead = self.delivered + other.delivered, self.dead + other.dead
        self.requests += other.requests
        self.wait = other.wait
        return self


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000
