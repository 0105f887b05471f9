"""The StockBuffer's dead-letter scripts (``ymsync dead-letters replay`` and ``purge``), beside the
others in ``buffer_lua.py`` (whose generation helpers REPLAY builds on). Layouts above each script."""

from ymsync.store.buffer_lua import GENERATIONS

# KEYS: dead buf queue busy hwm:g hwm:g-1 hwm:g-2; ARGV: generation, generation_ms, skus... (none = all)
REPLAY = GENERATIONS + """
local HWM = gens(5)
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
    -- Dead-lettering left the SKU's newest record there (SETTLE), and every value accepted since
    -- rewrites it (INGEST): it alone says whether the letter is still the newest.
    local h = newest(HWM, sku)
    local latest = true
    if h then
      local hs, hc = string.match(h, '^(%d+)|(%d+)$')
      latest = tonumber(hs) == d.stamp_ms and tonumber(hc) == d.count
    end
    if latest and redis.call('HEXISTS', KEYS[2], sku) == 0 and redis.call('SISMEMBER', KEYS[4], sku) == 0 then
      redis.call('HSET', KEYS[2], sku, string.format('%d|%d|%s', d.count, d.stamp_ms, now))
      redis.call('RPUSH', KEYS[3], sku)
      n = n + 1
    end
    redis.call('HDEL', KEYS[1], sku)
  end
end
return n
"""


# KEYS: dead invalid; ARGV: warehouse ('' = every letter). Counts and forgets a target's dead
# letters (of one warehouse of a business target: SKU fields "<warehouse>\x1f<sku>", invalid
# input recorded with its warehouse) in one step, so a value dead-lettered while a purge runs is
# either counted and forgotten, or kept: never lost uncounted.
PURGE = """
if ARGV[1] == '' then
  local n = redis.call('HLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
  redis.call('DEL', KEYS[1], KEYS[2])
  return n
end
local prefix = ARGV[1] .. '\\31'
local gone = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, #prefix) == prefix then gone[#gone + 1] = field end
end
for s = 1, #gone, 1000 do redis.call('HDEL', KEYS[1], unpack(gone, s, math.min(s + 999, #gone))) end
local n, kept = #gone, {}
local invalid = redis.call('LRANGE', KEYS[2], 0, -1)
for _, raw in ipairs(invalid) do
  local ok, d = pcall(cjson.decode, raw)
  if ok and type(d) == 'table' and d.warehouse ~= nil and tostring(d.warehouse) == ARGV[1] then
    n = n + 1
  else
    kept[#kept + 1] = raw
  end
end
if #kept < #invalid then
  redis.call('DEL', KEYS[2])
  for s = 1, #kept, 1000 do redis.call('RPUSH', KEYS[2], unpack(kept, s, math.min(s + 999, #kept))) end
end
return n
"""
