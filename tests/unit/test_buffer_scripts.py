"""The buffer's scripts as Redis runs them: the purge counts what it forgets in the same atomic
step, and every key a script touches is declared in KEYS (what Redis Cluster requires)."""

from __future__ import annotations

import time

import redis

from ymsync.engine.buffer import StockBuffer

C = 1001
NOW_MS = int(time.time() * 1000)


def _dead_letter(buf: StockBuffer, n: int) -> None:
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
