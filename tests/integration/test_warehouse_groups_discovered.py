"""Discovered warehouse groups (issue 20): a v2 cabinet that configures no groups learns them from
the Market (getPagedWarehouses, cached), and a campaign found in a group hands what its own target
still holds over to the group's target (engine/group_move.py): pending values move with their
stamps, the group waits for the campaign's batches in flight, newest value wins, nothing stale."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.processes import wait_for
from tests.support.stock_harness import sandbox_config
from ymsync import push_stocks
from ymsync.config.settings import Credentials, Quota, Secret, configure
from ymsync.engine.quota import QuotaLimiter
from ymsync.market import MarketClient
from ymsync.reads.warehouse_groups import GroupDirectory
from ymsync.sandbox import CampaignConfig
from ymsync.sandbox.state import Faults
from ymsync.store import keys

pytestmark = pytest.mark.integration
GROUP = (1001, 1002)
SKUS = 6_000


@pytest.fixture()
def v2_cabinet(redis_server):
    """This process's settings (the producer's): a v2 cabinet of business 100, no groups configured."""
    configure({"REDIS_URL": redis_server.url, "YM_API_KEY": "sandbox-token", "YM_BUSINESS_ID": "100"})
    yield
    configure(None)


def _quiet(bench) -> bool:
    return all(bench.buffer.pending(t) == 0 and bench.buffer.in_flight(t) == 0 for t in ("c1001", "c1002", "g1001"))


def test_a_campaign_found_in_a_group_hands_its_values_over_and_the_newest_wins(bench_for, v2_cabinet):
    # A tight quota keeps campaign 1002 mid-backlog when the group is discovered, and slow replies
    # keep its requests in flight meanwhile; the group then sends through 1001, whose quota is free.
    bench = bench_for(sandbox_config(Quota(1_000, 1), campaigns=tuple(CampaignConfig(c, 100) for c in GROUP),
                                     warehouse_groups=(GROUP,), faults=Faults(latency_min_ms=50, latency_max_ms=1500)))
    # What ymsync knew before: the Market's list, fetched when the cabinet had no group yet.
    bench.redis.set(keys.warehouse_groups(100), json.dumps({"business_id": 100, "fetched_ms": int(time.time() * 1000),
                                                            "stale": False, "groups": [], "warehouses": []}), ex=3600)
    base = datetime.now(timezone.utc) - timedelta(minutes=20)
    rng = random.Random(21)
    before = {1001: [f"D-{i}" for i in range(SKUS // 6)], 1002: [f"E-{i}" for i in range(SKUS)]}
    expected: dict[str, int] = {}
    for campaign, skus in before.items():  # before discovery: each campaign its own target and SKUs
        items = [{"sku": sku, "count": i, "updatedAt": (base + timedelta(milliseconds=i)).isoformat()}
                 for i, sku in enumerate(skus)]
        _push(campaign, items, bench)
        expected.update((item["sku"], item["count"]) for item in items)
    assert bench.buffer.pending("c1001") == SKUS // 6 and bench.buffer.pending("c1002") == SKUS
    bench.start_worker("discover", YM_BUSINESS_ID="100", YM_QUOTA_UPDATE_STOCKS="1000/1")
    wait_for(lambda: bench.log(), 30, "the first request through a campaign of its own")

    # Discovery (as `ymsync warehouses --business 100` or a worker's refresh makes it).
    client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
    directory = GroupDirectory(bench.redis, lambda _b: client, lambda _b: QuotaLimiter(bench.redis, {"warehouses_v2": None}))
    assert directory.get(100, refresh=True).groups() == (GROUP,)
    left = sum(bench.buffer.pending(t) + bench.buffer.in_flight(t) for t in ("c1001", "c1002"))
    assert left > 0, "the campaigns' backlogs were gone before discovery: the test proves nothing"
    after: dict[int, list[dict]] = {c: [] for c in GROUP}
    newer = before[1001][: SKUS // 12] + before[1002][: SKUS * 3 // 4]  # the rest keep their first value
    for i, sku in enumerate(newer):  # after discovery: a newer value, through either campaign
        expected[sku] = 5000 + i
        after[rng.choice(GROUP)].append({"sku": sku, "count": expected[sku],
                                         "updatedAt": (base + timedelta(minutes=1, milliseconds=i)).isoformat()})
    for campaign, items in after.items():
        _push(campaign, items, bench)
    assert bench.buffer.pending("g1001") > 0  # routed to the group, though the producers named campaigns

    wait_for(lambda: _quiet(bench) and bench.stocks(1001) == expected, 90,
             "the group's newest values on the Market, nothing left in any target", interval=0.3)
    assert bench.stocks(1002) == expected  # one stock, seen through either campaign
    assert bench.state()["stale_writes"] == 0  # no campaign's old value over the group's newer one
    assert bench.redis.get(keys.absorbed("c1001")) == b"g1001" == bench.redis.get(keys.absorbed("c1002"))
    # An older push to the group than what went out through a campaign is refused as stale.
    for sku in ("D-0", before[1001][-1], before[1002][-1]):  # newer after discovery; only before, each campaign
        late = push_stocks(1002, [{"sku": sku, "count": 77, "updatedAt": (base - timedelta(seconds=1)).isoformat()}],
                           buffer=bench.buffer)
        assert late.accepted == 0, sku


def _push(campaign: int, items: list[dict], bench) -> None:
    for start in range(0, len(items), 1000):
        push_stocks(campaign, items[start:start + 1000], buffer=bench.buffer)


def test_the_group_sends_nothing_while_a_campaign_batch_is_in_flight_then_takes_over_its_records(
        bench_for, redis_server):
    """Rules 2 and 3, step by step through one in-process Flusher (the sandbox checks each request)."""
    from ymsync.engine.flusher import Flusher
    from ymsync.market.wire import campaign_stock_body

    bench = bench_for(sandbox_config(campaigns=tuple(CampaignConfig(c, 100) for c in GROUP), warehouse_groups=(GROUP,)))
    configure({"REDIS_URL": redis_server.url, "YM_API_KEY": "sandbox-token"})  # no group known yet
    try:
        bench.push(1002, [("R-1", 1), ("R-2", 2), ("R-3", 3)])  # older values, under campaign 1002 alone
        carried = bench.buffer.take("c1002", 2, 100_000, 30)  # in flight through 1002
        assert [e.sku for e in carried.entries] == ["R-1", "R-2"]
        configure({"REDIS_URL": redis_server.url, "YM_API_KEY": "sandbox-token",
                   "YM_WAREHOUSE_GROUPS": ",".join(map(str, GROUP))})  # the group becomes known
        bench.push(1001, [("R-1", 10)])  # newer, to the group
        assert bench.buffer.pending("g1001") == 1
        client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
        flusher = Flusher(bench.buffer, QuotaLimiter(bench.redis, {"update_stocks": None}), client, lease_s=10)

        held = flusher.flush("g1001")
        assert held.requests == 0 and held.next_in == flusher.groups.wait_s  # 1002's batch is still out
        assert bench.buffer.pending("c1002") == 0 and bench.buffer.pending("g1001") == 2  # R-3 moved over
        assert bench.log() == []
        # The campaign's batch lands (as its worker would settle it), then the group goes.
        client.send_stocks_body(1002, campaign_stock_body([(e.sku, e.count, e.stamp_ms) for e in carried.entries]))
        bench.buffer.settle(carried, "delivered")
        done = flusher.flush("g1001")
        assert done.delivered == 2 and bench.stocks(1001) == bench.stocks(1002) == {"R-1": 10, "R-2": 2, "R-3": 3}
        assert bench.state()["stale_writes"] == 0
        assert bench.redis.get(keys.absorbed("c1002")) == b"g1001"
        # R-2 went out through 1002 before the group existed: an older push to the group is stale.
        older = datetime.fromtimestamp((carried.entries[1].stamp_ms - 1) / 1000, timezone.utc).isoformat()
        stale = push_stocks(1001, [{"sku": "R-2", "count": 9, "updatedAt": older}], buffer=bench.buffer)
        assert stale.accepted == 0 and stale.stale == 1 and bench.buffer.latest_of("g1001", ["R-2"])[0][1] == 2
    finally:
        configure(None)


def test_a_worker_discovers_the_group_itself_before_sending_a_campaign(bench_for, v2_cabinet):
    """Nothing cached: the first flush of a campaign target refreshes the Market's groups (one
    getPagedWarehouses), finds its campaign in a group and hands over; both campaigns' pushes then
    go out once, through the group."""
    bench = bench_for(sandbox_config(campaigns=tuple(CampaignConfig(c, 100) for c in GROUP), warehouse_groups=(GROUP,)))
    bench.push(1001, [(f"W-{i}", i) for i in range(500)])
    bench.push(1002, [(f"W-{i}", i + 1) for i in range(500)])  # newer stamps: these win
    assert bench.buffer.pending("c1001") == bench.buffer.pending("c1002") == 500  # no group known yet
    bench.start_worker("self-discover", YM_BUSINESS_ID="100")
    expected = {f"W-{i}": i + 1 for i in range(500)}
    wait_for(lambda: _quiet(bench) and bench.stocks(1001) == expected, 60, "the group's values on the Market",
             interval=0.2)
    assert bench.requests_by_status("getPagedWarehouses") == {200: 1}
    assert bench.redis.exists(keys.warehouse_groups(100))
    units = sum(bench.state()["campaigns"].get(str(c), {}).get("sku_units", 0) for c in GROUP)
    assert units <= 1.05 * 500, units  # one stock sent once, not once per campaign
    assert bench.state()["stale_writes"] == 0


def test_a_dissolved_group_hands_its_values_back_and_the_campaign_waits_for_its_batch(bench_for, redis_server):
    """Rule 4 (engine/group_move.py), step by step through one in-process Flusher: the Market
    (the sandbox, no groups) checks each request and counts stale writes."""
    from ymsync.engine.flusher import Flusher
    from ymsync.market.wire import campaign_stock_body

    bench = bench_for(sandbox_config(campaigns=tuple(CampaignConfig(c, 100) for c in GROUP)))
    grouped = {"REDIS_URL": redis_server.url, "YM_API_KEY": "sandbox-token",
               "YM_WAREHOUSE_GROUPS": ",".join(map(str, GROUP))}
    configure(grouped)
    try:
        client = MarketClient(bench.market.url, Credentials(api_key=Secret("sandbox-token")))
        flusher = Flusher(bench.buffer, QuotaLimiter(bench.redis, {"update_stocks": None}), client, lease_s=10)
        bench.push(1002, [("G-1", 1), ("G-2", 2)])  # to the group (named by either campaign)
        bench.push(1001, [("C-0", 5)])
        assert flusher.flush("c1001").requests == 0  # the campaign joins: nothing of its own to send
        assert flusher.flush("g1001").delivered == 3 and bench.stocks(1001) == {"G-1": 1, "G-2": 2, "C-0": 5}
        bench.push(1001, [("G-1", 10), ("G-3", 3)])
        carried = bench.buffer.take("g1001", 1, 100_000, 30)  # G-1=10 in flight through 1001
        assert [e.sku for e in carried.entries] == ["G-1"]
        configure({k: v for k, v in grouped.items() if k != "YM_WAREHOUSE_GROUPS"})  # the group is gone
        bench.push(1001, [("G-3", 30), ("N-1", 1)])  # newer, to the campaign itself now
        assert bench.buffer.pending("c1001") == 2

        held = flusher.flush("c1001")
        assert held.requests == 0 and held.next_in == flusher.groups.wait_s  # the group's G-1 is still out
        assert bench.buffer.pending("g1001") == 0  # G-3=3 came back, and lost to the campaign's newer 30
        # The group's batch lands (as its worker would settle it); then the campaign sends everything.
        client.send_stocks_body(1001, campaign_stock_body([(e.sku, e.count, e.stamp_ms) for e in carried.entries]))
        bench.buffer.settle(carried, "delivered")
        assert flusher.flush("c1001").requests == 0  # its records come back, the mark goes
        done = flusher.flush("c1001")
        assert done.delivered == 2
        assert bench.stocks(1001) == {"G-1": 10, "G-2": 2, "C-0": 5, "G-3": 30, "N-1": 1}
        assert bench.state()["stale_writes"] == 0
        # What the group delivered is the campaign's latest now: an older push is refused as stale.
        older = datetime.fromtimestamp((carried.entries[0].stamp_ms - 1) / 1000, timezone.utc).isoformat()
        stale = push_stocks(1001, [{"sku": "G-1", "count": 9, "updatedAt": older}], buffer=bench.buffer)
        assert stale.accepted == 0 and stale.stale == 1
        # The group target, if its round still comes, sends nothing more.
        assert flusher.flush("g1001").requests == 0 and bench.buffer.take("g1001", 10, 100_000, 30) is None
    finally:
        configure(None)
