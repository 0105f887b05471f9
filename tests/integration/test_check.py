"""`ymsync check` against real processes: private redis-servers (one evicting), a real worker and
the HTTP sandbox, which accepts only the tokens it is given (``SandboxConfig.tokens``); and a
worker that refuses to start on an evicting Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import redis
from celery import Celery

from tests.support.processes import ROOT, CeleryWorker, wait_for
from tests.support.redis_server import RedisServer
from ymsync.checks import FAIL, OK, WARN, check_redis
from ymsync.config.settings import DEFAULT_REDIS_URL, load_settings
from ymsync.sandbox import MarketSandbox, SandboxConfig

pytestmark = pytest.mark.integration
GOOD, BAD = "t0k3n-accepted", "t0k3n-refused"


@pytest.fixture(scope="module")
def market() -> Iterator[MarketSandbox]:
    with MarketSandbox(config=SandboxConfig(tokens=(GOOD,))) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def worker(redis_server, market, tmp_path_factory) -> Iterator[CeleryWorker]:
    """One worker on both queues for the module's checks that need a consumer."""
    env = {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": GOOD}
    log = tmp_path_factory.mktemp("check") / "worker.log"
    started = CeleryWorker(env, queues="stocks,reports", concurrency=1, name="check", log_path=log).start()
    probe = Celery(broker=redis_server.url)
    try:
        wait_for(lambda: probe.control.ping(timeout=0.5), 60, "the worker to answer a ping")
        yield started
    finally:
        started.stop()


def _check(env: dict[str, str], *args: str) -> tuple[int, list[dict], str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("YM_API", "YM_CABINETS", "REDIS_URL"))}
    done = subprocess.run([sys.executable, "-m", "ymsync.cli", "check", "--json", *args], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=90)
    rows = json.loads(done.stdout) if done.stdout.strip().startswith("[") else []
    return done.returncode, rows, done.stderr


def _by_check(rows: list[dict]) -> dict[str, dict]:
    return {r["check"]: r for r in rows}


def test_a_ready_deployment_passes_every_check(redis_server, market, worker) -> None:
    code, rows, err = _check({"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": GOOD},
                             "--campaign", "1001")
    found = _by_check(rows)
    assert code == 0, (rows, err)
    assert {r["status"] for r in rows} == {OK}, rows
    assert found["queue stocks"]["detail"].startswith("consumed by check@")
    assert found["queue reports"]["detail"].startswith("consumed by check@")
    assert found["token default"]["detail"].startswith("getStocks campaign 1001: accepted")


def test_a_refused_token_fails_and_names_where_it_comes_from(redis_server, market, worker, tmp_path: Path) -> None:
    cabinets = tmp_path / "cabinets.toml"
    cabinets.write_text('[cabinets.north]\nbusiness_id = 7\nmode = "v3"\ntoken_env = "YM_TOKEN_NORTH"\n\n'
                        '[cabinets.south]\nbusiness_id = 8\ncampaigns = [2001]\ntoken_env = "YM_TOKEN_SOUTH"\n')
    code, rows, err = _check({"REDIS_URL": redis_server.url, "YM_API_URL": market.url,
                              "YM_CABINETS_FILE": str(cabinets), "YM_TOKEN_NORTH": GOOD, "YM_TOKEN_SOUTH": BAD})
    found = _by_check(rows)
    assert code == 1, (rows, err)
    assert found["token north"]["status"] == OK
    assert found["token north"]["detail"].startswith("getPartnerWarehouses business 7: accepted")
    assert found["token south"]["status"] == FAIL
    assert "refused the token from YM_TOKEN_SOUTH (HTTP 403)" in found["token south"]["detail"]
    assert BAD not in json.dumps(rows) + err  # messages name where a token comes from, never the token


def test_an_evicting_redis_fails_the_check_and_stops_a_worker(market, tmp_path: Path) -> None:
    with RedisServer(maxmemory_policy="allkeys-lru") as lru:
        env = {"REDIS_URL": lru.url, "YM_API_URL": market.url, "YM_API_KEY": GOOD}
        code, rows, err = _check(env, "--campaign", "1001")
        found = _by_check(rows)
        assert code == 1, (rows, err)
        assert found["redis"]["status"] == OK
        assert found["redis eviction"]["status"] == FAIL
        assert "'allkeys-lru'" in found["redis eviction"]["detail"]
        # Nobody consumes this broker's queues: updates sent there would wait forever.
        assert found["queue stocks"]["status"] == FAIL and found["queue reports"]["status"] == FAIL
        assert found["token default"]["status"] == OK  # the Market side is fine; the exit is still 1

        refused = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "stocks"],
                                 cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        assert [line for line in refused.stderr.splitlines() if "maxmemory-policy" in line] == [
            f"ymsync: configuration error: {found['redis eviction']['detail']}"]


def test_redis_url_left_at_its_default_is_a_warning(redis_server) -> None:
    # The client points at the private server: a test never touches the machine's Redis on 6379.
    client = redis.Redis.from_url(redis_server.url)
    try:
        defaulted = {f.check: f for f in check_redis(load_settings({"YM_API_KEY": GOOD}), client)}
        chosen = {f.check: f for f in check_redis(load_settings({"YM_API_KEY": GOOD, "REDIS_URL": redis_server.url}),
                                                  client)}
    finally:
        client.close()
    assert defaulted["REDIS_URL"].status == WARN and DEFAULT_REDIS_URL in defaulted["REDIS_URL"].detail
    assert "REDIS_URL" not in chosen
    assert defaulted["redis eviction"].status == chosen["redis eviction"].status == OK
