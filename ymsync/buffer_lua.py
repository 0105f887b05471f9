"""The StockBuffer's Redis Lua scripts: each runs atomically, so producers and flushers never
see half a write. Key and argument layouts are given above each script; ``buffer.py`` passes
them in that order. Values are ``count|stamp_ms|first_ms`` strings (see ``keys.py``).
"""

NOW = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
"""

# KEYS: buf queue hwm stats flush campaigns wake delivered busy;
# ARGV: campaign, flush_ttl_ms, force (1/0), (sku, count, stamp|'')...
INGEST = NOW + """
local accepted, stale, coalesced, unchanged = 0, 0, 0, 0
local force = ARGV[3] == '1'
for i = 4, #ARGV, 3 do
  local sku, count, stamp = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if stamp == '' then stamp = now end
  local h = redis.call('HGET', KEYS[3], sku)
  local drop = false
  if h then
    local hs, hc = string.match(h, '^(%d+)|(%d+)$')
    if tonumber(stamp) < tonumber(hs) or (stamp == hs and count == hc) then drop = true end
  end
  local same = false
  if not drop and not force and redis.call('HEXISTS', KEYS[1], sku) == 0
      and redis.call('SISMEMBER', KEYS[9], sku) == 0 then
    -- Nothing pending or in flight, and the Market was last given this very count: sending it
    -- again would only spend quota. The stamps still move forward, so an older update keeps
    -- losing and a waiting producer sees its value settled.
    local d = redis.call('HGET', KEYS[8], sku)
    if d then
      local dc, ds, dat = string.match(d, '^(%d+)|(%d+)|(%d+)$')
      if dc == count then
        same = true
        redis.call('HSET', KEYS[8], sku, dc .. '|' .. math.max(tonumber(ds), tonumber(stamp)) .. '|' .. dat)
      end
    end
  end
  if drop then
    stale = stale + 1
  elseif same then
    redis.call('HSET', KEYS[3], sku, stamp .. '|' .. count)
    unchanged = unchanged + 1
  else
    redis.call('HSET', KEYS[3], sku, stamp .. '|' .. count)
    local old = redis.call('HGET', KEYS[1], sku)
    local first = now
    if old then first = string.match(old, '|(%d+)$'); coalesced = coalesced + 1 end
    redis.call('HSET', KEYS[1], sku, count .. '|' .. stamp .. '|' .. first)
    if not old then redis.call('RPUSH', KEYS[2], sku) end
    accepted = accepted + 1
  end
end
redis.call('HINCRBY', KEYS[4], 'received', (#ARGV - 3) / 3)
if stale > 0 then redis.call('HINCRBY', KEYS[4], 'stale', stale) end
if coalesced > 0 then redis.call('HINCRBY', KEYS[4], 'coalesced', coalesced) end
if unchanged > 0 then redis.call('HINCRBY', KEYS[4], 'unchanged', unchanged) end
redis.call('SADD', KEYS[6], ARGV[1])
local wake = 0
if accepted > 0 and redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('RPUSH', KEYS[7], ARGV[1])
  wake = 1
end
return {accepted, stale, wake, unchanged}
"""

# KEYS: buf queue busy batches inflight; ARGV: max_n, max_bytes, lease_ms, batch_id
# The queue is a list of pending SKUs in arrival order, each once (ingest, returns and replays
# append a SKU only when it enters buf). Pages of 500 are popped from its head; what is not
# taken (SKUs whose older value is still in flight, the rest of the last page) goes back to the
# head in order. A list costs ~15 B a SKU where a sorted set costs ~100. Needs Redis >= 6.2.
TAKE = NOW + """local maxn, maxb = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, picked, values, keep, bytes, scanned, full = {}, {}, {}, {}, 0, 0, false
while not full and scanned < maxn * 4 + 1000 do
  local skus = redis.call('LPOP', KEYS[2], 500)
  if not skus then break end
  local busy = redis.call('SMISMEMBER', KEYS[3], unpack(skus))
  local vals = redis.call('HMGET', KEYS[1], unpack(skus))
  for i, sku in ipairs(skus) do
    if full or busy[i] == 1 then
      keep[#keep + 1] = sku
    elseif vals[i] then
      scanned = scanned + 1
      -- JSON bytes of this entry in the request: the SKU (escapes double), fixed keys, count, stamp.
      local cost = #sku + 100
      if string.find(sku, '[%c"\\\\]') then cost = cost + select(2, string.gsub(sku, '[%c"\\\\]', '')) end
      if bytes + cost > maxb then
        full = true
        keep[#keep + 1] = sku
      else
        bytes = bytes + cost
        out[#out + 1] = sku
        out[#out + 1] = vals[i]
        picked[#picked + 1] = sku
        values[#picked] = vals[i]
        full = #picked >= maxn
      end
    end  -- queued without a value: nothing to send, the entry is dropped
    if busy[i] == 1 then scanned = scanned + 1 end
  end
end
for e = #keep, 1, -1000 do
  local back = {}
  for i = e, math.max(1, e - 999), -1 do back[#back + 1] = keep[i] end
  redis.call('LPUSH', KEYS[2], unpack(back))
end
for s = 1, #picked, 1000 do
  local hset, moved = {}, {}
  for i = s, math.min(s + 999, #picked) do
    hset[#hset + 1] = picked[i]
    hset[#hset + 1] = values[i]
    moved[#moved + 1] = picked[i]
  end
  redis.call('HSET', KEYS[5], unpack(hset))
  redis.call('HDEL', KEYS[1], unpack(moved))
  redis.call('SADD', KEYS[3], unpack(moved))
end
if #out > 0 then redis.call('ZADD', KEYS[4], tonumber(now) + tonumber(ARGV[3]), ARGV[4]) end
return out
"""


# KEYS: inflight busy batches buf queue delivered dead stats; ARGV: batch_id, action, reason, skus...
SETTLE = NOW + """local n, seen = 0, {}
for s = 4, #ARGV, 1000 do
  local slice = {}
  for i = s, math.min(s + 999, #ARGV) do
    if not seen[ARGV[i]] then seen[ARGV[i]] = true; slice[#slice + 1] = ARGV[i] end
  end
  if #slice > 0 then
    local vals = redis.call('HMGET', KEYS[1], unpack(slice))
    local found, delivered = {}, {}
    for i, sku in ipairs(slice) do
      local v = vals[i]
      if v then
        n = n + 1
        found[#found + 1] = sku
        local count, stamp, first = string.match(v, '^(%d+)|(%d+)|(%d+)$')
        if ARGV[2] == 'delivered' then
          delivered[#delivered + 1] = sku
          delivered[#delivered + 1] = count .. '|' .. stamp .. '|' .. now
        elseif ARGV[2] == 'returned' then
          if redis.call('HEXISTS', KEYS[4], sku) == 0 then  -- a newer pending value wins over ours
            redis.call('HSET', KEYS[4], sku, v)
            redis.call('RPUSH', KEYS[5], sku)
          end
        else
          redis.call('HSET', KEYS[7], sku, cjson.encode({sku = sku, count = tonumber(count), stamp_ms = tonumber(stamp),
            first_ms = tonumber(first), reason = ARGV[3], at_ms = tonumber(now)}))
        end
      end
    end
    if #delivered > 0 then redis.call('HSET', KEYS[6], unpack(delivered)) end
    if #found > 0 then
      redis.call('HDEL', KEYS[1], unpack(found))
      redis.call('SREM', KEYS[2], unpack(found))
    end
  end
end
if n > 0 and ARGV[2] ~= 'returned' then redis.call('HINCRBY', KEYS[8], ARGV[2], n) end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[3], ARGV[1]) end
return n
"""

# KEYS: buf busy flush; ARGV: flush_ttl_ms. 1 if takeable work remains (marker kept), else 0.
FINISH = """
local pending = redis.call('HLEN', KEYS[1])
if pending > 0 then
  local busy = 0
  for _, sku in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    busy = busy + redis.call('HEXISTS', KEYS[1], sku)
  end
  if pending > busy then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[1])
    return 1
  end
end
redis.call('DEL', KEYS[3])
return 0
"""

# KEYS: batches; ARGV: batch_id, lease_ms. 1 if the lease was extended, 0 if the batch was reclaimed.
EXTEND = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: dead hwm buf queue flush wake; ARGV: campaign, flush_ttl_ms, skus... (none = all)
REPLAY = NOW + """
local skus = {}
if #ARGV > 2 then for i = 3, #ARGV do skus[#skus + 1] = ARGV[i] end
else skus = redis.call('HKEYS', KEYS[1]) end
local n = 0
for _, sku in ipairs(skus) do
  local raw = redis.call('HGET', KEYS[1], sku)
  local d = raw and cjson.decode(raw)
  -- Invalid input from a foreign producer has no value to send: it stays a dead letter.
  if d and type(d.count) == 'number' and type(d.stamp_ms) == 'number' then
    -- Replay only what is still the newest value accepted for the SKU. A stamp comparison alone
    -- is not enough: ingest lets a different count with the same stamp win.
    local h = redis.call('HGET', KEYS[2], sku)
    local newest = true
    if h then
      local hs, hc = string.match(h, '^(%d+)|(%d+)$')
      newest = tonumber(hs) == d.stamp_ms and tonumber(hc) == d.count
    end
    if newest and redis.call('HEXISTS', KEYS[3], sku) == 0 then
      redis.call('HSET', KEYS[3], sku, string.format('%d|%d|%s', d.count, d.stamp_ms, now))
      redis.call('RPUSH', KEYS[4], sku)
      n = n + 1
    end
    redis.call('HDEL', KEYS[1], sku)
  end
end
if n > 0 and redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[2]) then redis.call('RPUSH', KEYS[6], ARGV[1]) end
return n
"""
