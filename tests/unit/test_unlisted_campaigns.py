"""A campaign no cabinet lists is refused at enqueue (push_stocks, the update task, `ymsync
push`), and a worker never sends one with another cabinet's token, even with one cabinet."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import redis
from click.testing import CliRunner

import tasks.stocks as stock_tasks
from tasks import runtime
from ymsync import InvalidInput, push_stocks
from ymsync.cli import main
from ymsync.cli import push as push_cli
from ymsync.config.settings import get_settings
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.targets import target
from ymsync.market import MarketForbidden
from ymsync.market.models import StockLevel

TOKEN = "y0_AgAAAAB-only-cabinet-secret-333"


def _reset() -> None:
    for cached in (get_settings, push_cli._settings, runtime.flusher, runtime.buffer, runtime.schedule,
                   runtime.limiter, runtime.redis_client):
        getattr(cached, "cache_clear", lambda: None)()  # a test may have replaced one


@pytest.fixture()
def one_cabinet(tmp_path: Path, monkeypatch, redis_server) -> Iterator[Path]:
    """A cabinets file with a single cabinet that lists campaign 1001 only."""
    path = tmp_path / "cabinets.toml"
    path.write_text('[cabinets.north]\nbusiness_id = 7\ncampaigns = [1001]\ntoken_env = "YM_TOKEN_NORTH"\n')
    for name in ("YM_API_KEY", "YM_OAUTH_TOKEN", "YM_BUSINESS_ID", "YM_API_MODE", "YM_CAMPAIGN_IDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("YM_CABINETS_FILE", str(path))
    monkeypatch.setenv("YM_TOKEN_NORTH", TOKEN)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    _reset()
    yield path
    _reset()


def test_push_stocks_refuses_an_unlisted_campaign_naming_the_file(one_cabinet: Path, clean_redis) -> None:
    buffer = StockBuffer(clean_redis)
    with pytest.raises(InvalidInput) as caught:
        push_stocks(2002, [{"sku": "a", "count": 1}], buffer=buffer)
    [error] = caught.value.errors
    assert error.field == "campaign_id" and error.index is None
    assert "campaign 2002" in str(caught.value) and str(one_cabinet) in str(caught.value)
    assert buffer.pending(2002) == 0 and clean_redis.dbsize() == 0
    assert push_stocks(1001, [{"sku": "a", "count": 1}], buffer=buffer).accepted == 1


def test_the_update_task_refuses_an_unlisted_campaign(one_cabinet: Path, clean_redis, monkeypatch) -> None:
    buffer = StockBuffer(clean_redis)
    monkeypatch.setattr(stock_tasks.runtime, "buffer", lambda: buffer)
    with pytest.raises(InvalidInput, match=r"campaign 2002 is refused: no cabinet lists campaign 2002"):
        stock_tasks.update(2002, [{"sku": "a", "count": 1, "updatedAt": "2026-01-01T00:00:00Z"}])
    assert clean_redis.dbsize() == 0


def test_ymsync_push_refuses_an_unlisted_campaign(one_cabinet: Path, tmp_path: Path, clean_redis) -> None:
    data = tmp_path / "stock.csv"
    data.write_text("sku,count\na,1\n")
    result = CliRunner().invoke(main, ["push", "--campaign", "2002", str(data)])
    assert result.exit_code == push_cli.EXIT_INVALID
    assert f"no cabinet lists campaign 2002 (add it to a cabinet's campaigns in {one_cabinet})" in result.output
    assert "nothing queued" in result.output and clean_redis.dbsize() == 0


def test_a_worker_with_one_cabinet_never_sends_an_unlisted_campaign_with_its_token(one_cabinet: Path) -> None:
    """Before, one cabinet meant one client for every campaign: 2002 went out with north's token."""
    flusher = runtime.flusher()
    client = flusher.client_for(target(2002))
    with pytest.raises(MarketForbidden, match="no cabinet lists campaign 2002") as caught:
        client.update_stocks(2002, [StockLevel("a", 1)])
    assert caught.value.status == 403 and TOKEN not in str(caught.value)


def test_the_simple_case_lists_campaigns_in_ym_campaign_ids(monkeypatch) -> None:
    from ymsync.config.settings import load_settings

    env = {"YM_API_KEY": TOKEN, "REDIS_URL": "redis://127.0.0.1:1/0"}
    every = load_settings(env).cabinets
    assert every.by_campaign(4242).name == "default"  # no YM_CAMPAIGN_IDS: one token for every campaign
    listed = load_settings({**env, "YM_CAMPAIGN_IDS": "1001, 1002", "YM_FBY_CAMPAIGNS": "1003"}).cabinets
    assert listed.by_campaign(1003).name == "default" and listed.by_campaign(1002).name == "default"
    with pytest.raises(InvalidInput, match=r"no cabinet lists campaign 4242 \(add it to YM_CAMPAIGN_IDS\)"):
        from ymsync.engine.producer import check_listed
        check_listed(4242, listed)
