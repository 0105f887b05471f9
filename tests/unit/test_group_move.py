"""A campaign found in a warehouse group (engine/group_move.py) against a real, private redis-server:
the race of a campaign round that began before its group was known."""

from __future__ import annotations

import time
from types import SimpleNamespace

from ymsync.engine.buffer import Batch, StockBuffer
from ymsync.engine.flusher import Flusher
from ymsync.engine.group_move import GroupMove
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.targets import target
from ymsync.market.clock import MarketClock
from ymsync.store import keys

BASE = (int(time.time()) - 3600) * 1000


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
    assert values(buf.take("g1001", 10, 10**6, 60)) == {"A": (2, BASE + 1)}
    # The group dissolves: the campaign's next round forgets the mark as it starts, and takes again.
    flusher = Flusher(buf, QuotaLimiter(r, {"update_stocks": None}), SimpleNamespace(clock=MarketClock()))  # type: ignore[arg-type]
    assert move.stale_marks(campaign, "g1001") == ()  # still in the group: the mark stays
    flusher.path.start_round(campaign, forget=move.stale_marks(campaign, None))
    assert r.get(keys.moved("c1001")) is None
    buf.ingest("c1001", [("B", 1, BASE)])
    assert values(buf.take("c1001", 10, 10**6, 60)) == {"B": (1, BASE)}
