"""Benchmark 2b: end-to-end throughput with ymsync's state on a Redis Cluster against one Redis.

One run measures both, three times each, alternating (one Redis, cluster, cluster, one Redis,
one Redis, cluster) so that a change in the machine's load during the run weighs on both alike: the same updates (several campaigns
whose keys live on different masters), the same worker (1 worker -c 4, quotas off, as row 2),
the broker and result backend on the rig's single redis-server in both. With a cluster the
producer's writes are acknowledged as in production with ``YM_REDIS_CLUSTER=1``: after a
replica has them (``WAIT 1``).

The cluster is the test suite's (``tests/support/redis_cluster.py``: 3 masters + 3 replicas on
loopback), imported from ``tests.support`` like the rest of the rig (``bench/rig.py``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from .cases import CpuMeter, Row, _cpu_note, row, skus, wait_ready, ym_app, ymsync_workers
from .rig import Rig, Workers, wait_for

CAMPAIGNS, PER_CAMPAIGN, CHUNK = 4, 75_000, 10_000
ROUNDS = ("single", "cluster", "cluster", "single", "single", "cluster")
# Longer than the suite's 1 s: on 2 busy cores a node must not be failed over mid-measurement.
NODE_TIMEOUT_MS = 5000
GOAL_RATIO = 0.8


class _Meter(CpuMeter):
    """CpuMeter over given processes: every cluster node counts as "redis", the broker apart."""

    def __init__(self, pids: dict[str, list[int]]) -> None:  # noqa: D107 (CpuMeter's init reads the rig)
        self.pids = pids
        self.start = self._now()


def spread(cluster: Any, n: int) -> dict[int, int]:
    """``n`` campaigns from 1001 up whose keys spread evenly over the cluster's masters: {campaign: master port}."""
    from ymsync.store import keys

    masters = [p for p in cluster.live() if cluster.info(p, "replication")["role"] == "master"]
    load = {m: 0 for m in masters}
    chosen: dict[int, int] = {}
    campaign = 1001
    while len(chosen) < n:
        master = cluster.master_of(keys.campaign_keys(campaign)["buf"])
        if load[master] == min(load.values()):
            chosen[campaign] = master
            load[master] += 1
        campaign += 1
    return chosen


def _state_env(rig: Rig, cluster: Any | None) -> dict[str, str]:
    # A producer waits up to YM_PRODUCER_TIMEOUT_S per reply (1 s by default); a 10k-chunk ingest
    # on 2 shared cores may take longer, which would end the run rather than measure it.
    # Every variable either run sets is set in both: the producer side runs in this process, whose
    # environment the previous run changed.
    env = {"YM_PRODUCER_TIMEOUT_S": "10", "YM_REDIS_CLUSTER": "0", "CELERY_BROKER_URL": rig.redis_url,
           "CELERY_RESULT_BACKEND": rig.redis_url, "YM_REDIS_ACK_TIMEOUT_MS": "5000"}
    if cluster is not None:
        env.update(REDIS_URL=cluster.url, YM_REDIS_CLUSTER="1")
    return env


def _pids(rig: Rig, cluster: Any | None, workers: Workers) -> dict[str, list[int]]:
    assert rig.sandbox.process is not None and rig.redis_server.process is not None
    pids = {"sandbox": [rig.sandbox.process.pid], "workers": workers.pids()}
    if cluster is None:
        pids["redis"] = [rig.redis_server.process.pid]  # state and broker in one server
    else:
        # "redis": the 3 masters, plus the replicas once measured (they are kept apart to show
        # what replication costs; _run adds them in).
        roles = {port: cluster.info(port, "replication")["role"] for port in cluster.live()}
        pids["redis"] = [cluster.processes[p].pid for p, role in roles.items() if role == "master"]
        pids["replicas"] = [cluster.processes[p].pid for p, role in roles.items() if role != "master"]
        pids["broker"] = [rig.redis_server.process.pid]
    return pids


def _run(rig: Rig, campaigns: list[int], cluster: Any | None) -> dict[str, Any]:
    """Push PER_CAMPAIGN updates to each campaign (10k chunks, round robin over the campaigns) and
    wait until the sandbox has applied them all: updates/s from the first push, CPU per update."""
    from tests.support.redis_cluster import flush_cluster
    from ymsync import push_stocks
    from ymsync.config.settings import get_settings
    from ymsync.engine.buffer import StockBuffer
    from ymsync.store.client import state_client

    rig.clean("0")
    if cluster is not None:
        flush_cluster(cluster)
    env = _state_env(rig, cluster)
    app = ym_app(rig, **env)
    settings = get_settings()
    assert settings.redis_state.cluster == (cluster is not None)
    assert settings.redis_state.ack_replicas == (1 if cluster is not None else 0)
    # The production producer's buffer: bounded client, WAIT for a replica on a cluster.
    buf = StockBuffer.from_settings(state_client(settings, bounded=True), settings)
    names = skus(PER_CAMPAIGN, "K")
    items = [{"sku": s, "count": i % 100} for i, s in enumerate(names)]
    chunks = [(c, items[start:start + CHUNK]) for start in range(0, PER_CAMPAIGN, CHUNK) for c in campaigns]
    total = PER_CAMPAIGN * len(campaigns)
    with ymsync_workers(rig, 1, 4, **env).start() as w:
        wait_ready(app, 1)
        wait_for(lambda: len(w.pids()) >= 5, 30, "the worker's 4 pool processes")
        meter = _Meter(_pids(rig, cluster, w))
        t0 = time.time()
        for campaign, chunk in chunks:
            push_stocks(campaign, chunk, buffer=buf)
        pushed = time.time()

        def applied() -> bool:
            have = rig.sandbox.state()["campaigns"]
            return all(have.get(str(c), {}).get("sku_units", 0) >= PER_CAMPAIGN for c in campaigns)

        wait_for(applied, 300, f"{total:,} SKU units applied over {len(campaigns)} campaigns", interval=0.05)
        end = time.time()
        cpu = meter.per_unit_us(total)
    replicas = cpu.pop("replicas", 0.0)
    cpu["redis"] += replicas
    statuses = rig.sandbox.requests_by_status()
    assert set(statuses) == {200}, f"the sandbox answered {statuses}"
    return {"rate": total / (end - t0), "push_s": pushed - t0, "total_s": end - t0, "cpu": cpu,
            "requests": statuses[200], "replicas": replicas}


def _mean(runs: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    cpu = {k: sum(r["cpu"][k] for r in runs) / len(runs) for k in runs[0]["cpu"]}
    cpu["replicas"] = sum(r["replicas"] for r in runs) / len(runs)  # part of "redis"; popped by the caller
    return sum(r["rate"] for r in runs) / len(runs), cpu


def _runs_note(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['rate']:,.0f}/s (push_stocks {r['push_s']:.1f} s of {r['total_s']:.1f} s)" for r in runs)


def _spread(runs: dict[str, list[dict[str, Any]]]) -> float:
    """The largest gap between the fastest and slowest run of one kind, in % of the slowest."""
    return max((max(r["rate"] for r in rs) / min(r["rate"] for r in rs) - 1) * 100 for rs in runs.values())


def bench_cluster(rig: Rig) -> list[Row]:
    from tests.support.redis_cluster import RedisCluster
    from ymsync.config.settings import get_settings

    saved = dict(os.environ)
    cluster = RedisCluster(node_timeout_ms=NODE_TIMEOUT_MS).start()
    try:
        placed = spread(cluster, CAMPAIGNS)
        campaigns = sorted(placed)
        runs: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
        for kind in ROUNDS:
            got = _run(rig, campaigns, cluster if kind == "cluster" else None)
            print(f"  {kind}: {got['rate']:,.0f}/s, {_cpu_note(got['cpu'])}", flush=True)
            runs[kind].append(got)
    finally:
        cluster.stop()
        os.environ.clear()
        os.environ.update(saved)  # the cases after this one run on the single Redis again
        get_settings.cache_clear()
    single, single_cpu = _mean(runs["single"])
    single_cpu.pop("replicas")
    clustered, cluster_cpu = _mean(runs["cluster"])
    replicas = cluster_cpu.pop("replicas")
    per_master = sorted((list(placed.values()).count(m) for m in set(placed.values())), reverse=True)
    total = PER_CAMPAIGN * CAMPAIGNS
    label = "2b. throughput on a Redis Cluster (3 masters + 3 replicas) vs one Redis, quotas off"
    goal = f"≥ {GOAL_RATIO} × one Redis (one 2-core machine)"
    return [
        row(label, "SKU updates/s, enqueue → applied", clustered, single, "/s", goal,
            clustered >= GOAL_RATIO * single,
            f"{total:,} updates via push_stocks in 10k chunks, round robin over {CAMPAIGNS} campaigns "
            f"({' + '.join(map(str, per_master))} on the 3 masters), 1 worker -c 4; baseline column: the same "
            f"with the state on the rig's single redis-server. Broker and result backend on that single "
            f"redis-server in both; on the cluster every push_stocks call returns after WAIT 1 "
            f"(a replica has it). Mean of {len(ROUNDS)} alternating runs ({' / '.join(ROUNDS)}): "
            f"one Redis {_runs_note(runs['single'])}; cluster {_runs_note(runs['cluster'])}. "
            f"Runs of the same kind differ by up to {_spread(runs):.0f} % on this shared machine. All 7 "
            f"redis-servers share the same 2 cores as everything else, so the cluster cannot add capacity "
            f"here (it spends more CPU per update: next row), and a rate above one Redis's is noise; "
            f"it is for capacity beyond one Redis's core and memory, and for failover"),
        row(label, "CPU µs per update, all processes", sum(cluster_cpu.values()), sum(single_cpu.values()), "",
            better="lower",
            note=f"cluster: {_cpu_note(cluster_cpu)} (redis: the 6 cluster nodes' redis-server processes "
                 f"summed; broker: the single redis-server, broker and result backend only); one Redis: "
                 f"{_cpu_note(single_cpu)} (redis: state, broker and result backend in one server)"),
        row(label, "redis-server CPU µs per update, all servers", cluster_cpu["redis"] + cluster_cpu["broker"],
            single_cpu["redis"], "", better="lower",
            note=f"cluster: the 3 masters {cluster_cpu['redis'] - replicas:.1f} µs (the scripts, plus "
                 f"feeding the replication stream), the 3 replicas {replicas:.1f} µs (applying it), the "
                 f"broker's server {cluster_cpu['broker']:.1f} µs; one Redis: its one server"),
    ]
