"""The QuotaLimiter's Redis scripts (see quota.py): the quota log and the Market's own count of
it, grants and settlements, parallel leases and pauses. Each script touches one quota's keys
(one hash tag), so it runs on one Redis Cluster slot.
"""

# Times are whole milliseconds of the server's clock: ``now`` rounds down (a grant is never
# decided early) and stamps round up (an entry never leaves the window early), so rounding can
# never let a window of the period hold more than the quota.
CLOCK = """
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now, stamp = math.floor(us / 1000), math.ceil(us / 1000)
"""

# Members are "o:<entry>:<units>" while the request is open (granted, not settled), then
# "s:<entry>:<units>" once settled on a reply the Market counted, or "u:<entry>:<units>" once
# settled without one (a 420, a reply that never came): kept in our count all the same, since
# the Market may have counted it. A settled entry leaves the window ``period`` after its
# stamp. An open one stays in it however long its request takes (the Market may count the
# request at the reply, which settle will stamp), until ``hold`` past the period: then its
# worker is presumed dead and its units come back. Units of "s:" entries leaving are added to
# the Market view's ``freed`` (below): the Market let them go no later than we do. The others'
# are not: crediting units the Market never counted would promise quota it does not have.
# Needs: now, period, hold; KEYS[1] log, KEYS[2] used, MKEY the Market view.
CLEAN = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - period, 'WITHSCORES')
local freed, gone = 0, 0
for i = 1, #old, 2 do
  local kind = string.sub(old[i], 1, 2)
  if kind ~= 'o:' or tonumber(old[i + 1]) <= now - period - hold then
    redis.call('ZREM', KEYS[1], old[i])
    local units = tonumber(string.match(old[i], ':(%d+)$'))
    gone = gone + units
    if kind == 's:' then freed = freed + units end
  end
end
if gone > 0 then redis.call('DECRBY', KEYS[2], gone) end
if freed > 0 and redis.call('EXISTS', MKEY) == 1 then redis.call('HINCRBY', MKEY, 'freed', freed) end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
"""

# The Market's own count (issue 20), from the X-RateLimit-Resource-* headers of every reply,
# kept in one hash per quota log so every worker on every machine sees it:
#   limit        the Market's Limit: the smaller of it and the configured amount holds
#   left, until  the Market's Remaining at the reply of the latest grant to reply (``vg``), less
#                our requests it had not seen yet (open, granted after it) and what we granted
#                since, plus what
#                left our own window since (``freed`` - ``f0``: the Market counted those units no
#                later than we did, so it freed them no later either): "send no more than the
#                Market says is left". ``until`` is the Market's Until on the Redis clock: in a
#                sliding window, when its oldest unit leaves, not all of them; what another client
#                spent is not known to leave until a period later, so the view binds until then.
#   foreign      what the Market counted beyond ours (another client of the same quota),
#                reserved in every window: the largest estimate of this period of readings
#                (``fcur`` since ``fstart``) and of the one before (``fprev``), however long ago:
#                a client seen spending is presumed to spend still until two periods of readings
#                say otherwise (a gap in our own traffic tells nothing about it)
#   flast        the last raw reading: a reading counts for as much as it and the one before agree

# KEYS: log used pause market; ARGV: amount, period_ms, want, minimum, entry, hold_ms.
# Returns {granted, wait_ms, units still free after it, ours in the window with it}.
ACQUIRE = CLOCK + """
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then return {0, paused, 0} end
local amount, period, hold = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[6])
local want, minimum = tonumber(ARGV[3]), tonumber(ARGV[4])
local MKEY = KEYS[4]
""" + CLEAN + """
local m = redis.call('HMGET', MKEY, 'limit', 'left', 'until', 'freed', 'f0', 'foreign')
if m[1] then amount = math.min(amount, tonumber(m[1])) end
minimum, want = math.max(1, math.min(minimum, amount)), math.min(want, amount)
local reserve = 0
if m[6] then reserve = tonumber(m[6]) end
local avail = amount - used - reserve
local left = nil
if m[2] and tonumber(m[3]) + period > now then left = tonumber(m[2]) + tonumber(m[4] or '0') - tonumber(m[5] or '0') end
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
  return {grant, 0, rest, used + grant}
end
-- Refused: when will enough units have left? A settled entry leaves at stamp + period; an
-- open one no sooner than now + period (if it settled this instant), at the latest when held
-- past its hold. Entries leave in that order, not in stamp order. What the Market said is left
-- grows by every unit of ours that leaves (it let them go no later), or binds a period past its
-- Until (by then every unit it counted has left).
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
if left ~= nil then wait = math.max(wait, freed_by(minimum - left, tonumber(m[3]) + period - now)) end
return {0, math.max(1, wait), 0}
"""

# Shrink an open grant to what was really used and stamp it with the completion time: the
# Market counted the request somewhere between send and reply, so the reply is the safe stamp.
# Settling twice, or after the grant was presumed dead, changes nothing. In the same call, the
# reply's X-RateLimit-Resource-* headers (-1: absent) update the Market view (see above).
# KEYS: log used market; ARGV: entry, granted, keep, period_ms, hold_ms, limit, remaining, until_in_ms,
# amount, view_ttl_ms, counted (1: a reply the Market counted), the grant's window_used (-1:
# unknown). Returns {settled, the Market's
# Limit changed (1) or not (0)}.
SETTLE = CLOCK + """
local period, hold, MKEY = tonumber(ARGV[4]), tonumber(ARGV[5]), KEYS[3]
local open = 'o:' .. ARGV[1] .. ':' .. ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], open)
local settled = 0
if score then
  local granted, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
  redis.call('ZREM', KEYS[1], open)
  if keep > 0 then
    local kind = 'u:'
    if ARGV[11] == '1' then kind = 's:' end
    redis.call('ZADD', KEYS[1], math.max(tonumber(score), stamp), kind .. ARGV[1] .. ':' .. keep)
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
""" + CLEAN + """
local changed = 0
if limit >= 0 then
  local before = redis.call('HGET', MKEY, 'limit')
  if before ~= tostring(limit) and (before or limit ~= tonumber(ARGV[9])) then changed = 1 end
  redis.call('HSET', MKEY, 'limit', limit)
end
if remaining >= 0 then
  -- Requests of ours granted after this one (or at the same millisecond) most likely reached the
  -- Market after it, so its Remaining does not count them yet; those granted before it were
  -- counted already (taking them off again held parallel workers to ~93 % of an idle quota).
  -- So the reply of the latest grant to have replied is the freshest word: an older grant's
  -- reply, overtaken by a newer one's, would bring back units the Market has since counted,
  -- and is not taken while that view binds. Every request granted after the one that sets the
  -- view is then still open here, so taking off the open ones granted since is exact.
  -- Without this request's own grant (settled twice, or presumed dead) every open one is.
  local since = '-inf'
  if score then since = score end
  local v = redis.call('HMGET', MKEY, 'vg', 'until')
  local fresher = not (score and v[1] and tonumber(v[2]) + period > now and tonumber(score) < tonumber(v[1]))
  if fresher then
    local open_units = 0
    local entries = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf')
    for _, e in ipairs(entries) do
      if string.sub(e, 1, 2) == 'o:' then open_units = open_units + tonumber(string.match(e, ':(%d+)$')) end
    end
    if until_in < 0 then until_in = period end
    local left = remaining - open_units
    -- A count the Market took when the request arrived, which our log as the grant left it
    -- (``ARGV[12]``) and the foreign reserve explain: the view knows nothing our log does not,
    -- and our log binds. Its Remaining is older than this reply: units of ours that left the
    -- Market's window since it counted (our log lets them go at their replies, later) are not in
    -- it, and taking it as of now held a request back a whole window (bench row 8, one run in
    -- four or five at 6-second windows). A count beyond what we explain binds as it reads.
    local ours = tonumber(ARGV[12])
    if limit >= 0 and ours >= 0 then
      if ARGV[11] ~= '1' then ours = ours - tonumber(ARGV[2]) end  -- a 420: not in its count
      local reserve = tonumber(redis.call('HGET', MKEY, 'foreign') or '0')
      local cap = math.min(limit, tonumber(ARGV[9]))
      if limit - remaining <= ours + reserve then left = math.max(left, cap - reserve - used) end
    end
    redis.call('HSET', MKEY, 'left', left, 'until', now + until_in, 'vg', score or now,
               'f0', redis.call('HGET', MKEY, 'freed') or '0')
    if limit >= 0 then
      -- What the Market counted beyond ours: another client of this quota. Ours it counted are
      -- at most our log as this request's grant left it (``ARGV[12]``): nothing granted later in,
      -- and what left our window since, which the Market still counted when the request
      -- arrived, still in. Our log stamps at the reply, later than the Market at arrival, and
      -- keeps refusals it may not count, so this reads low, never high, but for a request
      -- granted later that overtook this one on the way. Low is the safe side: it only reserves
      -- less, and what the Market says is left (above) still binds.
      local ours = tonumber(ARGV[12])
      if ours < 0 then ours = used - open_units end
      -- This request itself, where the Market did not count it (a 420): not ours in its count.
      if ARGV[11] ~= '1' then ours = ours - tonumber(ARGV[2]) end
      local raw = math.max(0, limit - remaining - ours)
      -- Believed as far as the reading before it agrees: an overtaking request reads high once,
      -- and the next reply, which it did not overtake, reads true.
      local foreign = math.min(raw, tonumber(redis.call('HGET', MKEY, 'flast') or '0'))
      redis.call('HSET', MKEY, 'flast', raw)
      -- Kept as the larger of this period's and the last period's largest estimates: a reply
      -- just as our own requests leave our window reads low, the others of the window read true.
      local m = redis.call('HMGET', MKEY, 'fcur', 'fstart')
      local cur, start = tonumber(m[1] or '0'), tonumber(m[2] or '0')
      if now - start >= period then
        redis.call('HSET', MKEY, 'fprev', cur)
        cur, start = foreign, now
      else
        cur = math.max(cur, foreign)
      end
      local prev = tonumber(redis.call('HGET', MKEY, 'fprev') or '0')
      redis.call('HSET', MKEY, 'fcur', cur, 'fstart', start, 'foreign', math.max(cur, prev))
    end
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
# KEYS: leases; ARGV: id, ttl_ms. The server's clock (ms, never 0) if renewed, else 0.
RENEW_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) * 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2) end
return now
"""

# A pause only ever grows: a short 420 must not cut a longer one short.
PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return redis.call('PTTL', KEYS[1])
"""
