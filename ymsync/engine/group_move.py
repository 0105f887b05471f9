"""A campaign found in a warehouse group: what its own target (``c1001``) still holds moves into
the group's target (``g1001``), and the group never sends past a value of it still in flight.

When it happens: a campaign may be pushed to before ymsync knows its group (the Market's groups are
discovered from getPagedWarehouses, cached; a configured group may be added later). From the
moment the campaign is known to be in a group, pushes naming it go to the group target
(``group_target.campaign_stock_target``), and the values queued under the campaign target before
then follow this rule:

1. **Pending values move with their stamps.** A flush of the campaign target no longer sends: it
   copies each pending value into the group target through the group's ordinary ingest (latest
   stamp wins across the group: a newer group value keeps, an older one is replaced), then deletes
   from the campaign target exactly the values it copied (one script; a value rewritten meanwhile
   by a producer that had not yet seen the group stays, and moves on the next look). A crash
   between the two steps moves the same values again, which the group drops as repeats.
2. **In flight, the group waits.** From the first look, nothing more is taken from the campaign
   target (``keys.moved``: its take refuses; a round of it that passed its own look before the
   group was known ends there). A batch of it already taken goes on to settle where it is; until
   no batch of any of its campaigns is in flight, the group target sends nothing. So a value the
   campaign still carries can never land after a newer one the group sent. A value such a batch
   returns (a failure) lands in the campaign's pending values and moves by rule 1, where the
   group's newer value outranks it.
3. **What the Market already accepted carries over once.** With nothing of the campaign in
   flight, its delivered records (what the Market accepted through it within the horizon) are
   merged into the group's latest-wins and delivered records, once per campaign
   (``keys.absorbed``): a push to the group stamped older than a value the campaign delivered is
   then refused as stale, and reconciliation of the group knows what was delivered. A pending
   group value older than such a record (and not in flight) is dropped.
4. **A group that dissolves gives it back.** A campaign in no group whose target still carries
   the mark of its old group sends nothing (its TAKE refuses) until rules 1-3 have run the other
   way: the group target's pending values move into the campaign target, its batches in flight
   settle, its delivered records merge into the campaign's; then the mark goes. The group target
   itself, when its round comes, moves out the same way and sends nothing more. So the group's
   values and the campaign's own never travel side by side, and a push stamped older than what
   the group delivered is refused as stale. Its values go to the group's first campaign (the
   group target's name); the other campaigns of the old group get their own pushes from then on.
5. **A group headed anew takes over its former target.** A group target one of its campaigns
   headed before (``g1001`` once ``1000`` joins ahead of ``1001``: the group's target is ``g1000``
   from then on) is the same stock: it moves in by rules 1-3 as a campaign does, looked at by the
   group's own round, so ``g1000`` sends nothing while ``g1001`` has a batch in flight.
6. **A group split off another waits for it.** A group that carries a campaign another group
   target sent for last (``1001`` leaves ``1001, 1002, 1003``: ``g1002`` carries 1002 and 1003 from
   then on, and ``g1001``'s values go to ``c1001`` by rule 4) sends nothing while that target has
   a batch in flight: it was sending the same stock (``keys.carrier_of``, written by each group
   round for its campaigns).

Every script touches one target's keys (one hash tag), so this runs on a Redis Cluster too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ymsync.engine.buffer import StockBuffer
from ymsync.engine.group_target import GroupTarget, campaign_stock_target, group_target_of
from ymsync.engine.targets import CampaignTarget, Target
from ymsync.store import group_lua, keys

_CHUNK = 1000


@dataclass(frozen=True)
class Gate:
    """What a flush round does before sending: ``stop`` ends the round (``next_in`` as in
    FlushResult: None, nothing more to do; else come back after that many seconds)."""

    stop: bool = False
    next_in: float | None = None


GO = Gate()
_ASK = object()  # gate(): look the campaign's group up


class GroupMove:
    """``wait_s``: how soon a group whose campaign still has a batch in flight looks again."""

    def __init__(self, buffer: StockBuffer, *, wait_s: float = 0.25) -> None:
        self.buffer, self.redis, self.wait_s = buffer, buffer.redis, wait_s
        self._merge = self.redis.register_script(group_lua.MERGE_DELIVERED)
        self._drop = self.redis.register_script(group_lua.DROP_MOVED)

    @staticmethod
    def group_of(t: Target) -> str | None:
        """The group target a campaign target's campaign is in (None: in none, or not a campaign).
        A discovered group is read from Redis: a round asks once and hands the answer on."""
        return group_target_of(t.id) if isinstance(t, CampaignTarget) else None

    def gate(self, t: Target, group: str | None | object = _ASK, moved: str | None = None) -> Gate:
        """For a campaign target whose campaign is in a group: move its values, wake the group, stop.
        For a group target: stop while a campaign of it still has a batch in flight. ``group``:
        :meth:`group_of` as the round found it (asked here when not given). ``moved``: the group
        the campaign target's mark names (read as the round started): in no group now, its old
        group's state comes back first (rule 4). A dissolved group target moves itself out."""
        if isinstance(t, CampaignTarget):
            if group is _ASK:
                group = self.group_of(t)
            if not isinstance(group, str):
                return self._leave(t, moved) if moved else GO
            wait = self.absorb(t.id, group)
            self.buffer.schedule.activate(group, 0)
            return Gate(True, wait)
        if isinstance(t, GroupTarget):
            if len(t.campaigns) < 2:  # its group is gone (or has another first campaign now)
                dest = campaign_stock_target(t.id)
                if dest == t.name:
                    return GO
                wait = self._absorb(t.name, dest)
                self.buffer.schedule.activate(dest, 0)
                return Gate(True, wait)
            wait = self.members(t)
            return Gate(True, wait) if wait is not None else GO
        return GO

    def _leave(self, t: CampaignTarget, group: str) -> Gate:
        """Rule 4 for a campaign target whose mark names ``group`` while it is in no group: the
        group's values and records come back (its TAKE refuses meanwhile), then the mark goes and
        the campaign sends again: at once, or after the group's batches in flight have settled."""
        c = t.name
        wait = self._absorb(group, c)
        if wait is not None:
            return Gate(True, wait)
        self.redis.delete(keys.moved(c), keys.absorbed(c))  # a later join merges its records again
        return Gate(True, 0.0)

    def members(self, t: GroupTarget) -> float | None:
        """Seconds to wait while a campaign of the group, or a group target one of them headed
        before, has a batch in flight, else None (what each holds moved here first)."""
        campaigns = t.campaigns
        if len(campaigns) < 2:
            return None
        pipe = self.redis.pipeline(transaction=False)
        for c in campaigns:
            k = keys.target_keys(keys.campaign_target(c))
            pipe.hlen(k["buf"])
            pipe.zcard(k["batches"])
            pipe.get(keys.absorbed(keys.campaign_target(c)))
            pipe.get(keys.carrier_of(keys.campaign_target(c)))
        # The group as it was headed by another of its campaigns (g1001 before 1000 joined ahead of
        # 1001): the same stock, so its values move here and its batches in flight settle before
        # this group sends (rules 1-3, as for a campaign). Its own round would move it too, but may
        # not come before this one.
        g = self.buffer.generation_now()
        former = [keys.group_target(c) for c in campaigns[1:]]
        for name in former:
            k = keys.target_keys(name)
            pipe.exists(k["buf"], k["batches"])
            pipe.exists(*(keys.delivered(name, generation) for generation in range(g - 2, g + 2)))
            pipe.get(keys.absorbed(name))
        replies = pipe.execute()
        carriers: dict[int, bytes | None] = {}
        for i, c in enumerate(campaigns):
            pending, batches, absorbed, carriers[c] = replies[4 * i:4 * i + 4]
            if pending or batches or absorbed != t.name.encode():
                wait = self.absorb(c, t.name)
                if wait is not None:
                    return wait
        for i, name in enumerate(former):
            holds, records, absorbed = replies[4 * len(campaigns) + 3 * i:4 * len(campaigns) + 3 * i + 3]
            if holds or (records and absorbed != t.name.encode()):
                wait = self._absorb(name, t.name)
                if wait is not None:
                    return wait
        return self._carried_before(t, carriers)

    def _carried_before(self, t: GroupTarget, carriers: dict[int, bytes | None]) -> float | None:
        """Rule 6: seconds to wait while a group target that last sent a campaign's stock (one this
        group does not take over: 1001 left ``g1001``, and ``g1002`` now carries 1002 and 1003) has a
        batch in flight; else None, and each campaign is marked as this group's."""
        others = {v.decode() for v in carriers.values() if v is not None and v != t.name.encode()}
        if others:
            pipe = self.redis.pipeline(transaction=False)
            for name in sorted(others):
                pipe.zcard(keys.target_keys(name)["batches"])
            if any(pipe.execute()):
                return self.wait_s
        pipe = self.redis.pipeline(transaction=False)
        for c, carrier in carriers.items():
            if carrier != t.name.encode():
                pipe.set(keys.carrier_of(keys.campaign_target(c)), t.name, px=self.buffer.horizon_ms)
        pipe.execute()
        return None

    @staticmethod
    def stale_marks(t: Target) -> tuple[str, ...]:
        """Marks to delete as a round starts: those of a group target that is a group again (a
        dissolution moved it out into a campaign once; its values go out through it again)."""
        return (keys.moved(t.name), keys.absorbed(t.name)) if isinstance(t, GroupTarget) and len(t.campaigns) > 1 \
            else ()

    @staticmethod
    def mark_of(t: Target, group: str | None) -> str | None:
        """The key of the mark a campaign target in no group may still carry (read as its round
        starts, for rule 4), else None."""
        return keys.moved(t.name) if isinstance(t, CampaignTarget) and group is None else None

    def absorb(self, campaign_id: int, group: str) -> float | None:
        """Rules 1-3 for one campaign; seconds to wait while a batch of it is in flight, else None."""
        return self._absorb(keys.campaign_target(campaign_id), group)

    def _absorb(self, source: str, dest: str) -> float | None:
        """Rules 1-3 from target ``source`` into target ``dest``."""
        # First, nothing more is taken from the source (TAKE refuses while ``moved`` is set): a
        # round of it that began before the move was known could otherwise take a batch after the
        # check for batches in flight below and deliver it after the records moved.
        self.redis.set(keys.moved(source), dest, px=self.buffer.horizon_ms)
        self.buffer.reclaim_expired(source)  # a dead worker's batch comes back to pending, and moves
        self._move_pending(source, dest)
        if self.redis.zcard(keys.target_keys(source)["batches"]):
            return self.wait_s
        if self.redis.get(keys.absorbed(source)) != dest.encode():
            self._merge_delivered(source, dest)
            self.redis.set(keys.absorbed(source), dest, px=self.buffer.horizon_ms)
        return None

    def _move_pending(self, source: str, dest: str) -> int:
        raw = self.redis.hgetall(keys.target_keys(source)["buf"])
        if not raw:
            return 0
        values = []
        for sku, value in raw.items():
            count, stamp, _first = value.split(b"|")
            values.append((sku.decode(), int(count), int(stamp)))
        self.buffer.ingest(dest, values)  # the destination's latest-wins judges each against its own
        buf, dropped = keys.target_keys(source)["buf"], 0
        pairs = list(raw.items())
        for start in range(0, len(pairs), _CHUNK):
            args = [x for pair in pairs[start:start + _CHUNK] for x in pair]
            dropped += int(self._drop(keys=[buf], args=args))
        return dropped

    def _merge_delivered(self, source: str, dest: str) -> int:
        skip = {s.decode() for s in self.redis.hkeys(keys.target_keys(source)["buf"])}  # moves by rule 1
        records = [(sku, *r) for sku, r in self.buffer.delivered(source).items() if sku not in skip]
        k, merged = keys.target_keys(dest), 0
        for start in range(0, len(records), _CHUNK):
            args = [str(x) for rec in records[start:start + _CHUNK] for x in rec]
            merged += int(self.buffer.call_in_generation(self._merge, dest, [k["buf"], k["busy"], k["flight"]],
                                                          (keys.hwm, keys.delivered), args))
        return merged


__all__ = ["GO", "Gate", "GroupMove"]
