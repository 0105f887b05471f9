"""ymsync's state on a real Redis Cluster (3 masters, 3 replicas; tests/support/redis_cluster.py).

The broker and result backend are the session's plain redis-server (a cluster cannot be one);
workers are real Celery processes, the Market is the sandbox over HTTP. The whole module takes
about 15 s (the cluster's node timeout is 1 s, so a failover takes ~2 s).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import requests

from tests.support.processes import CeleryWorker, wait_for
from tests.support.redis_cluster import RedisCluster, flush_cluster, redis_cluster  # noqa: F401 (fixture)
from ymsync import Unavailable, push_stocks
from ymsync.config.settings import Quota, Settings, load_settings
from ymsync.engine.buffer import StockBuffer
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.store import keys
from ymsync.store.client import state_client

CAMPAIGNS = (1001, 1002, 1003)


@pytest.fixture()
def cluster(redis_cluster: RedisCluster) -> RedisCluster:  # noqa: F811
    flush_cluster(redis_cluster)
    return redis_cluster


@pytest.fixture()
def broker_url(redis_server) -> str:
    """The session's plain Redis, a database of its own, as Celery's broker and result backend."""
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    import redis as redis_lib
    redis_lib.Redis.from_url(url).flushdb()
    return url


def cluster_env(cluster: RedisCluster, broker_url: str, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": cluster.url, "YM_REDIS_CLUSTER": "1", "CELERY_BROKER_URL": broker_url,
            "CELERY_RESULT_BACKEND": broker_url, "YM_REDIS_FAILOVER_S": "20",
            # Generous: a replica on 2 shared, busy cores may take a while; the refusal test sets 200.
            "YM_REDIS_ACK_TIMEOUT_MS": "5000", **extra}


def producer(settings: Settings) -> StockBuffer:
    return StockBuffer.from_settings(state_client(settings, bounded=True), settings)


def stamped(skus: list[str], count: int, base: datetime) -> list[dict]:
    return [{"sku": sku, "count": count + i, "updatedAt": (base + timedelta(milliseconds=i)).isoformat()}
            for i, sku in enumerate(skus)]


def on_replica(cluster: RedisCluster, key: str):
    """A client of the replica of ``key``'s master that may read its keys (READONLY)."""
    replica = cluster.node(cluster.replica_of(cluster.master_of(key)))
    replica.execute_command("READONLY")
    return replica


def test_an_acknowledged_push_is_on_a_replica(cluster: RedisCluster) -> None:
    """push_stocks returns only once the master's replica holds the values and the due entry."""
    settings = load_settings(cluster_env(cluster, "redis://127.0.0.1:9/0"))
    assert settings.redis_state.ack_replicas == 1
    buf = producer(settings)
    base = datetime.now(timezone.utc) - timedelta(minutes=5)
    push_stocks(1001, stamped([f"s{i}" for i in range(1500)], 1, base), buffer=buf)
    k = keys.campaign_keys(1001)
    # Read at once, without waiting: WAIT returned only after the replica had applied the writes.
    assert on_replica(cluster, k["buf"]).hlen(k["buf"]) == 1500
    assert on_replica(cluster, keys.DUE).zscore(keys.DUE, "c1001") is not None


def test_a_replica_that_does_not_answer_makes_the_push_unavailable(cluster: RedisCluster) -> None:
    """No replica confirms within YM_REDIS_ACK_TIMEOUT_MS: ymsync.Unavailable saying the update may
    or may not be durable (never a silent acknowledgement)."""
    settings = load_settings(cluster_env(cluster, "redis://127.0.0.1:9/0", YM_REDIS_ACK_TIMEOUT_MS="200"))
    buf = producer(settings)
    replica = cluster.replica_of(cluster.master_of(keys.campaign_keys(1002)["buf"]))
    cluster.pause(replica)
    try:
        with pytest.raises(Unavailable) as caught:
            push_stocks(1002, [{"sku": "a", "count": 1}], buffer=buf)
    finally:
        cluster.resume(replica)
    assert caught.value.maybe_queued
    assert "may or may not be durable" in str(caught.value)
    assert "0 of 1 replica(s)" in str(caught.value)
    cluster.wait_healthy()


@pytest.fixture()
def market() -> Iterator[MarketSandbox]:
    config = SandboxConfig(campaigns=tuple(CampaignConfig(c) for c in CAMPAIGNS),
                           quotas={"updateStocks": Quota(1_000_000, 60), "getStocks": None,
                                   "generateStocksOnWarehousesReport": None, "getReportInfo": None})
    with MarketSandbox(config=config) as sandbox:
        yield sandbox


def sandbox_stocks(market: MarketSandbox, campaign: int) -> dict[str, int]:
    data = requests.get(f"{market.url}/_admin/stocks/{campaign}", timeout=30).json()
    return {sku: v["count"] for sku, v in data.items()}


def start_worker(cluster: RedisCluster, broker_url: str, market: MarketSandbox, tmp_path) -> CeleryWorker:
    env = cluster_env(cluster, broker_url, YM_API_URL=market.url, YM_API_KEY="sandbox-token",
                      YM_FLUSH_DELAY_MS="50", YM_UNKNOWN_OUTCOME_S="2", YM_MAX_BACKOFF_S="2")
    return CeleryWorker(env, concurrency=2, name="cluster", log_path=tmp_path / "worker.log").start()


def test_a_push_runs_through_the_cluster_to_the_market(cluster, broker_url, market, tmp_path) -> None:
    """Three campaigns (their keys on different masters, the schedule on a third slot) pushed
    through real workers whose state is the cluster: the Market ends with every latest value."""
    settings = load_settings(cluster_env(cluster, broker_url))
    buf = producer(settings)
    base = datetime.now(timezone.utc) - timedelta(minutes=5)
    latest: dict[int, dict[str, int]] = {}
    for n, campaign in enumerate(CAMPAIGNS):
        items = stamped([f"sku-{i}" for i in range(2500)], 10 * n, base)
        push_stocks(campaign, items, buffer=buf)
        latest[campaign] = {item["sku"]: item["count"] for item in items}
    masters = {cluster.master_of(keys.campaign_keys(c)["buf"]) for c in CAMPAIGNS}
    assert len(masters) > 1, "the test's campaigns should live on more than one master"
    worker = start_worker(cluster, broker_url, market, tmp_path)
    try:
        for campaign in CAMPAIGNS:
            wait_for(lambda: sandbox_stocks(market, campaign) == latest[campaign], 60,
                     f"the sandbox to hold campaign {campaign}'s latest values", interval=0.2)
    finally:
        worker.stop()
    state = requests.get(f"{market.url}/_admin/state", timeout=30).json()
    assert not any(k.startswith("updateStocks 4") for k in state["requests"]), state["requests"]


def test_a_master_killed_under_load_loses_no_acknowledged_update(cluster, broker_url, market, tmp_path) -> None:
    """Pushes keep coming while the master of campaign 1001's slot is SIGKILLed; its replica takes
    over, and the killed node comes back as its replica. Every update push_stocks acknowledged reaches the Market (each SKU is pushed once, so an
    update that failed with Unavailable cannot hide a lost acknowledged one)."""
    settings = load_settings(cluster_env(cluster, broker_url))
    buf = producer(settings)
    base = datetime.now(timezone.utc) - timedelta(minutes=5)
    acked: dict[int, dict[str, int]] = {c: {} for c in CAMPAIGNS}
    refused: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set() or n < 40:
            campaign = CAMPAIGNS[n % len(CAMPAIGNS)]
            items = stamped([f"w{n}-{i}" for i in range(200)], n, base)
            try:
                push_stocks(campaign, items, buffer=buf)
            except Unavailable as exc:
                refused.append(str(exc))
            else:
                acked[campaign].update((item["sku"], item["count"]) for item in items)
            n += 1

    worker = start_worker(cluster, broker_url, market, tmp_path)
    victim = cluster.master_of(keys.campaign_keys(1001)["buf"])
    thread = threading.Thread(target=produce)
    thread.start()
    try:
        wait_for(lambda: len(acked[1001]) >= 1000, 30, "pushes to be under way")
        cluster.kill(victim)
        wait_for(lambda: cluster.info(cluster.live()[0], "cluster")["cluster_enabled"] == 1
                 and cluster.failed_over(victim, keys.campaign_keys(1001)["buf"]), 30, "the replica to take over")
        # The promoted replica has no replica of its own until the killed node is back (it rejoins
        # as one): pushes to its slots are refused (Unavailable) until then, never acknowledged.
        cluster.restart(victim)
        wait_for(lambda: len(acked[1001]) >= 4000, 60, "pushes to go on after the failover")
        stop.set()
        thread.join(120)
        for campaign in CAMPAIGNS:
            def arrived() -> bool:
                have = sandbox_stocks(market, campaign)
                return all(have.get(sku) == count for sku, count in acked[campaign].items())
            try:
                wait_for(arrived, 60, f"every acknowledged update of campaign {campaign} at the Market", interval=0.5)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_diagnose(market, buf, campaign, acked[campaign], tmp_path)}") from None
    finally:
        stop.set()
        thread.join(120)
        worker.stop()
        if victim not in cluster.live():
            cluster.restart(victim)
    assert sum(len(v) for v in acked.values()) >= 8000
    print(f"acknowledged {sum(len(v) for v in acked.values())} updates, refused {len(refused)} pushes:",
          refused[:1])



def _diagnose(market: MarketSandbox, buf: StockBuffer, campaign: int, acked: dict[str, int], tmp_path) -> str:
    have = sandbox_stocks(market, campaign)
    missing = {sku: (have.get(sku), count) for sku, count in acked.items() if have.get(sku) != count}
    log = (tmp_path / "worker.log").read_text(errors="replace").splitlines()
    return (f"{len(missing)} of {len(acked)} missing, e.g. {list(missing.items())[:3]}; pending={buf.pending(campaign)} "
            f"in_flight={buf.in_flight(campaign)} stats={buf.stats(campaign)} "
            f"due={buf.redis.zrange(keys.DUE, 0, -1, withscores=True)}\n" + "\n".join(log[-40:]))


def test_migrate_moves_quota_state_to_its_targets_slot(cluster: RedisCluster) -> None:
    """`ymsync migrate` moves a quota log, pause, Market count and gate written with one tag per
    quota (before issue 18) to the target's tag on another master: no command spans two slots."""
    from ymsync.config.settings import Quota
    from ymsync.engine.migrate import migrate
    from ymsync.engine.quota import QuotaLimiter

    settings = load_settings(cluster_env(cluster, "redis://127.0.0.1:9/0"))
    client = state_client(settings)
    m = "update_stocks"
    c = next(c for c in range(1001, 1100)
             if cluster.master_of(f"ymsync:{{q:{c}}}:quota:{m}") != cluster.master_of(keys.quota(m, str(c))))
    now = int(time.time() * 1000)
    client.zadd(f"ymsync:{{q:{c}}}:quota:{m}", {"s:e1:60": now - 1000})
    client.set(f"ymsync:{{q:{c}}}:quota:{m}:used", 60)
    client.pexpire(f"ymsync:{{q:{c}}}:quota:{m}", 240_000)
    client.hset(f"ymsync:{{q:{c}}}:market:{m}", mapping={"limit": 70})
    client.set(f"ymsync:{{q:{c}}}:pause:get_stocks", "1", px=30_000)
    client.zadd(f"ymsync:{{g:c{c}}}:lease", {"l1": now + 60_000})
    result = migrate(client, StockBuffer.from_settings(client, settings))
    assert result.tagged == {"quota": 1, "market": 1, "pause": 1, "lease": 1}
    lim = QuotaLimiter(client, {m: Quota(100, 60), "get_stocks": Quota(100, 60)}, max_parallel=1)
    assert lim.usage(m, str(c)) == (60, 100) and 230_000 < client.pttl(keys.quota(m, str(c))) <= 240_000
    assert lim.acquire(m, str(c), 100).granted == 10  # the Market's 70, less the 60 used
    assert lim.paused_for("get_stocks", str(c)) > 25 and lim.lease(f"c{c}") is None
    assert not client.exists(f"ymsync:{{q:{c}}}:quota:{m}") and not client.exists(f"ymsync:{{g:c{c}}}:lease")
    assert migrate(client, StockBuffer.from_settings(client, settings)).tagged == {}
