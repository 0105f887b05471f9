"""One stock request's Redis work in two calls: :meth:`RequestPath.begin` and :meth:`RequestPath.end`.

``begin`` renews the flush task's slot, checks pause, halt and backoff, lets a part-filled v3
request wait for company, takes quota and a parallel lease and takes the batch, and says why not
when it cannot; ``end`` settles a delivered batch, its quota (with the reply's own count of it),
the failure streak and the lease. Each is one script (request_lua.py) when its keys share a Redis
Cluster slot, which they do for campaign and business targets (keys.py), and always on one Redis.
A warehouse group sends through a campaign's quota and gate, another slot: on a Cluster its
steps then run one by one, as the parts' own calls, with the same outcome but more round trips.

Failures (a refusal, a 420, no reply) keep their own paths (flush_failure.py, isolation.py): they
are rare, and each needs decisions between its steps.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ymsync.engine.batch import Batch, taken_entries
from ymsync.engine.call_policy import MIN_WAIT_S, Call, Ticket
from ymsync.engine.flush_parts import FlushParts
from ymsync.engine.quota import UNLIMITED, Grant, MarketCount
from ymsync.engine.request_lua import BEGIN, END, END_BEGIN
from ymsync.engine.targets import Target
from ymsync.store import keys, pipelines
from ymsync.store.cluster import is_cluster


@dataclass(frozen=True)
class Begun:
    """What :meth:`RequestPath.begin` found. ``status``: ``batch`` (``ticket`` and ``batch`` are
    set), or why not: ``slot`` (the task slot is not ours any more), ``empty`` (nothing pending),
    ``none`` (nothing takeable: every pending value waits for an older one in flight), ``held``,
    ``young``, ``quota`` or ``lease`` (then ``wait_s`` says for how long)."""

    status: str
    wait_s: float = 0.0
    ticket: Ticket | None = None
    batch: Batch | None = None
    pending: int = 0  # values still pending after the take
    now_ms: int = 0  # the Redis server's clock when the batch was taken
    freed: bool = False  # nothing began and the task slot was freed in the same call (Next.end_round)
    takeable: bool = False  # with ``freed``: some pending value could be taken as the slot was freed
    quota_ms: int = 0  # ``quota``: the wait as the limiter counted it (``wait_s`` is never under MIN_WAIT_S)


_WAITS = {"held", "young", "quota"}


@dataclass(frozen=True)
class RoundStart:
    """What a flush round looks at first, read in one pipeline: whether its task slot is still
    its own, how long the target is held off (pause, halt, backoff), its batches whose lease may
    have run out, its parked isolation work; and the server's clock."""

    held_s: float
    expired: list[str]
    parked: list[bytes]
    now_ms: int = 0
    slot_lost: bool = False  # the task's slot expired (the message waited too long): not ours to run
    begun: Begun | None = None  # the round's first request, begun in the same round trip (``first``)
    moved: str | None = None  # what the ``mark`` asked for names (group_move.py rule 4), if set


@dataclass(frozen=True)
class Next:
    """What :meth:`RequestPath.begin` needs to begin a request (and :meth:`RequestPath.end` to
    begin the next one in the same call)."""

    target: Target
    call: Call
    slot: str | None
    max_values: int
    max_bytes: int
    cap_ms: int
    end_round: bool = False  # if no request begins, free the task slot in the same call (the round ends)
    parked_first: bool = False  # with isolation work parked, begin nothing (status ``parked``): it goes first
    keep_for_ms: int = 0  # with ``end_round``: keep the slot when the quota frees within this long (the round waits)


@dataclass(frozen=True)
class _Prepared:
    keys: list[str]
    args: list[object]
    entry: str
    lease_id: str
    batch_id: str
    quota_on: bool


class RequestPath:
    def __init__(self, parts: FlushParts) -> None:
        self.parts = parts
        self._begin = parts.redis.register_script(BEGIN)
        self._end = parts.redis.register_script(END)
        self._end_begin = parts.redis.register_script(END_BEGIN)

    def _one_script(self, t: Target) -> bool:
        """Whether one script may touch every key of the request: always on one Redis; on a
        Cluster only when the quota's and the gate's keys share the target's slot."""
        if not is_cluster(self.parts.redis):
            return True
        method, tag = t.method, keys.hash_tag(keys.target_prefix(t.name))
        return keys.hash_tag(keys.quota(method, t.quota_key)) == tag and keys.hash_tag(keys.lease(t.gate)) == tag

    def start_round(self, t: Target, slot: str | None = None, due_ms: int = 0,
                    forget: tuple[str, ...] = (), first: Next | None = None, mark: str | None = None) -> RoundStart:
        """One round trip for what a round checks before its first request: the renewal of the
        flush task's ``slot`` (if any), the task's lateness after ``due_ms`` (if given: the
        scheduler's figures ride along), the look for a batch left by a dead worker, the marks
        to ``forget`` (deleted), the ``mark`` to read, the target's hold-offs, batches and parked work. Batches whose
        lease ran out by the slot renewal's server clock are candidates (RECLAIM checks again by
        its own); without a slot, every batch is. ``first``: the round's first request, begun last
        in the same pipeline on one Redis (:meth:`begin`'s verdict: it sees the same hold-offs)."""
        k, p = keys.target_keys(t.name), self.parts
        # A Cluster pipeline would not load a script on a master that lacks it (a promoted
        # replica): there the scripts go first, as their own calls.
        scripts_apart = is_cluster(p.redis)
        pipe = p.redis.pipeline(transaction=False)
        renewed: Any = None
        if slot:
            renewed = p.schedule.hold_at(t.name, slot, client=None if scripts_apart else pipe)
        if due_ms:
            p.schedule.record_lateness(due_ms, client=None if scripts_apart else pipe)
        # If this worker dies holding a batch of this round, the scheduler looks once its lease
        # can have run out (each look sets the next while a lease or slot is open: dispatch.py).
        # A look set earlier stands: for a scheduled round, the one set when its task was sent.
        p.schedule.watch_in(t.name, int(p.options.lease_s * 1000) + 100, client=None if scripts_apart else pipe)
        if slot and scripts_apart and not int(renewed):
            return RoundStart(0.0, [], [], slot_lost=True)
        for key in forget:
            pipe.delete(key)
        if mark:
            pipe.get(mark)
        pipe.zrange(k["batches"], 0, 999, withscores=True)
        for key in FlushParts.hold_keys(t):
            pipe.pttl(key)
        pipe.hkeys(keys.isolating(t.name))
        prepared = None
        if first is not None and not scripts_apart and self._one_script(first.target):
            prepared = self._prepare(first)
            self._begin(keys=prepared.keys, args=prepared.args, client=pipe)
        replies = pipe.execute() if scripts_apart else pipelines.raise_first(pipelines.execute(pipe))
        begun = self._begun(first, prepared, replies.pop()) if first is not None and prepared is not None else None
        if not scripts_apart:
            renewed = replies.pop(0) if slot else None
            del replies[:2 if due_ms else 1]  # the lateness count and the look
        del replies[:len(forget)]
        moved = replies.pop(0) if mark else None
        batches, *held, parked = replies
        now_ms = int(renewed) if slot else 0
        if slot and now_ms == 0:
            return RoundStart(0.0, [], [], slot_lost=True)
        expired = [b.decode() for b, deadline in batches if not slot or deadline <= now_ms]
        return RoundStart(max(0, *held) / 1000, expired, list(parked), now_ms, begun=begun,
                          moved=moved.decode() if moved else None)

    # --- begin ---------------------------------------------------------------------------------

    def begin(self, n: Next) -> Begun:
        """Everything one request needs, or why it cannot go now (see :class:`Begun`)."""
        if not self._one_script(n.target):
            return self._begin_by_parts(n)
        prepared = self._prepare(n)
        return self._begun(n, prepared, self._begin(keys=prepared.keys, args=prepared.args))

    def _prepare(self, n: Next) -> _Prepared:
        p, o, t, call = self.parts, self.parts.options, n.target, n.call
        quota = p.limiter.quotas.get(call.method)
        entry, batch_id = uuid.uuid4().hex[:16], uuid.uuid4().hex[:12]
        lease_id = uuid.uuid4().hex[:16] if call.gate is not None else ""
        k = keys.target_keys(t.name)
        qkey = keys.quota(call.method, call.quota_key)
        return _Prepared(
            [k["tasks"], k["buf"], k["queue"], k["busy"], k["batches"], k["flight"], k["floor"],
             k["halt"], k["backoff"], qkey, qkey + ":used", keys.pause(call.method, call.quota_key),
             keys.quota_market(call.method, call.quota_key), keys.lease(call.gate or t.name), keys.moved(t.name),
             keys.isolating(t.name)],
            [n.slot or "", p.schedule.task_ttl_ms, 1 if t.per_request else 0, int(o.batch_wait_s * 1000),
             n.max_values, n.max_bytes, int(o.lease_s * 1000), batch_id, n.cap_ms,
             1 if quota is not None else 0, quota.amount if quota else 0,
             p.limiter.period_ms(quota) if quota is not None else 0, p.cost(t, o.min_batch), entry,
             p.limiter.lease_ttl_ms, p.limiter.view_ttl_ms(quota), lease_id, p.limiter.max_parallel,
             p.limiter.lease_ttl_ms, 1 if n.end_round and n.slot else 0, 1 if n.parked_first else 0,
             n.keep_for_ms],
            entry, lease_id, batch_id, quota is not None)

    @staticmethod
    def _begun(n: Next, prepared: _Prepared, raw: list) -> Begun:
        status = raw[0].decode()
        if status != "batch":
            wait = int(raw[1]) / 1000 if status in _WAITS else MIN_WAIT_S if status == "lease" else 0.0
            freed = len(raw) == 4 and raw[2] == b"freed"
            return Begun(status, max(MIN_WAIT_S, wait) if status == "quota" else wait, freed=freed,
                         takeable=freed and int(raw[3]) == 1, quota_ms=int(raw[1]) if status == "quota" else 0)
        granted, remaining, window_used, pending, now_ms, floor = (int(x) for x in raw[1:7])
        call = n.call
        grant = Grant(call.method, call.quota_key, granted, 0.0, prepared.entry if prepared.quota_on else "",
                      remaining if prepared.quota_on else UNLIMITED, window_used)
        return Begun("batch", ticket=Ticket(call, grant, prepared.lease_id or None),
                     batch=Batch(n.target.name, prepared.batch_id, taken_entries(raw[7]), floor if n.cap_ms else None,
                                 floor or None),
                     pending=pending, now_ms=now_ms)

    def _begin_by_parts(self, n: Next) -> Begun:
        """:meth:`begin` as the parts' own calls (keys in several Cluster slots)."""
        p, o, t, c = self.parts, self.parts.options, n.target, n.target.name
        if n.slot and not p.schedule.hold(c, n.slot):
            return Begun("slot")
        pending = p.buffer.pending(c)
        if pending == 0:
            return Begun("empty")
        if t.per_request and pending < n.max_values:
            waited = p.buffer.oldest_pending_age_s(c)
            if waited < o.batch_wait_s:
                return Begun("young", o.batch_wait_s - waited)
        want = p.cost(t, min(n.max_values, pending))
        call = n.call
        ticket = p.policy.admit(Call(call.method, call.quota_key, call.gate, call.clock, want=want,
                                     minimum=p.cost(t, min(want, o.min_batch))))
        if not isinstance(ticket, Ticket):
            return Begun("quota", ticket)
        # A 420 may have paused everyone since the grant (or a 401 halted the target, a 5xx started
        # a backoff): checked holding a lease, so no request slips through the gap.
        held = p.held_off(t)
        if held > 0:
            p.policy.cancel(ticket)
            return Begun("held", held)
        batch = p.buffer.take(c, n.max_values if t.per_request else ticket.grant.granted, n.max_bytes, o.lease_s,
                              n.cap_ms)
        if batch is None:
            p.policy.cancel(ticket)
            return Begun("none")
        seconds, micros = p.redis.time()
        return Begun("batch", ticket=ticket, batch=batch, pending=p.buffer.pending(c),
                     now_ms=int(seconds) * 1000 + int(micros) // 1000)

    # --- end -----------------------------------------------------------------------------------

    def end(self, t: Target, ticket: Ticket, batch: Batch, spent: int, market: MarketCount | None,
            then: Next | None = None) -> tuple[int, Begun | None]:
        """Settle a delivered batch: its values, the failure streak, the quota (``spent`` units,
        with the reply's count of it) and the lease; and begin the ``then`` request in the same
        call. (values settled, the next request's :class:`Begun` or None if not asked)."""
        p = self.parts
        if not self._one_script(t) or (then is not None and not self._one_script(then.target)):
            n = p.buffer.settle(batch, "delivered")
            p.redis.hdel(keys.target_keys(batch.target)["stats"], "failstreak")
            p.limiter.settle(ticket.grant, spent, market)
            p.policy.release(ticket)
            return n, (self.begin(then) if then is not None else None)
        k = keys.target_keys(batch.target)
        call, grant = ticket.call, ticket.grant
        settle = p.limiter.settle_args(grant, spent, market)
        qkey = keys.quota(call.method, call.quota_key)
        end_keys = [keys.inflight(batch.target, batch.batch_id), k["busy"], k["batches"], k["buf"], k["queue"],
                    k["dead"], k["stats"], k["retired"], qkey, qkey + ":used",
                    keys.quota_market(call.method, call.quota_key), keys.lease(call.gate or t.name), k["flight"]]
        end_args = [batch.batch_id, "delivered", "", 1 if settle is not None else 0, *(settle or [0] * 12),
                    ticket.lease_id or "", int(ticket.keep_s * 1000)]
        # No SKUs named: the script settles the batch it holds, all of it (the request sent it whole).
        if then is None:
            n, changed = p.buffer.call_in_generation(self._end, batch.target, end_keys, (keys.delivered,), end_args)
            begun = None
        else:
            prepared = self._prepare(then)
            raw = p.buffer.call_in_generation(self._end_begin, batch.target, [*end_keys, *prepared.keys],
                                              (keys.delivered,), [*end_args, *prepared.args])
            n, changed = raw[0], raw[1]
            begun = self._begun(then, prepared, raw[2:])
        if changed:
            p.limiter.warn_limit_changed(grant, market)
        return int(n), begun
