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
from ymsync.store.buffer_lua import OLDEST_AGE, SETTLE as BUFFER_SETTLE, TAKE


def _part(name: str, body: str) -> str:
    return f"local function {name}(KEYS, ARGV)\n{body}\nend\n"


_PARTS = (_part("renew", RENEW_SCRIPT) + _part("oldest_age", OLDEST_AGE) + _part("acquire", ACQUIRE)
          + _part("quota_settle", QUOTA_SETTLE) + _part("lease", LEASE_SCRIPT) + _part("take", TAKE)
          + _part("buffer_settle", BUFFER_SETTLE))

# KEYS: 1 tasks, 2 buf, 3 queue, 4 busy, 5 batches, 6 inflight:<batch>, 7 floor, 8 halt, 9 backoff,
#       10 quota log, 11 its :used, 12 pause, 13 market view, 14 parallel gate
# ARGV: 1 task slot ('' = none to hold), 2 slot ttl ms, 3 per_request (1/0), 4 batch_wait_ms,
#       5 max values, 6 max bytes, 7 batch lease ms, 8 batch id, 9 stamp cap ms,
#       10 quota on (1/0), 11 amount, 12 period ms, 13 fewest units worth a request, 14 grant entry,
#       15 hold ms, 16 Market view ttl ms, 17 lease id ('' = no gate), 18 max parallel, 19 lease ttl ms
# Returns {status, ...}: {'slot'} the task slot is no longer ours; {'empty'} nothing pending;
# {'held', ms} paused, halted or backing off; {'young', ms} a part-filled request waits for
# company; {'quota', ms} no quota now; {'lease'} every parallel slot is taken; {'none'} nothing
# takeable (all in flight); {'batch', granted, remaining, window_used, pending after, server ms,
# stamp floor, sku, value, sku, value...}.
BEGIN = _PARTS + """
if ARGV[1] ~= '' and renew({KEYS[1]}, {ARGV[1], ARGV[2]}) == 0 then return {'slot'} end
local pending = redis.call('HLEN', KEYS[2])
if pending == 0 then return {'empty'} end
-- A 420 pause, a halt (401/403) or a backoff holds every request of the target.
local held = math.max(redis.call('PTTL', KEYS[12]), redis.call('PTTL', KEYS[8]), redis.call('PTTL', KEYS[9]))
if held > 0 then return {'held', held} end
local maxn, per_request = tonumber(ARGV[5]), ARGV[3] == '1'
if per_request and pending < maxn then
  local age, patience = oldest_age({KEYS[2], KEYS[3]}, {}), tonumber(ARGV[4])
  if age < patience then return {'young', patience - age} end
end
local want = math.min(maxn, pending)
if per_request then want = 1 end
local granted, remaining, window_used = want, 1073741824, -1
local entry = ARGV[14]
if ARGV[10] == '1' then
  local minimum = math.min(want, tonumber(ARGV[13]))
  local g = acquire({KEYS[10], KEYS[11], KEYS[12], KEYS[13]},
                    {ARGV[11], ARGV[12], tostring(want), tostring(minimum), entry, ARGV[15]})
  if tonumber(g[1]) == 0 then return {'quota', g[2]} end
  granted, remaining = tonumber(g[1]), tonumber(g[3])
  if g[4] then window_used = tonumber(g[4]) end
end
local function give_back()
  if ARGV[10] == '1' then
    quota_settle({KEYS[10], KEYS[11], KEYS[13]}, {entry, tostring(granted), '0', ARGV[12], ARGV[15], '-1', '-1',
                                                 '-1', ARGV[11], ARGV[16], '1', tostring(window_used)})
  end
end
if ARGV[17] ~= '' and lease({KEYS[14]}, {ARGV[18], ARGV[19], ARGV[17]}) == 0 then
  give_back()
  return {'lease'}
end
local take_n = granted
if per_request then take_n = maxn end
local out = take({KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]},
                 {tostring(take_n), ARGV[6], ARGV[7], ARGV[8], ARGV[9]})
if #out == 0 then
  give_back()
  if ARGV[17] ~= '' then redis.call('ZREM', KEYS[14], ARGV[17]) end
  return {'none'}
end
local floor = table.remove(out)
local t = redis.call('TIME')
local res = {'batch', granted, remaining, window_used, pending - #out / 2,
             tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), floor}
for i = 1, #out do res[#res + 1] = out[i] end
return res
"""

# KEYS: 1 inflight:<batch>, 2 busy, 3 batches, 4 buf, 5 queue, 6 dead, 7 stats, 8 retired,
#       9 quota log, 10 its :used, 11 market view, 12 parallel gate,
#       13-15 delivered:<g>, <g-1>, <g-2> (appended by StockBuffer's generation retry)
# ARGV: 1 generation, 2 generation ms, 3 batch id, 4 action, 5 reason, 6 quota on (1/0),
#       7-18 the quota settlement (quota_lua.SETTLE's ARGV), 19 lease id ('' = none),
#       20 keep the lease this many ms more (0: release it), 21... the batch's SKUs to settle.
# The buffer's settlement goes first: a generation the caller named wrong fails the whole call
# before anything is written, and the caller retries it with the generation the error names.
# Returns {values settled, the Market's Limit changed (1/0)}.
END = _PARTS + """
local skus = {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]}
for i = 21, #ARGV do skus[#skus + 1] = ARGV[i] end
local n = buffer_settle({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8],
                         KEYS[13], KEYS[14], KEYS[15]}, skus)
if type(n) == 'table' and n.err then return n end
-- The Market works again: the failure streak ends (flush_failure.py).
if ARGV[4] == 'delivered' then redis.call('HDEL', KEYS[7], 'failstreak') end
local changed = 0
if ARGV[6] == '1' then
  local q = {}
  for i = 7, 18 do q[#q + 1] = ARGV[i] end
  changed = quota_settle({KEYS[9], KEYS[10], KEYS[11]}, q)[2]
end
if ARGV[19] ~= '' then
  if tonumber(ARGV[20]) > 0 then
    renew({KEYS[12]}, {ARGV[19], ARGV[20]})
  else
    redis.call('ZREM', KEYS[12], ARGV[19])
  end
end
return {n, changed}
"""
