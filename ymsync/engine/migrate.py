"""One-shot upgrade of a Redis written by an older ymsync, run by ``ymsync migrate`` with every
worker stopped (old and new). Idempotent: a second run finds nothing to move.

From 0.1's stock engine (keys ``ymsync:buf:{c}`` …) to the hash-tagged layout
(``ymsync:{c1001}:buf`` …) and the due-time schedule. It moves what matters and deletes the old
keys. What it keeps, per campaign of the old ``ymsync:campaigns`` set:
- pending values, and values of batches that were in flight (their worker is gone; as after a
  lease expiry they go back to pending, newest value first), with their stamps;
- the latest-wins and delivered records (into the current generation: they then age out after
  the horizon like any other);
- dead letters and invalid-input dead letters, and the counters.
Quota logs, leases, pauses and flush markers are dropped: they expire within minutes anyway.

From one tag per quota key and per gate (``ymsync:{q:1001}:quota:<method>``,
``ymsync:{g:c1001}:lease``, before issue 18) to the target's own tag (``ymsync:{c1001}:…``, see
keys.py): :func:`move_tagged`. Unlike 0.1's, this state is kept, with its TTL: a quota log holds
the units the Market still counts in its window, a pause a 420's wait, the Market view its own
count, and dropping them would let the new workers overrun the quota the moment they start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from ymsync.store import keys
from ymsync.engine.buffer import StockBuffer

OLD = "ymsync:"


@dataclass
class MigrationResult:
    campaigns: list[int] = field(default_factory=list)
    pending: int = 0
    dead: int = 0
    records: int = 0
    deleted_keys: int = 0
    # Old keys of one tag per quota key and per gate moved under their target's tag, by kind
    # (quota, pause, market, lease; a log's ``:used`` sum goes with its log).
    tagged: dict[str, int] = field(default_factory=dict)


def _old(name: str, campaign: int) -> str:
    return f"{OLD}{name}:{campaign}"


def migrate(client: redis.Redis, buffer: StockBuffer, *, dry_run: bool = False) -> MigrationResult:
    result = MigrationResult()
    move_tagged(client, result, dry_run=dry_run)
    campaigns = sorted(int(c) for c in client.smembers(OLD + "campaigns"))
    generation = buffer.generations()[-1]
    for c in campaigns:
        result.campaigns.append(c)
        target = keys.campaign_target(c)
        k = keys.campaign_keys(c)
        values: dict[str, tuple[int, int, int]] = {}
        for raw_key in [*client.scan_iter(f"{OLD}inflight:{c}:*"), _old("buf", c).encode()]:
            for sku, raw in client.hgetall(raw_key).items():
                count, stamp, first = (int(x) for x in raw.split(b"|"))
                name = sku.decode()
                if name not in values or stamp >= values[name][1]:
                    values[name] = (count, stamp, first)
        hwm = client.hgetall(_old("hwm", c))
        delivered = client.hgetall(_old("delivered", c))
        dead = client.hgetall(_old("dead", c))
        invalid = client.lrange(_old("invalid", c), 0, -1)
        stats = client.hgetall(_old("stats", c))
        result.pending += len(values)
        result.dead += len(dead) + len(invalid)
        result.records += len(hwm) + len(delivered)
        if dry_run:
            continue
        pipe = client.pipeline(transaction=True)
        if hwm:
            pipe.hset(keys.hwm(target, generation), mapping=hwm)
            pipe.pexpireat(keys.hwm(target, generation), (generation + 3) * buffer.generation_ms)
        if delivered:
            pipe.hset(keys.delivered(target, generation), mapping=delivered)
            pipe.pexpireat(keys.delivered(target, generation), (generation + 3) * buffer.generation_ms)
        if values:
            pipe.hset(k["buf"], mapping={sku: f"{v[0]}|{v[1]}|{v[2]}" for sku, v in values.items()})
            pipe.rpush(k["queue"], *values)
        if dead:
            pipe.hset(k["dead"], mapping=dead)
        if invalid:
            pipe.rpush(k["invalid"], *invalid)
        if stats:
            pipe.hset(k["stats"], mapping=stats)
        pipe.execute()
        if values:
            buffer.schedule.activate(target, 0)
        else:
            buffer.schedule.activate_registry_only(target)
        old_keys = [_old(n, c) for n in ("buf", "queue", "hwm", "busy", "batches", "delivered", "dead", "invalid",
                                         "stats", "flush", "halt")]
        old_keys += [_old("halt", c) + ":backoff"]
        old_keys += [raw.decode() for raw in client.scan_iter(f"{OLD}inflight:{c}:*")]
        result.deleted_keys += int(client.delete(*old_keys))
    if not dry_run:
        leftovers = [OLD + "campaigns", OLD + "wake", OLD + "sweep-lock"]
        for pattern in (OLD + "quota:*", OLD + "lease:*", OLD + "pause:*"):
            leftovers += [raw.decode() for raw in client.scan_iter(pattern)]
        result.deleted_keys += int(client.delete(*leftovers)) if leftovers else 0
    return result


# Each script touches the new key (and a log's sum) alone: one slot, whichever slot the old name
# was in, so the move works on a Redis Cluster. The old key is read before and deleted after.

# A zset (a quota log, a gate's leases) merged into its successor: the union of members, a member
# in both keeping its later score (the same grant or lease, copied by an interrupted run). A log's
# sum (KEYS[2]) is recomputed from the merged log: it is the sum of its members' units (see
# quota_lua.py). The TTL is the longer of the two (a key without one, never written by ymsync,
# does not make the merge immortal).
# KEYS: zset [sum]; ARGV: old PTTL (-1: none), then member, score pairs.
MERGE_ZSET = """
local before = redis.call('PTTL', KEYS[1])
for i = 2, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not s or tonumber(s) < tonumber(ARGV[i + 1]) then redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i]) end
end
if KEYS[2] then
  local sum = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    sum = sum + tonumber(string.match(m, ':(%d+)$') or '0')
  end
  redis.call('SET', KEYS[2], sum)
end
local ttl = math.max(tonumber(ARGV[1]), before)
if ttl > 0 then
  for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ttl) end
end
return 1
"""

# A pause only grows (as quota_lua.PAUSE). KEYS: pause; ARGV: old PTTL (-1: none), old value.
MERGE_PAUSE = """
local now, ttl = redis.call('PTTL', KEYS[1]), tonumber(ARGV[1])
if now == -1 then return 0 end
if ttl == -1 then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
if now < ttl then redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl) return 1 end
return 0
"""

# The Market's own count: one its successor already holds is newer (a new worker's reply) and
# stays. KEYS: view; ARGV: old PTTL (-1: none), then field, value pairs.
MERGE_VIEW = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
"""

_CHUNK = 1000  # members per script call: a busy log holds thousands


def move_tagged(client: redis.Redis, result: MigrationResult, *, dry_run: bool = False) -> None:
    """Move every key of the layout before issue 18 to its successor under the target's tag
    (``keys.legacy_tagged``), merging into a successor the new workers already wrote."""
    found: list[tuple[str, str, str]] = []
    for pattern in keys.LEGACY_PATTERNS:
        for raw in client.scan_iter(match=pattern, count=500):
            name = raw.decode()
            moved = keys.legacy_tagged(name)
            if moved is not None and moved[1] != name:  # a quota of no target keeps its name
                found.append((name, *moved))
    logs = {name for name, kind, _ in found if kind == "quota"}
    merge_zset, merge_pause, merge_view = (client.register_script(s) for s in (MERGE_ZSET, MERGE_PAUSE, MERGE_VIEW))
    for name, kind, new in sorted(found):
        if kind == "used":
            # Recomputed with its log; alone, its log expired (or moved in an interrupted run).
            if not dry_run and name[:-len(":used")] not in logs:
                result.deleted_keys += int(client.delete(name))
            continue
        ttl = int(client.pttl(name))
        if ttl == -2:
            continue  # expired since the scan: nothing to move
        result.tagged[kind] = result.tagged.get(kind, 0) + 1
        if dry_run:
            continue
        if kind in ("quota", "lease"):
            members = [x for m, score in client.zrange(name, 0, -1, withscores=True) for x in (m, repr(score))]
            new_keys = [new, new + ":used"] if kind == "quota" else [new]
            for start in range(0, len(members), 2 * _CHUNK):
                merge_zset(keys=new_keys, args=[ttl, *members[start:start + 2 * _CHUNK]])
        elif kind == "pause":
            value = client.get(name)
            if value is not None:
                merge_pause(keys=[new], args=[ttl, value])
        else:
            view = client.hgetall(name)
            if view:
                merge_view(keys=[new], args=[ttl, *(x for pair in view.items() for x in pair)])
        # The log and its sum share the old tag: one slot, one DEL.
        result.deleted_keys += int(client.delete(*([name, name + ":used"] if kind == "quota" else [name])))
