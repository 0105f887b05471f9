"""``ymsync migrate`` against a real, private redis-server holding a 0.1-layout state, or the state of a
release with one tag per quota key and per gate (before issue 18)."""

from __future__ import annotations

import json
import time

import redis

from ymsync.config.settings import Quota
from ymsync.store import keys
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.migrate import migrate
from ymsync.engine.quota import QuotaLimiter

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


# --- the layout before issue 18: one tag per quota key ({q:1001}) and per gate ({g:c1001}) ------

M, M3 = "update_stocks", "update_stocks_v3"
PERIOD_MS, HOLD_MS = 60_000, 120_000


def tagged_state(r: redis.Redis, now: int) -> None:
    """What today's workers leave, by the literal names they wrote: live quota use of campaign 1001
    (60 units settled, 10 in an open grant), the Market's own limit for it, a 420's pause of
    business 7, two leases of campaign 1001's gate and a report quota of no target."""
    r.zadd("ymsync:{q:1001}:quota:update_stocks", {"s:e1:60": now - 1000, "o:e2:10": now - 500})
    r.set("ymsync:{q:1001}:quota:update_stocks:used", 70)
    for name in ("ymsync:{q:1001}:quota:update_stocks", "ymsync:{q:1001}:quota:update_stocks:used"):
        r.pexpire(name, 2 * PERIOD_MS + HOLD_MS)
    r.hset("ymsync:{q:1001}:market:update_stocks", mapping={"limit": 80, "flast": 0})
    r.pexpire("ymsync:{q:1001}:market:update_stocks", 86_400_000)
    r.set("ymsync:{q:b7}:pause:update_stocks_v3", "1", px=30_000)
    r.zadd("ymsync:{g:c1001}:lease", {"l1": now + 60_000, "l2": now + 60_000})
    r.pexpire("ymsync:{g:c1001}:lease", 120_000)
    r.zadd("ymsync:{q:all}:quota:report_generate", {"s:r1:1": now})
    r.set("ymsync:{q:1002}:quota:update_stocks:used", 3, px=60_000)  # its log expired first


def test_b_01_quota_state_moves_under_its_targets_tag_and_keeps_counting(clean_redis) -> None:
    r, now = clean_redis, int(time.time() * 1000)
    tagged_state(r, now)
    # A new worker already granted 5 units of campaign 1001 under the new name: merged, not lost.
    r.zadd(keys.quota(M, "1001"), {"s:e3:5": now - 200})
    r.set(keys.quota(M, "1001") + ":used", 5)
    for name in (keys.quota(M, "1001"), keys.quota(M, "1001") + ":used"):
        r.pexpire(name, 2 * PERIOD_MS)  # settled, never re-granted: shorter than the old log's
    lim = QuotaLimiter(r, {M: Quota(100, 60), M3: Quota(50, 60)}, max_parallel=3)
    buf = StockBuffer(r)

    dry = migrate(r, buf, dry_run=True)
    assert dry.tagged == {"quota": 1, "market": 1, "pause": 1, "lease": 1}
    assert r.exists("ymsync:{q:1001}:quota:update_stocks") and lim.usage(M, "1001")[0] == 5

    done = migrate(r, buf)
    assert done.tagged == dry.tagged and done.deleted_keys == 6
    left = sorted(k.decode() for k in r.scan_iter("ymsync:{[qg]:*"))
    assert left == ["ymsync:{q:all}:quota:report_generate"]  # a quota of no target keeps its name
    # The log is the union (70 before + 5 since), its sum recomputed, its TTL kept.
    assert lim.usage(M, "1001") == (75, 100) and r.get(keys.quota(M, "1001") + ":used") == b"75"
    for name in (keys.quota(M, "1001"), keys.quota(M, "1001") + ":used"):
        assert 2 * PERIOD_MS + HOLD_MS - 5000 < r.pttl(name) <= 2 * PERIOD_MS + HOLD_MS
    assert lim.market_view(M, "1001")["limit"] == 80 and r.pttl(keys.quota_market(M, "1001")) > 86_000_000
    # The Market's limit (80) holds and 75 of it are used: a push may take only what is left.
    assert lim.acquire(M, "1001", 100).granted == 5
    assert lim.acquire(M, "1001", 1).granted == 0
    # The 420's pause still holds every worker back, and the two leases still count against the gate.
    assert 25 < lim.paused_for(M3, "b7") <= 30
    assert lim.acquire(M3, "b7", 1).granted == 0
    assert lim.leases_in_use("c1001") == 2
    assert lim.lease("c1001") is not None and lim.lease("c1001") is None

    again = migrate(r, buf)
    assert (again.tagged, again.deleted_keys) == ({}, 0)  # idempotent
    assert lim.usage(M, "1001") == (80, 100)


def test_b_02_the_cli_says_what_it_moved(clean_redis, redis_server, monkeypatch) -> None:
    from click.testing import CliRunner

    from ymsync.cli import main
    from ymsync.cli import push as push_cli
    from ymsync.config.settings import get_settings

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    for name in ("YM_CABINETS_FILE", "YM_API_MODE", "YM_CAMPAIGN_IDS", "YM_REDIS_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    push_cli._settings.cache_clear()
    try:
        tagged_state(clean_redis, int(time.time() * 1000))
        out = [CliRunner().invoke(main, ["migrate", *flag], catch_exceptions=False).output
               for flag in (["--dry-run"], [], [])]
    finally:
        get_settings.cache_clear()
        push_cli._settings.cache_clear()
    assert out[0] == ("would move: 0 campaign(s), 0 pending value(s), 0 dead letter(s), 0 per-SKU record(s), "
                      "1 quota log(s), 1 pause(s), 1 Market count(s), 1 parallel gate(s)\n")
    assert out[1].startswith("moved: 0 campaign(s), 0 pending value(s), 0 dead letter(s), 0 per-SKU record(s), "
                             "1 quota log(s), 1 pause(s), 1 Market count(s), 1 parallel gate(s); 6 old key(s) deleted")
    assert "0 quota log(s), 0 pause(s), 0 Market count(s), 0 parallel gate(s); 0 old key(s)" in out[2]
