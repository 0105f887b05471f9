"""The buffer's scripts as Redis runs them: the purge counts what it forgets in the same atomic
step, and every key a script touches is declared in KEYS (what Redis Cluster requires)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from typing import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from ymsync.embedded import free_port, redis_binary, stop_process
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.schedule import Schedule
from ymsync.store import keys

C = 1001
NOW_MS = int(time.time() * 1000)


def _dead_letter(buf: StockBuffer, n: int) -> None:  # always campaign C
    buf.dead_letter_raw(C, f"invalid:t:{n}", {"sku": f"s{n}", "count": None, "stamp_ms": None, "first_ms": None,
                                             "reason": "invalid input: test", "at_ms": NOW_MS})


def test_a_letter_dead_lettered_while_purging_is_counted_or_kept(clean_redis: redis.Redis, monkeypatch) -> None:
    """Another worker dead-letters a value between every two Redis calls the purge makes; the
    purge's count must equal what it forgot (fails on the count-then-delete purge: it deleted
    the late letter without counting it)."""
    buf = StockBuffer(clean_redis)
    other = StockBuffer(redis.Redis(connection_pool=clean_redis.connection_pool))
    _dead_letter(buf, 0)
    written = [1]
    calls = [0]

    def interleave() -> None:
        calls[0] += 1
        if calls[0] > 1:  # after the purge's first call, before each later one
            _dead_letter(other, written[0])
            written[0] += 1

    real_execute = clean_redis.execute_command
    real_pipeline = clean_redis.pipeline

    def execute_command(*args, **kwargs):
        interleave()
        return real_execute(*args, **kwargs)

    def pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        real_pipe_execute = pipe.execute

        def execute(*a, **k):
            interleave()
            return real_pipe_execute(*a, **k)

        pipe.execute = execute
        return pipe

    monkeypatch.setattr(clean_redis, "execute_command", execute_command)
    monkeypatch.setattr(clean_redis, "pipeline", pipeline)
    purged = buf.purge(C)
    monkeypatch.undo()
    kept = buf.dead_letter_count(C)
    assert purged + kept == written[0], (purged, kept, written[0])
    assert purged >= 1


# --- every key a script touches is declared in KEYS ------------------------------------------
#
# Redis 7.0 refuses an undeclared key only when it hashes to another node's slot, so a Redis
# Cluster node never refuses a script's undeclared key in its own slot (and a target's keys share
# one): it cannot tell. Each script is run here behind a guard that asks Redis itself which keys
# every command it calls touches (COMMAND GETKEYS, Redis's own key extraction) and fails the
# script on any key not in KEYS.

GUARD = """
local real = redis
local declared = {}
for _, k in ipairs(KEYS) do declared[k] = true end
local function check(...)
  local ok, touched = pcall(real.call, 'COMMAND', 'GETKEYS', ...)
  if ok then  -- commands without keys (TIME) have nothing to check
    for _, k in ipairs(touched) do
      if not declared[k] then error('UNDECLARED key ' .. k .. ' (' .. tostring((...)) .. ')') end
    end
  end
end
local redis = setmetatable({
  call = function(...) check(...); return real.call(...) end,
  pcall = function(...) check(...); return real.pcall(...) end,
}, {__index = real})
"""


class GuardedRedis(redis.Redis):
    """Registers every script behind the guard above."""

    def register_script(self, script):  # type: ignore[override]
        return super().register_script(GUARD + script)


@pytest.fixture()
def guarded(clean_redis: redis.Redis) -> StockBuffer:
    client = GuardedRedis(connection_pool=clean_redis.connection_pool)
    # The scheduler's own scripts are not the buffer's; they run on a plain client.
    return StockBuffer(client, schedule=Schedule(clean_redis), horizon_s=3600)


def test_the_guard_refuses_an_undeclared_key(clean_redis: redis.Redis) -> None:
    client = GuardedRedis(connection_pool=clean_redis.connection_pool)
    sneaky = client.register_script("redis.call('SET', KEYS[1], 1); return redis.call('GET', 'ymsync:{c1}:other')")
    with pytest.raises(redis.ResponseError, match="UNDECLARED key ymsync:{c1}:other"):
        sneaky(keys=["ymsync:{c1}:declared"])
    honest = client.register_script("redis.call('SET', KEYS[1], 7); return redis.call('GET', KEYS[1])")
    assert honest(keys=["ymsync:{c1}:declared"]) == b"7"


@pytest.mark.parametrize("target", [C, "b7"])
def test_every_buffer_script_declares_every_key_it_touches(guarded: StockBuffer, target) -> None:
    exercise(guarded, target)


def exercise(buf: StockBuffer, target: int | str) -> None:
    """Every script of the buffer, each path through it that touches a different key."""
    stamp = NOW_MS - 60_000
    assert buf.ingest(target, [("a", 1, stamp), ("b", 2, None), ("c", 3, stamp)]).accepted == 3
    assert buf.takeable(target) and buf.oldest_pending_age_s(target) >= 0
    batch = buf.take(target, 10, 10**6, 60)
    assert batch is not None and len(batch) == 3 and buf.extend(batch, 60)
    assert buf.ingest(target, [("c", 4, stamp + 1)]).accepted == 1  # newer than the one in flight
    assert buf.settle(batch, "delivered", ["a"]) == 1
    assert buf.settle(batch, "dead", ["b"], reason="refused") == 1
    assert buf.settle(batch, "returned", ["c"]) == 1  # the newer pending value wins
    assert buf.ingest(target, [("a", 1, stamp + 5)]).unchanged == 1  # reads the delivered record
    assert buf.ingest(target, [("a", 1, stamp + 6)], force=True).accepted == 1
    dying = buf.take(target, 10, 10**6, 0)  # a worker dies: its lease runs out at once
    assert dying is not None
    time.sleep(0.01)
    assert buf.reclaim_expired(target) == len(dying)
    assert buf.replay(target) == 1 and buf.replay(target, ["zzz"]) == 0
    buf.dead_letter_raw(target, "invalid:t:1", {"sku": "x", "count": None, "stamp_ms": None, "first_ms": None,
                                                "reason": "invalid input: test", "at_ms": NOW_MS, "warehouse": 5})
    assert buf.purge(target, 6) == 0 and buf.purge(target, 5) == 1
    _dead_letter(buf, 99)
    assert buf.purge(target) == (1 if target == C else 0)
    assert buf.oldest_pending_age_s(target) >= 0


def test_an_estimate_of_the_wrong_generation_is_refused_and_retried(clean_redis: redis.Redis) -> None:
    """At a generation's turn the caller may name last generation's hashes: the script refuses
    before writing anything, and the call goes again with the generation the script names."""
    buf = StockBuffer(clean_redis, horizon_s=3600)
    seconds, micros = clean_redis.time()
    server_ms = int(seconds) * 1000 + int(micros) // 1000
    current = server_ms // buf.generation_ms
    behind = (server_ms - buf.generation_ms, time.monotonic())  # one generation behind the server
    buf._clock = behind
    assert buf.ingest(C, [("a", 1, NOW_MS - 1000)] * 1 + [(f"s{i}", 1, NOW_MS - 1000) for i in range(2500)]).accepted \
        == 2501
    assert buf.pending(C) == 2501
    batch = buf.take(C, 1, 10**6, 60)
    buf._clock = behind
    assert buf.settle(batch, "dead", reason="x") == 1  # a dead letter's record goes to hwm
    assert clean_redis.hexists(keys.hwm("c1001", current), "a")
    assert not clean_redis.exists(keys.hwm("c1001", current - 1))
    buf._clock = behind
    assert buf.ingest(C, [("a", 2, NOW_MS)]).accepted == 1  # and is rewritten there
    assert clean_redis.hget(keys.hwm("c1001", current), "a") == f"{NOW_MS}|2".encode()
    batch = buf.take(C, 10, 10**6, 60)
    buf._clock = behind
    assert buf.settle(batch, "delivered") == 10
    assert clean_redis.hlen(keys.delivered("c1001", current)) == 10
    assert not clean_redis.exists(keys.delivered("c1001", current - 1))


# --- the same on a Redis Cluster node, through the cluster client -------------------------------


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[int]:
    """A one-node Redis Cluster (every slot on it) on private loopback ports."""
    port, bus = free_port(), free_port()
    folder = tempfile.mkdtemp(prefix="ymsync-cluster-")
    process = subprocess.Popen([redis_binary(), "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
                                "--dir", folder, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        plain = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                plain.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "the cluster node did not start"
                time.sleep(0.05)
        plain.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        while b"cluster_state:ok" not in plain.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.05)
        plain.close()
        yield port
    finally:
        stop_process(process)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("target", [C, "b7"])
def test_the_buffer_runs_on_redis_cluster(cluster_node: int, target) -> None:
    """The cluster client routes each script by its KEYS and refuses keys of two slots: every
    script's declared keys share the target's slot, and the pipelined ingest loads its script
    (a cluster pipeline does not)."""
    client = RedisCluster(host="127.0.0.1", port=cluster_node)
    try:
        client.flushall()
        exercise(StockBuffer(client, schedule=Schedule(client), horizon_s=3600), target)
    finally:
        client.close()
