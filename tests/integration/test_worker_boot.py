"""`celery -A tasks worker` boots from the repo root against a private Redis, and bad settings
stop it at once with one clear line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from celery import Celery

from tests.support.processes import ROOT, CeleryWorker, wait_for


def test_worker_boots_and_answers_ping(redis_server) -> None:
    env = {"REDIS_URL": redis_server.url, "YM_API_KEY": "t0k3n-secret"}
    worker = CeleryWorker(env, queues="stocks,reports", concurrency=1, name="boot").start()
    try:
        probe = Celery(broker=redis_server.url, backend=redis_server.url)
        replies = wait_for(lambda: probe.control.ping(timeout=0.5), 60, "worker ping reply")
        assert any(name.startswith("boot@") for reply in replies for name in reply)
        queues = probe.control.inspect(timeout=2).active_queues() or {}
        names = {q["name"] for qs in queues.values() for q in qs}
        assert names == {"stocks", "reports"}
    finally:
        worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here


def _connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP connection to 127.0.0.1:``port`` (its fds' socket inodes
    against /proc/net/tcp)."""
    try:
        inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
                  if os.readlink(fd).startswith("socket:[")}
    except OSError:
        return False
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
            return True
    return False


def test_pool_processes_connect_to_redis_before_their_first_task(redis_server) -> None:
    """The handshake (HELLO, CLIENT SETINFO: round trips) is paid as a pool process starts, not on
    its first flush's way to the Market: each holds its Redis connection before any task ran."""
    env = {"REDIS_URL": redis_server.url, "YM_API_KEY": "t0k3n-secret"}
    worker = CeleryWorker(env, concurrency=2, name="warm").start()
    try:
        worker.wait_ready(redis_server.url)
        pool = [int(p) for p in Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children")
                .read_text().split()]
        assert len(pool) == 2
        wait_for(lambda: all(_connected_to(pid, redis_server.port) for pid in pool), 10,
                 "each pool process to hold a Redis connection")
    finally:
        worker.kill()


def test_malformed_setting_fails_worker_start_with_one_line(redis_server) -> None:
    env = {"REDIS_URL": redis_server.url, "YM_QUOTA_UPDATE_STOCKS": "lots"}
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "stocks"],
                            cwd=ROOT, env={**__import__("os").environ, **env}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "YM_QUOTA_UPDATE_STOCKS" in line]
    assert lines == ["ymsync: configuration error: YM_QUOTA_UPDATE_STOCKS: expected AMOUNT/SECONDS like "
                     "100000/60, or 0 for off; got 'lots'"]


def test_malformed_cabinets_file_stops_worker_and_cli_with_one_line(redis_server, tmp_path) -> None:
    bad = tmp_path / "cabinets.toml"
    bad.write_text('[cabinets.north]\nbusiness_id = 7\nmode = "v9"\ntoken_env = "YM_TOKEN_NORTH"\n')
    env = {**__import__("os").environ, "REDIS_URL": redis_server.url, "YM_CABINETS_FILE": str(bad),
           "YM_TOKEN_NORTH": "t0k3n-north-secret"}
    expected = f"YM_CABINETS_FILE {bad}: cabinet 'north': mode: expected v2 or v3, got 'v9'"
    worker = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "stocks"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert worker.returncode != 0
    assert [line for line in worker.stderr.splitlines() if "YM_CABINETS_FILE" in line] == \
        [f"ymsync: configuration error: {expected}"]
    cli = subprocess.run([sys.executable, "-m", "ymsync.cli", "warehouses", "--business", "7"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert cli.returncode != 0
    assert cli.stderr.strip().splitlines() == [f"Error: configuration error: {expected}"]
    assert "t0k3n-north-secret" not in worker.stderr + cli.stderr


def test_the_readme_worker_command_says_when_it_is_ready(redis_server, tmp_path) -> None:
    """Celery's default log level is WARNING, so the bare command used to print nothing once ready."""
    import os
    import signal

    log = tmp_path / "worker.log"
    with open(log, "wb") as out:  # from a shop's folder, by the installed name, as the README says
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "ymsync_celery.tasks", "worker", "-Q", "stocks",
                                   "-c", "1", "-n", "readme@%h"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "REDIS_URL": redis_server.url, "YM_API_KEY": "t0k3n"},
                                  start_new_session=True)
    try:
        line = wait_for(lambda: [ln for ln in log.read_text().splitlines() if "ready:" in ln], 60, "the ready line")
        assert re.search(r"ymsync worker readme@\S+ ready: queues stocks, concurrency 1$", line[0]), line
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)


def test_ymsync_worker_runs_the_installed_profile(tmp_path) -> None:
    path = subprocess.run([sys.executable, "-m", "ymsync.cli", "worker", "--print-path", "stocks"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert path.returncode == 0 and path.stdout.strip().endswith("workers/stocks.sh")
    assert "-Q stocks" in open(path.stdout.strip()).read()
    # Arguments after the queue go to `celery worker` (here --help: the profile ran celery's worker).
    helped = subprocess.run([sys.executable, "-m", "ymsync.cli", "worker", "stocks", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "celery worker" in helped.stdout, helped.stderr
