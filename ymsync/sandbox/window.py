"""The sandbox's quota windows: a strict weighted sliding window per (method, key), and a foreign
client that spends a fixed share of it every window, as another integration of the same cabinet
(an ERP, the seller's own scripts) would at the real Market.

The foreign client's spend is part of the window like any request: it is counted in what the
``X-RateLimit-Resource-Remaining`` header reports and in what a request is refused for, so the
sandbox's headers stay truthful while someone else spends the quota.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from ymsync.config.settings import Quota


class SlidingWindow:
    """Weighted strict sliding-window log: no window of ``seconds`` ever holds more than ``amount``."""

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self.events: deque[tuple[float, int]] = deque()
        self.used = 0
        self.peak = 0
        self.rejected = 0
        self.admitted = 0
        # The foreign client: ``foreign_units`` spent at ``foreign_next`` and every period after
        # (what the quota has room for then: the Market refuses it too when full).
        self.foreign_units = 0
        self.foreign_next = 0.0
        self.foreign_spent = 0

    def set_foreign(self, share: float, now: float) -> None:
        """A foreign client spending ``share`` of each window from now on (0: none)."""
        self.foreign_units = max(0, int(round(self.quota.amount * share)))
        self.foreign_next = now

    def _drop(self, horizon: float) -> None:
        while self.events and self.events[0][0] <= horizon:
            self.used -= self.events.popleft()[1]

    def _expire(self, now: float) -> None:
        period = self.quota.seconds
        if self.foreign_units and self.foreign_next <= now:
            # Windows nobody looked at: only the last two can still matter.
            skipped = math.floor((now - self.foreign_next) / period) - 1
            if skipped > 0:
                self.foreign_next += skipped * period
            # Bursts in time order, each after the window expired up to it, so the log stays sorted
            # (every append of ours comes through here first, so no later stamp precedes a burst).
            while self.foreign_next <= now:
                self._drop(self.foreign_next - period)
                spend = min(self.foreign_units, max(0, self.quota.amount - self.used))
                if spend:
                    self.events.append((self.foreign_next, spend))
                    self.used += spend
                    self.foreign_spent += spend
                self.foreign_next += period
        self._drop(now - period)

    def admit(self, cost: int, now: float) -> float:
        """Charge ``cost`` and return 0, or charge nothing and return seconds until it would fit."""
        self._expire(now)
        if self.used + cost <= self.quota.amount or (not self.events and cost > self.quota.amount):
            self.events.append((now, cost))
            self.used += cost
            self.admitted += cost
            self.peak = max(self.peak, self.used)
            return 0.0
        self.rejected += 1
        need, freed = self.used + cost - self.quota.amount, 0
        for stamp, amount in self.events:
            freed += amount
            if freed >= need:
                return stamp + self.quota.seconds - now
        return self.quota.seconds

    def consume(self, amount: int, now: float) -> None:
        """A foreign client's one-off spend (it may overfill the window: the Market counted it)."""
        self._expire(now)
        self.events.append((now, amount))
        self.used += amount

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.quota.amount - self.used)

    def reset_at(self, now: float) -> float:
        self._expire(now)
        return (self.events[0][0] + self.quota.seconds - now) if self.events else 0.0

    def snapshot(self, now: float) -> dict[str, Any]:
        self._expire(now)
        return {"amount": self.quota.amount, "seconds": self.quota.seconds, "used": self.used,
                "peak": self.peak, "rejected": self.rejected, "admitted": self.admitted,
                "foreign_units": self.foreign_units, "foreign_spent": self.foreign_spent}
