"""Proposed changes to files this bench may not edit, tried by monkeypatching in the bench run.

Each proposal is the exact code of a diff in ``bench/proposals/*.diff``; ``python -m bench``
measures the producer and the end-to-end throughput with and without it, so the figures in
docs/BENCHMARKS.md are from the same run.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

from ymsync import producer
from ymsync.market.schemas import MAX_COUNT, PRODUCER_CLOCK_SKEW, parse_stamp, sku_problem, utcnow


# Printable ASCII, 1 to 255 characters, no space at either end: a SKU sku_problem always accepts.
_PLAIN_SKU = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")


# --- A. producer: plainly valid items skip marshmallow (ymsync/producer.py) -------------------


def check_updates(items: Iterable[Mapping[str, Any]], labels: Iterable[str] | None = None) -> producer.Checked:
    """The proposed ``check_updates``: plainly valid items in one pass, the rest exactly as today
    (the current function, item by item, so its rules and messages stay the reference)."""
    updates: list[tuple[str, int, int | None]] = []
    errors: list[str] = []
    label_iter = iter(labels) if labels is not None else None
    latest = utcnow() + PRODUCER_CLOCK_SKEW
    for index, item in enumerate(items):
        label = next(label_iter) if label_iter is not None else f"item {index}"
        fast = _plainly_valid(item, latest)
        if fast is not None:
            updates.append(fast)
            continue
        slow = _ORIGINAL([item], [label])
        updates += slow.updates
        errors += slow.errors
    return producer.Checked(updates, errors)


def _plainly_valid(item: Any, latest: Any) -> tuple[str, int, int | None] | None:
    """What the schema would accept, in one pass; None at the first doubt (the schema then decides
    and words the error). ``latest``: the furthest-ahead stamp allowed (now + clock skew)."""
    if type(item) is not dict:
        return None
    sku, count = item.get("sku"), item.get("count")
    if type(sku) is not str or type(count) is not int or not 0 <= count <= MAX_COUNT:
        return None
    stamp_ms = None
    if len(item) == 3 and "updatedAt" in item:
        raw = item["updatedAt"]
        if raw is not None:
            stamp = parse_stamp(raw)
            if stamp is None or stamp > latest or stamp < producer.OLDEST_STAMP:
                return None
            stamp_ms = int(stamp.timestamp() * 1000)
    elif len(item) != 2:
        return None
    sku = sku.strip()
    if _PLAIN_SKU.fullmatch(sku) is None and sku_problem(sku) is not None:
        return None
    return sku, count, stamp_ms


_ORIGINAL = producer.check_updates


@contextmanager
def producer_fast_check() -> Iterator[None]:
    producer.check_updates = check_updates
    try:
        yield
    finally:
        producer.check_updates = _ORIGINAL


# --- B. buffer: TAKE and SETTLE in batched Redis calls (ymsync/buffer_lua.py) ------------------
# Same keys, arguments, results and effects as today's scripts; per page of 500 queued SKUs one
# SMISMEMBER and one HMGET instead of 500 of each, the values kept instead of read again, the
# moves done as one ZREM/HSET/HDEL/SADD per 1000 SKUs, and the JSON escape count only for SKUs
# that hold a character needing one. Needs Redis >= 6.2 (SMISMEMBER).

TAKE = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local maxn, maxb = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, picked, values, bytes, offset, scanned = {}, {}, {}, 0, 0, 0
while #picked < maxn and scanned < maxn * 4 + 1000 do
  local skus = redis.call('ZRANGE', KEYS[2], offset, offset + 499)
  if #skus == 0 then break end
  offset = offset + #skus
  local busy = redis.call('SMISMEMBER', KEYS[3], unpack(skus))
  local vals = redis.call('HMGET', KEYS[1], unpack(skus))
  for i, sku in ipairs(skus) do
    scanned = scanned + 1
    if busy[i] == 0 then
      local v = vals[i]
      if v then
        -- JSON bytes of this entry in the request: the SKU (escapes double), fixed keys, count, stamp.
        local cost = #sku + 100
        if string.find(sku, '[%c"\\\\]') then cost = cost + select(2, string.gsub(sku, '[%c"\\\\]', '')) end
        if bytes + cost > maxb then maxn = #picked; break end
        bytes = bytes + cost
        out[#out + 1] = sku
        out[#out + 1] = v
      end
      picked[#picked + 1] = sku  -- without a value: a stale queue entry, dropped below
      values[#picked] = v
      if #picked >= maxn then break end
    end
  end
end
for s = 1, #picked, 1000 do
  local zrem, hset, moved = {}, {}, {}
  for i = s, math.min(s + 999, #picked) do
    local sku = picked[i]
    zrem[#zrem + 1] = sku
    if values[i] then
      hset[#hset + 1] = sku
      hset[#hset + 1] = values[i]
      moved[#moved + 1] = sku
    end
  end
  redis.call('ZREM', KEYS[2], unpack(zrem))
  if #moved > 0 then
    redis.call('HSET', KEYS[5], unpack(hset))
    redis.call('HDEL', KEYS[1], unpack(moved))
    redis.call('SADD', KEYS[3], unpack(moved))
  end
end
if #out > 0 then redis.call('ZADD', KEYS[4], tonumber(now) + tonumber(ARGV[3]), ARGV[4]) end
return out
"""

SETTLE = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local n, seen = 0, {}
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
            redis.call('ZADD', KEYS[5], 'NX', now, sku)
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


def apply_buffer_scripts() -> None:
    """Make every StockBuffer built from now on use proposal B's scripts (they live in
    ``ymsync/buffer_lua.py`` since the buffer was split; ``StockBuffer`` reads them at construction)."""
    from ymsync import buffer_lua

    buffer_lua.TAKE, buffer_lua.SETTLE = TAKE, SETTLE
