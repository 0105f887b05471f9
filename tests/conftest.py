from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis

from tests.support.redis_server import RedisServer
from tests.support.spec import spec_check_missing, spec_path
from tests.support.stock_harness import Bench
from ymsync.sandbox import MarketSandbox, SandboxConfig

# --- every sandbox the suite starts checks every request against the official description --------
# Set before any test runs, so in-process sandboxes (MarketSandbox follows YM_SANDBOX_SPEC_CHECK),
# `ymsync sandbox` subprocesses and the demo (which passes these two on) all run in the test mode,
# and all append what they refuse to one file that the session reads (under pytest-xdist, one
# file per worker beside the controller's, which reads them all).

def pytest_configure(config: pytest.Config) -> None:
    # Nothing in a test may reach the machine's own Redis (6379, ymsync's default): a test that
    # falls back to the environment's REDIS_URL meets a port where nothing listens and fails
    # loudly. (test_django once wrote to 6379 that way; each test names its private server.)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")
    config.spec_check_off = spec_check_missing()  # type: ignore[attr-defined]
    if config.spec_check_off:
        return
    worker = getattr(config, "workerinput", None)
    if worker is not None and os.environ.get("YM_SANDBOX_SPEC_VIOLATIONS"):
        # A pytest-xdist worker: a file of its own beside the controller's, so each test reads only
        # what its own sandboxes refused; the controller reads them all at the end.
        log = f"{os.environ['YM_SANDBOX_SPEC_VIOLATIONS']}.{worker['workerid']}"
        Path(log).touch()
    else:
        handle, log = tempfile.mkstemp(prefix="ymsync-spec-violations-", suffix=".jsonl")
        os.close(handle)
        config.spec_violation_logs = log  # type: ignore[attr-defined]
    os.environ["YM_SANDBOX_SPEC_CHECK"] = str(spec_path())
    os.environ["YM_SANDBOX_SPEC_VIOLATIONS"] = log


def _logs(config: pytest.Config | None = None) -> list[Path]:
    """This process's violations file, and in the controller its workers' files too."""
    log = os.environ.get("YM_SANDBOX_SPEC_VIOLATIONS")
    if not log:
        return []
    paths = [Path(log)]
    if config is not None and getattr(config, "spec_violation_logs", None) == log:
        paths += sorted(Path(log).parent.glob(Path(log).name + ".gw*"))
    return [p for p in paths if p.exists()]


def _violations(offset: int = 0, config: pytest.Config | None = None) -> tuple[list[dict], int]:
    found, end = [], 0
    for path in _logs(config):
        with open(path, "rb") as f:
            f.seek(offset if config is None else 0)
            data = f.read()
        found += [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        end = (offset if config is None else 0) + len(data)
    return found, end


def _describe(violations: list[dict]) -> str:
    return "\n".join(f"  {v['operation'] or '?'} {v['method']} {v['path']}: {v['message']}" for v in violations)


@pytest.fixture(autouse=True)
def _requests_match_the_spec() -> Iterator[None]:
    """Fail the test during which any sandbox saw a request the official description refuses."""
    _, start = _violations()
    yield
    found, _ = _violations(start)
    if found:
        pytest.fail(f"{len(found)} request(s) to the Market sandbox broke the official OpenAPI description:\n"
                    f"{_describe(found)}", pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The whole session's record, including what sandboxes refused outside any test's span."""
    found, _ = _violations(config=session.config)
    if found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        for path in _logs(session.config):
            path.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if getattr(config, "spec_check_off", None):
        terminalreporter.write_line(f"sandbox spec check OFF: {config.spec_check_off}", yellow=True)
        return
    found, _ = _violations(config=config)
    if found:
        terminalreporter.write_line(
            f"{len(found)} request(s) to Market sandboxes broke the official OpenAPI description "
            f"({os.environ['YM_SANDBOX_SPEC_VIOLATIONS']}):\n{_describe(found)}", red=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture()
def clean_redis(redis_server) -> Iterator[redis.Redis]:
    """A client of the session's private Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture()
def bench_for(redis_server, tmp_path: Path) -> Iterator[Callable[..., Bench]]:
    """``bench_for(SandboxConfig, redis_url=None)``: a running sandbox and a clean Redis (the
    session's, or ``redis_url``); workers and sandboxes stopped after the test."""
    opened: list[tuple[MarketSandbox, Bench]] = []

    def make(config: SandboxConfig, redis_url: str | None = None) -> Bench:
        market = MarketSandbox(config=config).start()
        bench = Bench(market, redis_url or redis_server.url, tmp_path)
        bench.redis.flushdb()
        opened.append((market, bench))
        return bench

    yield make
    for market, bench in opened:
        bench.stop()
        market.stop()
