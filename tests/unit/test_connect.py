"""ymsync.connect, the one place clients and limiters are built, and the workers' use of it
(tasks/runtime.py caches only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from ymsync import connect
from ymsync.config.settings import load_settings
from ymsync.engine.targets import target
from ymsync.market import MarketForbidden

TOKEN = "y0_AgAAAAB-cabinet-one-secret-333"
ONE_CABINET = """
[cabinets.only]
business_id = 7
mode = "v3"
campaigns = [1001]
token_env = "YM_TOKEN_ONLY"
"""


@pytest.fixture()
def settings(tmp_path: Path):
    path = tmp_path / "cabinets.toml"
    path.write_text(ONE_CABINET)
    return load_settings({"YM_CABINETS_FILE": str(path), "YM_TOKEN_ONLY": TOKEN})


def test_a_business_target_gets_its_cabinets_client_and_an_unknown_one_halts_like_a_403(settings) -> None:
    campaigns = connect.CampaignClients(settings)
    asked = []
    client_for = connect.client_for_target(settings, campaigns, lambda cabinet: asked.append(cabinet.name) or "client")
    assert client_for(target("b7")) == "client" and asked == ["only"]
    assert client_for(target("c1001")) is campaigns
    with pytest.raises(MarketForbidden) as info:
        client_for(target("b99"))
    assert info.value.status == 403 and info.value.method == "updateStocksOnPartnerWarehouses"
    assert "no cabinet configured for business 99" in str(info.value) and TOKEN not in str(info.value)


def test_limiters_share_the_lease_length_of_the_settings(settings) -> None:
    never_used = redis.Redis.from_url("redis://127.0.0.1:1/0")  # building connects to nothing
    limiter = connect.quota_limiter(never_used, settings)
    assert connect.lease_seconds(settings) == settings.lease_s
    assert limiter.lease_ttl_ms == int(settings.lease_s * 1000)


def test_workers_push_a_campaign_only_with_the_token_of_the_cabinet_listing_it(settings, monkeypatch) -> None:
    """One cabinet in a file: an unlisted campaign halts (like a 403), never goes out with that token."""
    from tasks import runtime

    monkeypatch.setattr(runtime, "get_settings", lambda: settings)
    for cached in (runtime.redis_client, runtime.schedule, runtime.buffer, runtime.limiter, runtime.flusher,
                   runtime.client_for_cabinet):
        cached.cache_clear()
    try:
        flusher = runtime.flusher()
        assert isinstance(flusher.client_for(target("c1001")), connect.CampaignClients)
        with pytest.raises(MarketForbidden, match="no cabinet lists campaign 4242"):
            flusher.client_for(target("c4242")).update_stocks(4242, [])
    finally:
        for cached in (runtime.redis_client, runtime.schedule, runtime.buffer, runtime.limiter, runtime.flusher,
                       runtime.client_for_cabinet):
            cached.cache_clear()
