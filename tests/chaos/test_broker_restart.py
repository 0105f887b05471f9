"""Chaos: the RabbitMQ broker stopped and started again while updates flow.

A private RabbitMQ node (its own ports and data folder; never the machine's node) is Celery's
broker, a private Redis holds ymsync's state, real stock workers push to the sandbox. Two
producers run throughout: ``push_stocks`` (writes Redis; its flush tasks go through the broker)
and ``send_updates`` in a child process (the public ``ymsync.stocks.update`` task, through the
broker, with publisher confirms). The node is stopped mid-load, kept down until the broker
producer has been refused, and started again on the same ports and data folder. Judged by the
sandbox: every acknowledged update arrives with its newest value, nothing older lands over
something newer, the workers (the same processes) reconnect by themselves, and a send during
the outage either returned (the broker had it) or raised ``ymsync.Unavailable``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.processes import ROOT, wait_for
from tests.support.rabbitmq_server import RabbitMQServer, rabbitmq_missing
from tests.support.stock_harness import sandbox_config
from ymsync import Unavailable, push_stocks
from ymsync.sandbox import Faults

pytestmark = [pytest.mark.chaos, pytest.mark.integration,
              pytest.mark.skipif(rabbitmq_missing() is not None, reason=f"no private RabbitMQ node: {rabbitmq_missing()}")]

PUSHED = (2201, 2202)  # push_stocks campaigns (Redis path; flush tasks through the broker)
SENT = 2203  # send_updates campaign (the update task itself through the broker)
ENV = {"YM_HTTP_CONNECT_TIMEOUT": "1", "YM_HTTP_READ_TIMEOUT": "2", "YM_PRODUCER_TIMEOUT_S": "2"}

# The shop's broker-side producer, in a child process (Celery's configuration is read once per
# process). Each batch is re-sent until a send returns, so the last send of every SKU returned;
# one line per attempt, written before the next one starts.
SENDER = """
import json, sys, time
from pathlib import Path
from tasks.stocks import send_updates
from ymsync import Unavailable
campaign, out, stop = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1), Path(sys.argv[3])
n = 0
while not stop.exists():
    n += 1
    items = [{"sku": f"S{campaign}-{(n * 7 + k) % 300:03d}", "count": n} for k in range(10)]
    while True:
        started = time.time()
        try:
            send_updates(campaign, items)
            out.write(json.dumps({"n": n, "t": started, "ok": True, "skus": [i["sku"] for i in items]}) + "\\n")
            break
        except Unavailable as exc:
            out.write(json.dumps({"n": n, "t": started, "ok": False, "maybe_queued": exc.maybe_queued,
                                  "error": str(exc)[:300]}) + "\\n")
            time.sleep(0.2)
    time.sleep(0.02)
"""


class Pusher(threading.Thread):
    """``push_stocks`` in a loop (latest value per SKU recorded once it returned)."""

    def __init__(self, bench) -> None:
        super().__init__(daemon=True)
        self.bench = bench
        self.acked: dict[int, dict[str, int]] = {c: {} for c in PUSHED}
        self.stopping = threading.Event()
        self.done = 0
        self.failures = 0

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            for c in PUSHED:
                values = [(f"P{c}-{(n * 13 + k) % 2000:04d}", n) for k in range(50)]
                items = [{"sku": sku, "count": v, "updatedAt": self.bench.stamps.next()} for sku, v in values]
                while True:
                    try:
                        push_stocks(c, items, buffer=self.bench.buffer)
                        break
                    except Unavailable:  # Redis is not restarted here: should not happen, but retry
                        self.failures += 1
                        time.sleep(0.2)
                self.acked[c].update(values)
                self.done += len(values)
            self.stopping.wait(0.05)


def read_sends(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def connects(bench, url: str) -> int:
    return sum(w.log_path.read_text(errors="replace").count(f"Connected to {url}") for w in bench.workers)


@pytest.mark.parametrize("how", ["stop", "crash"])
def test_rabbitmq_restart_under_load_loses_nothing_acknowledged(bench_for, redis_server, case, tmp_path: Path,
                                                                 how: str):
    """RabbitMQ (the Celery broker) stopped or crashed, and started again, mid-load"""
    node = RabbitMQServer().start()
    sender: subprocess.Popen | None = None
    stop_file = tmp_path / "stop-sender"
    sends_file = tmp_path / "sends.jsonl"
    try:
        bench = bench_for(sandbox_config(faults=Faults(latency_min_ms=50, latency_max_ms=200)))
        env = {**ENV, "CELERY_BROKER_URL": node.url}
        workers = [bench.start_worker(f"rb{n}", **env) for n in range(2)]
        for w in workers:
            w.wait_ready(node.url, 90)
        pids = [w.process.pid for w in workers]
        pusher = Pusher(bench)
        pusher.start()
        sender = subprocess.Popen([sys.executable, "-c", SENDER, str(SENT), str(sends_file), str(stop_file)], cwd=ROOT,
                                  env={**os.environ, **bench.env(**env)}, stdout=subprocess.DEVNULL,
                                  stderr=open(tmp_path / "sender.err", "ab"))
        wait_for(lambda: sum(bench.units(c) for c in (*PUSHED, SENT)) > 500 and len(read_sends(sends_file)) > 20,
                 60, "the load to be well under way", interval=0.2)
        in_flight_at_stop = sum(bench.buffer.pending(c) + bench.buffer.in_flight(c) for c in (*PUSHED, SENT))
        connects_before = connects(bench, node.logged_url)
        stopped = time.monotonic()
        stopped_wall = time.time()
        # Either way the node's data folder (its quorum queues and their messages) stays.
        node.halt() if how == "stop" else node.crash()
        halted_s = time.monotonic() - stopped
        # Down until the broker producer has been refused at least once (its sends cannot return now).
        wait_for(lambda: any(not s["ok"] and s["t"] >= stopped_wall for s in read_sends(sends_file)), 30,
                 "a send to be refused while the broker is down", interval=0.1)
        node.start_again()
        back = time.monotonic()
        back_wall = time.time()
        wait_for(lambda: any(e["t"] >= back_wall and e["status"] == 200 for e in bench.log()), 60,
                 "deliveries to resume after the broker came back", interval=0.2)
        resumed_s = time.monotonic() - back
        wait_for(lambda: any(s["ok"] and s["t"] >= back_wall for s in read_sends(sends_file)), 30,
                 "a send to return after the broker came back", interval=0.1)
        # Keep the traffic a little longer after the restart, then stop both producers.
        wait_for(lambda: any(e["t"] >= back_wall + 1.0 for e in bench.log()), 30, "a second of traffic after the restart",
                 interval=0.2)
        pusher.stopping.set()
        stop_file.touch()
        pusher.join(30)
        sender.wait(60)
        sends = read_sends(sends_file)
        sent_acked: dict[str, int] = {}
        for s in sends:
            if s["ok"]:
                sent_acked.update({sku: s["n"] for sku in s["skus"]})
        expected = {**pusher.acked, SENT: sent_acked}
        for c, want in expected.items():
            bench.wait_latest(c, 60, want)
        converged_s = time.monotonic() - back
        state = bench.state()
        final = {c: bench.stocks(c) for c in expected}
        lost = sum(final[c].get(sku) != n for c, want in expected.items() for sku, n in want.items())
        refused = [s for s in sends if not s["ok"]]
        outage = [s for s in sends if stopped_wall <= s["t"] <= back_wall]
        alive = [w.process.poll() is None for w in workers]
        reconnects = connects(bench, node.logged_url) - connects_before
        case.figures.update({
            "broker": "RabbitMQ private node, quorum queues, publisher confirms",
            "restart": ("rabbitmqctl stop" if how == "stop" else "SIGKILL of the node's VM")
                       + ", started again on the same ports and data folder",
            "stop_took_s": round(halted_s, 1), "broker_down_s": round(back - stopped, 1),
            "updates_acknowledged": sum(pusher.acked[c].__len__() for c in PUSHED) + len(sent_acked),
            "push_stocks_updates": pusher.done, "send_updates_calls": len(sends),
            "sends_during_outage": len(outage), "sends_refused_unavailable": len(refused),
            "refused_maybe_queued": sum(1 for s in refused if s["maybe_queued"]),
            "refusal_kinds": sorted({s["error"].partition(" (")[2][:120] or s["error"][:120] for s in refused}),
            "pending_or_in_flight_at_stop": in_flight_at_stop,
            "deliveries_resumed_after_s": round(resumed_s, 1), "converged_after_restart_s": round(converged_s, 1),
            "worker_reconnects": reconnects, "lost": lost, "stale_writes": state["stale_writes"],
        })
        case.check("every acknowledged update reached the Market (latest value of every SKU, lost == 0)",
                   lost == 0 and all(final[c] == want for c, want in expected.items()), lost)
        case.check("no older value over a newer one (stale_writes == 0)", state["stale_writes"] == 0, state)
        case.check("every send returned or raised ymsync.Unavailable (no other error), and sends were refused "
                   "during the outage", sender.returncode == 0 and bool(refused),
                   (sender.returncode, (tmp_path / "sender.err").read_text()[-1000:]))
        case.check("the same worker processes reconnected by themselves",
                   all(alive) and [w.process.pid for w in workers] == pids and reconnects >= len(workers),
                   (alive, reconnects))
        case.check("the stop hit with work pending or in flight", in_flight_at_stop > 0, in_flight_at_stop)
        logs = "".join(w.log_path.read_text(errors="replace") for w in workers)
        # A fresh node, stocks-only workers: Celery's delayed delivery binds the reports queue too, at
        # every connect (the restart's reconnect included), so the worker declares it at start.
        case.check("no failed bind of a ymsync queue at start or at the reconnect", "Failed to bind" not in logs,
                   [line for line in logs.splitlines() if "Failed to bind" in line][:2])
    finally:
        stop_file.touch()
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.wait(10)
        node.stop()
