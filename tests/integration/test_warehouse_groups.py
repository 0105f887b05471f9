"""Warehouse groups (issue 20): campaigns whose warehouses share one stock are one stock target.

The Market updates every warehouse of a group through any one of them, so pushes naming either
campaign coalesce in the group's target (``g1001``; latest stamp wins across the group) and go out
once, through one campaign of the group. The sandbox models the group (a write through one campaign
is seen through both; stale writes are counted across the group).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.support.stock_harness import sandbox_config
from ymsync import push_stocks
from ymsync.config.settings import Credentials, Secret, configure
from ymsync.engine.flusher import Flusher
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.status import all_statuses
from ymsync.market import MarketClient
from ymsync.sandbox import CampaignConfig
from ymsync.sandbox.business_state import TokenScope
from ymsync.store import keys

pytestmark = pytest.mark.integration
GROUP = (1001, 1002)
SKUS = 8_000


@pytest.fixture()
def grouped(redis_server):
    """This process's settings (the producer's) know the group, as the workers' do."""
    configure({"REDIS_URL": redis_server.url, "YM_API_KEY": "sandbox-token",
               "YM_WAREHOUSE_GROUPS": ",".join(map(str, GROUP))})
    yield
    configure(None)  # the rest of the session reads the environment again


def test_a_group_pushed_through_both_campaigns_sends_each_sku_once_and_the_newest_wins(bench_for, grouped):
    bench = bench_for(sandbox_config(campaigns=tuple(CampaignConfig(c) for c in GROUP), warehouse_groups=(GROUP,)))
    base = datetime.now(timezone.utc) - timedelta(minutes=20)
    rng = random.Random(20)
    per_campaign: dict[int, list[dict]] = {c: [] for c in GROUP}
    newest: dict[str, int] = {}
    for i in range(SKUS):
        sku = f"G-{i}"
        newer = rng.choice(GROUP)  # which campaign is told the newer value of this SKU
        for campaign in GROUP:
            is_new = campaign == newer
            count = 2 * i + (1 if is_new else 0)
            stamp = base + timedelta(milliseconds=i + (SKUS if is_new else 0))
            per_campaign[campaign].append({"sku": sku, "count": count, "updatedAt": stamp.isoformat()})
            if is_new:
                newest[sku] = count
    # The newer value arrives first for about half the SKUs: latest-wins must hold by stamp, not arrival.
    for campaign in (GROUP[1], GROUP[0]):
        items = per_campaign[campaign]
        rng.shuffle(items)
        for start in range(0, len(items), 1000):
            push_stocks(campaign, items[start:start + 1000], buffer=bench.buffer)
    # Both campaigns' pushes coalesced in the group's one target: one pending value per SKU.
    assert bench.buffer.pending("g1001") == SKUS
    assert bench.buffer.pending(1001) == bench.buffer.pending(1002) == 0

    bench.start_worker("groups", YM_WAREHOUSE_GROUPS=",".join(map(str, GROUP)))
    for campaign in GROUP:  # one stock, seen through either campaign
        bench.wait_latest(campaign, 90, expected=newest)
    state = bench.state()
    assert state["stale_writes"] == 0
    sent = sum(state["campaigns"].get(str(c), {}).get("sku_units", 0) for c in GROUP)
    assert SKUS <= sent <= 1.05 * SKUS, sent
    statuses = {s.target: s for s in all_statuses(bench.buffer, QuotaLimiter(bench.redis, {"update_stocks": None}))}
    assert statuses["g1001"].campaigns == GROUP and statuses["g1001"].pending == 0
    assert "c1001" not in statuses and "c1002" not in statuses


def test_a_refused_campaign_hands_the_group_stock_to_the_next_one(bench_for, grouped):
    # The token reaches 1002 only: the Market answers 403 for 1001, the group's first campaign.
    bench = bench_for(sandbox_config(campaigns=(CampaignConfig(1001, 10), CampaignConfig(1002, 20)),
                                     warehouse_groups=(GROUP,),
                                     token_scopes={"sandbox-token": TokenScope(campaigns=frozenset({1002}))}))
    bench.push(1001, [("F-1", 5), ("F-2", 6)])
    bench.push(1002, [("F-2", 7)])
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    flusher = Flusher(bench.buffer, QuotaLimiter(bench.redis, {"update_stocks": None}), client, lease_s=10)

    first = flusher.flush("g1001")
    assert first.delivered == 0 and first.next_in == 0.0  # refused through 1001: not halted, go on now
    assert bench.redis.get(keys.refused_carrier("g1001", 1001)) is not None
    second = flusher.flush("g1001")
    assert second.delivered == 2
    assert bench.stocks(1002) == bench.stocks(1001) == {"F-1": 5, "F-2": 7}
    assert bench.requests_by_status() == {403: 1, 200: 1}
    assert not bench.redis.exists(keys.target_keys("g1001")["halt"])  # the group never halted


def test_the_sandbox_answers_getpagedwarehouses_with_group_info_and_shares_a_group_stock(bench_for):
    bench = bench_for(sandbox_config(campaigns=(CampaignConfig(1001, 100), CampaignConfig(1002, 100),
                                                CampaignConfig(1003, 100)), warehouse_groups=(GROUP,)))
    headers = {"Api-Key": "sandbox-token"}
    url = f"{bench.market.url}/v2/businesses/100/warehouses"
    first = requests.post(url, params={"limit": 2}, json={}, headers=headers, timeout=10).json()["result"]
    rest = requests.post(url, params={"limit": 2, "pageToken": first["paging"]["nextPageToken"]}, json={},
                         headers=headers, timeout=10).json()["result"]
    rows = {w["campaignId"]: w for w in first["warehouses"] + rest["warehouses"]}
    assert set(rows) == {1001, 1002, 1003} and "paging" not in rest
    assert rows[1001]["groupInfo"] == rows[1002]["groupInfo"] and "groupInfo" not in rows[1003]
    # A cabinet edit in one campaign of the group is seen through the other (as on the Market).
    bench.admin("stocks/1001", {"E-1": 3})
    assert bench.stocks(1002) == {"E-1": 3} and bench.stocks(1003) == {}


def test_groups_discovered_from_the_market_cached_and_a_contradiction_named(bench_for, redis_server, tmp_path):
    """getPagedWarehouses through the client (each request checked against the official OpenAPI by
    the sandbox), kept in Redis like the v3 list; ``ymsync warehouses --business`` shows a v2
    cabinet's groups and names a configured group the Market contradicts, in one line."""
    from click.testing import CliRunner

    from ymsync.cli import main
    from ymsync.reads.warehouse_groups import GroupDirectory

    bench = bench_for(sandbox_config(campaigns=(CampaignConfig(1001, 100), CampaignConfig(1002, 100),
                                                CampaignConfig(1003, 100)), warehouse_groups=(GROUP,)))
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    directory = GroupDirectory(bench.redis, lambda _b: client,
                               lambda _b: QuotaLimiter(bench.redis, {"warehouses_v2": None}))
    assert directory.cached_groups(100) == ()  # nothing cached: the push path never asks the Market
    assert directory.get(100).groups() == (GROUP,)
    assert directory.get(100).groups() == (GROUP,) and directory.cached_groups(100) == (GROUP,)
    assert bench.requests_by_status("getPagedWarehouses") == {200: 1}  # the second came from the cache
    assert 0 < bench.redis.ttl(keys.warehouse_groups(100)) <= 86400

    cabinets = tmp_path / "cabinets.toml"
    cabinets.write_text('[cabinets.shop]\nbusiness_id = 100\nmode = "v2"\ncampaigns = [1001, 1002, 1003]\n'
                        'warehouse_groups = [[1002, 1003]]\ntoken_env = "GROUPS_TOKEN"\n')
    configure({"REDIS_URL": redis_server.url, "YM_API_URL": bench.market.url, "YM_CABINETS_FILE": str(cabinets),
               "GROUPS_TOKEN": "sandbox-token"})
    try:
        out = CliRunner().invoke(main, ["warehouses", "--business", "100"])
    finally:
        configure(None)
    assert out.exit_code == 0, out.output
    assert "business 100 (v2): 3 warehouse(s), groups sharing one stock: 1001+1002" in out.output
    assert ("business 100: warehouse group 1002+1003 is configured, but the Market groups these campaigns as "
            "1001+1002 | 1003 (no group)") in out.output
