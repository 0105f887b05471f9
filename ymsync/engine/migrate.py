"""One-shot upgrade of a Redis written by ymsync 0.1's stock engine (keys ``ymsync:buf:{c}`` …)
to the hash-tagged layout (``ymsync:{c1001}:buf`` …) and the due-time schedule.

Run it with every stocks worker stopped (old and new): it moves what matters and deletes the old
keys. What it keeps, per campaign of the old ``ymsync:campaigns`` set:
- pending values, and values of batches that were in flight (their worker is gone; as after a
  lease expiry they go back to pending, newest value first), with their stamps;
- the latest-wins and delivered records (into the current generation: they then age out after
  the horizon like any other);
- dead letters and invalid-input dead letters, and the counters.
Quota logs, leases, pauses and flush markers are dropped: they expire within minutes anyway.
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


def _old(name: str, campaign: int) -> str:
    return f"{OLD}{name}:{campaign}"


def migrate(client: redis.Redis, buffer: StockBuffer, *, dry_run: bool = False) -> MigrationResult:
    result = MigrationResult()
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
