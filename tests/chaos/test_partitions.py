"""Chaos: worker hosts that fail apart (network partitions, not process deaths).

Three worker hosts, each a network namespace with its own veth links to the infrastructure host
(the test's namespace: a private Redis for state and broker, the Market sandbox on a second
address). A host's link is taken down on the infrastructure side while the sandbox holds one of
its requests: its packets vanish, as on a real partition, so the worker learns nothing (no
error, no reply) until the link is back. Kept down for longer than a batch lease, then brought
back. The sandbox records every request's client address, so the figures say which host did what.
"""

from __future__ import annotations

import math
import subprocess
import time
from typing import Any, Callable, Iterator

import pytest

from tests.support.netns import BoundRedis, Host, Network, start_worker_in, unavailable
from tests.support.processes import wait_for
from tests.support.stock_harness import Bench, sandbox_config
from ymsync.sandbox import Faults, MarketSandbox, SandboxConfig
from ymsync.store import keys

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

HOSTS = 3
CONCURRENCY = 2
# The batch lease is YM_UNKNOWN_OUTCOME_S (2 s on the bench) + YM_LEASE_MARGIN_S (2 s here); a
# flush task's slot frees one request's deadline (1 + 2 s) + the margin after its last hold.
LEASE_S = 4.0
ENV = {"YM_HTTP_CONNECT_TIMEOUT": "1", "YM_HTTP_READ_TIMEOUT": "2", "YM_LEASE_MARGIN_S": "2"}
# Slow enough that a request is still at the sandbox a moment after we see it there.
FAULTS = Faults(latency_min_ms=500, latency_max_ms=1000)
CAMPAIGNS = (4101, 4102, 4103, 4104)
PER_CAMPAIGN = 10_000


@pytest.fixture()
def partition(tmp_path) -> Iterator[tuple[Network, Callable[[SandboxConfig], Bench]]]:
    """The hosts' network, a Redis on its infra address and ``make(config)``: a bench whose sandbox
    listens on the market address. Everything is removed afterwards, whatever happened."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    net = Network.create(HOSTS)
    stops: list[Callable[[], None]] = []
    try:
        server = BoundRedis(net.infra_ip, tmp_path / "redis")
        stops.append(server.stop)
        server.start()

        def make(config: SandboxConfig) -> Bench:
            market = MarketSandbox(host=net.market_ip, config=config).start()
            stops.append(market.stop)
            bench = Bench(market, server.url, tmp_path)
            stops.append(bench.stop)  # workers first: they are killed before their sandbox and Redis go
            return bench

        yield net, make
    finally:
        errors = []
        for stop in reversed(stops):
            try:
                stop()
            except Exception as exc:  # one failed stop must not leave the namespaces behind
                errors.append(exc)
        net.close()
        assert not errors, errors


def start_hosts(net: Network, bench: Bench) -> None:
    workers = [start_worker_in(bench, host, f"host{host.index}", concurrency=CONCURRENCY, **ENV) for host in net.hosts]
    for worker in workers:
        worker.wait_ready(bench.redis_url)


def busiest_host(net: Network, bench: Bench) -> Host | None:
    """The host the sandbox holds most requests of right now, if any."""
    peers = bench.state()["in_flight_peers"]
    host = max(net.hosts, key=lambda h: peers.get(h.market_ip, 0))
    return host if peers.get(host.market_ip, 0) > 0 else None


def unsent_to_market(host: Host, port: int) -> int:
    """Bytes the host's kernel still holds for the Market (send queues of its sockets, closed ones
    included): a request whose client gave up can still land while any are left."""
    out = subprocess.run(["ip", "netns", "exec", host.name, "ss", "-tnH", "dst", f"{host.market_ip.rsplit('.', 1)[0]}.1",
                          "dport", f"= {port}"], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[2]) for line in out.splitlines() if line.split())


def push_wave(bench: Bench, base: int, every: int = 1) -> int:
    pushed = 0
    for c in CAMPAIGNS:
        bench.push(c, [(f"P{c}-{i:05d}", base + i) for i in range(0, PER_CAMPAIGN, every)])
        pushed += len(range(0, PER_CAMPAIGN, every))
    return pushed


def converged(bench: Bench) -> bool:
    return all(bench.settled(c) for c in CAMPAIGNS) and all(bench.stocks(c) == bench.latest[c] for c in CAMPAIGNS)


def wait_converged(bench: Bench, timeout: float, what: str) -> None:
    try:
        wait_for(lambda: converged(bench), timeout, what, interval=0.2)
    except AssertionError as exc:
        late = [c for c in CAMPAIGNS if not bench.settled(c) or bench.stocks(c) != bench.latest[c]]
        raise AssertionError(f"{exc}\n" + "\n".join(bench.diagnose(c) for c in late[:2])) from None


def cut_mid_flight(net: Network, bench: Bench, market_only: bool, lock_holder: bool = False) -> tuple[Host, float]:
    """Cut the host the sandbox holds most requests of (``lock_holder``: the one that drains the
    flush schedule, once the sandbox holds one of its requests)."""
    def pick() -> Host | None:
        if not lock_holder:
            return busiest_host(net, bench)
        holder = next((h for h in net.hosts if holds_scheduler_lock(bench, h)), None)
        return holder if holder and bench.state()["in_flight_peers"].get(holder.market_ip, 0) else None

    host = wait_for(pick, 20, "a host's request in flight at the sandbox", interval=0.02)
    net.cut(host, market_only=market_only)
    return host, time.time()


def holds_scheduler_lock(bench: Bench, host: Host) -> bool:
    """Whether the host's worker drains the flush schedule (the lock's owner is host:pid:tag; the
    namespaces share the host name, not the pids)."""
    owner = (bench.redis.get(keys.SCHEDULER_LOCK) or b"").decode()
    return owner.split(":")[1:2] == [str(bench.workers[host.index].process.pid)]


def after(log: list[dict[str, Any]], t: float) -> list[dict[str, Any]]:
    return [e for e in log if e["arrived"] >= t]


def landed_late(bench: Bench, host: Host, port: int) -> None:
    """Until nothing more of the host's can reach the Market: its kernel holds no unsent bytes for
    the sandbox and the sandbox is handling nothing."""
    wait_for(lambda: unsent_to_market(host, port) == 0 and not bench.state()["in_flight"], 60,
             f"host {host.index}'s queued bytes for the Market to land or be dropped", interval=0.2)


def test_a_worker_host_cut_off_mid_flight(partition, case):
    """A worker host (the flush scheduler's) cut off while the sandbox holds its request, for longer than a lease, then back"""
    net, make = partition
    bench = make(sandbox_config(faults=FAULTS, seed=19))
    port = int(bench.market.url.rsplit(":", 1)[1])
    start_hosts(net, bench)
    started = time.time()
    pushed = push_wave(bench, 0)
    # The host that drains the flush schedule: its lock must pass on as its batches' leases do.
    victim, cut_at = cut_mid_flight(net, bench, market_only=False, lock_holder=True)
    had_lock = holds_scheduler_lock(bench, victim)
    pushed += push_wave(bench, 100_000, every=3)  # newer values during the cut, some in the cut host's batch
    reclaimed_at: list[float] = []

    def taken_over() -> bool:
        if not reclaimed_at and sum(bench.buffer.stats(c).get("reclaimed", 0) for c in CAMPAIGNS):
            reclaimed_at.append(time.time())
        return converged(bench)

    try:
        wait_for(taken_over, 40, "the other hosts to deliver everything while the host is cut off", interval=0.2)
    except AssertionError:
        wait_converged(bench, 0, "the other hosts to deliver everything while the host is cut off")
    converged_at = time.time()
    # Absence of the cut host is the point: keep it away for longer than a lease whatever happened.
    wait_for(lambda: time.time() - cut_at > LEASE_S + 1, LEASE_S + 5, "the cut to outlast a lease")
    log_at_heal = bench.log()
    pending_at_heal = sum(bench.buffer.pending(c) + bench.buffer.in_flight(c) for c in CAMPAIGNS)
    unsent_at_heal = unsent_to_market(victim, port)
    heal_at = time.time()
    net.heal(victim)
    bench.workers[victim.index].wait_ready(bench.redis_url)  # back: it answers the broker again
    back_s = time.time() - heal_at
    final = push_wave(bench, 200_000, every=10)
    pushed += final
    wait_converged(bench, 40, "the last wave (after the host came back) at the Market")
    landed_late(bench, victim, port)
    assert converged(bench), "a late request moved the Market off the newest values"

    log = bench.log()
    state = bench.state()
    held = [e for e in log_at_heal if e["peer"] == victim.market_ip and e["arrived"] < cut_at < e["t"]]
    # Taken over: for each request the sandbox held at the cut, the first 200 for its campaign from
    # another host that arrived once that batch's lease could have run out (it was taken just before
    # its request arrived), before the heal: the request that can carry its SKUs again.
    first_other = min((o["t"] for e in held for o in log if o["key"] == e["key"] and o["status"] == 200
                       and o["peer"] != victim.market_ip and e["arrived"] + LEASE_S - 0.2 <= o["arrived"]
                       and o["t"] < heal_at), default=math.nan)
    since_heal = after(log, heal_at)
    ideal = sum(math.ceil(len(range(0, PER_CAMPAIGN, 10)) / 2000) for _ in CAMPAIGNS)
    units_after = sum(e["cost"] for e in since_heal if e["status"] == 200)
    final_stocks = {c: bench.stocks(c) for c in CAMPAIGNS}
    lost = sum(final_stocks[c].get(sku) != n for c in CAMPAIGNS for sku, n in bench.latest[c].items())
    stats = [bench.buffer.stats(c) for c in CAMPAIGNS]
    case.figures.update({
        "hosts": HOSTS, "concurrency_per_host": CONCURRENCY, "campaigns": len(CAMPAIGNS), "updates_pushed": pushed,
        "lease_s": LEASE_S, "cut_host_requests_held_by_the_sandbox_at_cut": len(held),
        "cut_host_held_the_flush_scheduler_lock": had_lock,
        "cut_s": round(heal_at - cut_at, 1),
        "batch_reclaimed_s_after_cut_polled": round(reclaimed_at[0] - cut_at, 2) if reclaimed_at else None,
        "taken_over_s_after_cut": round(first_other - cut_at, 2),
        "everything_delivered_s_after_cut": round(converged_at - cut_at, 2),
        "cut_host_back_s_after_heal": round(back_s, 2),
        "skus_pending_at_heal": pending_at_heal, "cut_host_unsent_bytes_for_the_market_at_heal": unsent_at_heal,
        "requests_after_heal": len(since_heal), "requests_after_heal_ideal": ideal,
        "requests_after_heal_from_cut_host": sum(e["peer"] == victim.market_ip for e in since_heal),
        "skus_sent_after_heal": units_after, "skus_pushed_after_heal": final,
        "batches_reclaimed_skus": sum(s.get("reclaimed", 0) for s in stats),
        "requests_by_status": bench.requests_by_status(), "seconds": round(time.time() - started, 1),
        "stale_writes": state["stale_writes"], "lost": lost,
    })
    case.check("the sandbox held a request of the cut host when its link went down", len(held) >= 1, log_at_heal[-5:])
    case.check("the Market holds the newest value of every SKU (lost == 0)", lost == 0, lost)
    case.check("no older value ever overwrote a newer one (stale_writes == 0)", state["stale_writes"] == 0, state)
    case.check("the cut host held the flush scheduler's lock", had_lock)
    # The scheduler's lock passes on within 5 s of its holder's last renewal; the batch's lease by then.
    case.check("the others delivered everything, the cut host's batch too, within 12 s of the cut (lease 4 s, "
               "lock 5 s)", converged_at - cut_at <= 12, converged_at - cut_at)
    case.check("no duplicate flood when it came back: requests after the heal <= 2 x ideal + the cut host's slots",
               len(since_heal) <= 2 * ideal + CONCURRENCY, (len(since_heal), ideal))
    case.check("SKUs sent after the heal <= those pushed after it + those pending at the heal + the cut host's "
               "batches", units_after <= final + pending_at_heal + CONCURRENCY * 2000, (units_after, final))
    case.check("nothing dead-lettered", not any(bench.buffer.dead_letters(c) for c in CAMPAIGNS))


def test_only_the_path_to_the_market_cut(partition, case):
    """Only one host's path to the Market cut (Redis still reachable) while the sandbox holds its request"""
    net, make = partition
    bench = make(sandbox_config(faults=FAULTS, seed=23))
    port = int(bench.market.url.rsplit(":", 1)[1])
    start_hosts(net, bench)
    started = time.time()
    pushed = push_wave(bench, 0)
    victim, cut_at = cut_mid_flight(net, bench, market_only=True)
    had_lock = holds_scheduler_lock(bench, victim)
    pushed += push_wave(bench, 100_000, every=3)
    wait_converged(bench, 40, "the other hosts to deliver everything while one cannot reach the Market")
    converged_at = time.time()
    wait_for(lambda: time.time() - cut_at > LEASE_S + 1, LEASE_S + 5, "the cut to outlast a lease")
    timeouts_during_cut = timed_out(bench, victim)
    unsent_at_heal = unsent_to_market(victim, port)
    heal_at = time.time()
    net.heal(victim)
    final = push_wave(bench, 200_000, every=10)
    pushed += final
    wait_converged(bench, 40, "the last wave (after the path came back) at the Market")
    landed_late(bench, victim, port)
    assert converged(bench), "a late request moved the Market off the newest values"

    log = bench.log()
    state = bench.state()
    final_stocks = {c: bench.stocks(c) for c in CAMPAIGNS}
    lost = sum(final_stocks[c].get(sku) != n for c in CAMPAIGNS for sku, n in bench.latest[c].items())
    during = [e for e in log if cut_at <= e["arrived"] < heal_at]
    case.figures.update({
        "hosts": HOSTS, "concurrency_per_host": CONCURRENCY, "campaigns": len(CAMPAIGNS), "updates_pushed": pushed,
        "lease_s": LEASE_S, "cut_s": round(heal_at - cut_at, 1), "cut_host_held_the_flush_scheduler_lock": had_lock,
        "cut_host_requests_held_by_the_sandbox_at_cut": sum(e["peer"] == victim.market_ip and e["arrived"] < cut_at
                                                            < e["t"] for e in log),
        "cut_host_requests_timed_out_during_cut": timeouts_during_cut,
        "cut_host_unsent_bytes_for_the_market_at_heal": unsent_at_heal,
        "requests_from_other_hosts_during_cut": sum(e["peer"] != victim.market_ip for e in during),
        "requests_from_cut_host_during_cut": sum(e["peer"] == victim.market_ip for e in during),
        "everything_delivered_s_after_cut": round(converged_at - cut_at, 2),
        "requests_after_heal": len(after(log, heal_at)), "skus_pushed_after_heal": final,
        "requests_by_status": bench.requests_by_status(), "seconds": round(time.time() - started, 1),
        "stale_writes": state["stale_writes"], "lost": lost,
    })
    case.check("the cut host's requests timed out (outcome unknown) while its path was cut", timeouts_during_cut >= 1,
               timeouts_during_cut)
    case.check("the Market holds the newest value of every SKU (lost == 0)", lost == 0, lost)
    case.check("no older value ever overwrote a newer one (stale_writes == 0)", state["stale_writes"] == 0, state)
    case.check("the other hosts delivered everything while the path was still cut",
               converged_at < heal_at and any(e["peer"] != victim.market_ip for e in during), converged_at - cut_at)
    case.check("nothing dead-lettered", not any(bench.buffer.dead_letters(c) for c in CAMPAIGNS))


def timed_out(bench: Bench, host: Host) -> int:
    """Requests the host's worker gave up on (its log says so for each)."""
    worker = bench.workers[host.index]
    text = worker.log_path.read_text(errors="replace") if worker.log_path and worker.log_path.exists() else ""
    return sum("updateStocks: timed out" in line for line in text.splitlines())


def test_a_request_queued_in_a_cut_hosts_kernel_never_lands_late(partition, case):
    """A request sent into a cut link (queued in the host's kernel) never lands after its client gave up"""
    net, make = partition
    bench = make(sandbox_config(seed=31))
    port = int(bench.market.url.rsplit(":", 1)[1])
    campaign, skus = 4301, [f"Q-{i:04d}" for i in range(500)]
    stuck, other = net.hosts[0], net.hosts[1]
    start_worker_in(bench, stuck, "stuck", concurrency=1, **ENV).wait_ready(bench.redis_url)
    bench.push(campaign, [(sku, i) for i, sku in enumerate(skus)])
    bench.wait_latest(campaign, 30)  # the stuck host's connection to the Market is now open and idle in its pool
    net.cut(stuck, market_only=True)
    cut_at = time.time()
    bench.push(campaign, [(sku, 10_000 + i) for i, sku in enumerate(skus)])
    # The next request goes out on that open connection: the kernel takes it and keeps retrying.
    queued = wait_for(lambda: unsent_to_market(stuck, port) > 1000 and unsent_to_market(stuck, port), 20,
                      "the stuck host's request queued in its kernel")
    start_worker_in(bench, other, "other", concurrency=1, **ENV).wait_ready(bench.redis_url)
    bench.push(campaign, [(sku, 20_000 + i) for i, sku in enumerate(skus)])
    bench.wait_latest(campaign, 40)  # the other host delivers once the stuck one's request can no longer land
    delivered_s = time.time() - cut_at
    heal_at = time.time()
    net.heal(stuck)
    landed_late(bench, stuck, port)
    state = bench.state()
    final = bench.stocks(campaign)
    lost = sum(final.get(sku) != n for sku, n in bench.latest[campaign].items())
    late = [e for e in after(bench.log(), heal_at) if e["peer"] == stuck.market_ip]
    case.figures.update({
        "skus": len(skus), "unknown_outcome_s": 2.0, "bytes_queued_in_the_cut_hosts_kernel": queued,
        "newest_delivered_by_the_other_host_s_after_cut": round(delivered_s, 2), "cut_s": round(heal_at - cut_at, 1),
        "requests_from_the_cut_host_landing_after_heal": len(late),
        "requests_by_status": bench.requests_by_status(), "stale_writes": state["stale_writes"], "lost": lost,
    })
    case.check("the cut host's kernel held a whole request for the Market", queued > 1000, queued)
    case.check("no older value ever overwrote a newer one (stale_writes == 0)", state["stale_writes"] == 0, state)
    case.check("the Market holds the newest value of every SKU (lost == 0)", lost == 0, lost)
