"""StockBuffer: the latest pending stock value per SKU and campaign, in Redis.

Latest wins by ``updatedAt`` (or, without one, by the Redis server's clock at arrival): an
update older than the newest value ever accepted for its SKU (pending, in flight, delivered or
dead) is dropped, whatever order updates arrive in; a repeat of that same value is dropped too,
so a redelivered message never sends a SKU twice. Many updates to one SKU coalesce into one.

Flushing takes a batch into an "in flight" hash under a lease. The batch then settles: its
SKUs are delivered, returned (unless a newer value arrived meanwhile) or dead-lettered. A
SKU in flight is never taken again until it settles, so two requests can never race an older
value past a newer one. A worker killed mid-flush leaves an expired lease; ``reclaim_expired``
returns its batch. Every script is atomic, so producers and flushers never see half a write.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Iterable, Sequence

import redis

from . import buffer_lua as lua
from . import keys

MAX_INVALID = 10_000  # invalid-input dead letters kept per campaign (newest first)


@dataclass(frozen=True)
class Entry:
    """A SKU's value inside a batch: ``stamp_ms`` orders it, ``first_ms`` dates its first try."""

    sku: str
    count: int
    stamp_ms: int
    first_ms: int


@dataclass(frozen=True)
class Batch:
    campaign_id: int
    batch_id: str
    entries: tuple[Entry, ...]

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class IngestResult:
    accepted: int = 0
    stale: int = 0  # older than (or a repeat of) a value already accepted
    woke: bool = False
    unchanged: int = 0  # the Market was last given this count and nothing newer is queued: not sent


class StockBuffer:
    def __init__(self, client: redis.Redis, *, flush_marker_ttl_s: float = 30.0, chunk: int = 1000) -> None:
        self.redis = client
        self.flush_ttl_ms = int(flush_marker_ttl_s * 1000)
        self.chunk = chunk
        self._ingest = client.register_script(lua.INGEST)
        self._take = client.register_script(lua.TAKE)
        self._settle = client.register_script(lua.SETTLE)
        self._finish = client.register_script(lua.FINISH)
        self._replay = client.register_script(lua.REPLAY)
        self._extend = client.register_script(lua.EXTEND)

    def ingest(self, campaign_id: int, updates: Iterable[tuple[str, int, int | None]], *,
               force: bool = False) -> IngestResult:
        """Write ``(sku, count, stamp_ms or None)`` updates; pipelined in chunks, each atomic.

        ``force`` queues a value even if the Market was last given that same count (reconciliation
        uses it when the Market has drifted from what ymsync delivered).
        """
        k = keys.campaign_keys(campaign_id)
        script_keys = [k["buf"], k["queue"], k["hwm"], k["stats"], k["flush"], keys.CAMPAIGNS, keys.WAKE,
                       k["delivered"], k["busy"]]
        head: list[object] = [int(campaign_id), self.flush_ttl_ms, 1 if force else 0]
        pipe = self.redis.pipeline(transaction=False)
        args = list(head)
        for sku, count, stamp_ms in updates:
            if stamp_ms is not None and stamp_ms < 0 or int(count) < 0:
                # The scripts parse digits only: one such value would jam its SKU for good.
                # Raised before the pipeline runs, so nothing of this call is written.
                raise ValueError(f"{sku!r}: count and stamp must not be negative ({count}, {stamp_ms})")
            args += [sku, int(count), "" if stamp_ms is None else int(stamp_ms)]
            if len(args) >= len(head) + 3 * self.chunk:
                self._ingest(keys=script_keys, args=args, client=pipe)
                args = list(head)
        if len(args) > len(head):
            self._ingest(keys=script_keys, args=args, client=pipe)
        results = pipe.execute()
        return IngestResult(sum(r[0] for r in results), sum(r[1] for r in results), any(r[2] for r in results),
                            sum(r[3] for r in results))

    def take(self, campaign_id: int, max_skus: int, max_bytes: int, lease_s: float) -> Batch | None:
        """Move up to ``max_skus`` pending SKUs (and ~``max_bytes`` of JSON) into a new batch."""
        k = keys.campaign_keys(campaign_id)
        batch_id = uuid.uuid4().hex[:12]
        raw = self._take(keys=[k["buf"], k["queue"], k["busy"], k["batches"], keys.inflight(campaign_id, batch_id)],
                         args=[max_skus, max_bytes, int(lease_s * 1000), batch_id])
        if not raw:
            return None
        entries = []
        for i in range(0, len(raw), 2):
            count, stamp, first = raw[i + 1].split(b"|")
            entries.append(Entry(raw[i].decode(), int(count), int(stamp), int(first)))
        return Batch(int(campaign_id), batch_id, tuple(entries))

    def settle(self, batch: Batch, action: str, skus: Sequence[str] | None = None, reason: str = "") -> int:
        """``delivered``, ``returned`` or ``dead`` for ``skus`` of the batch (default: all)."""
        assert action in ("delivered", "returned", "dead")
        k = keys.campaign_keys(batch.campaign_id)
        names = [e.sku for e in batch.entries] if skus is None else list(skus)
        if not names:
            return 0
        return int(self._settle(
            keys=[keys.inflight(batch.campaign_id, batch.batch_id), k["busy"], k["batches"], k["buf"], k["queue"],
                  k["delivered"], k["dead"], k["stats"]],
            args=[batch.batch_id, action, reason[:2000], *names]))

    def extend(self, batch: Batch, lease_s: float) -> bool:
        """Renew the batch's lease; False if it already expired and was reclaimed. The caller must
        then send nothing more from it: its SKUs are back in the buffer, maybe with newer values
        another worker is sending, and a late request would put an older value over them."""
        k = keys.campaign_keys(batch.campaign_id)
        return bool(self._extend(keys=[k["batches"]], args=[batch.batch_id, int(lease_s * 1000)]))

    def reclaim_expired(self, campaign_id: int) -> int:
        """Return batches whose lease ran out (their worker died) to the buffer."""
        k = keys.campaign_keys(campaign_id)
        seconds, micros = self.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        returned = 0
        for batch_id in self.redis.zrangebyscore(k["batches"], "-inf", now_ms):
            batch_id = batch_id.decode()
            skus = [s.decode() for s in self.redis.hkeys(keys.inflight(campaign_id, batch_id))]
            batch = Batch(int(campaign_id), batch_id, tuple(Entry(s, 0, 0, 0) for s in skus))
            returned += self.settle(batch, "returned")
            self.redis.zrem(k["batches"], batch_id)
            self.redis.hincrby(k["stats"], "reclaimed", len(skus))
        return returned

    def finish(self, campaign_id: int) -> bool:
        """True if takeable work remains (the flush marker is kept), else clear the marker."""
        k = keys.campaign_keys(campaign_id)
        return bool(self._finish(keys=[k["buf"], k["busy"], k["flush"]], args=[self.flush_ttl_ms]))

    def schedule_if_idle(self, campaign_id: int) -> bool:
        """Set the flush marker if pending work has none (a lost flush message); True if set."""
        k = keys.campaign_keys(campaign_id)
        if self.redis.hlen(k["buf"]) == 0:
            return False
        return bool(self.redis.set(k["flush"], "1", nx=True, px=self.flush_ttl_ms))

    def touch_flush(self, campaign_id: int, extra_s: float = 0.0) -> None:
        """Keep the flush marker alive (longer when the next flush waits ``extra_s``)."""
        self.redis.set(keys.campaign_keys(campaign_id)["flush"], "1", px=self.flush_ttl_ms + int(extra_s * 1000))

    def campaigns(self) -> list[int]:
        return sorted(int(c) for c in self.redis.smembers(keys.CAMPAIGNS))

    def pending(self, campaign_id: int) -> int:
        return int(self.redis.hlen(keys.campaign_keys(campaign_id)["buf"]))

    def in_flight(self, campaign_id: int) -> int:
        return int(self.redis.scard(keys.campaign_keys(campaign_id)["busy"]))

    def stats(self, campaign_id: int) -> dict[str, int]:
        raw = self.redis.hgetall(keys.campaign_keys(campaign_id)["stats"])
        return {k.decode(): int(v) for k, v in raw.items()}

    def delivered(self, campaign_id: int) -> dict[str, tuple[int, int, int]]:
        """sku -> (count, stamp_ms, delivered_at_ms) of the last value the Market accepted."""
        raw = self.redis.hgetall(keys.campaign_keys(campaign_id)["delivered"])
        return {k.decode(): tuple(int(x) for x in v.split(b"|")) for k, v in raw.items()}  # type: ignore[misc]

    def dead_letters(self, campaign_id: int) -> list[dict]:
        k = keys.campaign_keys(campaign_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hvals(k["dead"])
        pipe.lrange(k["invalid"], 0, -1)
        values, invalid = pipe.execute()
        return sorted((json.loads(v) for v in [*values, *invalid]), key=lambda d: (d["at_ms"], d["sku"]))

    def dead_letter_count(self, campaign_id: int) -> int:
        k = keys.campaign_keys(campaign_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hlen(k["dead"])
        pipe.llen(k["invalid"])
        return sum(pipe.execute())

    def dead_letter_raw(self, campaign_id: int, ident: str, record: dict) -> None:
        """A dead letter that never entered the buffer (invalid input from a foreign producer).

        These are not keyed by SKU (there may be none), so they live in a list capped at
        ``MAX_INVALID`` newest entries: a producer sending garbage must not fill Redis. The
        ``invalid`` counter in the stats keeps the full count.
        """
        k = keys.campaign_keys(campaign_id)
        pipe = self.redis.pipeline()
        pipe.lpush(k["invalid"], json.dumps({**record, "id": ident}))
        pipe.ltrim(k["invalid"], 0, MAX_INVALID - 1)
        pipe.hincrby(k["stats"], "dead", 1)
        pipe.hincrby(k["stats"], "invalid", 1)
        pipe.sadd(keys.CAMPAIGNS, int(campaign_id))
        pipe.execute()

    def replay(self, campaign_id: int, skus: Sequence[str] = ()) -> int:
        """Put dead letters back in the buffer, unless a newer value has arrived since."""
        k = keys.campaign_keys(campaign_id)
        return int(self._replay(keys=[k["dead"], k["hwm"], k["buf"], k["queue"], k["flush"], keys.WAKE],
                                args=[int(campaign_id), self.flush_ttl_ms, *skus]))

    def purge(self, campaign_id: int) -> int:
        k = keys.campaign_keys(campaign_id)
        n = self.dead_letter_count(campaign_id)
        self.redis.delete(k["dead"], k["invalid"])
        return n
