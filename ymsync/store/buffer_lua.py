"""The StockBuffer's Redis Lua scripts: each runs atomically, so producers and flushers never
see half a write. Key and argument layouts are given above each script; ``buffer.py`` passes
them in that order. Values are ``count|stamp_ms|first_ms`` strings (see ``keys.py``).

Every script touches the keys of one stock target only (one hash tag, one Cluster slot), and
every key it touches comes in KEYS (Redis Cluster, and any proxy that routes by declared keys,
requires it). Names that depend on the server's clock or on data are built in Python (keys.py):
the generation hashes (``hwm:<g>``, ``delivered:<g>``) for the generation the caller expects,
which the script checks against its own clock (``YMSYNC_GENERATION <g>`` when it differs: the
caller retries with the generation the script names, nothing written), and the in-flight hashes
of the batches the caller found expired, which the script checks again.
"""

NOW = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
"""

# Generations: a record is written into the hash of the current generation (server clock /
# width) and removed from the two before it; lookups go newest first. A generation's hash
# expires when three generations have begun after it, so a record idle past the horizon (two
# widths) is gone by three widths at the latest, without a sweep.
# ARGV[1] is the generation the caller named the keys for, ARGV[2] the width; gens(i) are the
# three generation hashes declared from KEYS[i], newest first.
GENERATIONS = NOW + """
local W = tonumber(ARGV[2])
local g = math.floor(tonumber(now) / W)
if g ~= tonumber(ARGV[1]) then return redis.error_reply('YMSYNC_GENERATION ' .. g) end
local function gens(i) return {KEYS[i], KEYS[i + 1], KEYS[i + 2]} end
local expire_at = (g + 3) * W
local function newest(gens, sku)
  for i = 1, 3 do
    local v = redis.call('HGET', gens[i], sku)
    if v then return v, i end
  end
  return nil, 0
end
local function keep(gens, sku, value, found)
  redis.call('HSET', gens[1], sku, value)
  if found > 1 then redis.call('HDEL', gens[found], sku) end
end
local function stamp_expiry(gens)
  if redis.call('PTTL', gens[1]) < 0 then redis.call('PEXPIREAT', gens[1], expire_at) end
end
"""

# INGEST (the producers' write) lives in ingest_lua.py.

# KEYS: buf queue busy batches flight floor moved; ARGV: max_n, max_bytes, lease_ms, batch_id, cap_ms
# Nothing is taken from a campaign target whose campaign moved into a warehouse group (``moved``,
# set before the group takes over its records: group_move.py); its values move instead.
# The queue is a list of pending SKUs in arrival order, each once (ingest, returns and replays
# append a SKU only when it enters buf), but for the entry a value dropped from buf leaves behind
# (taking drops it when it finds no value; a SKU queued again meanwhile is taken once). Pages of 500 are popped from its head; what is not
# taken (SKUs whose older value is still in flight, the rest of the last page) goes back to the
# head in order. A list costs ~15 B a SKU where a sorted set costs ~100. Needs Redis >= 6.2.
# Returns {} (nothing taken) or {the batch: {sku, value, ...} packed by msgpack, the stamp floor, SKUs}.
TAKE = NOW + """if redis.call('EXISTS', KEYS[7]) == 1 then return {} end
local maxn, maxb = tonumber(ARGV[1]), tonumber(ARGV[2])
-- Counters, not #t: the length operator searches the table's border on every use.
local out, picked, keep, bytes, scanned, full = {}, {}, {}, 0, 0, false
local no, np, nk = 0, 0, 0
-- Nothing of the target in flight (no busy set): no SKU popped can be waiting for its older value.
local any_busy = redis.call('EXISTS', KEYS[3]) == 1
local none_busy = {}
while not full and scanned < maxn * 4 + 1000 do
  local skus = redis.call('LPOP', KEYS[2], 500)
  if not skus then break end
  local busy = none_busy
  if any_busy then busy = redis.call('SMISMEMBER', KEYS[3], unpack(skus)) end
  local vals = redis.call('HMGET', KEYS[1], unpack(skus))
  -- One look at the whole page for a character JSON escapes (rare): a look per SKU cost a fifth of this script.
  local escapes = string.find(table.concat(skus), '[%c"\\\\]') ~= nil
  for i = 1, #skus do
    local sku = skus[i]
    if full or busy[i] == 1 then
      nk = nk + 1; keep[nk] = sku
      if busy[i] == 1 then scanned = scanned + 1 end
    elseif vals[i] then
      scanned = scanned + 1
      -- JSON bytes of this entry in the request: the SKU (escapes double), fixed keys, count, stamp.
      local cost = #sku + 100
      if escapes and string.find(sku, '[%c"\\\\]') then cost = cost + select(2, string.gsub(sku, '[%c"\\\\]', '')) end
      if bytes + cost > maxb then
        full = true
        nk = nk + 1; keep[nk] = sku
      else
        bytes = bytes + cost
        out[no + 1], out[no + 2], no = sku, vals[i], no + 2
        np = np + 1; picked[np] = sku
        full = np >= maxn
      end
    end  -- queued without a value: nothing to send, the entry is dropped
  end
end
for e = #keep, 1, -1000 do
  local back = {}
  for i = e, math.max(1, e - 999), -1 do back[#back + 1] = keep[i] end
  redis.call('LPUSH', KEYS[2], unpack(back))
end
local removed = 0
for s = 1, np, 1000 do
  removed = removed + redis.call('HDEL', KEYS[1], unpack(picked, s, math.min(s + 999, np)))
end
if removed < np then
  -- A SKU queued twice (the entry a dropped value left behind, then a new value's) was picked
  -- twice: the batch keeps it once, as the Market refuses a request naming a SKU twice. Found by
  -- the count HDEL returns, so the usual take keeps no table of what it picked.
  local seen, out2, picked2, n2 = {}, {}, {}, 0
  for i = 1, np do
    local sku = picked[i]
    if not seen[sku] then
      seen[sku] = true
      n2 = n2 + 1
      picked2[n2], out2[2 * n2 - 1], out2[2 * n2] = sku, out[2 * i - 1], out[2 * i]
    end
  end
  picked, out, np, no = picked2, out2, n2, 2 * n2
end
for s = 1, np, 1000 do
  redis.call('SADD', KEYS[3], unpack(picked, s, math.min(s + 999, np)))
end
if no == 0 then return {} end
-- The batch is one value (see BATCH below): one write here, one read and one delete at settling.
-- The reply is that same string, not its 2 x n elements: those cost Redis a conversion each, and
-- BEGIN a copy into its own reply (issue 18; the worker unpacks the string in C, batch.py).
local packed = cmsgpack.pack(out)
redis.call('HSET', KEYS[5], ARGV[4], packed)
redis.call('ZADD', KEYS[4], tonumber(now) + tonumber(ARGV[3]), ARGV[4])
-- The stamp cap of this batch: the newest of the caller's and every cap sent before it.
-- Each is the Market's time at a lower bound, so the floor is never in its future; taking
-- the highest keeps a SKU's stamps rising though processes know the Market's clock apart.
local cap = tonumber(ARGV[5])
local floor = tonumber(redis.call('GET', KEYS[6]) or '0')
if cap > floor then
  floor = cap
  redis.call('SET', KEYS[6], floor, 'PX', 90000000)
end
return {packed, tostring(floor), np}
"""


# A batch in flight is one string, {sku, value, sku, value...} packed by msgpack (C, both ways),
# in the target's flight hash under its id: a hash field per SKU cost a write at taking and a read
# and a delete at settling, and one hash of the batches is a key ingest can name (to judge a push
# against a value in flight; a producer knows no batch id). A batch taken by an older release
# lives in its own key (``inflight:<batch>``: a msgpack string, or earlier a hash) and reads the
# same (a deployment upgraded with batches in flight).
BATCH = """
local function batch_pairs(flight, batch, key)
  local packed = redis.call('HGET', flight, batch)
  if packed then return cmsgpack.unpack(packed) end
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'string' then return cmsgpack.unpack(redis.call('GET', key)) end
  if kind == 'hash' then return redis.call('HGETALL', key) end
  return {}
end
"""

# KEYS: inflight:<batch> (where an older release kept it) busy batches buf queue dead stats retired flight
# delivered:g delivered:g-1 delivered:g-2
# [hwm:g hwm:g-1 hwm:g-2: needed by 'dead' only]; ARGV: generation, generation_ms, batch_id, action,
# reason, skus... (none: every SKU of the batch)
# A value dead-lettered leaves the SKU's newest record in ``hwm`` (its own, or that of a value
# pending behind it; one already there is the newest): it was accepted, and a push older than it
# must stay stale once it is out of flight (INGEST).
# A SKU retired (``retired``: sku -> the retirement's stamp) after its value was taken keeps no
# record of it: delivered, its records go (the final count itself clears the mark); returned or
# dead, an older value is dropped. A value stamped after the retirement (the SKU came back) settles
# as any other.
# Delivered with a pending value of the same count behind it (pushed again while this one was in
# flight: a warehouse group's stock pushed through each of its campaigns, a re-pushed catalogue),
# the pending copy is dropped as ``unchanged``, the rule ingest applies once nothing is in flight:
# the Market has just been given that count, and sending it again would spend quota and could land
# over a cabinet edit made in the meantime. The delivered record takes the newer stamp.
# The SKUs not named stay in flight (isolation settles a refused batch piece by piece).
SETTLE = GENERATIONS + BATCH + """local DEL = gens(10)
local HWM = gens(13)
if ARGV[4] == 'dead' and not KEYS[13] then return redis.error_reply('SETTLE: dead needs the hwm keys') end
local n, unchanged, kept_hwm = 0, 0, false
local action = ARGV[4]
-- Structures that do not exist are not read or cleaned per SKU: no retirement marks (the usual
-- case), no older generation of delivered records (a young deployment, or a quiet day).
local any_marks = redis.call('EXISTS', KEYS[8]) == 1
local older = {}
for g = 2, 3 do if redis.call('EXISTS', DEL[g]) == 1 then older[#older + 1] = DEL[g] end end
local pairs_in = batch_pairs(KEYS[9], ARGV[3], KEYS[1])  -- none if the lease ran out and the batch was reclaimed
local held, settled = {}, {}
local delivered, repeats, d, tail, lost = {}, {}, 0, '|' .. now, 0
-- The record of a value the Market accepted. The same count pending behind it is dropped as
-- unchanged, its newer stamp kept; an older value behind it (ingest judges against the value in
-- flight, but not one a release before the flight hash took without its hwm record) as stale.
local function deliver(sku, v, behind)
  local record = string.match(v, '^%d+|%d+')
  if behind then
    local count, stamp = string.match(record, '^(%d+)|(%d+)$')
    local pc, ps = string.match(behind, '^(%d+)|(%d+)|')
    if pc == count then
      repeats[#repeats + 1] = sku
      if tonumber(ps) > tonumber(stamp) then record = count .. '|' .. ps end
    elseif tonumber(ps) < tonumber(stamp) then
      repeats[#repeats + 1], lost = sku, lost + 1
    end
  end
  delivered[d + 1], delivered[d + 2], d = sku, record .. tail, d + 2
end
local names, first = ARGV, 6
if #ARGV < 6 and action == 'delivered' and not any_marks then
  -- The usual case (a request delivered whole, no retirement marks): straight over the batch's
  -- pairs, no per-SKU tables (a batch holds each SKU once: taking pops each from the queue once).
  -- A pending value can be behind one of the batch's only if ingest wrote one behind an in-flight
  -- SKU since nothing was last in flight (the stats field ``behind``, see INGEST): else the look at
  -- each SKU's pending value (an HMGET of 2,000 fields under a backlog) is skipped.
  local match, sub, byte = string.match, string.sub, string.byte
  local marked = redis.call('HEXISTS', KEYS[7], 'behind') == 1
  local pending = marked and redis.call('EXISTS', KEYS[4]) == 1
  -- Only this batch in flight (the usual case): its SKUs are all the busy set holds, which goes
  -- whole rather than member by member.
  local alone = redis.call('SCARD', KEYS[2]) * 2 == #pairs_in
  for s = 1, #pairs_in, 2000 do
    local e = math.min(s + 1999, #pairs_in)
    local found, k = {}, 0
    for i = s, e, 2 do k = k + 1; found[k] = pairs_in[i] end
    local behind = {}
    if pending then behind = redis.call('HMGET', KEYS[4], unpack(found)) end
    delivered, repeats, d = {}, {}, 0
    k = 0
    for i = s, e, 2 do
      k = k + 1
      local v = pairs_in[i + 1]
      if behind[k] then deliver(found[k], v, behind[k])
      elseif byte(v, -14) == 124 and byte(v, -28) == 124 then
        -- count|stamp|first with both times 13 digits (epoch ms, 2001-2286): the record is cut
        -- by position, at half the cost of a pattern match (and it was the loop's dearest step).
        delivered[d + 1], delivered[d + 2], d = found[k], sub(v, 1, -15) .. tail, d + 2
      else delivered[d + 1], delivered[d + 2], d = found[k], match(v, '^%d+|%d+') .. tail, d + 2 end
    end
    redis.call('HSET', DEL[1], unpack(delivered))
    for _, key in ipairs(older) do redis.call('HDEL', key, unpack(found)) end
    if not alone then redis.call('SREM', KEYS[2], unpack(found)) end
    if #repeats > 0 then
      redis.call('HDEL', KEYS[4], unpack(repeats))
      unchanged = unchanged + #repeats
    end
    n = n + k
  end
  if alone then
    redis.call('DEL', KEYS[2])
    if marked then redis.call('HDEL', KEYS[7], 'behind') end  -- nothing in flight: nothing is behind
  end
  names = {}
else
  for i = 1, #pairs_in, 2 do held[pairs_in[i]] = pairs_in[i + 1] end
  if #ARGV < 6 then  -- none named: the whole batch (a request sends it whole; no 2,000 names to send back)
    names, first = {}, 1
    for i = 1, #pairs_in, 2 do names[#names + 1] = pairs_in[i] end
  end
end
for s = first, #names, 1000 do
  local found = {}  -- the SKUs of this slice still in the batch, each once
  for i = s, math.min(s + 999, #names) do
    local sku = names[i]
    if held[sku] and not settled[sku] then settled[sku] = true; found[#found + 1] = sku end
  end
  if #found > 0 then
    n = n + #found
    local marks = {}
    if any_marks then marks = redis.call('HMGET', KEYS[8], unpack(found)) end
    local behind = {}  -- the pending value queued behind each (only a delivery looks at it)
    if action == 'delivered' then behind = redis.call('HMGET', KEYS[4], unpack(found)) end
    delivered, repeats, d = {}, {}, 0
    for i, sku in ipairs(found) do
      local v, mark = held[sku], marks[i]
      if not mark and action == 'delivered' then  -- the usual case, kept tight
        deliver(sku, v, behind[i])
      else
        local count, stamp = string.match(v, '^(%d+)|(%d+)|')
        mark = mark and tonumber(mark)
        if mark and (tonumber(stamp) < mark or (tonumber(stamp) == mark and action ~= 'returned')) then
          -- Sent before (or as) the SKU's retirement: nothing of it is kept (a final count returned
          -- for a retry goes back to the buffer below, as any value).
          if action == 'delivered' then
            redis.call('HDEL', DEL[1], sku)
            redis.call('HDEL', DEL[2], sku)
            redis.call('HDEL', DEL[3], sku)
            if tonumber(stamp) == mark then redis.call('HDEL', KEYS[8], sku) end
          elseif action == 'dead' and tonumber(stamp) == mark then  -- the final count failed: say so
            redis.call('HSET', KEYS[6], sku, cjson.encode({sku = sku, count = tonumber(count), stamp_ms = tonumber(stamp),
              first_ms = tonumber(string.match(v, '|(%d+)$')), reason = ARGV[5], at_ms = tonumber(now)}))
          end
        elseif action == 'delivered' then  -- stamped after the SKU's retirement: it came back
          deliver(sku, v, behind[i])
        elseif action == 'returned' then
          if redis.call('HEXISTS', KEYS[4], sku) == 0 then  -- a newer pending value wins over ours
            redis.call('HSET', KEYS[4], sku, v)
            redis.call('RPUSH', KEYS[5], sku)
          end
        else
          redis.call('HSET', KEYS[6], sku, cjson.encode({sku = sku, count = tonumber(count), stamp_ms = tonumber(stamp),
            first_ms = tonumber(string.match(v, '|(%d+)$')), reason = ARGV[5], at_ms = tonumber(now)}))
          if not newest(HWM, sku) then  -- one there is the newest already (INGEST keeps it so)
            local b = redis.call('HGET', KEYS[4], sku)  -- a value pending behind: accepted later
            local rec, bc, bs = stamp .. '|' .. count, string.match(b or '', '^(%d+)|(%d+)|')
            if bs and tonumber(bs) >= tonumber(stamp) then rec = bs .. '|' .. bc end
            redis.call('HSET', HWM[1], sku, rec)
            kept_hwm = true
          end
        end
      end
    end
    if d > 0 then
      -- In bulk: the record goes to the current generation, and any copy in the two before it goes.
      redis.call('HSET', DEL[1], unpack(delivered))
      for _, key in ipairs(older) do redis.call('HDEL', key, unpack(found)) end
    end
    redis.call('SREM', KEYS[2], unpack(found))
    if #repeats > 0 then
      -- Their queue entries stay: taking drops an entry without a value.
      redis.call('HDEL', KEYS[4], unpack(repeats))
      unchanged = unchanged + #repeats
    end
  end
end
if n * 2 == #pairs_in then  -- all of it settled now (or before: the batch is gone)
  if n > 0 then redis.call('HDEL', KEYS[9], ARGV[3]); redis.call('DEL', KEYS[1]) end
  redis.call('ZREM', KEYS[3], ARGV[3])
elseif n > 0 then
  local rest = {}
  for i = 1, #pairs_in, 2 do
    if not settled[pairs_in[i]] then rest[#rest + 1] = pairs_in[i]; rest[#rest + 1] = pairs_in[i + 1] end
  end
  redis.call('HSET', KEYS[9], ARGV[3], cmsgpack.pack(rest))
  redis.call('DEL', KEYS[1])  -- an older release's batch: its rest now lives where this one's does
end
if lost > 0 then unchanged = unchanged - lost; redis.call('HINCRBY', KEYS[7], 'stale', lost) end
if n > 0 and action == 'delivered' then stamp_expiry(DEL) end
if kept_hwm then stamp_expiry(HWM) end
if unchanged > 0 then redis.call('HINCRBY', KEYS[7], 'unchanged', unchanged) end
if n > 0 and action ~= 'returned' then redis.call('HINCRBY', KEYS[7], action, n) end
return n
"""

# RECLAIM and EXTEND (a batch's lease: returned when it runs out, or renewed) live in lease_lua.py.

# KEYS: buf busy. 1 if some pending SKU can be taken now (is not waiting for its older value in
# flight to settle), else 0.
TAKEABLE = """
local pending = redis.call('HLEN', KEYS[1])
if pending == 0 then return 0 end
-- More pending than in flight: some pending value has no older one in flight (a backlog's case,
-- answered without walking thousands of in-flight SKUs).
if pending > redis.call('SCARD', KEYS[2]) then return 1 end
local busy = 0
for _, sku in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  busy = busy + redis.call('HEXISTS', KEYS[1], sku)
end
if pending > busy then return 1 end
return 0
"""

# KEYS: buf queue. Milliseconds since the value at the head of the queue first arrived (the oldest
# waiting value, as taking goes in queue order); -1 if nothing is queued.
OLDEST_AGE = NOW + """
local sku = redis.call('LINDEX', KEYS[2], 0)
if not sku then return -1 end
local v = redis.call('HGET', KEYS[1], sku)
if not v then return 2147483647 end  -- a queue entry whose value went: take at once, it tidies up
return tonumber(now) - tonumber(string.match(v, '|(%d+)$'))
"""

# REPLAY and PURGE (dead letters: sent again, or forgotten) live in dead_letter_lua.py.
