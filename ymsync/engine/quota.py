"""QuotaLimiter: one Market quota shared by every worker process on every machine.

A strict, weighted sliding window kept in Redis: a request costs its units (SKUs for a stock
push), and no window of the period ever holds more than the quota. A token bucket would let
a full burst follow a full window and break the Market's own count; a log of grants cannot.
Time comes from the Redis server (``TIME``), so workers' clocks may drift freely.

Each grant is re-stamped when its request completes: the Market counted it somewhere between
send and reply, so measuring the window from the reply is the conservative choice. Until then
it stays in the window however long the request takes (up to ``lease_ttl_s``, after which its
worker is presumed dead and the units come back).

Alongside: the Market's own count of each quota, from every reply's X-RateLimit-Resource-*
headers, which keeps ymsync to what another client of the same cabinet left; leases for the
Market's cap on parallel requests (they expire, so a killed worker leaks no slot) and pauses,
which a 420 sets for every worker until the Market's ``Until``. The scripts, and how the
Market's count is read, are in quota_lua.py.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Mapping

import redis

from ymsync.store import keys
from ymsync.config.settings import Quota
from ymsync.engine.quota_lua import ACQUIRE, LEASE_SCRIPT, PAUSE, RENEW_SCRIPT, SETTLE

UNLIMITED = 1 << 30  # "remaining" of a quota that is switched off
# How long the Market view outlives its last reply at least: its Limit is a subscription's, which
# changes rarely, and a warning is due only when it changes, not after every idle hour.
MARKET_VIEW_TTL_MS = 24 * 3600 * 1000

log = logging.getLogger("ymsync.engine.quota")


@dataclass(frozen=True)
class MarketCount:
    """One reply's ``X-RateLimit-Resource-*`` headers for its quota: the Market's Limit, what it
    says is left, and in how many seconds (on the Market's clock) its window frees."""

    limit: int | None = None
    remaining: int | None = None
    until_s: float | None = None


@dataclass(frozen=True)
class Grant:
    """``granted`` units (0 = none; then wait ``wait_s``). Settle it when the request ends."""

    method: str
    key: str
    granted: int
    wait_s: float
    entry: str = ""
    remaining: int = 0  # units still free in the window right after this grant (fan-out hint)
    window_used: int = -1  # units of ours in the window as this grant left it, itself included


class QuotaLimiter:
    """Quotas per method (``None`` = off), shared through Redis by every worker.

    ``lease_ttl_s`` is how long a request may take: a parallel slot expires after it, and a
    grant still unsettled a period after it is presumed lost with its worker.
    """

    def __init__(self, client: redis.Redis, quotas: Mapping[str, Quota | None], *,
                 max_parallel: int = 4, lease_ttl_s: float = 120.0) -> None:
        self.redis = client
        self.quotas = dict(quotas)
        self.max_parallel = max_parallel
        self.lease_ttl_ms = max(1, int(lease_ttl_s * 1000))
        self._acquire = client.register_script(ACQUIRE)
        self._settle = client.register_script(SETTLE)
        self._lease = client.register_script(LEASE_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        self._pause = client.register_script(PAUSE)

    @staticmethod
    def period_ms(quota: Quota) -> int:
        return max(1, int(quota.seconds * 1000))  # a sub-millisecond period would be no window at all

    def view_ttl_ms(self, quota: Quota | None) -> int:
        """How long the Market view outlives its last reply."""
        return MARKET_VIEW_TTL_MS if quota is None else max(MARKET_VIEW_TTL_MS, 2 * self.period_ms(quota)
                                                            + self.lease_ttl_ms)

    def acquire(self, method: str, key: str, want: int, minimum: int = 1) -> Grant:
        """Grant between ``minimum`` and ``want`` units now, or say how long to wait."""
        if want < 1:
            # A zero-unit grant would leave an empty entry in the log and mean nothing.
            raise ValueError(f"want must be at least 1, got {want}")
        quota = self.quotas.get(method)
        if quota is None:  # switched off; pauses from 420s still apply
            paused = self.paused_for(method, key)
            return Grant(method, key, 0 if paused else want, paused, remaining=0 if paused else UNLIMITED)
        minimum = max(1, min(minimum, want, quota.amount))
        want = min(want, quota.amount)
        entry = uuid.uuid4().hex[:16]
        qkey = keys.quota(method, key)
        granted, wait_ms, remaining, *window_used = self._acquire(
            keys=[qkey, qkey + ":used", keys.pause(method, key), keys.quota_market(method, key)],
            args=[quota.amount, self.period_ms(quota), want, minimum, entry, self.lease_ttl_ms])
        return Grant(method, key, int(granted), int(wait_ms) / 1000, entry if granted else "", int(remaining),
                     int(window_used[0]) if window_used else -1)

    def settle(self, grant: Grant, used: int | None = None, market: MarketCount | None = None, *,
               counted: bool = True) -> None:
        """Keep ``used`` units of the grant (default all), stamped now; give back the rest.
        ``market``: the reply's own count of this quota, folded into every worker's view in the
        same call (see the Market view above the scripts). ``counted``: a reply the Market surely
        counted (False for a 420 or no reply: the units stay ours, the Market view is not owed them)."""
        args = self.settle_args(grant, used, market, counted=counted)
        if args is None:
            return
        qkey = keys.quota(grant.method, grant.key)
        _, changed = self._settle(keys=[qkey, qkey + ":used", keys.quota_market(grant.method, grant.key)], args=args)
        if changed:
            self.warn_limit_changed(grant, market)

    def settle_args(self, grant: Grant, used: int | None = None, market: MarketCount | None = None, *,
                    counted: bool = True) -> list[int | str] | None:
        """quota_lua.SETTLE's arguments for :meth:`settle` (request_lua.END runs it in one call
        with the buffer's settlement); None when there is nothing to settle."""
        quota = self.quotas.get(grant.method)
        if quota is None or not (grant.entry or market):
            return None
        keep = grant.granted if used is None else max(0, min(used, grant.granted))
        m = market or MarketCount()
        until_ms = -1 if m.until_s is None else max(0, int(m.until_s * 1000) + 1)
        return [grant.entry or "-", grant.granted, keep, self.period_ms(quota), self.lease_ttl_ms,
                -1 if m.limit is None else max(0, m.limit), -1 if m.remaining is None else max(0, m.remaining),
                until_ms, quota.amount, self.view_ttl_ms(quota), 1 if counted else 0, grant.window_used]

    def warn_limit_changed(self, grant: Grant, market: MarketCount | None) -> None:
        """A settlement found the Market's Limit changed: say so once."""
        quota = self.quotas.get(grant.method)
        if quota is None or market is None or market.limit is None:
            return
        if market.limit != quota.amount:
            log.warning("%s %s: the Market's limit is %d per %gs, configured %d: %d holds (a subscription "
                        "change? set the quota to match)", grant.method, grant.key, market.limit, quota.seconds,
                        quota.amount, min(market.limit, quota.amount))
        else:
            log.warning("%s %s: the Market's limit is back to the configured %d per %gs", grant.method,
                        grant.key, quota.amount, quota.seconds)

    def market_view(self, method: str, key: str) -> dict[str, int]:
        """The Market's count of this quota as every worker sees it (status, metrics, tests)."""
        raw = self.redis.hgetall(keys.quota_market(method, key))
        return {k.decode(): int(v) for k, v in raw.items()}

    def usage(self, method: str, key: str) -> tuple[int, int | None]:
        """(units counted in the current window, quota amount or None if off), as acquire counts."""
        quota = self.quotas.get(method)
        if quota is None:
            return 0, None
        seconds, micros = self.redis.time()
        since = seconds * 1000 + micros // 1000 - self.period_ms(quota)
        members = self.redis.zrangebyscore(keys.quota(method, key), f"({since - self.lease_ttl_ms}", "+inf",
                                           withscores=True)
        return sum(int(m.rsplit(b":", 1)[1]) for m, score in members
                   if score > since or m.startswith(b"o:")), quota.amount

    def pause(self, method: str, key: str, seconds: float) -> None:
        """Every worker waits ``seconds`` before the next ``method`` call on ``key``."""
        if seconds > 0:
            self._pause(keys=[keys.pause(method, key)], args=[int(seconds * 1000) + 1])

    def paused_for(self, method: str, key: str) -> float:
        return max(0, int(self.redis.pttl(keys.pause(method, key)))) / 1000

    def lease(self, key: str) -> str | None:
        """Take one of ``max_parallel`` in-flight slots for ``key``; None if all are taken."""
        lease_id = uuid.uuid4().hex[:16]
        ok = self._lease(keys=[keys.lease(key)], args=[self.max_parallel, self.lease_ttl_ms, lease_id])
        return lease_id if ok else None

    def renew(self, key: str, lease_id: str, seconds: float) -> bool:
        """Keep a slot ``seconds`` longer; False if it had already expired (it is not ours now)."""
        return bool(self._renew(keys=[keys.lease(key)], args=[lease_id, max(1, int(seconds * 1000))]))

    def release(self, key: str, lease_id: str) -> None:
        self.redis.zrem(keys.lease(key), lease_id)

    def leases_in_use(self, key: str) -> int:
        return int(self.redis.zcard(keys.lease(key)))
