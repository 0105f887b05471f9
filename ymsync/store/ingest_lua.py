"""The StockBuffer's producer-side Lua scripts, beside the others in ``buffer_lua.py`` (which they
build on: the server clock and the generation helpers). Layouts are given above each script."""

from ymsync.store.buffer_lua import GENERATIONS

# KEYS: buf queue stats busy hwm:g hwm:g-1 hwm:g-2 delivered:g delivered:g-1 delivered:g-2;
# ARGV: generation, generation_ms, horizon_ms, force (1/0), updates: one string of
# "sku<GS>count<GS>stamp" entries (stamp '' = now) joined by <RS> (\x1d and \x1e: a SKU holds no
# control character, a business item key's \x1f aside; buffer.py refuses any other).
# Returns {accepted, stale, unchanged, too_old, pending after this chunk}.
# One argument, bulk reads (one HMGET per hash) and bulk writes (one HSET per hash written): a
# re-push of an unchanged catalogue, the documented repair after an outage, costs ~1 us a SKU in
# Redis where one argument and one call per record cost several times that on both sides.
# ``lookup`` overlays what this chunk wrote, so a SKU twice in one chunk is judged against its own
# earlier update exactly as one call per update would judge it.
INGEST = GENERATIONS + """
local HWM, DEL = gens(5), gens(8)
local accepted, stale, coalesced, unchanged, too_old = 0, 0, 0, 0, 0
local force = ARGV[4] == '1'
local oldest = tonumber(now) - tonumber(ARGV[3])
local skus, counts, stamps = {}, {}, {}
for sku, count, stamp in string.gmatch(ARGV[5] or '', '([^\\29\\30]+)\\29(%d+)\\29(%d*)') do
  local n = #skus + 1
  skus[n], counts[n], stamps[n] = sku, count, stamp
end
if #skus == 0 then return {0, 0, 0, 0, redis.call('HLEN', KEYS[1])} end
-- rows[g][j]: SKU j's record in generation g, read newest first and an older generation only for
-- the SKUs the newer ones lack (a catalogue pushed within a generation needs one HMGET).
local function records(gs)
  local rows = {redis.call('HMGET', gs[1], unpack(skus)), {}, {}}
  local miss, at = {}, {}
  for j = 1, #skus do
    if not rows[1][j] then miss[#miss + 1] = skus[j]; at[#at + 1] = j end
  end
  for g = 2, 3 do
    if #miss == 0 then break end
    local got, miss2, at2 = redis.call('HMGET', gs[g], unpack(miss)), {}, {}
    for m = 1, #miss do
      if got[m] then rows[g][at[m]] = got[m] else miss2[#miss2 + 1] = miss[m]; at2[#at2 + 1] = at[m] end
    end
    miss, at = miss2, at2
  end
  return rows
end
local hw, dl = records(HWM), records(DEL)
local bufv = redis.call('HMGET', KEYS[1], unpack(skus))
local busy = redis.call('SMISMEMBER', KEYS[4], unpack(skus))
-- What this chunk wrote, per SKU: the newest generation's value (found = 1 from then on).
local hwm_new, del_new, buf_new = {}, {}, {}
local hwm_order, del_order, buf_order, queued = {}, {}, {}, {}
local hdel = {{}, {}, {}, {}, {}, {}}  -- HWM g-1, g-2, DEL g-1, g-2 (slots 2, 3, 5, 6)
local function lookup(rows, written, j, sku)
  if written[sku] then return written[sku], 1 end
  for g = 1, 3 do
    local v = rows[g][j]
    if v then return v, g end
  end
  return nil, 0
end
local function put(written, order, base, sku, value, found)
  if not written[sku] then order[#order + 1] = sku end
  written[sku] = value
  if found > 1 then hdel[base + found][#hdel[base + found] + 1] = sku end
end
for j, sku in ipairs(skus) do
  local count, stamp = counts[j], stamps[j]
  if stamp == '' then stamp = now end
  local h, hat = lookup(hw, hwm_new, j, sku)
  local drop = false
  if tonumber(stamp) < oldest then
    -- Older than the horizon: the Market refuses it, and the records that could order it against
    -- a newer value may be gone. Nothing that old can be sent safely.
    drop = true
    too_old = too_old + 1
  elseif h then
    local hs, hc = string.match(h, '^(%d+)|(%d+)$')
    if tonumber(stamp) < tonumber(hs) or (stamp == hs and count == hc) then drop = true end
  end
  local old = buf_new[sku] or bufv[j]
  if not drop and old then
    -- A pending value outlives its generation record when the Market is unreachable for long.
    local ps = string.match(old, '^%d+|(%d+)|')
    if tonumber(stamp) < tonumber(ps) then drop = true end
  end
  local same = false
  if not drop and not force and not old and busy[j] == 0 then
    -- Nothing pending or in flight, and the Market was last given this very count: sending it
    -- again would only spend quota. The stamps still move forward, so an older update keeps
    -- losing and a waiting producer sees its value settled.
    local d, dat = lookup(dl, del_new, j, sku)
    if d then
      local dc, ds, at = string.match(d, '^(%d+)|(%d+)|(%d+)$')
      if dc == count then
        same = true
        put(del_new, del_order, 3, sku, dc .. '|' .. math.max(tonumber(ds), tonumber(stamp)) .. '|' .. at, dat)
      end
    end
  end
  if drop then
    stale = stale + 1
  else
    put(hwm_new, hwm_order, 0, sku, stamp .. '|' .. count, hat)
    if same then
      unchanged = unchanged + 1
    else
      local first = now
      if old then first = string.match(old, '|(%d+)$'); coalesced = coalesced + 1 end
      if not buf_new[sku] then buf_order[#buf_order + 1] = sku end
      buf_new[sku] = count .. '|' .. stamp .. '|' .. first
      if not old then queued[#queued + 1] = sku end
      accepted = accepted + 1
    end
  end
end
local function hset(key, order, written)
  for s = 1, #order, 500 do
    local args = {}
    for k = s, math.min(s + 499, #order) do
      args[#args + 1] = order[k]
      args[#args + 1] = written[order[k]]
    end
    redis.call('HSET', key, unpack(args))
  end
end
local function each(key, cmd, list)
  for s = 1, #list, 1000 do redis.call(cmd, key, unpack(list, s, math.min(s + 999, #list))) end
end
hset(HWM[1], hwm_order, hwm_new)
hset(DEL[1], del_order, del_new)
hset(KEYS[1], buf_order, buf_new)
each(KEYS[2], 'RPUSH', queued)
each(HWM[2], 'HDEL', hdel[2])
each(HWM[3], 'HDEL', hdel[3])
each(DEL[2], 'HDEL', hdel[5])
each(DEL[3], 'HDEL', hdel[6])
if accepted + unchanged > 0 then stamp_expiry(HWM) end
if unchanged > 0 then stamp_expiry(DEL) end
redis.call('HINCRBY', KEYS[3], 'received', #skus)
if stale > 0 then redis.call('HINCRBY', KEYS[3], 'stale', stale) end
if too_old > 0 then redis.call('HINCRBY', KEYS[3], 'too_old', too_old) end
if coalesced > 0 then redis.call('HINCRBY', KEYS[3], 'coalesced', coalesced) end
if unchanged > 0 then redis.call('HINCRBY', KEYS[3], 'unchanged', unchanged) end
return {accepted, stale, unchanged, too_old, redis.call('HLEN', KEYS[1])}
"""


# KEYS: buf queue stats busy dead invalid retired hwm:g hwm:g-1 hwm:g-2 delivered:g delivered:g-1
# delivered:g-2; ARGV: generation, generation_ms, horizon_ms, final count ('' = none), skus...
# Retires SKUs (the shop no longer sells them), each in one step: its delivered records and dead
# letters (invalid input of that SKU too) go, and its newest accepted value becomes the retirement,
# stamped now (after any value accepted before it), so an older update arriving late (a delayed
# message, a reconciliation's re-queue) loses to it. With a final count that value is queued to be
# sent like any update; without one, a pending value is dropped. The SKU is marked in ``retired``
# with that stamp: whatever of it is in flight settles without leaving records (SETTLE, RECLAIM),
# and the final count's own delivery clears the mark. Returns {retired, pending dropped, letters dropped}.
RETIRE = GENERATIONS + """
local HWM, DEL = gens(8), gens(11)
local final = ARGV[4]
local retired, dropped, letters, gone = 0, 0, 0, {}
for i = 5, #ARGV do
  local sku = ARGV[i]
  if not gone[sku] then
    gone[sku] = true
    retired = retired + 1
    letters = letters + redis.call('HDEL', KEYS[5], sku)
    local h = newest(HWM, sku)
    local stamp = tonumber(now)
    if h then stamp = math.max(stamp, tonumber(string.match(h, '^(%d+)|')) + 1) end
    stamp = string.format('%d', stamp)
    for g = 1, 3 do redis.call('HDEL', DEL[g], sku) end
    redis.call('HDEL', HWM[2], sku)
    redis.call('HDEL', HWM[3], sku)
    local old = redis.call('HGET', KEYS[1], sku)
    if final ~= '' then
      local first = now
      if old then first = string.match(old, '|(%d+)$') end
      redis.call('HSET', KEYS[1], sku, final .. '|' .. stamp .. '|' .. first)
      if not old then redis.call('RPUSH', KEYS[2], sku) end
      redis.call('HSET', HWM[1], sku, stamp .. '|' .. final)
    else
      if old then dropped = dropped + redis.call('HDEL', KEYS[1], sku) end
      redis.call('HSET', HWM[1], sku, stamp .. '|0')
    end
    redis.call('HSET', KEYS[7], sku, stamp)
  end
end
local invalid = redis.call('LRANGE', KEYS[6], 0, -1)
local kept = {}
for _, raw in ipairs(invalid) do
  local ok, d = pcall(cjson.decode, raw)
  local key = nil
  if ok and type(d) == 'table' and type(d.sku) == 'string' then
    key = d.sku
    if type(d.warehouse) == 'number' then key = string.format('%d', d.warehouse) .. '\\31' .. d.sku end
  end
  if key and gone[key] then letters = letters + 1 else kept[#kept + 1] = raw end
end
if #kept < #invalid then
  redis.call('DEL', KEYS[6])
  for s = 1, #kept, 1000 do redis.call('RPUSH', KEYS[6], unpack(kept, s, math.min(s + 999, #kept))) end
end
if retired > 0 then
  stamp_expiry(HWM)
  redis.call('PEXPIRE', KEYS[7], tonumber(ARGV[3]))
  redis.call('HINCRBY', KEYS[3], 'retired', retired)
end
return {retired, dropped, letters}
"""
