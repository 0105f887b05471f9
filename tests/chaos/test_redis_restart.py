"""Chaos: the Redis server restarted mid-load, with and without persistence.

With AOF on (``appendfsync everysec``, as docker-compose runs it) the server is SIGKILLed (a
crash, the harshest restart) and started again on the same port and data folder while the
producer is pushing and workers are flushing: every update ``push_stocks`` acknowledged must
reach the Market. Workers, their flush scheduler and the producer must reconnect on their own.
With persistence off the same restart wipes everything Redis held; that case measures what is
lost and writes it down rather than pretending it is nothing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from tests.support.processes import wait_for
from tests.support.stock_harness import sandbox_config
from ymsync import Unavailable, push_stocks
from ymsync.embedded import EmbeddedRedis
from ymsync.sandbox import Faults

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

CAMPAIGNS = (2101, 2102, 2103, 2104)
PER_CAMPAIGN = 8_000
DOWN_S = 2.0  # how long Redis stays down: longer than the clients' built-in retries ride out alone
ENV = {"YM_HTTP_CONNECT_TIMEOUT": "1", "YM_HTTP_READ_TIMEOUT": "2"}


class Producer(threading.Thread):
    """Pushes a stream through ``push_stocks`` as a shop would: a chunk that fails with a Redis
    error is retried until acknowledged. ``acked`` holds the latest acknowledged value per SKU."""

    def __init__(self, bench, stream: list[tuple[int, str, int]], chunk: int = 500, pause_s: float = 0.04) -> None:
        super().__init__(daemon=True)
        self.bench, self.stream, self.chunk, self.pause_s = bench, stream, chunk, pause_s
        self.acked: dict[int, dict[str, int]] = {c: {} for c in CAMPAIGNS}
        self.acked_at: list[tuple[float, int, list[tuple[str, int]]]] = []  # (time, campaign, values)
        self.failures = 0
        self.done = 0

    def run(self) -> None:
        for start in range(0, len(self.stream), self.chunk):
            part = self.stream[start:start + self.chunk]
            for c in CAMPAIGNS:
                values = [(sku, n) for cc, sku, n in part if cc == c]
                if not values:
                    continue
                items = [{"sku": sku, "count": n, "updatedAt": self.bench.stamps.next()} for sku, n in values]
                while True:
                    try:
                        push_stocks(c, items, buffer=self.bench.buffer)
                        break
                    except (Unavailable, redis.RedisError):  # push_stocks raises Unavailable (issue 21)
                        self.failures += 1
                        time.sleep(0.2)
                self.acked[c].update(values)
                self.acked_at.append((time.monotonic(), c, values))
                self.done += len(values)
            time.sleep(self.pause_s)


def stream_of(per_campaign: int) -> list[tuple[int, str, int]]:
    first = [(c, f"R{c}-{i:05d}", i) for i in range(per_campaign) for c in CAMPAIGNS]
    # Newer values for a third of the SKUs, some delivered by then, some still pending.
    again = [(c, sku, 100_000 + n) for c, sku, n in first[::3]]
    return first + again


def restart(server: EmbeddedRedis) -> float:
    """SIGKILL the server, keep it down ``DOWN_S``, start it on the same port and folder; its start time."""
    assert server.process is not None
    server.process.kill()
    server.process.wait(10)
    time.sleep(DOWN_S)
    server.start()
    return time.monotonic()


def delivered_since(bench, since_wall: float) -> int:
    return sum(e["cost"] for e in bench.log() if e["t"] >= since_wall and e["status"] == 200)


def test_redis_crash_with_aof_loses_nothing_acknowledged(bench_for, case, tmp_path: Path):
    """Redis SIGKILLed and restarted mid-load with AOF on (appendfsync everysec)"""
    server = EmbeddedRedis(appendonly=True, directory=tmp_path / "redis-aof").start()
    try:
        bench = bench_for(sandbox_config(faults=Faults(latency_min_ms=100, latency_max_ms=300)), server.url)
        for n in range(2):
            bench.start_worker(f"aof{n}", **ENV)
        stream = stream_of(PER_CAMPAIGN)
        producer = Producer(bench, stream)
        producer.start()
        wait_for(lambda: producer.done >= len(stream) * 0.4 and sum(bench.units(c) for c in CAMPAIGNS) > 0,
                 60, "the load to be well under way")
        pending_at_crash = sum(bench.buffer.pending(c) + bench.buffer.in_flight(c) for c in CAMPAIGNS)
        acked_at_crash = producer.done
        crashed = time.monotonic()
        back = restart(server)
        back_wall = time.time()
        wait_for(lambda: delivered_since(bench, back_wall) > 0, 60, "deliveries to resume after the restart")
        resumed_s = time.monotonic() - back
        producer.join(120)
        assert not producer.is_alive()
        for c in CAMPAIGNS:
            bench.wait_latest(c, 60, producer.acked[c])
        converged_s = time.monotonic() - back
        state = bench.state()
        final = {c: bench.stocks(c) for c in CAMPAIGNS}
        # Lost: acknowledged SKUs whose latest acknowledged value is not what the Market holds.
        lost = sum(final[c].get(sku) != n for c in CAMPAIGNS for sku, n in producer.acked[c].items())
        dead = sum(len(bench.buffer.dead_letters(c)) for c in CAMPAIGNS)
        case.figures.update({
            "persistence": "AOF, appendfsync everysec", "restart": f"SIGKILL, down {DOWN_S:g} s",
            "updates_pushed": len(stream), "updates_acknowledged_before_crash": acked_at_crash,
            "pending_or_in_flight_at_crash": pending_at_crash,
            "producer_retries_during_outage": producer.failures,
            "deliveries_resumed_after_s": round(resumed_s, 1), "converged_after_restart_s": round(converged_s, 1),
            "outage_s": round(back - crashed, 1), "lost": lost, "stale_writes": state["stale_writes"],
            "dead_letters": dead, "skus_sent": sum(bench.units(c) for c in CAMPAIGNS),
        })
        case.check("every acknowledged update reached the Market (latest value of every SKU, lost == 0)",
                   lost == 0 and all(final[c] == producer.acked[c] for c in CAMPAIGNS), lost)
        case.check("the crash hit with work pending or in flight", pending_at_crash > 0, pending_at_crash)
        case.check("no older value over a newer one (stale_writes == 0)", state["stale_writes"] == 0, state)
        case.check("no dead letters", dead == 0, dead)
    finally:
        server.stop()


def test_redis_restart_without_persistence_loss_is_measured(bench_for, case, tmp_path: Path):
    """Redis restarted mid-load with persistence off: what is lost, measured"""
    server = EmbeddedRedis(appendonly=False, directory=tmp_path / "redis-mem").start()
    try:
        bench = bench_for(sandbox_config(faults=Faults(latency_min_ms=100, latency_max_ms=300)), server.url)
        for n in range(2):
            bench.start_worker(f"mem{n}", **ENV)
        stream = stream_of(PER_CAMPAIGN // 2)
        producer = Producer(bench, stream)
        producer.start()
        wait_for(lambda: producer.done >= len(stream) * 0.4 and sum(bench.units(c) for c in CAMPAIGNS) > 0,
                 60, "the load to be well under way")
        pending_at_crash = sum(bench.buffer.pending(c) + bench.buffer.in_flight(c) for c in CAMPAIGNS)
        crashed = time.monotonic()
        back = restart(server)
        producer.join(120)
        assert not producer.is_alive()
        # Everything acknowledged after the restart must still arrive; then count what did not.
        after = {c: {} for c in CAMPAIGNS}
        for at, c, values in producer.acked_at:
            if at > back:
                after[c].update(values)

        def arrived(c: int) -> bool:
            have = bench.stocks(c)
            return all(have.get(sku) == n for sku, n in after[c].items())

        wait_for(lambda: all(bench.settled(c) for c in CAMPAIGNS) and all(arrived(c) for c in CAMPAIGNS),
                 60, "the updates pushed after the restart to arrive", interval=0.3)
        final = {c: bench.stocks(c) for c in CAMPAIGNS}
        lost = {c: sorted(sku for sku, n in producer.acked[c].items() if final[c].get(sku) != n) for c in CAMPAIGNS}
        lost_n = sum(len(v) for v in lost.values())
        acked_before = sum(len(values) for at, _, values in producer.acked_at if at < crashed)
        state = bench.state()
        case.figures.update({
            "persistence": "none (no AOF, no RDB)", "restart": f"SIGKILL, down {DOWN_S:g} s",
            "updates_pushed": len(stream), "updates_acknowledged_before_crash": acked_before,
            "pending_or_in_flight_at_crash": pending_at_crash,
            "lost": lost_n, "distinct_skus": len({(c, sku) for c, sku, _ in stream}),
            "lost_share_of_distinct_skus": round(lost_n / len({(c, sku) for c, sku, _ in stream}), 3),
            "stale_writes": state["stale_writes"],
        })
        # What the loss is: a lost SKU holds an older value this stream pushed for it, or none (its
        # update never arrived); never a value nobody pushed.
        pushed = {(c, sku): set() for c, sku, _ in stream}
        for c, sku, n in stream:
            pushed[(c, sku)].add(n)
        corrupt = [(c, sku, final[c].get(sku)) for c in CAMPAIGNS for sku in lost[c]
                   if final[c].get(sku) is not None and final[c][sku] not in pushed[(c, sku)]]
        case.check("every lost SKU holds an older pushed value or none (a loss, not a corruption)", not corrupt,
                   corrupt[:3])
        case.check("everything pushed after the restart is delivered", all(arrived(c) for c in CAMPAIGNS))
        case.check("loss bounded by what was pending or in flight at the crash", lost_n <= pending_at_crash,
                   (lost_n, pending_at_crash))
    finally:
        server.stop()
