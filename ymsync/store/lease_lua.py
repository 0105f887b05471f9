"""The StockBuffer's lease scripts for batches in flight, beside the others in ``buffer_lua.py``
(whose clock and batch helpers they build on): a batch whose lease ran out goes back to the
buffer (RECLAIM), a live one is renewed (EXTEND). Layouts above each script."""

from ymsync.store.buffer_lua import BATCH, NOW

# KEYS: batches busy buf queue stats retired flight inflight:<batch>... (each where an older release
# kept it); ARGV: batch... (the same batches, in
# order: those the caller found expired). Returns each whose lease has run out by the script's
# clock (its worker died, or is too slow to be trusted) to the buffer in one step, so nothing can
# extend a lease between "found expired" and "returned" (EXTEND refuses an expired lease too).
# {batches reclaimed, SKUs returned to the buffer}.
RECLAIM = NOW + BATCH + """
local expired = {}
for i, batch in ipairs(ARGV) do
  local deadline = redis.call('ZSCORE', KEYS[1], batch)
  if deadline and tonumber(deadline) <= tonumber(now) then expired[#expired + 1] = i end
end
local returned = 0
for _, i in ipairs(expired) do
  local batch, inflight = ARGV[i], KEYS[7 + i]
  local entries = batch_pairs(KEYS[7], batch, inflight)
  local skus = {}
  for i = 1, #entries, 2 do
    local sku, v = entries[i], entries[i + 1]
    skus[#skus + 1] = sku
    local mark = redis.call('HGET', KEYS[6], sku)
    local stamp = string.match(v, '^%d+|(%d+)|')
    if mark and tonumber(stamp) < tonumber(mark) then
      -- retired after this value was taken: it is not sent again
    elseif redis.call('HEXISTS', KEYS[3], sku) == 0 then  -- a newer pending value wins over ours
      redis.call('HSET', KEYS[3], sku, v)
      redis.call('RPUSH', KEYS[4], sku)
    end
    returned = returned + 1
  end
  for s = 1, #skus, 1000 do
    redis.call('SREM', KEYS[2], unpack(skus, s, math.min(s + 999, #skus)))
  end
  redis.call('DEL', inflight)
  redis.call('HDEL', KEYS[7], batch)
  redis.call('ZREM', KEYS[1], batch)
end
if returned > 0 then redis.call('HINCRBY', KEYS[5], 'reclaimed', returned) end
return {#expired, returned}
"""

# KEYS: batches; ARGV: batch_id, lease_ms. 1 if the lease was extended; 0 if it had already run
# out (whether or not it was reclaimed yet): its SKUs are not this worker's to send any more.
EXTEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) <= now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
