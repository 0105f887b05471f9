"""Isolation of the values the Market refused out of a batch it answered with a 400.

The Market refuses a whole request for one bad value. The refused batch is split: the values its
message names are dead-lettered with that message (the rest goes on), or, when it names none, the
batch is halved until each refusal is pinned on one value. Stamps refused as "in the future" or
"older than a day" are the clock's fault (stamps.py): the group is sent once more at the clock's
lower bound, and returned to the buffer if even that fails; never dead-lettered. Any other failure
on the way (420, 5xx, 401...) gets the usual policy for its group (flush_failure.py), and the groups
not yet tried go back to the buffer untouched: they must not be pushed into a Market that just
said no.

Isolation never sleeps. When the quota has no room for the next group, the work left (its groups,
in order) is *parked*: written to Redis beside the target (``keys.isolating``) with the batch still
leased, renewed to cover the wait and the request after it, and the flush returns the wait, which
the scheduler writes back as the target's due time. The next flush of the target resumes parked
work before it takes new values; the batch stays leased meanwhile, so a newer value of one of its
SKUs waits in the buffer until the older one is settled and can never be overwritten by it. Parked
work whose lease ran out (a lost worker, a pause longer than the lease) is dropped unsent: its
values are back in the buffer, maybe with newer ones.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ymsync.engine.batch import Batch, Entry
from ymsync.engine.call_policy import MIN_WAIT_S, Ticket
from ymsync.engine.flush_failure import failed, succeeded
from ymsync.engine.flush_parts import FlushParts, Tally
from ymsync.engine.quota import Grant
from ymsync.engine.stamps import is_clock_refusal, levels
from ymsync.engine.targets import Target, split_key, target
from ymsync.market import MarketBadRequest
from ymsync.store import keys

log = logging.getLogger("ymsync.engine.flusher")

# A group refused twice for its stamps: give the clock (and whoever watches it) a moment.
CLOCK_RETRY_S = 5.0
_QUOTED = re.compile(r"'([^']*)'")
_WAREHOUSE = re.compile(r"warehouse '?(\d+)'?", re.I)


@dataclass
class Group:
    """Values to send together. ``strict``: stamps at the clock's lower bound (the Market refused
    ours once); ``depth``: how many refusals split it off (siblings share a depth)."""

    entries: list[Entry]
    strict: bool
    depth: int

    @property
    def skus(self) -> list[str]:
        return [e.sku for e in self.entries]


@dataclass
class Work:
    """A refused batch's groups still to send, first to last."""

    batch: Batch
    groups: list[Group]

    def encode(self) -> str:
        return json.dumps({"entries": [[e.sku, e.count, e.stamp_ms, e.first_ms] for g in self.groups
                                       for e in g.entries],
                           "groups": [[g.skus, g.strict, g.depth] for g in self.groups],
                           "cap_ms": self.batch.cap_ms, "floor_ms": self.batch.floor_ms})

    @classmethod
    def decode(cls, target_name: str, batch_id: str, raw: str | bytes) -> "Work":
        data = json.loads(raw)
        entries = {sku: Entry(sku, int(count), int(stamp), int(first)) for sku, count, stamp, first in data["entries"]}
        groups = [Group([entries[s] for s in skus], bool(strict), int(depth)) for skus, strict, depth in data["groups"]]
        return cls(Batch(target_name, batch_id, tuple(entries.values()), data.get("cap_ms"), data.get("floor_ms")),
                   groups)


@dataclass(frozen=True)
class Split:
    dead: int
    groups: list[Group]
    stop: float | None = None  # give up on the whole batch for now, retry after this many s


class Isolation:
    def __init__(self, parts: FlushParts) -> None:
        self.parts = parts

    def start(self, batch: Batch, exc: MarketBadRequest, slot: Ticket,
              keep_going: Callable[[], bool]) -> Tally:
        """The batch's request (sent under ``slot``) was refused with ``exc``: deliver what the Market
        accepts, dead-letter what it refuses, park the rest when the quota makes it wait."""
        split = self._split(batch, list(batch.entries), exc, Group([], False, 0))
        tally = Tally(dead=split.dead, wait=split.stop)
        if split.stop is not None:
            return tally
        return tally.add(self._run(Work(batch, split.groups), slot, keep_going))

    def resume(self, t: Target, keep_going: Callable[[], bool], fields: Sequence[bytes] | None = None) -> Tally | None:
        """Go on with one piece of parked work of the target; None when there is none.
        ``fields``: the parked work's ids if the caller has just read them."""
        p = self.parts
        parked = keys.isolating(t.name)
        for field in p.redis.hkeys(parked) if fields is None else fields:
            pipe = p.redis.pipeline(transaction=True)
            pipe.hget(parked, field)
            pipe.hdel(parked, field)
            raw, claimed = pipe.execute()
            if not claimed or raw is None:
                continue  # a sibling flush claimed it first
            work = Work.decode(t.name, field.decode() if isinstance(field, bytes) else field, raw)
            if not p.buffer.extend(work.batch, p.options.lease_s):
                self._lost(work.batch)
                continue
            cost = p.cost(t, len(work.groups[0].entries))
            slot = p.policy.admit(p.call(t, cost, cost))
            if not isinstance(slot, Ticket):
                return Tally(wait=self._park(work, slot))
            try:
                return self._run(work, slot, keep_going, first=slot.grant)
            finally:
                p.policy.release(slot)
        return None

    # --- the work ---------------------------------------------------------------------------------

    def _run(self, work: Work, slot: Ticket, keep_going: Callable[[], bool],
             first: Grant | None = None) -> Tally:
        p, batch, tally = self.parts, work.batch, Tally()
        t = p.bound(target(batch.target))
        client = p.client_for(t)
        while work.groups:
            group = work.groups[0]
            cost = p.cost(t, len(group.entries))
            grant, first = first or p.limiter.acquire(t.method, t.quota_key, cost, cost), None
            if not grant.granted:
                tally.wait = self._park(work, max(MIN_WAIT_S, grant.wait_s))
                return tally
            if not p.buffer.extend(batch, p.options.lease_s):
                # Our lease ran out and the batch was reclaimed: its SKUs are someone else's now
                # (maybe with newer values); sending ours could overwrite those.
                p.limiter.settle(grant, 0)
                self._lost(batch)
                return tally
            if not keep_going():  # our task slot ran out: whoever flushes the target next goes on
                p.limiter.settle(grant, 0)
                self._park(work, 0.0)
                return tally
            if not self._hold_slot(slot):  # our parallel slot expired and all are taken
                p.limiter.settle(grant, 0)
                tally.wait = self._park(work, MIN_WAIT_S)
                return tally
            work.groups.pop(0)
            sent = time.monotonic()
            cap, floor = work.batch.cap_ms, work.batch.floor_ms
            reply = p.policy.send(Ticket(slot.call, grant, slot.lease_id),
                                  lambda _units: t.send(client, levels(client.clock, group.entries, group.strict, cap,
                                                                       floor)))
            tally.requests += 1
            if isinstance(reply.error, MarketBadRequest):
                split = self._split(batch, group.entries, reply.error, group)
                tally.dead += split.dead
                if split.stop is not None:
                    tally.wait = self._give_back(work, work.groups, split.stop)
                    return tally
                work.groups[0:0] = split.groups
            elif not reply.ok:
                dead, wait = failed(p, batch, group.skus, reply, slot, sent)
                tally.dead += dead
                if wait is not None:
                    tally.wait = self._give_back(work, work.groups, wait)
                    return tally
                # Settled for good (dead): its siblings go back untried, the split above goes on.
                siblings = 0
                while siblings < len(work.groups) and work.groups[siblings].depth == group.depth:
                    siblings += 1
                self._give_back(work, work.groups[:siblings], None)
                del work.groups[:siblings]
            else:
                tally.delivered += succeeded(p, batch, group.skus)
        return tally

    def _split(self, batch: Batch, entries: list[Entry], exc: MarketBadRequest, parent: Group) -> Split:
        t = target(batch.target)
        clock_errors = [e for e in exc.errors if is_clock_refusal(e.message)]
        poison = [e for e in exc.errors if not is_clock_refusal(e.message)]
        named = _named(t, entries, [err.message for err in poison])
        depth = parent.depth + 1
        if clock_errors and not poison:
            if parent.strict:
                self.parts.buffer.settle(batch, "returned", [e.sku for e in entries])
                log.error("%s: the Market refused our stamps twice (%s); returned to the buffer, check "
                          "this machine's clock", batch.target, clock_errors[0].message)
                return Split(0, [], CLOCK_RETRY_S)
            return Split(0, [Group(entries, True, depth)])
        if len(entries) == 1 or named:
            culprits = [e for e in entries if e.sku in named] if named else entries
            reason = "; ".join(e.message for e in poison if any(t.sku_of(c.sku) in e.message for c in culprits)) \
                or exc.message
            dead = self.parts.buffer.settle(batch, "dead", [e.sku for e in culprits], reason=reason)
            rest = [e for e in entries if e not in culprits]
            return Split(dead, [Group(rest, parent.strict, depth)] if rest else [])
        half = len(entries) // 2
        return Split(0, [Group(entries[:half], parent.strict, depth), Group(entries[half:], parent.strict, depth)])

    # --- parking, giving back ------------------------------------------------------------------------

    def _park(self, work: Work, wait: float) -> float | None:
        """Keep the batch leased through ``wait`` and the request after it, and leave the work for
        the target's next flush; the wait, or None if the lease was already lost."""
        p = self.parts
        if not p.buffer.extend(work.batch, p.options.lease_s + wait):
            self._lost(work.batch)
            return None
        p.redis.hset(keys.isolating(work.batch.target), work.batch.batch_id, work.encode())
        p.watch_lease(target(work.batch.target), p.options.lease_s + wait)
        return wait

    def _give_back(self, work: Work, groups: list[Group], wait: float | None) -> float | None:
        untried = [sku for g in groups for sku in g.skus]
        if untried:
            self.parts.buffer.settle(work.batch, "returned", untried)
        return wait

    def _hold_slot(self, slot: Ticket) -> bool:
        """Keep (or, if it expired, retake) our parallel slot; False if none is free."""
        gate, limiter = slot.call.gate, self.parts.limiter
        if gate is None or slot.lease_id is None:
            return True
        if limiter.renew(gate, slot.lease_id, self.parts.options.lease_s):
            return True
        lease = limiter.lease(gate)
        if lease is None:
            return False
        slot.lease_id = lease
        return True

    @staticmethod
    def _lost(batch: Batch) -> None:
        log.warning("%s: batch %s was reclaimed while isolating a refused SKU; "
                    "leaving it to whoever holds it now", batch.target, batch.batch_id)


def _named(t: Target, entries: list[Entry], messages: list[str]) -> set[str]:
    """Keys of the entries a refusal names: its SKU quoted, and for a business target, when the
    message names warehouses, on one of them (the same SKU on another warehouse is innocent)."""
    out: set[str] = set()
    for message in messages:
        skus = set(_QUOTED.findall(message))
        warehouses = {int(w) for w in _WAREHOUSE.findall(message)} if t.per_request else set()
        for e in entries:
            if t.sku_of(e.sku) in skus and (not warehouses or split_key(e.sku)[0] in warehouses):
                out.add(e.sku)
    return out
