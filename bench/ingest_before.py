"""The INGEST script as it was before issue 18 item 4, kept only so ``bench.ingest`` can measure
old and new in the same run (interleaved). Never imported by the library."""

from ymsync.store.buffer_lua import GENERATIONS

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
