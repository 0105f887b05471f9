"""A producer that cannot queue says so, fast: ``ymsync.Unavailable`` naming what was not queued,
within ``YM_PRODUCER_TIMEOUT_S``, from every entry point (issue 21 item 1).

Each test runs against a private redis-server it stops (refused connections) or SIGSTOPs (a hung
server: the kernel still completes connects from the listen backlog, and no reply ever comes).
Before this change the producer raised redis-py's own errors, and a hung Redis held the call for
redis-py's defaults (5 s a wait, retried)."""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Iterator

import pytest
import redis
from click.testing import CliRunner

import ymsync
from ymsync.cli import push as push_cli
from ymsync.cli import main
from ymsync.config.settings import get_settings
from ymsync.embedded import EmbeddedRedis
from ymsync.engine import producer
from ymsync.engine.buffer import StockBuffer
from ymsync.store import keys

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0  # the default of YM_PRODUCER_TIMEOUT_S
MARGIN_S = 0.5
ITEMS = [{"sku": f"U-{i}", "count": i} for i in range(20)]


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis().start()
    for name in ("YM_API_KEY", "YM_CABINETS_FILE", "YM_CAMPAIGN_IDS", "YM_PRODUCER_TIMEOUT_S", "CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", srv.url)
    _fresh()
    yield srv
    if srv.process is not None and srv.process.poll() is None:
        os.kill(srv.process.pid, signal.SIGCONT)
    srv.stop()
    _fresh()


def _fresh() -> None:
    get_settings.cache_clear()
    producer._buffer_for.cache_clear()
    push_cli._settings.cache_clear()


def _stopped(srv: EmbeddedRedis) -> None:
    srv.stop()


def _hung(srv: EmbeddedRedis) -> None:
    assert srv.process is not None
    os.kill(srv.process.pid, signal.SIGSTOP)


def _timed(call: Callable[[], object]) -> tuple[BaseException, float]:
    start = time.monotonic()
    with pytest.raises(ymsync.Unavailable) as caught:
        call()
    return caught.value, time.monotonic() - start


@pytest.mark.parametrize("outage", [_stopped, _hung], ids=["stopped", "hung"])
def test_push_stocks_raises_unavailable_within_the_timeout(server: EmbeddedRedis, outage) -> None:
    outage(server)
    error, took = _timed(lambda: ymsync.push_stocks(1001, ITEMS))
    assert took < TIMEOUT_S + MARGIN_S, took
    assert isinstance(error, ymsync.YmsyncError)
    assert "20 stock update(s) for campaign 1001" in str(error)
    assert error.count == 20 and error.target == "campaign 1001"
    if outage is _hung:  # the request left: maybe queued, and the message says a re-push is safe
        assert error.maybe_queued and "re-pushing is safe" in str(error)
    else:
        assert not error.maybe_queued and "were not queued" in str(error)

    error, took = _timed(lambda: ymsync.push_business_stocks(7, [{**i, "warehouse": 501} for i in ITEMS[:3]]))
    assert took < TIMEOUT_S + MARGIN_S, took
    assert "3 stock update(s) for business 7" in str(error)


@pytest.mark.parametrize("outage", [_stopped, _hung], ids=["stopped", "hung"])
def test_send_updates_raises_unavailable_within_the_timeout(server: EmbeddedRedis, outage,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import app
    from tasks.stocks import send_business_updates, send_updates

    # The app read its broker URL when first imported (maybe by another test): this server's.
    monkeypatch.setitem(app.conf, "broker_url", server.url)

    outage(server)
    error, took = _timed(lambda: send_updates(1001, ITEMS[:5]))
    assert took < TIMEOUT_S + MARGIN_S, took
    assert "5 stock update(s) for campaign 1001" in str(error) and "Celery broker" in str(error)
    error, took = _timed(lambda: send_business_updates(7, ITEMS[:2], warehouse=501))
    assert took < TIMEOUT_S + MARGIN_S and "business 7" in str(error)


def test_cli_push_says_what_was_not_queued(server: EmbeddedRedis, tmp_path) -> None:
    path = tmp_path / "stocks.csv"
    path.write_text("sku,count\nA-1,5\nA-2,6\n")
    _hung(server)
    start = time.monotonic()
    result = CliRunner().invoke(main, ["push", "--campaign", "1001", str(path)])
    assert time.monotonic() - start < TIMEOUT_S + MARGIN_S
    assert result.exit_code == push_cli.EXIT_UNAVAILABLE, result.output
    assert "2 stock update(s) for campaign 1001" in result.output


@pytest.mark.parametrize("path", ["one Redis", "cluster"])
def test_a_write_whose_wake_up_was_lost_is_woken_by_the_re_push(server: EmbeddedRedis, monkeypatch, path) -> None:
    """The script ran, the wake-up after it failed: the caller got Unavailable (maybe queued), and
    the documented re-push of the same values (same stamps: all "stale") still wakes the target.
    On one Redis the wake-up rides in the write's pipeline: the connection closes between them. On a
    Cluster (the path taken here on one server) it is a call of its own, which fails."""
    client = redis.Redis.from_url(server.url)
    buffer = StockBuffer(client)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
    items = [{**i, "updatedAt": stamp} for i in ITEMS[:3]]

    def lost_wake_up(*args, **kwargs):
        raise redis.TimeoutError("Timeout reading from socket")

    def closed_before_the_wake_up(target, delay_s, *, client):
        client.execute_command("QUIT")  # the server closes the connection after the writes...
        client.execute_command("PING")  # ...and this reply, where the wake-up's would be, never comes

    ymsync.push_stocks(1002, ITEMS[:1], buffer=buffer)  # the server knows the scripts (as after any push)
    if path == "cluster":
        monkeypatch.setattr("ymsync.engine.buffer.is_cluster", lambda _client: True)
        buffer.schedule.activate = lost_wake_up  # type: ignore[method-assign]
    else:
        buffer.schedule.activate_if_pending = closed_before_the_wake_up  # type: ignore[method-assign]
    with pytest.raises(ymsync.Unavailable) as caught:
        ymsync.push_stocks(1001, items, buffer=buffer)
    assert caught.value.maybe_queued
    assert client.zscore(keys.DUE, "c1001") is None  # queued, but nothing will send it

    again = ymsync.push_stocks(1001, items, buffer=StockBuffer(client))
    assert again.accepted == 0 and again.stale == 3
    assert again.woke and client.zscore(keys.DUE, "c1001") is not None
