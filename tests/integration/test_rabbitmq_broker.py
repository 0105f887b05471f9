"""The push pipeline with Celery's broker on RabbitMQ while ymsync's state stays on Redis.

CELERY_BROKER_URL names a vhost of this module's own on the machine's RabbitMQ (deleted at the
end; the server is never stopped), or a private node where the machine has none; REDIS_URL a
private Redis that keeps the stock buffer, quotas and leases, and Celery's results. Stocks pushed
into the buffer reach the sandbox through real workers, and the broker traffic provably went through
RabbitMQ: its queues exist there (quorum queues), and the state Redis holds none of Celery's broker
keys. A producer's send returns only once RabbitMQ confirmed it: one the broker refuses raises
``ymsync.Unavailable`` instead of returning as if it were queued.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from tests.support.processes import ROOT, CeleryWorker, wait_for
from tests.support.rabbitmq_server import broker_missing, rabbitmq_broker
from ymsync import push_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(broker_missing() is not None, reason=f"no RabbitMQ: {broker_missing()}")]

CAMPAIGN = 811


@pytest.fixture(scope="module")
def rabbitmq():
    broker = rabbitmq_broker()
    yield broker
    broker.stop()


def queue_types(rabbitmq) -> dict[str, str]:
    rows = rabbitmq.ctl("list_queues", "-p", rabbitmq.vhost, "-s", "name", "type").splitlines()
    return dict(row.split("\t")[:2] for row in rows if "\t" in row)


# In a child process, as a shop's producer would: the configuration is read once per process.
PRODUCER = """
import json
from tasks import app
from tasks.stocks import send_updates
from ymsync import Unavailable
with app.connection_for_write() as connection:  # what a worker declares at start
    for queue in app.amqp.queues.values():
        queue(connection.default_channel).declare()
outcomes = []
for i in range(4):
    try:
        send_updates(CAMPAIGN, [{"sku": f"CONFIRM-{i}", "count": i}])
        outcomes.append("returned")
    except Unavailable as exc:
        outcomes.append(f"Unavailable maybe_queued={exc.maybe_queued}: {exc}")
held = 0
with app.connection_for_write() as connection:  # what the broker really holds
    while connection.default_channel.basic_get("stocks", no_ack=True) is not None:
        held += 1
print(json.dumps({"outcomes": outcomes, "held": held, "options": app.conf.broker_transport_options}))
"""


def test_quorum_queues_and_a_send_the_broker_refuses_is_not_acknowledged(rabbitmq, redis_server):
    # `stocks` takes one message and then refuses publishes: without publisher confirms every
    # send_updates returns as if its update were queued, and the refused ones are lost.
    rabbitmq.ctl("set_policy", "-p", rabbitmq.vhost, "--apply-to", "queues", "refuse-stocks", "^stocks$",
                 '{"max-length": 1, "overflow": "reject-publish"}')
    try:
        env = {"REDIS_URL": redis_server.url, "CELERY_BROKER_URL": rabbitmq.url, "YM_PRODUCER_TIMEOUT_S": "5"}
        done = subprocess.run([sys.executable, "-c", PRODUCER.replace("CAMPAIGN", str(CAMPAIGN))], cwd=ROOT,
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["options"].get("confirm_publish") is True
        outcomes = report["outcomes"]
        refused = [o for o in outcomes if o != "returned"]
        assert outcomes[0] == "returned" and refused, outcomes
        assert all(o.startswith("Unavailable maybe_queued=False") and "refused" in o for o in refused), refused
        # Every send that returned is in the queue: acknowledged means the broker has it.
        assert report["held"] == outcomes.count("returned")
        assert queue_types(rabbitmq) == {"stocks": "quorum", "reports": "quorum"}
    finally:
        rabbitmq.ctl("clear_policy", "-p", rabbitmq.vhost, "refuse-stocks")


# A send whose publish left this process, then lost its connection before the broker's confirm
# came (as when the broker stops or crashes mid-send): the socket is cut right after the publish.
CUT_PRODUCER = """
import json, socket
from amqp.channel import Channel
from tasks import app
from tasks.stocks import send_updates
from ymsync import Unavailable
with app.connection_for_write() as connection:
    for queue in app.amqp.queues.values():
        queue(connection.default_channel).declare()
publish = Channel._basic_publish
def publish_then_cut(self, *args, **kwargs):
    sent = publish(self, *args, **kwargs)
    self.connection.sock.shutdown(socket.SHUT_RDWR)
    return sent
Channel._basic_publish = publish_then_cut
outcome = {}
try:
    send_updates(CAMPAIGN, [{"sku": "CUT-1", "count": 1}])
    outcome["returned"] = True
except Unavailable as exc:
    outcome.update(maybe_queued=exc.maybe_queued, error=str(exc))
Channel._basic_publish = publish
app.conf.broker_write_url = "amqp://guest:guest@127.0.0.1:CLOSED//"
try:
    send_updates(CAMPAIGN, [{"sku": "CUT-2", "count": 2}])
except Unavailable as exc:
    outcome["refused_at_connect"] = exc.maybe_queued
held = []
app.conf.broker_write_url = BROKER
with app.connection_for_write() as connection:
    while (message := connection.default_channel.basic_get("stocks", no_ack=True)) is not None:
        held.append(message.headers.get("argsrepr"))
print(json.dumps({**outcome, "held": held}))
"""


def test_a_send_cut_after_its_publish_left_says_it_may_be_queued(rabbitmq, redis_server):
    from ymsync.embedded import free_port

    script = (CUT_PRODUCER.replace("CAMPAIGN", str(CAMPAIGN)).replace("CLOSED", str(free_port()))
              .replace("BROKER", repr(rabbitmq.url)))
    env = {"REDIS_URL": redis_server.url, "CELERY_BROKER_URL": rabbitmq.url, "YM_PRODUCER_TIMEOUT_S": "5"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # The publish reached the broker (it holds the message) but its confirm never came back: the
    # producer must not say "not queued" (the error's text says "connection"; where it failed counts).
    assert "returned" not in report and report["maybe_queued"] is True, report
    assert "may not have been queued" in report["error"]
    assert report["held"] == [f"(campaign={CAMPAIGN}, 1 SKUs)"], report
    assert report["refused_at_connect"] is False  # nothing left this process: truly not queued


def test_push_pipeline_with_a_rabbitmq_broker_and_state_on_redis(rabbitmq, redis_server, clean_redis, tmp_path):
    ours = {f"RQ-{i:04d}": i % 23 for i in range(3000)}
    buffer = StockBuffer(clean_redis)
    with MarketSandbox(config=SandboxConfig(campaigns=(CampaignConfig(CAMPAIGN),))) as market:
        env = {"REDIS_URL": redis_server.url, "CELERY_BROKER_URL": rabbitmq.url, "YM_API_URL": market.url,
               "YM_API_KEY": "sandbox-token", "YM_FLUSH_DELAY_MS": "50", "YM_REPORTS_DIR": str(tmp_path / "r")}
        workers = [CeleryWorker(env, queues="stocks", concurrency=2, name=f"rq{i}",
                                log_path=tmp_path / f"worker{i}.log").start() for i in range(2)]
        try:
            wait_for(lambda: "stocks" in queue_types(rabbitmq), 90, "the workers to declare their queue on RabbitMQ",
                     interval=0.5)
            assert queue_types(rabbitmq)["stocks"] == "quorum"
            for start in range(0, len(ours), 500):  # a shop pushing in several calls
                chunk = list(ours.items())[start:start + 500]
                push_stocks(CAMPAIGN, [{"sku": k, "count": v} for k, v in chunk], buffer=buffer)

            def market_holds_ours() -> bool:
                got = requests.get(f"{market.url}/_admin/stocks/{CAMPAIGN}", timeout=10).json()
                return {sku: v["count"] for sku, v in got.items()} == ours

            wait_for(market_holds_ours, 120, "the sandbox to hold every pushed value", interval=0.5)
            wait_for(lambda: buffer.pending(CAMPAIGN) == 0 and buffer.in_flight(CAMPAIGN) == 0, 30, "a settled buffer")
            assert len(buffer.delivered(CAMPAIGN)) == len(ours)
        finally:
            for worker in workers:
                worker.kill()  # teardown by SIGKILL: no graceful shutdown is judged here
        logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
        assert rabbitmq.logged_url in logs  # Celery's banner names its transport
        assert "ymsync.stocks.flush" in logs and "succeeded" in logs
        # A stocks-only worker binds the reports queue too (Celery's delayed delivery): the queue and its
        # exchange are declared at start, so no "no exchange"/"no queue 'reports'" error at every connect.
        # (This module's first test declares both queues on a shared vhost; the broker-restart chaos
        # case checks the same on a fresh node.)
        assert "Failed to bind" not in logs
        state = requests.get(f"{market.url}/_admin/state", timeout=10).json()
        assert state["stale_writes"] == 0 and state["requests"].get("updateStocks 420", 0) == 0
    # ymsync's state is on Redis, Celery's messages never were: no kombu bindings, no queue lists.
    names = {k.decode() for k in clean_redis.scan_iter(count=1000)}
    assert not {n for n in names if n.startswith("_kombu") or n in ("stocks", "reports", "unacked", "unacked_index")}
    assert any(n.startswith("ymsync:") for n in names)
