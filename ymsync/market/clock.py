"""MarketClock: the Market's time as this process can know it, from each reply's ``Date`` header.

A ``Date`` header has whole seconds: a reply stamped ``D`` left the Market when its clock read
something in ``[D, D + 1)``, somewhere between our send (``t_s``) and our receipt (``t_r``). So
(Market clock - local clock) lies in ``[D - t_r, D + 1 - t_s]``; the tightest bounds over recent
replies (the largest lower, the smallest upper) narrow it.

- ``now()`` is the local clock plus the lower bound: never ahead of the Market. A 420's ``Until``
  is measured against it, so a worker whose own clock lags pauses nobody longer than asked.
- ``stamp_cap_ms()``, the newest stamp worth sending: when the local clock agrees with the
  Market as far as the headers can tell (0 lies within the bounds), the local clock, so a stamp
  taken from the Market's own clock a moment ago (reconciliation stamps a fix just after the
  Market's value) keeps its order; when the local clock is measurably off, the Market's lower
  bound ("Stock for '…' should not be in the future" can then not happen). ``strict`` always
  takes the lower bound (a retry after the Market refused a stamp as in the future).

Until a reply has been seen, both are the local clock.
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
        # (local time, lower bound, upper bound) of (Market - local), one per reply
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=MAX_SAMPLES)
        self._lock = threading.Lock()

    def observe(self, date_header: str | None, received_at: float | None = None, sent_at: float | None = None) -> None:
        """Learn from one reply's ``Date`` header (ignored if missing or unreadable)."""
        if not date_header:
            return
        try:
            market = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        at = self.local() if received_at is None else received_at
        sent = at if sent_at is None else min(sent_at, at)
        with self._lock:
            self._samples.append((at, market - at, market + 1 - sent))

    def bounds(self) -> tuple[float, float] | None:
        """(lower, upper) bound on (Market clock - local clock) from recent replies; None if none."""
        now = self.local()
        with self._lock:
            while self._samples and now - self._samples[0][0] > SAMPLE_TTL_S:
                self._samples.popleft()
            if not self._samples:
                return None
            return max(s[1] for s in self._samples), min(s[2] for s in self._samples)

    def offset_s(self) -> float:
        """Lower bound on (Market clock - local clock) from recent replies; 0.0 if none."""
        bounds = self.bounds()
        return bounds[0] if bounds else 0.0

    def known(self) -> bool:
        return self.bounds() is not None

    def stamp_cap_ms(self, strict: bool = False) -> int:
        """The newest stamp to send now (see the module's docstring)."""
        bounds = self.bounds()
        local = self.local()
        if bounds is None:
            return int(local * 1000)
        lower, upper = bounds
        if not strict and lower <= 0.0 <= upper:
            return int(local * 1000)
        return int((local + lower) * 1000)

    def now(self) -> float:
        """The Market's time (unix seconds), never ahead of it by what the samples can tell."""
        return self.local() + self.offset_s()

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def seconds_until(self, until_unix: float) -> float:
        """Seconds from the Market's now to ``until_unix`` (a Market time), at least 0."""
        return max(0.0, until_unix - self.now())
