"""A stock request's two Redis scripts: BEGIN takes everything a request needs in one call, END
settles everything it changed in one call (issue 18: a request cost a dozen round trips).

They are composed from the scripts each concern owns, not copied from them: every part's text
becomes a local Lua function of (KEYS, ARGV) and the composite calls them in order, handing each
the slice of keys and arguments its own layout names. So the task slot's renewal, the quota
grant and settlement, the parallel lease and the buffer's take and settle behave exactly as
when called one by one (the unit tests of each part keep covering them), only atomically.

The keys all belong to one stock target (``keys.py``: since the one-key-space layout a target's
quota log, pause and parallel gate share its hash tag); where they do not (a warehouse group
sending through a campaign's quota), request_path.py runs the parts one by one on Redis Cluster.
"""

from __future__ import annotations

from ymsync.engine.quota_lua import ACQUIRE, LEASE_SCRIPT, RENEW_SCRIPT, SETTLE as QUOTA_SETTLE
from ymsync.store.buffer_lua import OLDEST_AGE, SETTLE as BUFFER_SETTLE, TAKE, TAKEABLE


def _part(name: str, body: str) -> str:
    return f"local function {name}(KEYS, ARGV)\n{body}\nend\n"


_PARTS = (_part("renew", RENEW_SCRIPT) + _part("oldest_age", OLDEST_AGE) + _part("acquire", ACQUIRE)
          + _part("quota_settle", QUOTA_SETTLE) + _part("lease", LEASE_SCRIPT) + _part("take", TAKE)
          + _part("buffer_settle", BUFFER_SETTLE) + _part("takeable", TAKEABLE))

# BEGIN:
# KEYS: 1 tasks, 2 buf, 3 queue, 4 busy, 5 batches, 6 flight, 7 floor, 8 halt, 9 backoff,
#       10 quota log, 11 its :used, 12 pause, 13 market view, 14 parallel gate, 15 moved, 16 isolating
# ARGV: 1 task slot ('' = none to hold), 2 slot ttl ms, 3 per_request (1/0), 4 batch_wait_ms,
#       5 max values, 6 max bytes, 7 batch lease ms, 8 batch id, 9 stamp cap ms,
#       10 quota on (1/0), 11 amount, 12 period ms, 13 fewest units worth a request, 14 grant entry,
#       15 hold ms, 16 Market view ttl ms, 17 lease id ('' = no gate), 18 max parallel, 19 lease ttl ms,
#       20 free the task slot when no request begins (1/0: the round then ends), 21 parked isolation
#       first (1/0: with work parked, begin nothing and say {'parked'}), 22 with ARGV 20: keep the
#       slot all the same when the quota frees within this many ms (the round waits that out)
# Returns {status, ...}: {'slot'} the task slot is no longer ours; {'empty'} nothing pending;
# {'held', ms} paused, halted or backing off; {'young', ms} a part-filled request waits for
# company; {'quota', ms} no quota now; {'lease'} every parallel slot is taken; {'none'} nothing
# takeable (all in flight); {'batch', granted, remaining, window_used, pending after, server ms,
# stamp floor, the batch packed (TAKE's reply: {sku, value, ...} by msgpack)}. With ARGV 20, a
# status other than batch and slot comes as {status, ms or 0, 'freed', takeable now (1/0)}: the
# slot was freed in the same call (not for a quota wait within ARGV 22's ms: that comes as
# {'quota', ms}, the slot kept).
# END:
# KEYS: 1 inflight:<batch> (where an older release kept it), 2 busy, 3 batches, 4 buf, 5 queue, 6 dead, 7 stats, 8 retired,
#       9 quota log, 10 its :used, 11 market view, 12 parallel gate, 13 flight,
#       14-16 delivered:<g>, <g-1>, <g-2> (appended by StockBuffer's generation retry)
# ARGV: 1 generation, 2 generation ms, 3 batch id, 4 action, 5 reason, 6 quota on (1/0),
#       7-18 the quota settlement (quota_lua.SETTLE's ARGV), 19 lease id ('' = none),
#       20 keep the lease this many ms more (0: release it), 21... the batch's SKUs to settle (none: all).
# The buffer's settlement goes first: a generation the caller named wrong fails the whole call
# before anything is written, and the caller retries it with the generation the error names.
# Returns {values settled, the Market's Limit changed (1/0)}.

_MAINS = _PARTS + """
local function begin_request(K, A)
  if A[1] ~= '' and renew({K[1]}, {A[1], A[2]}) == 0 then return {'slot'} end
  if A[21] == '1' and redis.call('EXISTS', K[16]) == 1 then return {'parked'} end
  local pending = redis.call('HLEN', K[2])
  if pending == 0 then return {'empty'} end
  -- A 420 pause, a halt (401/403) or a backoff holds every request of the target.
  local held = math.max(redis.call('PTTL', K[12]), redis.call('PTTL', K[8]), redis.call('PTTL', K[9]))
  if held > 0 then return {'held', held} end
  local maxn, per_request = tonumber(A[5]), A[3] == '1'
  if per_request and pending < maxn then
    local age, patience = oldest_age({K[2], K[3]}, {}), tonumber(A[4])
    if age < patience then return {'young', patience - age} end
  end
  local want = math.min(maxn, pending)
  if per_request then want = 1 end
  local granted, remaining, window_used = want, 1073741824, -1
  local entry = A[14]
  if A[10] == '1' then
    local minimum = math.min(want, tonumber(A[13]))
    local g = acquire({K[10], K[11], K[12], K[13]},
                      {A[11], A[12], tostring(want), tostring(minimum), entry, A[15]})
    if tonumber(g[1]) == 0 then return {'quota', g[2]} end
    granted, remaining = tonumber(g[1]), tonumber(g[3])
    if g[4] then window_used = tonumber(g[4]) end
  end
  local function give_back()
    if A[10] == '1' then
      quota_settle({K[10], K[11], K[13]}, {entry, tostring(granted), '0', A[12], A[15], '-1', '-1',
                                                   '-1', A[11], A[16], '1', tostring(window_used)})
    end
  end
  if A[17] ~= '' and lease({K[14]}, {A[18], A[19], A[17]}) == 0 then
    give_back()
    return {'lease'}
  end
  local take_n = granted
  if per_request then take_n = maxn end
  local out = take({K[2], K[3], K[4], K[5], K[6], K[7], K[15]},
                   {tostring(take_n), A[6], A[7], A[8], A[9]})
  if #out == 0 then
    give_back()
    if A[17] ~= '' then redis.call('ZREM', K[14], A[17]) end
    return {'none'}
  end
  local t = redis.call('TIME')
  return {'batch', granted, remaining, window_used, pending - out[3],
          tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), out[2], out[1]}
end

-- A request that does not begin ends its round: with A[20] the task slot is freed in this call,
-- then the look for takeable work, in ROUND_END's order (a producer that wrote meanwhile either saw
-- a free slot or wrote before the look). Nothing pending ('empty') or every parallel slot taken
-- ('lease'), a wait ('held', 'young', 'quota'): nothing to look for.
local function begin_in_round(K, A)
  local r = begin_request(K, A)
  if A[20] ~= '1' or r[1] == 'batch' or r[1] == 'slot' or r[1] == 'parked' then return r end
  if r[1] == 'quota' and tonumber(r[2]) <= tonumber(A[22] or '0') then return r end
  redis.call('ZREM', K[1], A[1])
  local look = 0
  if r[1] == 'none' then look = takeable({K[2], K[4]}, {}) end
  return {r[1], r[2] or 0, 'freed', look}
end

local function end_request(K, A, first_sku)
  local skus = {A[1], A[2], A[3], A[4], A[5]}
  for i = first_sku, #A do skus[#skus + 1] = A[i] end
  local n = buffer_settle({K[1], K[2], K[3], K[4], K[5], K[6], K[7], K[8],
                           K[13], K[14], K[15], K[16]}, skus)
  if type(n) == 'table' and n.err then return n end
  -- The Market works again: the failure streak ends (flush_failure.py).
  if A[4] == 'delivered' then redis.call('HDEL', K[7], 'failstreak') end
  local changed = 0
  if A[6] == '1' then
    local q = {}
    for i = 7, 18 do q[#q + 1] = A[i] end
    changed = quota_settle({K[9], K[10], K[11]}, q)[2]
  end
  if A[19] ~= '' then
    if tonumber(A[20]) > 0 then
      renew({K[12]}, {A[19], A[20]})
    else
      redis.call('ZREM', K[12], A[19])
    end
  end
  return {n, changed}
end
"""

BEGIN = _MAINS + "return begin_in_round(KEYS, ARGV)\n"
END = _MAINS + "return end_request(KEYS, ARGV, 21)\n"

# END, then BEGIN of the next request, in one call: a request under a backlog costs one round trip.
# KEYS: END's 1-13, BEGIN's 1-16 (as 14-29), END's generation hashes (30-32, appended last);
# ARGV: END's 1-20, BEGIN's 1-22 (as 21-42), the SKUs to settle (43...; none: all).
# Returns {values settled, Limit changed, BEGIN's reply...}.
END_BEGIN = _MAINS + """
local ek = {}
for i = 1, 13 do ek[i] = KEYS[i] end
ek[14], ek[15], ek[16] = KEYS[30], KEYS[31], KEYS[32]
local done = end_request(ek, ARGV, 43)
if done.err then return done end
local bk, ba = {}, {}
for i = 14, 29 do bk[#bk + 1] = KEYS[i] end
for i = 21, 42 do ba[#ba + 1] = ARGV[i] end
local nxt = begin_in_round(bk, ba)
local out = {done[1], done[2]}
for i = 1, #nxt do out[#out + 1] = nxt[i] end
return out
"""

# A flush round's end: free its task slot, then say whether some pending value can be taken now
# (dispatch.round_ended makes the target due if so). In this order, in one call: a producer that
# wrote meanwhile either saw a free slot or wrote before the look.
# KEYS: tasks buf busy; ARGV: the slot. 1 if something is takeable.
ROUND_END = _part("takeable", TAKEABLE) + """
redis.call('ZREM', KEYS[1], ARGV[1])
return takeable({KEYS[2], KEYS[3]}, {})
"""
