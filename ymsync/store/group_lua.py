"""Lua scripts that move a campaign target's state into its warehouse group's target
(engine/group_move.py). Each touches one target's keys (one hash tag), like every buffer script."""

from ymsync.store.buffer_lua import GENERATIONS
from ymsync.store.ingest_lua import FLIGHT

# On the group target. KEYS: buf busy flight hwm:g hwm:g-1 hwm:g-2 delivered:g delivered:g-1 delivered:g-2;
# ARGV: generation, generation_ms, then (sku, count, stamp_ms, at_ms) per value the Market accepted
# through the campaign. A record newer than the group's becomes the group's latest-wins and
# delivered record (so an older push to the group is refused as stale), and a pending group value
# older than it (not in flight) is dropped: the Market already holds the newer one.
# Returns how many records were taken over.
MERGE_DELIVERED = GENERATIONS + FLIGHT + """
local HWM, DEL = gens(4), gens(7)
local flying = in_flight_values(KEYS[3])
local n = 0
for i = 3, #ARGV, 4 do
  local sku, count, stamp, at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local h, hf = newest(HWM, sku)
  local hs = h and tonumber(string.match(h, '^(%d+)|')) or -1
  -- Newer than the group's newest value wherever it is (INGEST): the record becomes its newest.
  local dv, df = newest(DEL, sku)
  for _, v in ipairs({dv or '', redis.call('HGET', KEYS[1], sku) or '', flying[sku] or ''}) do
    local s = string.match(v, '^%d+|(%d+)|')
    if s then hs = math.max(hs, tonumber(s)) end
  end
  if hs < tonumber(stamp) then
    keep(HWM, sku, stamp .. '|' .. count, hf)
    keep(DEL, sku, count .. '|' .. stamp .. '|' .. at, df)
    local b = redis.call('HGET', KEYS[1], sku)
    if b and redis.call('SISMEMBER', KEYS[2], sku) == 0 then
      local bs = tonumber(string.match(b, '^%d+|(%d+)|'))
      if bs and bs < tonumber(stamp) then redis.call('HDEL', KEYS[1], sku) end
    end
    n = n + 1
  end
end
if n > 0 then stamp_expiry(HWM); stamp_expiry(DEL) end
return n
"""

# On the campaign target. KEYS: buf; ARGV: (sku, value) pairs as read before they were copied into the
# group. A value still the same is deleted (its queue entry goes when taking meets it); one rewritten
# meanwhile (a newer push) stays, to be moved on the next look.
DROP_MOVED = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"""
