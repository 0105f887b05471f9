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

Bounded per-SKU state: the latest-wins and delivered records of a SKU live in generation hashes
(``generation_s`` wide, half the horizon); a generation expires three generations after it
began, so a SKU idle for two to three generations (the horizon, up to 1.5x it) costs nothing.
An update stamped before the horizon is dropped (``too_old``): the Market refuses stamps older
than a day, and the records that could order it against a newer value may be gone.

Every key a script touches comes in its KEYS (Redis Cluster requires it): generation hashes are
named here for the generation the server's clock gives, estimated between looks at it; a script
whose own clock disagrees writes nothing and names the right one, and the call goes again.

Waking the scheduler is a second call (``Schedule.activate``), never part of a target's script:
a target's keys share one hash tag, the scheduler's are global.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import msgpack
import redis
from redis.commands.core import Script

from ymsync.engine.batch import Batch, Entry, TakenEntries, entries_of, taken_entries  # noqa: F401 (Entry and the rest: imported from here too)
from ymsync.store import buffer_lua as lua, dead_letter_lua
from ymsync.store import ingest_lua, lease_lua
from ymsync.store import keys
from ymsync.store.cluster import ReplicaAck, is_cluster
from ymsync.engine.buffer_reads import BufferReads
from ymsync.engine.schedule import Schedule
from ymsync.engine.group_target import DiscoveredGroups, use_discovered_groups
from ymsync.config.settings import Settings

MAX_INVALID = 10_000  # invalid-input dead letters kept per campaign (newest first)
_MISMATCH = "YMSYNC_GENERATION "  # a script's reply: the keys were named for another generation
_ATTEMPTS = 5
_CLOCK_REFRESH_S = 10.0


def _generation_named(reply: object) -> int | None:
    """The generation a script says is current, if ``reply`` is its refusal of the caller's keys."""
    if isinstance(reply, redis.ResponseError) and str(reply).startswith(_MISMATCH):
        return int(str(reply)[len(_MISMATCH):])
    return None


@dataclass(frozen=True)
class IngestResult:
    """What one push did with its valid updates (README "IngestResult")."""

    accepted: int = 0  # queued: each goes to the Market (coalesced with others of its SKU)
    stale: int = 0  # older than (or a repeat of) a value already accepted, or older than the horizon
    woke: bool = False  # the target was made due (the scheduler will send a flush)
    unchanged: int = 0  # the Market was last given this count and nothing newer is queued: not sent
    too_old: int = 0  # of ``stale``: stamped before the horizon
    # ``skip_invalid=True``: the items refused, each an ItemError (index, sku, warehouse, field, message)
    refused: tuple[Any, ...] = ()


class StockBuffer(BufferReads):
    def __init__(self, client: redis.Redis, *, schedule: Schedule | None = None, flush_delay_s: float = 0.25,
                 horizon_s: float = 25 * 3600.0, chunk: int = 2000, ack: ReplicaAck = ReplicaAck()) -> None:
        self.redis = client
        self.ack = ack  # an ingest returns once this many replicas have it (store/cluster.py)
        self.schedule = schedule if schedule is not None else Schedule(client)
        self.flush_delay_s = flush_delay_s
        self.horizon_ms = max(2, int(horizon_s * 1000))
        self.generation_ms = max(1, self.horizon_ms // 2)
        # Updates per ingest script: 2,000 (a full request's worth) took a script call and ~0.4
        # server reads less per request than 1,000 (bench row 13), holding Redis ~3 ms a call,
        # no longer than a request's own settle-and-take.
        self.chunk = chunk
        self._ingest = client.register_script(ingest_lua.INGEST)
        self._take = client.register_script(lua.TAKE)
        self._settle = client.register_script(lua.SETTLE)
        self._reclaim = client.register_script(lease_lua.RECLAIM)
        self._takeable = client.register_script(lua.TAKEABLE)
        self._replay = client.register_script(dead_letter_lua.REPLAY)
        self._extend = client.register_script(lease_lua.EXTEND)
        self._oldest_age = client.register_script(lua.OLDEST_AGE)
        self._purge = client.register_script(dead_letter_lua.PURGE)
        # (server ms, local monotonic s) of the last look at Redis's clock: generations are named
        # from it, never ahead of the server (its reply is read after the server's TIME).
        self._clock: tuple[int, float] | None = None
        use_discovered_groups(DiscoveredGroups(client))  # pushes route to the groups the Market reports

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings, schedule: Schedule | None = None) -> "StockBuffer":
        return cls(client, schedule=schedule or Schedule(client, max_parallel=settings.max_parallel),
                   flush_delay_s=settings.flush_delay_ms / 1000, horizon_s=settings.state_horizon_s,
                   ack=ReplicaAck(settings.redis_state.ack_replicas, settings.redis_state.ack_timeout_ms,
                                  settings.redis_state.failover_s))

    @staticmethod
    def target(target: int | str) -> str:
        """A stock target's name: ``c1001`` for campaign 1001 (an int), or the name itself."""
        return target if isinstance(target, str) else keys.campaign_target(target)

    def _generation(self) -> int:
        """The current generation by the Redis server's clock, estimated between looks at it.
        Scripts check it against their own clock, so an estimate can only cost a retry."""
        clock, now = self._clock, time.monotonic()
        if clock is None or now - clock[1] > _CLOCK_REFRESH_S:
            seconds, micros = self.redis.time()
            clock = self._clock = (int(seconds) * 1000 + int(micros) // 1000, time.monotonic())
            now = clock[1]
        return (clock[0] + int((now - clock[1]) * 1000)) // self.generation_ms

    def generation_now(self) -> int:
        """The current generation of records, as :meth:`_generation` estimates it (a boundary may
        be a generation off: a caller looking for records reads one either side)."""
        return self._generation()

    @staticmethod
    def _generation_keys(target: str, g: int, *names: Callable[[str, int], str]) -> list[str]:
        """Generation hashes for the scripts' KEYS, newest first, per record kind (keys.hwm, ...)."""
        return [name(target, generation) for name in names for generation in (g, g - 1, g - 2)]

    def call_in_generation(self, script: Script, target: str, fixed_keys: list[str],
                            names: tuple[Callable[[str, int], str], ...], args: list[object]) -> Any:
        """One call of a script that touches generation hashes; retried (nothing was written) with
        the generation it names when the estimate was off, at a generation's turn."""
        g = self._generation()
        for _ in range(_ATTEMPTS):
            try:
                return script(keys=[*fixed_keys, *self._generation_keys(target, g, *names)],
                              args=[g, self.generation_ms, *args])
            except redis.ResponseError as exc:
                named = _generation_named(exc)
                if named is None:
                    raise
                g, self._clock = named, None
        raise RuntimeError(f"{target}: the Redis clock kept changing generation ({g})")

    def ingest(self, target_id: int | str, updates: Iterable[tuple[str, int, int | None]], *,
               force: bool = False) -> IngestResult:
        """Write ``(sku, count, stamp_ms or None)`` updates; pipelined in chunks, each atomic.

        ``force`` queues a value even if the Market was last given that same count (reconciliation
        uses it when the Market has drifted from what ymsync delivered).
        """
        target = self.target(target_id)
        chunks: list[tuple[bytes, bool]] = []  # (the script's packed updates, no SKU in it twice)
        entries: list[str] = []  # sku, count, stamp, sku, ... (as text: see INGEST)
        skus: set[str] = set()
        for sku, count, stamp_ms in updates:
            if stamp_ms is not None and stamp_ms < 0 or int(count) < 0:
                # The scripts read digits only: one such value would jam its SKU for good.
                # Raised before the pipeline runs, so nothing of this call is written.
                raise ValueError(f"{sku!r}: count and stamp must not be negative ({count}, {stamp_ms})")
            entries += (sku, str(int(count)), "" if stamp_ms is None else str(int(stamp_ms)))
            skus.add(sku)
            if len(entries) >= 3 * self.chunk:
                chunks.append((msgpack.packb(entries), 3 * len(skus) == len(entries)))
                entries, skus = [], set()
        if entries:
            chunks.append((msgpack.packb(entries), 3 * len(skus) == len(entries)))
        # On one Redis the wake-up rides in the write's own pipeline (a script that makes the target
        # due if values are pending); on a Cluster the schedule lives on another node: a call after.
        ride = not is_cluster(self.redis)
        results = self.ack.run(self.redis, lambda: self._ingest_chunks(target, chunks, force, wake=ride))
        accepted = sum(r[0] for r in results)
        # Values already pending wake the target too: a producer whose earlier call lost its answer
        # after the write (and before this wake-up) re-pushes them, and must not leave them unsent.
        woke = bool(accepted or (results and results[-1][4]))
        if ride and results:
            pass  # woken (or registered) in the write's pipeline
        elif woke and self.ack.replicas:  # the due entry is all that makes the values go: as durable as they
            self.ack.run(self.redis, lambda: self._activate_acked(target))
        elif woke:
            self.schedule.activate(self.target(target_id), self.flush_delay_s)
        elif results:  # registered even if nothing is to be sent, so status lists the campaign
            self.schedule.activate_registry_only(self.target(target_id))
        return IngestResult(accepted, sum(r[1] for r in results), woke, sum(r[2] for r in results),
                            sum(r[3] for r in results))

    def _activate_acked(self, target: str) -> None:
        pipe = self.ack.pipeline(self.redis, keys.DUE)
        self.schedule.activate(target, self.flush_delay_s, client=pipe)
        for reply in self.ack.execute(pipe):
            if isinstance(reply, Exception):
                raise reply

    def _ingest_chunks(self, target: str, chunks: list[tuple[bytes, bool]], force: bool,
                       wake: bool = False) -> list[list[int]]:
        """Each chunk in one atomic script, pipelined. Chunks refused for naming the wrong
        generation wrote nothing and go again, in order: the server's clock only moves on, so
        every chunk after a refused one was refused too and none overtakes an earlier one.
        ``wake``: each pipeline ends with the target's wake-up (Schedule.activate_if_pending), so the
        last one comes after every chunk is written."""
        if not chunks:
            return []
        k = keys.target_keys(target)
        done: dict[int, list[int]] = {}
        waiting, g = list(range(len(chunks))), self._generation()
        for _ in range(_ATTEMPTS):
            script_keys = [k["buf"], k["queue"], k["stats"], k["busy"], k["flight"],
                           *self._generation_keys(target, g, keys.hwm, keys.delivered)]
            pipe = self.ack.pipeline(self.redis, k["buf"])  # the node's own connection: WAIT follows on it
            for i in waiting:
                text, unique = chunks[i]
                self._ingest(keys=script_keys, args=[g, self.generation_ms, self.horizon_ms, 1 if force else 0,
                                                     text, 1 if unique else 0], client=pipe)
            if wake:
                self.schedule.activate_if_pending(target, self.flush_delay_s, client=pipe)
            replies = self.ack.execute(pipe)
            if wake and isinstance(replies[-1], Exception):
                raise replies[-1]
            again = []  # a node's plain pipeline: its scripts run (or load on a miss) there, not on the Cluster client
            for i, reply in zip(waiting, replies):
                named = _generation_named(reply)
                if named is not None:
                    again.append(i)
                    g, self._clock = named, None
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    done[i] = reply
            if not again:
                return [done[i] for i in range(len(chunks))]
            waiting = again
        raise RuntimeError(f"{target}: the Redis clock kept changing generation ({g})")

    def take(self, target_id: int | str, max_skus: int, max_bytes: int, lease_s: float,
             cap_ms: int = 0) -> Batch | None:
        """Move up to ``max_skus`` pending SKUs (and ~``max_bytes`` of JSON) into a new batch.
        ``cap_ms``: the caller's newest stamp worth sending (MarketClock.stamp_cap_ms); the batch's
        ``cap_ms`` is the highest any batch of the target took, so a SKU's clamped stamps never go
        backwards between processes whose clocks learnt the Market's time a second apart."""
        k = keys.target_keys(self.target(target_id))
        batch_id = uuid.uuid4().hex[:12]
        raw = self._take(keys=[k["buf"], k["queue"], k["busy"], k["batches"], k["flight"], k["floor"],
                               keys.moved(self.target(target_id))],
                         args=[max_skus, max_bytes, int(lease_s * 1000), batch_id, int(cap_ms)])
        if not raw:
            return None
        floor = int(raw[1])
        return Batch(self.target(target_id), batch_id, taken_entries(raw[0]), floor if cap_ms else None, floor or None)

    def settle(self, batch: Batch, action: str, skus: Sequence[str] | None = None, reason: str = "") -> int:
        """``delivered``, ``returned`` or ``dead`` for ``skus`` of the batch (default: all)."""
        assert action in ("delivered", "returned", "dead")
        k = keys.target_keys(batch.target)
        names = [] if skus is None else list(skus)  # none named: the script settles the whole batch
        if skus is not None and not names:
            return 0
        return int(self.call_in_generation(
            self._settle, batch.target, [keys.inflight(batch.target, batch.batch_id), k["busy"], k["batches"],
                                         k["buf"], k["queue"], k["dead"], k["stats"], k["retired"], k["flight"]],
            (keys.delivered, keys.hwm), [batch.batch_id, action, reason[:2000], *names]))

    def extend(self, batch: Batch, lease_s: float) -> bool:
        """Renew the batch's lease; False if it already ran out. The caller must then send nothing
        more from it: its SKUs are (or are about to be) back in the buffer, maybe with newer values
        another worker is sending, and a late request would put an older value over them."""
        k = keys.target_keys(batch.target)
        return bool(self._extend(keys=[k["batches"]], args=[batch.batch_id, int(lease_s * 1000)]))

    def reclaim_expired(self, target_id: int | str) -> int:
        """Return batches whose lease ran out (their worker died) to the buffer, in one script."""
        k = keys.target_keys(self.target(target_id))
        # Earliest deadlines first; the script returns those whose lease has run out by its clock.
        return self.reclaim(target_id, [b.decode() for b in self.redis.zrange(k["batches"], 0, 999)])

    def reclaim(self, target_id: int | str, batches: Sequence[str]) -> int:
        """Return those of ``batches`` whose lease ran out (by the server's clock) to the buffer."""
        target = self.target(target_id)
        k = keys.target_keys(target)
        if not batches:
            return 0
        _batches, returned = self._reclaim(keys=[k["batches"], k["busy"], k["buf"], k["queue"], k["stats"], k["retired"], k["flight"],
                                                 *(keys.inflight(target, b) for b in batches)], args=batches)
        return int(returned)

    def takeable(self, target_id: int | str) -> bool:
        """True if some pending SKU can be taken now (its older value is not still in flight)."""
        k = keys.target_keys(self.target(target_id))
        return bool(self._takeable(keys=[k["buf"], k["busy"]]))

    def lease_deadline_ms(self, target_id: int | str) -> int | None:
        """The earliest lease deadline of the campaign's open batches (server ms), None if none."""
        first = self.redis.zrange(keys.target_keys(self.target(target_id))["batches"], 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def oldest_pending_age_s(self, target_id: int | str) -> float:
        """Seconds the oldest pending value has waited (-0.001 if none is pending)."""
        k = keys.target_keys(self.target(target_id))
        return int(self._oldest_age(keys=[k["buf"], k["queue"]])) / 1000

    def dead_letter_raw(self, target_id: int | str, ident: str, record: dict) -> None:
        """A dead letter that never entered the buffer (invalid input from a foreign producer).

        These are not keyed by SKU (there may be none), so they live in a list capped at
        ``MAX_INVALID`` newest entries: a producer sending garbage must not fill Redis. The
        ``invalid`` counter in the stats keeps the full count.
        """
        k = keys.target_keys(self.target(target_id))
        pipe = self.redis.pipeline()
        pipe.lpush(k["invalid"], json.dumps({**record, "id": ident}))
        pipe.ltrim(k["invalid"], 0, MAX_INVALID - 1)
        pipe.hincrby(k["stats"], "dead", 1)
        pipe.hincrby(k["stats"], "invalid", 1)
        pipe.execute()
        self.schedule.activate_registry_only(self.target(target_id))

    def replay(self, target_id: int | str, skus: Sequence[str] = ()) -> int:
        """Put dead letters back in the buffer, unless a newer value has arrived since."""
        target = self.target(target_id)
        k = keys.target_keys(target)
        n = int(self.call_in_generation(self._replay, target, [k["dead"], k["buf"], k["queue"], k["busy"]],
                                         (keys.hwm,), list(skus)))
        if n:
            self.schedule.activate(self.target(target_id), 0)
        return n

    def purge(self, target_id: int | str, warehouse: int | None = None) -> int:
        """Forget the target's dead letters (only ``warehouse``'s, for a business target); how
        many went. One script: counting and deleting in two steps would lose a letter
        dead-lettered in between without counting it."""
        k = keys.target_keys(self.target(target_id))
        return int(self._purge(keys=[k["dead"], k["invalid"]], args=["" if warehouse is None else int(warehouse)]))
