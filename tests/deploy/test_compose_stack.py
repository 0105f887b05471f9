"""docker-compose.yml under a real Docker engine, the way README's deployment section runs it.

Only with ``YM_TEST_DOCKER=1`` (see tests/deploy/conftest.py); never part of the default run.
The tests share one stack and run in file order, each step building on the last: build the
image, up and healthy, pushes from the host and from inside a container, a report into the
reports volume, three stock workers that later commands keep, a worker container SIGKILLed
mid-push, a Redis restart, ``down``/``up`` keeping state, Flower's auth, the metrics profile.
Timings go to build/deploy/timings.json and the terminal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

from tests.deploy.stack import Stack, build_image, wait_until
from tests.support.processes import ROOT

# pytest-timeout counts fixture setup against the first test: the module-scoped stack builds the
# image (up to 1800 s, see build_image) and brings it up (compose 600 s, wait_healthy 300 s) inside
# test_up_and_healthy's budget. The ini's 300 s fired there whenever the image's pip layer re-ran
# (build 193 s + up 107 s on a 2-core machine). Every step below has its own bound.
pytestmark = [pytest.mark.deploy, pytest.mark.timeout(3000)]

TIMINGS: dict[str, float] = {}
STARTED = time.monotonic()
BASE_SERVICES = {"redis": 1, "sandbox": 1, "worker-stocks": 1, "worker-reports": 1, "beat": 1, "flower": 1}


def timed(name: str, since: float) -> None:
    TIMINGS[name] = round(time.monotonic() - since, 1)


def csv_of(levels: dict[str, int]) -> bytes:
    return ("sku,count\n" + "".join(f"{sku},{count}\n" for sku, count in levels.items())).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    started = time.monotonic()
    timed_build = build_image()
    TIMINGS["build"] = round(timed_build, 1)
    # Short HTTP timeouts: a killed worker's lease (connect + read + 10 s) runs out in 20 s, not 75 s.
    stack = Stack(tmp_path_factory.mktemp("deploy"), YM_HTTP_CONNECT_TIMEOUT="3", YM_HTTP_READ_TIMEOUT="7",
                  YM_STOCKS_CONCURRENCY="2", YM_REPORTS_CONCURRENCY="1")
    try:
        up = time.monotonic()
        stack.compose("up", "-d", "--no-build")
        stack.wait_healthy(BASE_SERVICES)
        timed("up_to_healthy", up)
        yield stack
    finally:
        logs = stack.compose("--profile", "metrics", "logs", "--no-color", "--tail", "200", check=False).stdout
        out = ROOT / "build" / "deploy"
        out.mkdir(parents=True, exist_ok=True)
        (out / "compose.log").write_bytes(logs)
        stack.down()
        timed("total", started)
        (out / "timings.json").write_text(json.dumps(TIMINGS, indent=1))
        sys.stderr.write(f"\ndeploy test timings (s): {json.dumps(TIMINGS)}\n")


def test_up_and_healthy(stack):
    running = stack.containers()
    assert {c["service"] for c in running} == set(BASE_SERVICES)
    for c in running:
        assert c["health"] in ("healthy", "none"), c
    # The image's user: uid and gid 10001, the same in every container.
    assert stack.exec("worker-stocks", "id", "-u").stdout.strip() == b"10001"
    assert stack.exec("worker-stocks", "id", "-g").stdout.strip() == b"10001"


def test_a_push_from_the_host(stack, tmp_path):
    levels = {f"HOST-{i:04d}": i % 50 for i in range(500)}
    (tmp_path / "stock.csv").write_bytes(csv_of(levels))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YM_", "CELERY_", "REDIS_URL"))}
    done = subprocess.run([str(Path(sys.executable).parent / "ymsync"), "push", "--campaign", "1001",
                           str(tmp_path / "stock.csv"), "--wait", "--timeout", "120"],
                          env={**env, "REDIS_URL": stack.redis_url}, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: stack.sandbox_stocks(1001) == levels, 60, "the sandbox to hold the host's push")


def test_a_push_from_inside_a_container(stack):
    levels = {f"EXEC-{i:04d}": i % 7 for i in range(300)}
    stack.exec("worker-stocks", "ymsync", "push", "--campaign", "1002", "-", "--format", "csv",
               "--wait", "--timeout", "120", input=csv_of(levels))  # exits non-zero unless all delivered
    wait_until(lambda: stack.sandbox_stocks(1002) == levels, 60, "the sandbox to hold the exec push")


def test_a_report_lands_in_the_reports_volume_and_comes_out_through_exec(stack, tmp_path):
    started = time.monotonic()
    done = stack.exec("worker-reports", "ymsync", "report", "stocks-on-warehouses", "--campaign", "1001",
                      "--format", "CSV", "--wait", "--timeout", "240", timeout=300)
    text = done.stdout.decode()
    report = re.search(r"^(/app/reports/\S+)$", text, re.M)
    rows = re.search(r"parsed rows in (/app/reports/\S+)", text)
    assert report and rows, text
    # README's recipe for files out: exec cat, from the worker-reports container (the volume's owner).
    assert stack.exec("worker-reports", "cat", report[1]).stdout[:2] == b"PK"  # the Market's ZIP, as downloaded
    data = stack.exec("worker-reports", "cat", rows[1]).stdout
    assert b"HOST-0001" in data and b"HOST-0499" in data
    timed("report", started)
    # --out into a folder the image's user cannot write: one clean line, no traceback.
    failed = stack.exec("worker-reports", "ymsync", "report", "stocks-on-warehouses", "--campaign", "1001",
                        "--format", "CSV", "--wait", "--timeout", "240", "--out", "./out", check=False, timeout=300)
    assert failed.returncode == 1
    assert b"Traceback" not in failed.stderr
    assert b"but copying it to out failed: Permission denied" in failed.stderr, failed.stderr


def test_three_stock_workers_kept_by_later_commands_and_the_metrics_profile(stack):
    started = time.monotonic()
    stack.set(YM_STOCKS_WORKERS="3")
    stack.compose("up", "-d", "--no-build")
    stack.wait_healthy({**BASE_SERVICES, "worker-stocks": 3})
    # A later command (the metrics profile) must not scale the workers back to one.
    stack.compose("--profile", "metrics", "up", "-d", "--no-build")
    stack.wait_healthy({**BASE_SERVICES, "worker-stocks": 3, "metrics": 1})
    metrics = requests.get(f"{stack.url('METRICS_HOST_PORT')}/metrics", timeout=30)
    assert metrics.status_code == 200 and "ymsync_" in metrics.text
    workers = stack.exec("worker-stocks", "celery", "-A", "ymsync_celery.tasks", "inspect", "ping",
                         "--timeout", "10").stdout.decode()
    assert workers.count("stocks@") == 3, workers
    timed("scale_and_metrics", started)


def test_sigkill_of_a_worker_container_mid_push_loses_nothing(stack):
    started = time.monotonic()
    # Slow Market calls, so batches are in flight when the container dies.
    requests.post(f"{stack.url('SANDBOX_PORT')}/_admin/faults", json={"latency_min_ms": 1500, "latency_max_ms": 2500},
                  timeout=10).raise_for_status()
    levels = {f"KILL-{i:05d}": i % 97 for i in range(40_000)}
    stack.exec("worker-stocks", "ymsync", "push", "--campaign", "1003", "-", "--format", "csv", input=csv_of(levels))
    wait_until(lambda: stack.status(1003)["in_flight"] > 0, 60, "batches in flight")
    victim = stack.containers("worker-stocks")[0]
    subprocess.run(["docker", "kill", "--signal", "KILL", victim["id"]], check=True, capture_output=True)
    held = stack.sandbox_stocks(1003)
    assert held != levels, "everything was delivered before the kill: the test proves nothing"
    requests.post(f"{stack.url('SANDBOX_PORT')}/_admin/faults", json={}, timeout=10).raise_for_status()
    wait_until(lambda: stack.sandbox_stocks(1003) == levels, 240, "every value delivered after the SIGKILL", 3)
    status = wait_until(lambda: (s := stack.status(1003))["pending"] == 0 and s["in_flight"] == 0 and s, 60,
                        "a settled buffer")
    assert status["dead_letters"] == 0
    timed("sigkill", started)


def test_redis_restart_loses_nothing(stack):
    started = time.monotonic()
    levels = {f"RR-{i:04d}": 1000 + i for i in range(2000)}
    client = redis.Redis.from_url(stack.redis_url)
    delivered_before = stack.status(1001)["delivered"]
    running_before = stack.containers()
    restarts_before = sum(c["restarts"] for c in running_before)
    stack.exec("worker-stocks", "ymsync", "push", "--campaign", "1004", "-", "--format", "csv", input=csv_of(levels))
    time.sleep(1.5)  # AOF fsync everysec: what was acknowledged over a second ago is on disk
    stack.compose("restart", "redis")
    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused, or still loading its AOF
            return False

    wait_until(answers, 60, "Redis back, its data loaded")
    wait_until(lambda: stack.sandbox_stocks(1004) == levels, 180, "every value delivered across the restart", 2)
    assert stack.status(1001)["delivered"] == delivered_before  # the counters came back from disk
    # Every container that ran before runs again, healthy. A worker holding unacknowledged messages
    # when Redis goes away may exit (kombu fails to restore them to a Redis that is not there) and
    # come back through `restart: unless-stopped`; its first healthcheck is a minute later. Until
    # then `exec worker-stocks ...` can land in a container that is being restarted (exit 137).
    counts: dict[str, int] = {}
    for c in running_before:
        counts[c["service"]] = counts.get(c["service"], 0) + 1
    running = stack.wait_healthy(counts)
    TIMINGS["containers_restarted_by_redis_restart"] = sum(c["restarts"] for c in running) - restarts_before
    timed("redis_restart", started)


def test_down_up_keeps_state(stack):
    started = time.monotonic()
    before = {c: stack.status(c)["delivered"] for c in (1001, 1002)}
    stack.compose("--profile", "metrics", "down")  # volumes kept
    stack.compose("up", "-d", "--no-build")
    stack.wait_healthy({**BASE_SERVICES, "worker-stocks": 3})
    assert {c: stack.status(c)["delivered"] for c in (1001, 1002)} == before
    assert len(stack.sandbox_stocks(1001)) == 500  # the sandbox's stock came back from its volume
    # Reconciliation agrees: nothing missing, nothing to fix.
    out = stack.exec("worker-reports", "ymsync", "reconcile", "--campaign", "1002", "--json").stdout
    result = json.loads(out)
    assert (result["checked"], result["drift"]) == (300, 0), result
    timed("down_up", started)


def test_flower_requires_its_credentials(stack):
    url = f"{stack.url('FLOWER_HOST_PORT')}/api/workers"
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, auth=("admin", "wrong"), timeout=30).status_code == 401
    assert requests.get(url, auth=stack.flower_auth, timeout=30).status_code == 200
    # And it sees the stack's workers (refresh=1: Flower asks them now instead of its cache).
    seen = wait_until(lambda: {name.split("@")[0] for name in requests.get(
        f"{url}?refresh=1", auth=stack.flower_auth, timeout=60).json()} >= {"stocks", "reports"}, 90,
        "Flower to list the stocks and reports workers")
    assert seen
