"""``ymsync migrate`` against a real, private redis-server holding a 0.1-layout state."""

from __future__ import annotations

import json
import time

import redis

from ymsync.store import keys
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.migrate import migrate

C = 1001


def old_state(r: redis.Redis, now: int) -> None:
    r.sadd("ymsync:campaigns", C)
    r.hset(f"ymsync:buf:{C}", mapping={"a": f"5|{now}|{now}", "b": f"6|{now}|{now}"})
    r.rpush(f"ymsync:queue:{C}", "a", "b")
    r.hset(f"ymsync:inflight:{C}:x1", mapping={"b": f"1|{now - 10}|{now - 10}", "c": f"7|{now - 5}|{now - 5}"})
    r.zadd(f"ymsync:batches:{C}", {"x1": now + 60_000})
    r.sadd(f"ymsync:busy:{C}", "b", "c")
    r.hset(f"ymsync:hwm:{C}", mapping={"a": f"{now}|5", "b": f"{now}|6", "c": f"{now - 5}|7", "d": f"{now - 9}|3"})
    r.hset(f"ymsync:delivered:{C}", mapping={"d": f"3|{now - 9}|{now - 8}"})
    r.hset(f"ymsync:dead:{C}", "e", json.dumps({"sku": "e", "count": 1, "stamp_ms": now, "first_ms": now,
                                                "reason": "boom", "at_ms": now}))
    r.hset(f"ymsync:stats:{C}", mapping={"delivered": 1})
    r.set(f"ymsync:flush:{C}", "1")
    r.rpush("ymsync:wake", C)
    r.zadd("ymsync:quota:update_stocks:1001", {"s:x:10": now})


def test_a_01_state_moves_and_the_old_keys_go(clean_redis) -> None:
    now = int(time.time() * 1000)
    old_state(clean_redis, now)
    buf = StockBuffer(clean_redis)
    dry = migrate(clean_redis, buf, dry_run=True)
    assert (dry.campaigns, dry.pending, dry.dead) == ([C], 3, 1)
    assert clean_redis.exists(f"ymsync:buf:{C}")

    done = migrate(clean_redis, buf)
    assert done.pending == 3
    left = sorted(k.decode() for k in clean_redis.scan_iter("ymsync:*") if not k.startswith(b"ymsync:{"))
    assert left == []
    batch = buf.take(C, 10, 10**6, 60)
    # The newest of pending and in-flight values wins: b pending at 6 beats b in flight at 1.
    assert {e.sku: e.count for e in batch.entries} == {"a": 5, "b": 6, "c": 7}
    assert buf.delivered(C)["d"][0] == 3
    assert buf.latest_of(C, ["d"]) == [(now - 9, 3)]
    assert [d["sku"] for d in buf.dead_letters(C)] == ["e"]
    assert clean_redis.zscore(keys.DUE, keys.campaign_target(C)) is not None
    assert migrate(clean_redis, buf).campaigns == []  # idempotent
