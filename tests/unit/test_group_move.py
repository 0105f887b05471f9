"""A campaign found in a warehouse group (engine/group_move.py) against a real, private redis-server:
the race of a campaign round that began before its group was known."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Callable, Iterator

import pytest

from ymsync.engine.buffer import Batch, StockBuffer
from ymsync.engine.flusher import Flusher
from ymsync.engine.group_move import Gate, GroupMove
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.targets import target
from ymsync.market.clock import MarketClock
from ymsync.store import keys

BASE = (int(time.time()) - 3600) * 1000


@pytest.fixture
def groups(redis_server) -> Iterator[Callable[[str], None]]:
    """Sets this process's YM_WAREHOUSE_GROUPS (the views of the groups targets read); restored after."""
    from ymsync.config.settings import configure

    env = {"REDIS_URL": redis_server.url, "YM_API_KEY": "t", "YM_BUSINESS_ID": "100"}
    yield lambda spec: configure({**env, "YM_WAREHOUSE_GROUPS": spec})
    configure(None)


def delivered_in_flight_and_pending(buf: StockBuffer, group: str) -> Batch:
    """The group delivered B=5, has C=7 in flight (returned) and A=2 pending."""
    buf.ingest(group, [("B", 5, BASE + 10)])
    delivered = buf.take(group, 10, 10**6, 60)
    assert delivered is not None and buf.settle(delivered, "delivered") == 1
    buf.ingest(group, [("C", 7, BASE + 20)])
    in_flight = buf.take(group, 10, 10**6, 60)
    assert in_flight is not None and values(in_flight) == {"C": (7, BASE + 20)}
    buf.ingest(group, [("A", 2, BASE + 1)])
    return in_flight


def values(batch: Batch | None) -> dict[str, tuple[int, int]]:
    return {} if batch is None else {e.sku: (e.count, e.stamp_ms) for e in batch.entries}


def test_a_campaign_round_that_began_before_its_group_was_known_takes_nothing_after(clean_redis) -> None:
    r = clean_redis
    buf = StockBuffer(r)
    move = GroupMove(buf)
    campaign = target("c1001")
    buf.ingest("c1001", [("A", 1, BASE)])
    # A round of the campaign passed its look (no group known yet); then the group is discovered and
    # the group's round takes the campaign over: nothing in flight, so its records move at once.
    assert move.absorb(1001, "g1001") is None
    assert r.get(keys.absorbed("c1001")) == b"g1001" and r.get(keys.moved("c1001")) == b"g1001"
    # A producer that had not seen the group yet writes to the campaign; the round goes on to take.
    buf.ingest("c1001", [("A", 2, BASE + 1)])
    assert buf.take("c1001", 10, 10**6, 60) is None, "a batch taken now would settle after the records moved"
    # The next look moves the value to the group, which sends it.
    assert move.absorb(1001, "g1001") is None
    sent = buf.take("g1001", 10, 10**6, 60)
    assert values(sent) == {"A": (2, BASE + 1)} and sent is not None and buf.settle(sent, "delivered") == 1
    # The group dissolves: the campaign's next round reads the mark as it starts, takes the group's
    # state back (rule 4), forgets the mark, and takes again.
    flusher = Flusher(buf, QuotaLimiter(r, {"update_stocks": None}), SimpleNamespace(clock=MarketClock()))  # type: ignore[arg-type]
    assert move.mark_of(campaign, "g1001") is None  # still in the group: nothing to read
    start = flusher.path.start_round(campaign, mark=move.mark_of(campaign, None))
    assert start.moved == "g1001"
    assert move.gate(campaign, None, moved=start.moved).stop
    assert r.get(keys.moved("c1001")) is None and r.get(keys.moved("g1001")) == b"c1001"
    buf.ingest("c1001", [("B", 1, BASE)])
    assert values(buf.take("c1001", 10, 10**6, 60)) == {"B": (1, BASE)}


def test_a_dissolved_group_gives_its_values_and_records_back_before_the_campaign_sends(clean_redis) -> None:
    r = clean_redis
    buf = StockBuffer(r)
    move = GroupMove(buf)
    campaign, group = target("c1001"), target("g1001")
    assert move.absorb(1001, "g1001") is None  # the campaign joined the group
    # The group delivered B, has C in flight and A pending when the Market reports no group any more.
    in_flight = delivered_in_flight_and_pending(buf, "g1001")
    buf.ingest("c1001", [("D", 3, BASE)])  # a producer that saw the dissolution first
    # The campaign's round: the group's batch is in flight, so it waits, sending nothing; the
    # group's pending value is already back with the campaign.
    gate = move.gate(campaign, None, moved="g1001")
    assert gate.stop and gate.next_in == move.wait_s
    assert buf.take("c1001", 10, 10**6, 60) is None, "nothing goes while the group's batch is in flight"
    assert buf.take("g1001", 10, 10**6, 60) is None, "the group sends nothing more"
    assert r.hget(keys.target_keys("c1001")["buf"], "A") is not None
    # The group's batch settles; the next look merges its records and lifts the mark.
    assert buf.settle(in_flight, "delivered") == 1
    assert move.gate(campaign, None, moved="g1001") == Gate(True, 0.0)
    assert r.get(keys.moved("c1001")) is None and r.get(keys.absorbed("c1001")) is None
    # What the group delivered is the campaign's latest now: an older push is refused as stale.
    assert buf.ingest("c1001", [("B", 4, BASE + 5), ("C", 1, BASE + 19)]).stale == 2
    assert values(buf.take("c1001", 10, 10**6, 60)) == {"A": (2, BASE + 1), "D": (3, BASE)}
    # The group target's own round, when it comes, moves out the same way and sends nothing.
    buf.ingest("g1001", [("E", 9, BASE + 30)])  # a producer still routing by an old view
    gate = move.gate(group)
    assert gate.stop and gate.next_in is None
    assert buf.take("g1001", 10, 10**6, 60) is None
    assert r.hget(keys.target_keys("c1001")["buf"], "E") is not None
    # Formed again, the group forgets the marks of its dissolution as its round starts.
    assert move.stale_marks(group) == ()  # still dissolved in this process's view: nothing forgotten


def test_a_group_headed_anew_waits_for_the_batches_of_its_former_target(clean_redis, groups) -> None:
    # Campaigns 1001 and 1002 share a stock as g1001; then 1000 joins ahead of them, so the group's
    # target is g1000. What g1001 holds is the same stock: its pending values move to g1000, and
    # g1000 sends nothing while g1001 still has a batch in flight (it could land after g1000's
    # newer value); then g1001's delivered records merge, so an older push is refused as stale.
    r = clean_redis
    buf = StockBuffer(r)
    move = GroupMove(buf)
    groups("1001,1002")
    assert target("g1001").campaigns == (1001, 1002)
    in_flight = delivered_in_flight_and_pending(buf, "g1001")

    groups("1000,1001,1002")
    group = target("g1000")
    assert group.campaigns == (1000, 1001, 1002)
    buf.ingest("g1000", [("C", 9, BASE + 30)])  # newer than the C in flight
    gate = move.gate(group)
    assert gate.stop and gate.next_in == move.wait_s, "g1001's C is still in flight"
    assert r.hget(keys.target_keys("g1000")["buf"], "A") is not None  # moved already
    assert buf.take("g1001", 10, 10**6, 60) is None, "the former target takes nothing more"
    assert buf.settle(in_flight, "delivered") == 1
    assert move.gate(group) == Gate()  # nothing in flight: records merged, the group sends
    assert r.get(keys.absorbed("g1001")) == b"g1000"
    assert buf.ingest("g1000", [("B", 4, BASE + 5)]).stale == 1  # older than what g1001 delivered
    assert values(buf.take("g1000", 10, 10**6, 60)) == {"A": (2, BASE + 1), "C": (9, BASE + 30)}
    assert move.gate(group) == Gate()  # looked at once: the former target costs a read from then on


def test_a_group_split_off_waits_for_the_batches_of_the_group_that_carried_its_campaigns(clean_redis, groups) -> None:
    # g1001 carries 1001, 1002 and 1003; 1001 leaves, so 1002 and 1003 are g1002 from then on, and
    # g1001's values go to c1001 (rule 4). g1001's batch still in flight was the same stock as
    # g1002's: g1002 sends nothing until it has settled (rule 6).
    r = clean_redis
    buf = StockBuffer(r)
    move = GroupMove(buf)
    groups("1001,1002,1003")
    assert move.gate(target("g1001")) == Gate()  # its round marks its campaigns as its own
    assert r.get(keys.carrier_of("c1002")) == b"g1001"
    buf.ingest("g1001", [("C", 7, BASE + 20)])
    in_flight = buf.take("g1001", 10, 10**6, 60)
    assert values(in_flight) == {"C": (7, BASE + 20)}

    groups("1002,1003")
    group = target("g1002")
    buf.ingest("g1002", [("C", 9, BASE + 30)])
    gate = move.gate(group)
    assert gate.stop and gate.next_in == move.wait_s, "g1001's C is still in flight"
    assert r.get(keys.carrier_of("c1002")) == b"g1001"
    assert buf.settle(in_flight, "delivered") == 1
    assert move.gate(group) == Gate()
    assert r.get(keys.carrier_of("c1002")) == r.get(keys.carrier_of("c1003")) == b"g1002"
    assert values(buf.take("g1002", 10, 10**6, 60)) == {"C": (9, BASE + 30)}
