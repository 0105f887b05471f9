"""MarketClock: the Market's time as this process can know it, from each reply's ``Date`` header.

A ``Date`` header has whole seconds, so a reply whose header says ``D`` left the Market at some
time in ``[D, D + 1)``; by the time it arrives here the Market's clock reads at least ``D``. So
``D - local time at arrival`` is a lower bound on (Market clock - local clock), and the largest
of recent such bounds is the tightest one. ``now()`` built on it is never ahead of the Market's
clock (less the drift since the sample), which is what a stamp sent to the Market must respect
("Stock for '…' should not be in the future") and what a 420's ``Until`` must be measured against
(a worker whose own clock lags would otherwise pause everyone for as long as it is off).

Until a reply has been seen, ``now()`` is the local clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from email.utils import parsedate_to_datetime
from typing import Callable

SAMPLE_TTL_S = 600.0  # older samples are forgotten: clocks drift, and a stepped clock must heal
MAX_SAMPLES = 64


class MarketClock:
    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self.local = local
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)  # (local time, lower bound)
        self._lock = threading.Lock()

    def observe(self, date_header: str | None, received_at: float | None = None) -> None:
        """Learn from one reply's ``Date`` header (ignored if missing or unreadable)."""
        if not date_header:
            return
        try:
            market = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        at = self.local() if received_at is None else received_at
        with self._lock:
            self._samples.append((at, market - at))

    def offset_s(self) -> float:
        """Lower bound on (Market clock - local clock) from recent replies; 0.0 if none."""
        now = self.local()
        with self._lock:
            while self._samples and now - self._samples[0][0] > SAMPLE_TTL_S:
                self._samples.popleft()
            return max((offset for _, offset in self._samples), default=0.0)

    def known(self) -> bool:
        return self.offset_s() != 0.0 or bool(self._samples)

    def now(self) -> float:
        """The Market's time (unix seconds), never ahead of it by what the samples can tell."""
        return self.local() + self.offset_s()

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def seconds_until(self, until_unix: float) -> float:
        """Seconds from the Market's now to ``until_unix`` (a Market time), at least 0."""
        return max(0.0, until_unix - self.now())
