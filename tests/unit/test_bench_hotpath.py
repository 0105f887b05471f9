"""Benchmark 13 (``bench/hotpath.py``): what its figures rest on. The producer pushes in the issue's
order, ``redis_counters`` counts round trips (not commands), and ``--hot-ref`` runs another ref's
code from a worktree it removes afterwards."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import redis

import ymsync
from bench import hot_producer
from bench.hotpath import checkout, redis_counters
from bench.rig import ROOT


def test_the_producer_pushes_chunks_round_robin_over_the_campaigns(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, Any]] = []
    monkeypatch.setattr(ymsync, "push_stocks", lambda c, items: calls.append((c, len(items), items[0]["sku"])))
    hot_producer._push([1001, 1002, 1003], 10_000, hot_producer._items(25_000))
    assert calls == [(1001, 10_000, "K-00000000"), (1002, 10_000, "K-00000000"), (1003, 10_000, "K-00000000"),
                     (1001, 10_000, "K-00010000"), (1002, 10_000, "K-00010000"), (1003, 10_000, "K-00010000"),
                     (1001, 5_000, "K-00020000"), (1002, 5_000, "K-00020000"), (1003, 5_000, "K-00020000")]


def test_round_trips_count_socket_reads_and_commandstats_count_commands(clean_redis: redis.Redis) -> None:
    reads0, calls0 = redis_counters(clean_redis)
    pipe = clean_redis.pipeline(transaction=False)
    for i in range(50):
        pipe.get(f"k{i}")
    pipe.execute()
    reads1, calls1 = redis_counters(clean_redis)
    for i in range(50):
        clean_redis.get(f"k{i}")
    reads2, calls2 = redis_counters(clean_redis)
    assert calls1["get"] - calls0.get("get", 0) == 50 and calls2["get"] - calls1["get"] == 50
    assert reads1 - reads0 <= 3  # the pipeline (one read) and 2 INFO calls
    assert reads2 - reads1 >= 50


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout


def test_another_ref_is_checked_out_apart_and_removed_after() -> None:
    ref = _git("rev-parse", "HEAD~1").strip()
    with checkout(ref) as code:
        assert code != ROOT and (code / "ymsync" / "__init__.py").is_file() and (code / "tasks").is_dir()
        assert _git("-C", str(code), "rev-parse", "HEAD").strip() == ref
        assert str(code) in _git("worktree", "list")
    assert not code.exists() and str(code) not in _git("worktree", "list")
    with checkout(None) as code:
        assert code == ROOT


def test_the_monitor_tells_commands_sent_from_commands_scripts_call_and_who_sent_them(
        clean_redis: redis.Redis) -> None:
    from bench.hotmonitor import CommandMonitor, describe

    monitor = CommandMonitor(clean_redis)
    monitor.start({})
    clean_redis.set("a", 1)
    clean_redis.eval("redis.call('GET', 'a'); return redis.call('GET', 'a')", 0)
    monitor.stop({"producer": [os.getpid()]})  # this process stands for the producer
    clean_redis.set("after", 1)  # after the end mark: not counted
    summary = monitor.summary(requests=2)
    assert summary == {"producer": {"set": 0.5, "eval": 0.5}, "lua": {"get": 1.0}}
    assert describe(summary).endswith("called by Lua scripts (no round trip) 1.00 (GET 1.00)")
