"""Flower's REST API against a real worker: readable task names and summaries, never the token
or the payload, and nothing at all without the right credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Iterator

import pytest
import redis
import requests

from tests.support.processes import ROOT, CeleryWorker, wait_for
from tests.support.redis_server import free_port
from ymsync.demo.stack import Child
from ymsync.sandbox import MarketSandbox, SandboxConfig
from ymsync.config.settings import child_environ

pytestmark = pytest.mark.integration
CAMPAIGN = 5151
TOKEN = "ym-SECRET-token-7f3a9c"  # distinctive: it must appear nowhere in Flower's answers
MARKER = "PAYLOAD-MARKER-SKU"  # in every SKU: no SKU may appear in Flower either
USER, PASSWORD = "ops", "s3cret-flower-pw"


@pytest.fixture()
def stack(redis_server, tmp_path) -> Iterator[dict[str, Any]]:
    redis.Redis.from_url(redis_server.url).flushdb()
    with MarketSandbox(config=SandboxConfig(tokens=(TOKEN,))) as market:
        env = {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": TOKEN,
               "YM_FLUSH_DELAY_MS": "50"}
        port = free_port()
        flower = Child("flower", [sys.executable, "-m", "celery", "-A", "tasks", "flower", "--address=127.0.0.1",
                                  f"--port={port}"],
                       child_environ({**env, "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}), ROOT,
                       tmp_path / "flower.log").start()
        worker = CeleryWorker(env, concurrency=1, name="flowerw", log_path=tmp_path / "worker.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _get(url + "/healthcheck") == 200 or not flower.alive, 30, "Flower to listen")
            assert flower.alive, flower.tail()
            worker.start()  # after Flower: it sees every event from the first task on
            yield {"url": url, "env": env, "market": market, "worker": worker, "flower": flower}
        finally:
            worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
            flower.stop()


def _get(url: str, **kwargs: Any) -> int:
    try:
        return requests.get(url, timeout=5, **kwargs).status_code
    except requests.RequestException:
        return 0


def test_tasks_show_with_readable_summaries_and_no_secret(stack):
    url, env = stack["url"], stack["env"]
    # The real helper, from another process (as a shop backend would call it).
    script = ("from tasks.stocks import send_updates\n"
              f"send_updates({CAMPAIGN}, [{{'sku': '{MARKER}-%d' % i, 'count': i}} for i in range(3)])\n")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=child_environ(env), check=True, timeout=60)
    auth = (USER, PASSWORD)

    def tasks_seen() -> dict[str, Any] | None:
        body = requests.get(url + "/api/tasks", auth=auth, timeout=5).json()
        names = {t.get("name"): t for t in body.values()}
        done = [t for t in body.values() if t.get("state") == "SUCCESS"]
        return body if {"ymsync.stocks.update", "ymsync.stocks.flush"} <= names.keys() and len(done) >= 2 else None

    body = wait_for(tasks_seen, 45, "the update and flush tasks to succeed in Flower", interval=0.5)
    wait_for(lambda: len(requests.get(f"{stack['market'].url}/_admin/stocks/{CAMPAIGN}", timeout=5).json()) == 3,
             20, "the sandbox to hold the 3 SKUs")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for task in body.values():
        by_name.setdefault(task["name"], []).append(task)
    assert [t["args"] for t in by_name["ymsync.stocks.update"]] == [f"(campaign={CAMPAIGN}, 3 SKUs)"]
    assert {t["args"] for t in by_name["ymsync.stocks.flush"]} == {f"(campaign={CAMPAIGN})"}
    assert all(t["kwargs"] in ("{}", "") for t in body.values())

    for path in ("/api/tasks", "/api/workers", "/api/task/info/" + by_name["ymsync.stocks.update"][0]["uuid"],
                 "/metrics", "/tasks", "/"):
        response = requests.get(url + path, auth=auth, timeout=10)
        assert response.status_code == 200, path
        assert TOKEN not in response.text, f"the API token leaks through {path}"
        assert MARKER not in response.text, f"a SKU payload leaks through {path}"


@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("nobody", PASSWORD)], ids=["none", "bad-pw", "bad-user"])
def test_nothing_gets_in_without_the_right_credentials(stack, auth):
    url = stack["url"]
    for path in ("/", "/workers", "/tasks", "/broker", "/api/tasks", "/api/workers", "/api/queues/length",
                 "/api/task/info/x", "/metrics"):
        response = requests.get(url + path, auth=auth, timeout=10, allow_redirects=False)
        assert response.status_code == 401, f"GET {path} with {auth and auth[0]}: {response.status_code}"
    response = requests.post(url + "/api/task/async-apply/ymsync.stocks.flush", auth=auth, timeout=10,
                             json={"args": [CAMPAIGN]})
    assert response.status_code == 401
    # Not even malformed headers get through.
    for header in ("Basic", "Basic !!!", "Bearer " + TOKEN, "Basic " + "b3Bz"):
        assert requests.get(url + "/api/tasks", headers={"Authorization": header}, timeout=5).status_code == 401
    assert os.environ.get("FLOWER_UNAUTHENTICATED_API") is None  # the checks above were not weakened
