"""QuotaLimiter: one Market quota shared by every worker process on every machine.

A strict, weighted sliding window kept in Redis: a request costs its units (SKUs for a stock
push), and no window of the period ever holds more than the quota. A token bucket would let
a full burst follow a full window and break the Market's own count; a log of grants cannot.
Time comes from the Redis server (``TIME``), so workers' clocks may drift freely.

Each grant is re-stamped when its request completes: the Market counted it somewhere between
send and reply, so measuring the window from the reply is the conservative choice. Until then
it stays in the window however long the request takes (up to ``lease_ttl_s``, after which its
worker is presumed dead and the units come back).

Alongside: leases for the Market's cap on parallel requests (they expire, so a killed worker
leaks no slot) and pauses, which a 420 sets for every worker until the Market's ``Until``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Mapping

import redis

from ymsync.store import keys
from ymsync.config.settings import Quota

UNLIMITED = 1 << 30  # "remaining" of a quota that is switched off
# How long the Market view outlives its last reply at least: its Limit is a subscription's, which
# changes rarely, and a warning is due only when it changes, not after every idle hour.
MARKET_VIEW_TTL_MS = 24 * 3600 * 1000

log = logging.getLogger("ymsync.engine.quota")

# Times are whole milliseconds of the server's clock: ``now`` rounds down (a grant is never
# decided early) and stamps round up (an entry never leaves the window early), so rounding can
# never let a window of the period hold more than the quota.
_CLOCK = """
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now, stamp = math.floor(us / 1000), math.ceil(us / 1000)
"""

# Members are "o:<entry>:<units>" while the request is open (granted, not settled) and
# "s:<entry>:<units>" once settled. A settled entry leaves the window ``period`` after its
# stamp. An open one stays in it however long its request takes (the Market may count the
# request at the reply, which settle will stamp), until ``hold`` past the period: then its
# worker is presumed dead and its units come back. Units leaving are added to the Market view's
# ``freed`` (the Market view, below): the Market let them go no later than we do.
# Needs: now, period, hold; KEYS[1] log, KEYS[2] used, MKEY the Market view.
_CLEAN = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - period, 'WITHSCORES')
local freed = 0
for i = 1, #old, 2 do
  if string.sub(old[i], 1, 2) == 's:' or tonumber(old[i + 1]) <= now - period - hold then
    redis.call('ZREM', KEYS[1], old[i])
    freed = freed + tonumber(string.match(old[i], ':(%d+)$'))
  end
end
if freed > 0 then
  redis.call('DECRBY', KEYS[2], freed)
  if redis.call('EXISTS', MKEY) == 1 then redis.call('HINCRBY', MKEY, 'freed', freed) end
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
"""

# The Market's own count (issue 20), from the X-RateLimit-Resource-* headers of every reply,
# kept in one hash per quota log so every worker on every machine sees it:
#   limit        the Market's Limit: the smaller of it and the configured amount holds
#   left, until  the Market's Remaining at the last reply, less what we granted since, plus what
#                left our own window since (``freed`` - ``f0``: the Market counted those units no
#                later than we did, so it freed them no later either); binds until ``until`` (the
#                Market's Until, on the Redis clock): "send no more than the Market says is left"
#   foreign      what the Market counted beyond our own log (another client of the same quota),
#   fexp         reserved in every window until ``fexp``: the largest estimate of this period
#                (``fcur`` since ``fstart``) and the last (``fprev``)

# KEYS: log used pause market; ARGV: amount, period_ms, want, minimum, entry, hold_ms
_ACQUIRE = _CLOCK + """
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then return {0, paused, 0} end
local amount, period, hold = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[6])
local want, minimum = tonumber(ARGV[3]), tonumber(ARGV[4])
local MKEY = KEYS[4]
""" + _CLEAN + """
local m = redis.call('HMGET', MKEY, 'limit', 'left', 'until', 'freed', 'f0', 'foreign', 'fexp')
if m[1] then amount = math.min(amount, tonumber(m[1])) end
minimum, want = math.max(1, math.min(minimum, amount)), math.min(want, amount)
local reserve = 0
if m[6] and tonumber(m[7]) > now then reserve = tonumber(m[6]) end
local avail = amount - used - reserve
local left = nil
if m[2] and tonumber(m[3]) > now then left = tonumber(m[2]) + tonumber(m[4] or '0') - tonumber(m[5] or '0') end
if avail >= minimum and (left == nil or left >= minimum) then
  local grant = math.min(want, avail)
  if left ~= nil then grant = math.min(grant, left); redis.call('HINCRBY', MKEY, 'left', -grant) end
  redis.call('ZADD', KEYS[1], stamp, 'o:' .. ARGV[5] .. ':' .. grant)
  redis.call('INCRBY', KEYS[2], grant)
  -- This open entry is the one that may need its log longest: until stamp + period + hold.
  redis.call('PEXPIRE', KEYS[1], 2 * period + hold)
  redis.call('PEXPIRE', KEYS[2], 2 * period + hold)
  local rest = avail - grant
  if left ~= nil then rest = math.min(rest, left - grant) end
  return {grant, 0, rest}
end
-- Refused: when will enough units have left? A settled entry leaves at stamp + period; an
-- open one no sooner than now + period (if it settled this instant), at the latest when held
-- past its hold. Entries leave in that order, not in stamp order. What the Market said is left
-- grows by every unit of ours that leaves (it let them go no later), or binds until its Until.
local frees = {}
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local s = tonumber(entries[i + 1])
  local at = s + period
  if string.sub(entries[i], 1, 2) == 'o:' then at = math.min(math.max(s, now) + period, s + period + hold) end
  frees[#frees + 1] = {at, tonumber(string.match(entries[i], ':(%d+)$'))}
end
table.sort(frees, function(a, b) return a[1] < b[1] end)
local function freed_by(need, otherwise)
  if need <= 0 then return 0 end
  local acc = 0
  for _, f in ipairs(frees) do
    acc = acc + f[2]
    if acc >= need then return math.min(f[1] - now + 1, otherwise) end
  end
  return otherwise
end
local wait = freed_by(minimum - avail, period)
if left ~= nil then wait = math.max(wait, freed_by(minimum - left, tonumber(m[3]) - now)) end
return {0, math.max(1, wait), 0}
"""

# Shrink an open grant to what was really used and stamp it with the completion time: the
# Market counted the request somewhere between send and reply, so the reply is the safe stamp.
# Settling twice, or after the grant was presumed dead, changes nothing. In the same call, the
# reply's X-RateLimit-Resource-* headers (-1: absent) update the Market view (see above).
# KEYS: log used market; ARGV: entry, granted, keep, period_ms, hold_ms, limit, remaining, until_in_ms,
# amount, view_ttl_ms. Returns {settled, the Market's Limit changed (1) or not (0)}.
_SETTLE = _CLOCK + """
local period, hold, MKEY = tonumber(ARGV[4]), tonumber(ARGV[5]), KEYS[3]
local open = 'o:' .. ARGV[1] .. ':' .. ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], open)
local settled = 0
if score then
  local granted, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
  redis.call('ZREM', KEYS[1], open)
  if keep > 0 then
    redis.call('ZADD', KEYS[1], math.max(tonumber(score), stamp), 's:' .. ARGV[1] .. ':' .. keep)
    -- The log must outlive the new stamp by a period even if no grant refreshes it meanwhile.
    for i = 1, 2 do
      if redis.call('PTTL', KEYS[i]) < 2 * period then redis.call('PEXPIRE', KEYS[i], 2 * period) end
    end
  end
  if granted > keep then redis.call('DECRBY', KEYS[2], granted - keep) end
  settled = 1
end
local limit, remaining, until_in = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if remaining < 0 and limit < 0 then return {settled, 0} end
""" + _CLEAN + """
local changed = 0
if limit >= 0 then
  local before = redis.call('HGET', MKEY, 'limit')
  if before ~= tostring(limit) and (before or limit ~= tonumber(ARGV[9])) then changed = 1 end
  redis.call('HSET', MKEY, 'limit', limit)
end
if remaining >= 0 then
  -- Requests of ours still open may not be in the Market's count yet: they will be.
  local open_units = 0
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, e in ipairs(entries) do
    if string.sub(e, 1, 2) == 'o:' then open_units = open_units + tonumber(string.match(e, ':(%d+)$')) end
  end
  if until_in < 0 then until_in = period end
  redis.call('HSET', MKEY, 'left', remaining - open_units, 'until', now + until_in,
             'f0', redis.call('HGET', MKEY, 'freed') or '0')
  if limit >= 0 then
    -- What the Market counted that our log does not hold: another client of this quota. Our
    -- log holds every request of ours the Market's window does (we stamp later), so this is
    -- never more than the foreign use; the largest in the last period is reserved.
    local foreign = math.max(0, limit - remaining - used)
    -- Kept as the larger of this period's and the last period's largest estimates: a reply
    -- just as our own requests leave our window reads low (we stamp at the reply, the Market
    -- at arrival), the others of the window read true.
    local m = redis.call('HMGET', MKEY, 'fcur', 'fstart', 'foreign')
    local cur, start = tonumber(m[1] or '0'), tonumber(m[2] or '0')
    if now - start >= period then
      local prev = (now - start < 2 * period) and cur or 0
      cur, start = foreign, now
      redis.call('HSET', MKEY, 'fprev', prev)
    else
      cur = math.max(cur, foreign)
    end
    local prev = tonumber(redis.call('HGET', MKEY, 'fprev') or '0')
    redis.call('HSET', MKEY, 'fcur', cur, 'fstart', start, 'foreign', math.max(cur, prev), 'fexp', start + 2 * period)
  end
end
redis.call('PEXPIRE', MKEY, tonumber(ARGV[10]))
return {settled, changed}
"""

# Leases: a zset of holder -> expiry ms, at most ARGV[1] live. The schedule's task slots use
# the same two scripts. KEYS: leases; ARGV: max, ttl_ms, id. 1 if taken.
LEASE_SCRIPT = """
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

# Renew a slot only if it is still held: an expired one may already be someone else's.
# KEYS: leases; ARGV: id, ttl_ms. 1 if renewed.
RENEW_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) * 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2) end
return 1
"""

# A pause only ever grows: a short 420 must not cut a longer one short.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return redis.call('PTTL', KEYS[1])
"""


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
        self._acquire = client.register_script(_ACQUIRE)
        self._settle = client.register_script(_SETTLE)
        self._lease = client.register_script(LEASE_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        self._pause = client.register_script(_PAUSE)

    @staticmethod
    def _period_ms(quota: Quota) -> int:
        return max(1, int(quota.seconds * 1000))  # a sub-millisecond period would be no window at all

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
        granted, wait_ms, remaining = self._acquire(
            keys=[qkey, qkey + ":used", keys.pause(method, key), keys.quota_market(method, key)],
            args=[quota.amount, self._period_ms(quota), want, minimum, entry, self.lease_ttl_ms])
        return Grant(method, key, int(granted), int(wait_ms) / 1000, entry if granted else "", int(remaining))

    def settle(self, grant: Grant, used: int | None = None, market: MarketCount | None = None) -> None:
        """Keep ``used`` units of the grant (default all), stamped now; give back the rest.
        ``market``: the reply's own count of this quota, folded into every worker's view in the
        same call (see the Market view above the scripts)."""
        quota = self.quotas.get(grant.method)
        if quota is None or not (grant.entry or market):
            return
        qkey = keys.quota(grant.method, grant.key)
        keep = grant.granted if used is None else max(0, min(used, grant.granted))
        m = market or MarketCount()
        period = self._period_ms(quota)
        until_ms = -1 if m.until_s is None else max(0, int(m.until_s * 1000) + 1)
        _, changed = self._settle(
            keys=[qkey, qkey + ":used", keys.quota_market(grant.method, grant.key)],
            args=[grant.entry or "-", grant.granted, keep, period, self.lease_ttl_ms,
                  -1 if m.limit is None else max(0, m.limit), -1 if m.remaining is None else max(0, m.remaining),
                  until_ms, quota.amount, max(MARKET_VIEW_TTL_MS, 2 * period + self.lease_ttl_ms)])
        if changed and m.limit is not None:
            if m.limit != quota.amount:
                log.warning("%s %s: the Market's limit is %d per %gs, configured %d: %d holds (a subscription "
                            "change? set the quota to match)", grant.method, grant.key, m.limit, quota.seconds,
                            quota.amount, min(m.limit, quota.amount))
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
        since = seconds * 1000 + micros // 1000 - self._period_ms(quota)
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
