"""The StockBuffer's producer-side Lua scripts, beside the others in ``buffer_lua.py`` (which they
build on: the server clock and the generation helpers). Layouts are given above each script."""

from ymsync.store.buffer_lua import GENERATIONS

# The values in flight, sku -> value, from the flight hash (batch -> packed batch, see TAKE): read
# only when a verdict needs one (a push of a SKU in flight with nothing pending, a retirement, a
# group's merge). A batch a release before the flight hash took is not there: the ``hwm`` records
# that release wrote for every value it accepted judge pushes against it.
FLIGHT = """
local function in_flight_values(key)
  local t = {}
  for _, packed in ipairs(redis.call('HVALS', key)) do
    local p = cmsgpack.unpack(packed)
    for i = 1, #p, 2 do t[p[i]] = p[i + 1] end
  end
  return t
end
"""


# KEYS: buf queue stats busy flight hwm:g hwm:g-1 hwm:g-2 delivered:g delivered:g-1 delivered:g-2;
# ARGV: generation, generation_ms, horizon_ms, force (1/0), updates: one msgpack array of strings
# sku, count, stamp, sku, ... (count and stamp as decimal digits, stamp '' = now; unpacked in C,
# at half the cost of matching a pattern per entry), and '1' if no SKU is in it twice (else '0'
# or nothing).
# Returns {accepted, stale, unchanged, too_old, pending after this chunk}.
# Latest wins against the SKU's newest value: an update older than it, or that very value again
# (the same stamp and count), is stale; a different count with the same stamp wins. The newest is
# the ``hwm`` record where one exists (a value that left without another record: dead-lettered,
# retired, merged in; from then on every value accepted for the SKU rewrites it, so it stays the
# newest), else the pending value, else the value in flight, else the delivered record: accepted
# in that order, so at equal stamps the first found is the later. Nothing else is written for the
# verdict: an accepted value is its own record in buf (issue 18 item 4: a latest-wins field created
# per accepted update was a third of this script's Redis time), and an unchanged one moves its
# delivered record's stamp on.
# One argument, bulk reads (one HMGET per hash) and bulk writes (one HSET per hash written).
# Redis's CPU per update is mostly this script's work per SKU (``python -m bench.redis_cost``
# measures it), so a structure is read only for the SKUs whose verdict can depend on it: an older
# generation only for the SKUs the newer ones lack, and no hash that does not exist; the in-flight
# set and the delivered records only for SKUs with nothing pending (a pending value is newer than
# both), the delivered records only for those not in flight, and the values in flight (FLIGHT:
# every batch unpacked) only if a SKU in flight has no other record to judge by. In the loop,
# string work is the cost: a record's stamp is cut out with a plain find, and tonumber and a
# number's text are memoised per chunk (its SKUs share a few stamps).
# The writes overlay what this chunk wrote, so a SKU twice in one chunk is judged against its own
# earlier update exactly as one call per update would judge it.
INGEST = GENERATIONS + FLIGHT + """
local HWM, DEL = gens(6), gens(9)
local accepted, stale, coalesced, unchanged, too_old, behind = 0, 0, 0, 0, 0, 0
local force = ARGV[4] == '1'
-- ARGV[6] '1': the caller saw no SKU twice in this chunk, so none is judged against its own
-- earlier update and the per-SKU write positions need not be kept (a Lua table insert per SKU
-- and structure was a sixth of this script's time).
local twice = ARGV[6] ~= '1'
local now_n = tonumber(now)
local oldest = now_n - tonumber(ARGV[3])
local skus, counts, stamps, n = {}, {}, {}, 0
local packed = cmsgpack.unpack(ARGV[5])
for i = 1, #packed, 3 do
  n = n + 1
  skus[n], counts[n], stamps[n] = packed[i], packed[i + 1], packed[i + 2]
end
if n == 0 then return {0, 0, 0, 0, redis.call('HLEN', KEYS[1])} end
-- vals[j], from[j]: the record of SKU j (of those in names, at their positions at[m], or 1..n
-- without at) and its generation, read newest first; a hash that does not exist is not read.
-- The misses are listed for the next hash only if an older one exists (usually none does).
local function records(gs, names, at, vals, from)
  local live, last = {}, 0
  for g = 1, 3 do
    if redis.call('EXISTS', gs[g]) == 1 then live[#live + 1], last = g, g end
  end
  for _, g in ipairs(live) do
    if #names == 0 then return end
    local got = redis.call('HMGET', gs[g], unpack(names))
    if g == last then
      for m = 1, #names do
        if got[m] then local j = at and at[m] or m; vals[j], from[j] = got[m], g end
      end
      return
    end
    local names2, at2, k = {}, {}, 0
    for m = 1, #names do
      local j = at and at[m] or m
      if got[m] then vals[j], from[j] = got[m], g else k = k + 1; names2[k], at2[k] = names[m], j end
    end
    names, at = names2, at2
  end
end
local hw, hwg, bufv, busy, dl, dlg = {}, {}, {}, {}, {}, {}
records(HWM, skus, nil, hw, hwg)
if redis.call('EXISTS', KEYS[1]) == 1 then bufv = redis.call('HMGET', KEYS[1], unpack(skus)) end
do
  local idle, at, k = {}, {}, 0
  for j = 1, n do
    if not bufv[j] then k = k + 1; idle[k], at[k] = skus[j], j end
  end
  if k > 0 and redis.call('EXISTS', KEYS[4]) == 1 then
    local member, idle2, at2, k2 = redis.call('SMISMEMBER', KEYS[4], unpack(idle)), {}, {}, 0
    local flying = nil
    for m = 1, k do
      local j = at[m]
      if member[m] == 1 then
        -- In flight: its value there is the newest, unless an hwm record is (INGEST's order above).
        busy[j] = true
        if not hw[j] then
          flying = flying or in_flight_values(KEYS[5])
          busy[j] = flying[idle[m]] or true  -- true: a batch of a release before the flight hash
        end
      else k2 = k2 + 1; idle2[k2], at2[k2] = idle[m], j end
    end
    idle, at = idle2, at2
  end
  records(DEL, idle, at, dl, dlg)
end
-- What this chunk writes, per hash: HSET arguments in first-write order, and each SKU's place
-- in them (a SKU written again replaces its value in place).
local hwm_args, hwm_at, hn = {}, {}, 0
local del_args, del_at, dn = {}, {}, 0
local buf_args, buf_at, bn = {}, {}, 0
local queued, qn = {}, 0
local hdel = {{}, {}, {}, {}, {}, {}}  -- HWM g-1, g-2, DEL g-1, g-2 (slots 2, 3, 5, 6)
local find, sub, match, max = string.find, string.sub, string.match, math.max
-- tonumber (strtod) and a number's text are the loop's dearest steps, and a chunk meets the same
-- few stamps again and again (its own, the one its records were written with): both memoised
-- (pure functions: the same text and numbers as calling them each time).
local nums, texts = {}, {}
local function num(s) local v = tonumber(s); nums[s] = v; return v end
local function text(v) local s = v .. ''; texts[v] = s; return s end
-- Is the update (stamp_n, count) older than a value "count|stamp|..." (pending, in flight,
-- delivered), or that very value again?
local function beaten(stamp_n, count, v)
  local c, s = match(v, '^(%d+)|(%d+)|')
  local sn = nums[s] or num(s)
  return stamp_n < sn or (stamp_n == sn and c == count)
end
for j = 1, n do
  local sku, count, stamp = skus[j], counts[j], stamps[j]
  local stamp_n
  if stamp == '' then stamp, stamp_n = now, now_n else stamp_n = nums[stamp] or num(stamp) end
  local drop = false
  local h, hat = nil, 1
  if hwm_at[sku] then h = hwm_args[hwm_at[sku]] elseif hw[j] then h, hat = hw[j], hwg[j] end
  local record = h and stamp .. '|' .. count  -- the hwm record this update would rewrite
  if stamp_n < oldest then
    -- Older than the horizon: the Market refuses it, and the records that could order it against
    -- a newer value may be gone. Nothing that old can be sent safely.
    drop = true
    too_old = too_old + 1
  elseif h then
    if h == record then
      drop = true
    else
      local hs = sub(h, 1, find(h, '|', 1, true) - 1)
      drop = stamp_n < (nums[hs] or num(hs))
    end
  end
  local old, old_first = nil, nil
  if buf_at[sku] then old = buf_args[buf_at[sku]] else old = bufv[j] end
  if not drop and old then
    drop = beaten(stamp_n, count, old)
    if not drop then old_first = match(old, '|(%d+)$') end
  end
  local d, dat = nil, 1
  if not old then
    if del_at[sku] then d = del_args[del_at[sku]] elseif dl[j] then d, dat = dl[j], dlg[j] end
  end
  if not drop and not old and not h then
    if busy[j] then drop = busy[j] ~= true and beaten(stamp_n, count, busy[j])
    elseif d then drop = beaten(stamp_n, count, d) end
  end
  local same = false
  if not drop and not force and not old and not busy[j] and d and sub(d, 1, find(d, '|', 1, true) - 1) == count then
    -- Nothing pending or in flight, and the Market was last given this very count: sending it
    -- again would only spend quota. The record's stamp moves on, so an older update keeps
    -- losing and a waiting producer sees its value settled.
    local at = match(d, '|(%d+)$')
    same = true
    local value = count .. '|' .. (texts[stamp_n] or text(stamp_n)) .. '|' .. at
    if del_at[sku] then
      del_args[del_at[sku]] = value
    else
      del_args[dn + 1], del_args[dn + 2], dn = sku, value, dn + 2
      if twice then del_at[sku] = dn end
      if dat > 1 then hdel[3 + dat][#hdel[3 + dat] + 1] = sku end
    end
  end
  if h and not drop then
    if hwm_at[sku] then
      hwm_args[hwm_at[sku]] = record
    else
      hwm_args[hn + 1], hwm_args[hn + 2], hn = sku, record, hn + 2
      if twice then hwm_at[sku] = hn end
      if hat > 1 then hdel[hat][#hdel[hat] + 1] = sku end
    end
  end
  if drop then
    stale = stale + 1
  elseif same then
    unchanged = unchanged + 1
  else
    local value = count .. '|' .. stamp .. '|' .. (old_first or now)
    if buf_at[sku] then
      buf_args[buf_at[sku]] = value
    else
      buf_args[bn + 1], buf_args[bn + 2], bn = sku, value, bn + 2
      if twice then buf_at[sku] = bn end
    end
    if old then coalesced = coalesced + 1 else qn = qn + 1; queued[qn] = sku end
    if busy[j] then behind = behind + 1 end
    accepted = accepted + 1
  end
end
local function each(key, cmd, list, step)
  for s = 1, #list, step do redis.call(cmd, key, unpack(list, s, math.min(s + step - 1, #list))) end
end
each(HWM[1], 'HSET', hwm_args, 1000)  -- 500 fields a call: even steps keep pairs together
each(DEL[1], 'HSET', del_args, 1000)
each(KEYS[1], 'HSET', buf_args, 1000)
each(KEYS[2], 'RPUSH', queued, 1000)
each(HWM[2], 'HDEL', hdel[2], 1000)
each(HWM[3], 'HDEL', hdel[3], 1000)
each(DEL[2], 'HDEL', hdel[5], 1000)
each(DEL[3], 'HDEL', hdel[6], 1000)
if hn > 0 then stamp_expiry(HWM) end
if unchanged > 0 then stamp_expiry(DEL) end
redis.call('HINCRBY', KEYS[3], 'received', n)
if stale > 0 then redis.call('HINCRBY', KEYS[3], 'stale', stale) end
if too_old > 0 then redis.call('HINCRBY', KEYS[3], 'too_old', too_old) end
if coalesced > 0 then redis.call('HINCRBY', KEYS[3], 'coalesced', coalesced) end
if unchanged > 0 then redis.call('HINCRBY', KEYS[3], 'unchanged', unchanged) end
-- A value now waits behind one in flight: SETTLE looks at the pending values behind what it
-- delivers (a repeat of the same count is dropped there) until nothing is in flight.
if behind > 0 then redis.call('HSET', KEYS[3], 'behind', 1) end
return {accepted, stale, unchanged, too_old, redis.call('HLEN', KEYS[1])}
"""


# KEYS: buf queue stats busy dead invalid retired flight hwm:g hwm:g-1 hwm:g-2 delivered:g delivered:g-1
# delivered:g-2; ARGV: generation, generation_ms, horizon_ms, final count ('' = none), skus...
# Retires SKUs (the shop no longer sells them), each in one step: its delivered records and dead
# letters (invalid input of that SKU too) go, and its newest accepted value becomes the retirement,
# stamped now (after any value accepted before it), so an older update arriving late (a delayed
# message, a reconciliation's re-queue) loses to it. With a final count that value is queued to be
# sent like any update; without one, a pending value is dropped. The SKU is marked in ``retired``
# with that stamp: whatever of it is in flight settles without leaving records (SETTLE, RECLAIM),
# and the final count's own delivery clears the mark. Returns {retired, pending dropped, letters dropped}.
RETIRE = GENERATIONS + FLIGHT + """
local HWM, DEL = gens(9), gens(12)
local flying = nil
local final = ARGV[4]
local retired, dropped, letters, gone = 0, 0, 0, {}
for i = 5, #ARGV do
  local sku = ARGV[i]
  if not gone[sku] then
    gone[sku] = true
    retired = retired + 1
    letters = letters + redis.call('HDEL', KEYS[5], sku)
    -- After the newest value of the SKU wherever it is (latest wins: see INGEST).
    local stamp = tonumber(now)
    local h = newest(HWM, sku)
    if h then stamp = math.max(stamp, tonumber(string.match(h, '^(%d+)|')) + 1) end
    if not flying and redis.call('SISMEMBER', KEYS[4], sku) == 1 then flying = in_flight_values(KEYS[8]) end
    for _, v in ipairs({redis.call('HGET', KEYS[1], sku) or '', flying and flying[sku] or '',
                        (newest(DEL, sku)) or ''}) do
      local s = string.match(v, '^%d+|(%d+)|')
      if s then stamp = math.max(stamp, tonumber(s) + 1) end
    end
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
