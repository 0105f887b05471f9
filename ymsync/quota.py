"""QuotaLimiter: one Market quota shared by every worker process on every machine.

A strict, weighted sliding window kept in Redis: a request costs its units (SKUs for a stock
push), and no window of the period ever holds more than the quota. A token bucket would let
a full burst follow a full window and break the Market's own count; a log of grants cannot.
Time comes from the Redis server (``TIME``), so workers' clocks may drift freely.

Each grant is re-stamped when its request completes: the Market counted it somewhere between
send and reply, so measuring the window from the reply is the conservative choice.

Alongside: leases for the Market's cap on parallel requests (they expire, so a killed worker
leaks no slot) and pauses, which a 420 sets for every worker until the Market's ``Until``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Mapping

import redis

from . import keys
from .settings import Quota

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then return {0, paused} end
local amount, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local want, minimum = tonumber(ARGV[3]), tonumber(ARGV[4])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - period)
if #old > 0 then
  local freed = 0
  for _, m in ipairs(old) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
  redis.call('DECRBY', KEYS[2], freed)
end
local avail = amount - tonumber(redis.call('GET', KEYS[2]) or '0')
if avail >= minimum then
  local grant = math.min(want, avail)
  redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. grant)
  redis.call('INCRBY', KEYS[2], grant)
  redis.call('PEXPIRE', KEYS[1], period * 2)
  redis.call('PEXPIRE', KEYS[2], period * 2)
  return {grant, 0}
end
local need, acc = minimum - avail, 0
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  acc = acc + tonumber(string.match(entries[i], ':(%d+)$'))
  if acc >= need then return {0, math.max(1, tonumber(entries[i + 1]) + period - now + 1)} end
end
return {0, period}
"""

# Shrink a grant to what was really used and stamp it with the completion time.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1] .. ':' .. ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], member)
if not score then return 0 end
local granted, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], member)
if keep > 0 then redis.call('ZADD', KEYS[1], math.max(tonumber(score), now), ARGV[1] .. ':' .. keep) end
if granted > keep then redis.call('DECRBY', KEYS[2], granted - keep) end
return 1
"""

_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
"""

# A pause only ever grows: a short 420 must not cut a longer one short.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return redis.call('PTTL', KEYS[1])
"""


@dataclass(frozen=True)
class Grant:
    """``granted`` units (0 = none; then wait ``wait_s``). Settle it when the request ends."""

    method: str
    key: str
    granted: int
    wait_s: float
    entry: str = ""


class QuotaLimiter:
    def __init__(self, client: redis.Redis, quotas: Mapping[str, Quota | None], *,
                 max_parallel: int = 4, lease_ttl_s: float = 120.0) -> None:
        self.redis = client
        self.quotas = dict(quotas)
        self.max_parallel = max_parallel
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._settle = client.register_script(_SETTLE)
        self._lease = client.register_script(_LEASE)
        self._pause = client.register_script(_PAUSE)

    def acquire(self, method: str, key: str, want: int, minimum: int = 1) -> Grant:
        """Grant between ``minimum`` and ``want`` units now, or say how long to wait."""
        quota = self.quotas.get(method)
        if quota is None:  # switched off; pauses from 420s still apply
            paused = self.paused_for(method, key)
            return Grant(method, key, 0 if paused else want, paused)
        minimum = max(1, min(minimum, want, quota.amount))
        want = min(want, quota.amount)
        entry = uuid.uuid4().hex[:16]
        granted, wait_ms = self._acquire(
            keys=[keys.quota(method, key), keys.quota(method, key) + ":used", keys.pause(method, key)],
            args=[quota.amount, int(quota.seconds * 1000), want, minimum, entry])
        return Grant(method, key, int(granted), int(wait_ms) / 1000, entry if granted else "")

    def settle(self, grant: Grant, used: int | None = None) -> None:
        """Keep ``used`` units of the grant (default all), stamped now; give back the rest."""
        if not grant.entry:
            return
        qkey = keys.quota(grant.method, grant.key)
        keep = grant.granted if used is None else max(0, min(used, grant.granted))
        self._settle(keys=[qkey, qkey + ":used"], args=[grant.entry, grant.granted, keep])

    def usage(self, method: str, key: str) -> tuple[int, int | None]:
        """(units granted in the current window, quota amount or None if off)."""
        quota = self.quotas.get(method)
        if quota is None:
            return 0, None
        seconds, micros = self.redis.time()
        since = seconds * 1000 + micros // 1000 - int(quota.seconds * 1000)
        members = self.redis.zrangebyscore(keys.quota(method, key), f"({since}", "+inf")
        return sum(int(m.rsplit(b":", 1)[1]) for m in members), quota.amount

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

    def release(self, key: str, lease_id: str) -> None:
        self.redis.zrem(keys.lease(key), lease_id)

    def leases_in_use(self, key: str) -> int:
        return int(self.redis.zcard(keys.lease(key)))
