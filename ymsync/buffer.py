"""StockBuffer: the latest pending stock value per SKU and campaign, in Redis.

Latest wins by ``updatedAt`` (or, without one, by the Redis server's clock at arrival): an
update older than the newest value ever accepted for its SKU (pending, in flight, delivered or
dead) is dropped, whatever order updates arrive in; a repeat of that same value is dropped too,
so a redelivered message never sends a SKU twice. Many updates to one SKU coalesce into one.

Flushing takes a batch into an "in flight" hash under a lease. The batch then settles: its
SKUs are delivered, returned (unless a newer value arrived meanwhile) or dead-lettered. A
SKU in flight is never taken again until it settles, so two requests can never race an older
value past a newer one. A worker killed mid-flush leaves an expired lease; ``reclaim_expired``
returns its batch. Every script is atomic, so producers and flushers never see half a write.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Iterable, Sequence

import redis

from . import keys

_NOW = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
"""

# KEYS: buf queue hwm stats flush campaigns wake delivered busy;
# ARGV: campaign, flush_ttl_ms, force (1/0), (sku, count, stamp|'')...
_INGEST = _NOW + """
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
    redis.call('ZADD', KEYS[2], 'NX', now, sku)
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
_TAKE = _NOW + """
local maxn, maxb = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, picked, bytes, offset, scanned = {}, {}, 0, 0, 0
while #picked < maxn and scanned < maxn * 4 + 1000 do
  local skus = redis.call('ZRANGE', KEYS[2], offset, offset + 499)
  if #skus == 0 then break end
  offset = offset + #skus
  for _, sku in ipairs(skus) do
    scanned = scanned + 1
    if redis.call('SISMEMBER', KEYS[3], sku) == 0 then
      local v = redis.call('HGET', KEYS[1], sku)
      if v then
        -- JSON bytes of this entry in the request: the SKU (escapes double), fixed keys, count, stamp.
        local cost = #sku + select(2, string.gsub(sku, '[%c"\\\\]', '')) + 100
        if bytes + cost > maxb then maxn = #picked; break end
        bytes = bytes + cost
        picked[#picked + 1] = sku
        out[#out + 1] = sku
        out[#out + 1] = v
      else
        picked[#picked + 1] = sku  -- a queue entry without a value: drop it below
      end
      if #picked >= maxn then break end
    end
  end
end
for i = 1, #picked do
  local sku = picked[i]
  local v = redis.call('HGET', KEYS[1], sku)
  redis.call('ZREM', KEYS[2], sku)
  if v then
    redis.call('HSET', KEYS[5], sku, v)
    redis.call('HDEL', KEYS[1], sku)
    redis.call('SADD', KEYS[3], sku)
  end
end
if #out > 0 then redis.call('ZADD', KEYS[4], tonumber(now) + tonumber(ARGV[3]), ARGV[4]) end
return out
"""

# KEYS: inflight busy batches buf queue delivered dead stats; ARGV: batch_id, action, reason, skus...
_SETTLE = _NOW + """
local n = 0
for i = 4, #ARGV do
  local sku = ARGV[i]
  local v = redis.call('HGET', KEYS[1], sku)
  if v then
    n = n + 1
    local count, stamp, first = string.match(v, '^(%d+)|(%d+)|(%d+)$')
    if ARGV[2] == 'delivered' then
      redis.call('HSET', KEYS[6], sku, count .. '|' .. stamp .. '|' .. now)
    elseif ARGV[2] == 'returned' then
      if redis.call('HEXISTS', KEYS[4], sku) == 0 then  -- a newer pending value wins over ours
        redis.call('HSET', KEYS[4], sku, v)
        redis.call('ZADD', KEYS[5], 'NX', now, sku)
      end
    else
      redis.call('HSET', KEYS[7], sku, cjson.encode({sku = sku, count = tonumber(count), stamp_ms = tonumber(stamp),
        first_ms = tonumber(first), reason = ARGV[3], at_ms = tonumber(now)}))
    end
    redis.call('HDEL', KEYS[1], sku)
    redis.call('SREM', KEYS[2], sku)
  end
end
if n > 0 and ARGV[2] ~= 'returned' then redis.call('HINCRBY', KEYS[8], ARGV[2], n) end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[3], ARGV[1]) end
return n
"""

# KEYS: queue busy flush; ARGV: flush_ttl_ms. 1 if takeable work remains (marker kept), else 0.
_FINISH = """
local queued = redis.call('ZCARD', KEYS[1])
if queued > 0 then
  local busy = 0
  for _, sku in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('ZSCORE', KEYS[1], sku) then busy = busy + 1 end
  end
  if queued > busy then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[1])
    return 1
  end
end
redis.call('DEL', KEYS[3])
return 0
"""

# KEYS: batches; ARGV: batch_id, lease_ms. 1 if the lease was extended, 0 if the batch was reclaimed.
_EXTEND = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: dead hwm buf queue flush wake; ARGV: campaign, flush_ttl_ms, skus... (none = all)
_REPLAY = _NOW + """
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
      redis.call('ZADD', KEYS[4], 'NX', now, sku)
      n = n + 1
    end
    redis.call('HDEL', KEYS[1], sku)
  end
end
if n > 0 and redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[2]) then redis.call('RPUSH', KEYS[6], ARGV[1]) end
return n
"""


MAX_INVALID = 10_000  # invalid-input dead letters kept per campaign (newest first)


@dataclass(frozen=True)
class Entry:
    """A SKU's value inside a batch: ``stamp_ms`` orders it, ``first_ms`` dates its first try."""

    sku: str
    count: int
    stamp_ms: int
    first_ms: int


@dataclass(frozen=True)
class Batch:
    campaign_id: int
    batch_id: str
    entries: tuple[Entry, ...]

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class IngestResult:
    accepted: int = 0
    stale: int = 0  # older than (or a repeat of) a value already accepted
    woke: bool = False
    unchanged: int = 0  # the Market was last given this count and nothing newer is queued: not sent


class StockBuffer:
    def __init__(self, client: redis.Redis, *, flush_marker_ttl_s: float = 30.0, chunk: int = 1000) -> None:
        self.redis = client
        self.flush_ttl_ms = int(flush_marker_ttl_s * 1000)
        self.chunk = chunk
        self._ingest = client.register_script(_INGEST)
        self._take = client.register_script(_TAKE)
        self._settle = client.register_script(_SETTLE)
        self._finish = client.register_script(_FINISH)
        self._replay = client.register_script(_REPLAY)
        self._extend = client.register_script(_EXTEND)

    def ingest(self, campaign_id: int, updates: Iterable[tuple[str, int, int | None]], *,
               force: bool = False) -> IngestResult:
        """Write ``(sku, count, stamp_ms or None)`` updates; pipelined in chunks, each atomic.

        ``force`` queues a value even if the Market was last given that same count (reconciliation
        uses it when the Market has drifted from what ymsync delivered).
        """
        k = keys.campaign_keys(campaign_id)
        script_keys = [k["buf"], k["queue"], k["hwm"], k["stats"], k["flush"], keys.CAMPAIGNS, keys.WAKE,
                       k["delivered"], k["busy"]]
        head: list[object] = [int(campaign_id), self.flush_ttl_ms, 1 if force else 0]
        pipe = self.redis.pipeline(transaction=False)
        args = list(head)
        for sku, count, stamp_ms in updates:
            if stamp_ms is not None and stamp_ms < 0 or int(count) < 0:
                # The scripts parse digits only: one such value would jam its SKU for good.
                # Raised before the pipeline runs, so nothing of this call is written.
                raise ValueError(f"{sku!r}: count and stamp must not be negative ({count}, {stamp_ms})")
            args += [sku, int(count), "" if stamp_ms is None else int(stamp_ms)]
            if len(args) >= len(head) + 3 * self.chunk:
                self._ingest(keys=script_keys, args=args, client=pipe)
                args = list(head)
        if len(args) > len(head):
            self._ingest(keys=script_keys, args=args, client=pipe)
        results = pipe.execute()
        return IngestResult(sum(r[0] for r in results), sum(r[1] for r in results), any(r[2] for r in results),
                            sum(r[3] for r in results))

    def take(self, campaign_id: int, max_skus: int, max_bytes: int, lease_s: float) -> Batch | None:
        """Move up to ``max_skus`` pending SKUs (and ~``max_bytes`` of JSON) into a new batch."""
        k = keys.campaign_keys(campaign_id)
        batch_id = uuid.uuid4().hex[:12]
        raw = self._take(keys=[k["buf"], k["queue"], k["busy"], k["batches"], keys.inflight(campaign_id, batch_id)],
                         args=[max_skus, max_bytes, int(lease_s * 1000), batch_id])
        if not raw:
            return None
        entries = []
        for i in range(0, len(raw), 2):
            count, stamp, first = raw[i + 1].split(b"|")
            entries.append(Entry(raw[i].decode(), int(count), int(stamp), int(first)))
        return Batch(int(campaign_id), batch_id, tuple(entries))

    def settle(self, batch: Batch, action: str, skus: Sequence[str] | None = None, reason: str = "") -> int:
        """``delivered``, ``returned`` or ``dead`` for ``skus`` of the batch (default: all)."""
        assert action in ("delivered", "returned", "dead")
        k = keys.campaign_keys(batch.campaign_id)
        names = [e.sku for e in batch.entries] if skus is None else list(skus)
        if not names:
            return 0
        return int(self._settle(
            keys=[keys.inflight(batch.campaign_id, batch.batch_id), k["busy"], k["batches"], k["buf"], k["queue"],
                  k["delivered"], k["dead"], k["stats"]],
            args=[batch.batch_id, action, reason[:2000], *names]))

    def extend(self, batch: Batch, lease_s: float) -> bool:
        """Renew the batch's lease; False if it already expired and was reclaimed. The caller must
        then send nothing more from it: its SKUs are back in the buffer, maybe with newer values
        another worker is sending, and a late request would put an older value over them."""
        k = keys.campaign_keys(batch.campaign_id)
        return bool(self._extend(keys=[k["batches"]], args=[batch.batch_id, int(lease_s * 1000)]))

    def reclaim_expired(self, campaign_id: int) -> int:
        """Return batches whose lease ran out (their worker died) to the buffer."""
        k = keys.campaign_keys(campaign_id)
        seconds, micros = self.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        returned = 0
        for batch_id in self.redis.zrangebyscore(k["batches"], "-inf", now_ms):
            batch_id = batch_id.decode()
            skus = [s.decode() for s in self.redis.hkeys(keys.inflight(campaign_id, batch_id))]
            batch = Batch(int(campaign_id), batch_id, tuple(Entry(s, 0, 0, 0) for s in skus))
            returned += self.settle(batch, "returned")
            self.redis.zrem(k["batches"], batch_id)
            self.redis.hincrby(k["stats"], "reclaimed", len(skus))
        return returned

    def finish(self, campaign_id: int) -> bool:
        """True if takeable work remains (the flush marker is kept), else clear the marker."""
        k = keys.campaign_keys(campaign_id)
        return bool(self._finish(keys=[k["queue"], k["busy"], k["flush"]], args=[self.flush_ttl_ms]))

    def schedule_if_idle(self, campaign_id: int) -> bool:
        """Set the flush marker if pending work has none (a lost flush message); True if set."""
        k = keys.campaign_keys(campaign_id)
        if self.redis.zcard(k["queue"]) == 0:
            return False
        return bool(self.redis.set(k["flush"], "1", nx=True, px=self.flush_ttl_ms))

    def touch_flush(self, campaign_id: int, extra_s: float = 0.0) -> None:
        """Keep the flush marker alive (longer when the next flush waits ``extra_s``)."""
        self.redis.set(keys.campaign_keys(campaign_id)["flush"], "1", px=self.flush_ttl_ms + int(extra_s * 1000))

    def campaigns(self) -> list[int]:
        return sorted(int(c) for c in self.redis.smembers(keys.CAMPAIGNS))

    def pending(self, campaign_id: int) -> int:
        return int(self.redis.hlen(keys.campaign_keys(campaign_id)["buf"]))

    def in_flight(self, campaign_id: int) -> int:
        return int(self.redis.scard(keys.campaign_keys(campaign_id)["busy"]))

    def stats(self, campaign_id: int) -> dict[str, int]:
        raw = self.redis.hgetall(keys.campaign_keys(campaign_id)["stats"])
        return {k.decode(): int(v) for k, v in raw.items()}

    def delivered(self, campaign_id: int) -> dict[str, tuple[int, int, int]]:
        """sku -> (count, stamp_ms, delivered_at_ms) of the last value the Market accepted."""
        raw = self.redis.hgetall(keys.campaign_keys(campaign_id)["delivered"])
        return {k.decode(): tuple(int(x) for x in v.split(b"|")) for k, v in raw.items()}  # type: ignore[misc]

    def dead_letters(self, campaign_id: int) -> list[dict]:
        k = keys.campaign_keys(campaign_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hvals(k["dead"])
        pipe.lrange(k["invalid"], 0, -1)
        values, invalid = pipe.execute()
        return sorted((json.loads(v) for v in [*values, *invalid]), key=lambda d: (d["at_ms"], d["sku"]))

    def dead_letter_count(self, campaign_id: int) -> int:
        k = keys.campaign_keys(campaign_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hlen(k["dead"])
        pipe.llen(k["invalid"])
        return sum(pipe.execute())

    def dead_letter_raw(self, campaign_id: int, ident: str, record: dict) -> None:
        """A dead letter that never entered the buffer (invalid input from a foreign producer).

        These are not keyed by SKU (there may be none), so they live in a list capped at
        ``MAX_INVALID`` newest entries: a producer sending garbage must not fill Redis. The
        ``invalid`` counter in the stats keeps the full count.
        """
        k = keys.campaign_keys(campaign_id)
        pipe = self.redis.pipeline()
        pipe.lpush(k["invalid"], json.dumps({**record, "id": ident}))
        pipe.ltrim(k["invalid"], 0, MAX_INVALID - 1)
        pipe.hincrby(k["stats"], "dead", 1)
        pipe.hincrby(k["stats"], "invalid", 1)
        pipe.sadd(keys.CAMPAIGNS, int(campaign_id))
        pipe.execute()

    def replay(self, campaign_id: int, skus: Sequence[str] = ()) -> int:
        """Put dead letters back in the buffer, unless a newer value has arrived since."""
        k = keys.campaign_keys(campaign_id)
        return int(self._replay(keys=[k["dead"], k["hwm"], k["buf"], k["queue"], k["flush"], keys.WAKE],
                                args=[int(campaign_id), self.flush_ttl_ms, *skus]))

    def purge(self, campaign_id: int) -> int:
        k = keys.campaign_keys(campaign_id)
        n = self.dead_letter_count(campaign_id)
        self.redis.delete(k["dead"], k["invalid"])
        return n
