"""A pipeline of script calls in one round trip (ymsync/store/pipelines.py), on a real redis-server."""

from __future__ import annotations

import pytest
import redis

from ymsync.store import pipelines

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAIL = "return redis.error_reply('NOPE')"


def reads(r: redis.Redis) -> int:
    return int(r.info("stats")["total_reads_processed"])


def test_known_scripts_go_in_one_round_trip(clean_redis) -> None:
    r = clean_redis
    incr = r.register_script(INCR)
    incr(keys=["n"], args=[1])  # loaded
    pipe = r.pipeline(transaction=False)
    incr(keys=["n"], args=[2], client=pipe)
    pipe.get("n")
    before = reads(r)
    assert pipelines.execute(pipe) == [3, b"3"]
    assert reads(r) - before == 2, "the pipeline and the INFO call: no SCRIPT EXISTS before it"


def test_a_script_the_server_lost_runs_again_in_order(clean_redis) -> None:
    r = clean_redis
    incr = r.register_script(INCR)
    incr(keys=["n"], args=[1])
    r.script_flush()  # as after a restart or a failover: the server knows no script
    pipe = r.pipeline(transaction=False)
    incr(keys=["n"], args=[10], client=pipe)
    pipe.set("plain", "x")
    incr(keys=["n"], args=[100], client=pipe)
    pipe.execute_command("WAIT", 0, 10)
    replies = pipelines.execute(pipe, then=("WAIT", 0, 10))
    assert replies[:3] == [11, True, 111] and replies[3] == 0
    assert r.get("n") == b"111" and r.get("plain") == b"x"


def test_errors_come_back_in_place_and_raise_first_raises_them(clean_redis) -> None:
    r = clean_redis
    fail = r.register_script(FAIL)
    pipe = r.pipeline(transaction=False)
    pipe.set("a", 1)
    fail(client=pipe)
    replies = pipelines.execute(pipe)
    assert replies[0] is True and isinstance(replies[1], redis.ResponseError)
    with pytest.raises(redis.ResponseError, match="NOPE"):
        pipelines.raise_first(replies)
