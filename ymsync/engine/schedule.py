"""Schedule: when each stock target's next flush should run, kept in Redis.

Stock work is scheduled by due time, not by countdown messages: a target with work gets an entry
in one sorted set (``due``), and one scheduler at a time (any worker can take over) sends a flush
task for each entry that has come due, as long as the target has a free task slot. A flush that
must wait (quota, 420 pause, backoff) writes its due time back and ends; nothing sits in a
broker with an ETA, so a killed worker takes no scheduled work with it.

Task slots: at most ``max_parallel`` flush tasks per target exist at any moment (queued, reserved
or running). The scheduler claims a slot (a token with an expiry in the target's ``tasks`` set)
before it sends a task; the task releases it when it ends. A slot whose task died expires.

Due-time writes, and why they are safe to race:
- ``activate`` (producers, fan-out, work left over): the entry is added if there is none (NX),
  so an existing later due time (a quota wait) stands.
- ``defer`` (a flush that must wait): the later of the existing and the new time wins (GT).
- When every slot of a due target is taken, the scheduler drops the entry: each running flush,
  after releasing its slot, re-activates the target if work is left, so nothing is stranded.

``check`` holds when to look at a target for what a dead worker left behind: an expired batch
lease (its SKUs go back to the buffer) or an expired task slot. Its cost follows the work: the
scheduler only ever reads entries that are due.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis

from ymsync.store import keys, pipelines
from ymsync.store.cluster import is_cluster
from ymsync.store.lock import RedisLock
from ymsync.engine.quota_lua import LEASE_SCRIPT, RENEW_SCRIPT
from ymsync.engine.request_lua import ROUND_END

# KEYS: targets due nudge; ARGV: target, delay_ms. Registers the target (last write: now) and
# makes it due in delay_ms unless it is due already; a new entry nudges the scheduler.
_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
"""
_MAKE_DUE = """
if redis.call('ZADD', KEYS[2], 'NX', now + tonumber(ARGV[2]), ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], -8, -1)
end
return 1
"""
_ACTIVATE = _REGISTER + _MAKE_DUE

# KEYS: targets due nudge buf; ARGV: target, delay_ms. A producer's write ends with it, in the same
# pipeline (one Redis only: the target's values and the schedule in one script): the target is
# registered, and due only if values are pending (pushes that changed nothing make no task). 1 if due.
_ACTIVATE_IF_PENDING = _REGISTER + """
if redis.call('HLEN', KEYS[4]) == 0 then return 0 end
""" + _MAKE_DUE

# KEYS: due nudge; ARGV: target, delay_ms. The later due time wins (a wait must not be cut short).
_DEFER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = now + tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'GT', 'CH', at, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], -8, -1)
end
return at
"""

# KEYS: due check; ARGV: limit. The scheduler's look, one call a turn: {now, ms until the earliest
# entry not returned (-1: none), n due, target, score (n pairs), then the checks' pairs}.
_LOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local out, nxt = {now, -1, 0}, nil
for k = 1, 2 do
  local got = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  if k == 1 then out[3] = #got / 2 end
  for i = 1, #got do out[#out + 1] = got[i] end
  local later
  if #got / 2 < limit then
    later = redis.call('ZRANGEBYSCORE', KEYS[k], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  else
    later = {'', now}  -- more may be due: look again at once
  end
  if #later > 0 and (nxt == nil or tonumber(later[2]) < nxt) then nxt = tonumber(later[2]) end
end
if nxt then out[2] = math.max(0, nxt - now) end
return out
"""

# KEYS: due; ARGV: target, score. Remove the entry only if nobody moved it meanwhile.
_REMOVE_IF = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS: scheduler stats; ARGV: the due time (server ms) a flush task was sent for. A flush task
# began: how late after its due time, by the server's clock (a worker's clock may differ), counted
# into buckets. It rides in the round's first pipeline, so it costs no round trip of its own.
_LATENESS = """
local t = redis.call('TIME')
local late = math.max(0, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1]))
local bucket = 'late_gt_250ms'
if late <= 10 then bucket = 'late_le_10ms' elseif late <= 50 then bucket = 'late_le_50ms'
elseif late <= 250 then bucket = 'late_le_250ms' end
redis.call('HINCRBYFLOAT', KEYS[1], 'flush_tasks', 1)
redis.call('HINCRBYFLOAT', KEYS[1], 'late_ms_sum', late)
redis.call('HINCRBYFLOAT', KEYS[1], bucket, 1)
return late
"""


# KEYS: check; ARGV: target, in_ms. A look at the target in_ms from now by the server's clock,
# unless an earlier one is set (each look sets the next).
_WATCH_IN = """
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
return redis.call('ZADD', KEYS[1], 'LT', at, ARGV[1])
"""


@dataclass(frozen=True)
class Due:
    target: str
    due_ms: int  # when it came due (the score), for lateness figures and compare-and-remove
    now_ms: int


@dataclass(frozen=True)
class Look:
    """One turn's view of the schedule (:meth:`Schedule.look`): what is due and what is to be
    checked now, and how long until the next entry not among them (None: there is none)."""

    due: list[Due]
    checks: list[Due]
    next_in_s: float | None


class Schedule:
    """Due times, task slots and the scheduler lock. Knows nothing of Celery."""

    def __init__(self, client: redis.Redis, *, max_parallel: int = 4, task_ttl_s: float = 120.0,
                 queue_ttl_s: float | None = None) -> None:
        """``queue_ttl_s``: how long a claimed slot waits for its task to start (a task lost with a
        killed worker frees it then); ``task_ttl_s``: how long each ``hold`` keeps it (a running
        task holds it again before every request, so this covers one request)."""
        self.redis = client
        self.max_parallel = max_parallel
        self.task_ttl_ms = max(1, int(task_ttl_s * 1000))
        self.queue_ttl_ms = self.task_ttl_ms if queue_ttl_s is None else max(1, int(queue_ttl_s * 1000))
        self._activate = client.register_script(_ACTIVATE)
        self._activate_if_pending = client.register_script(_ACTIVATE_IF_PENDING)
        self._defer = client.register_script(_DEFER)
        self._remove_if = client.register_script(_REMOVE_IF)
        self._look = client.register_script(_LOOK)
        # A task slot is a lease in the target's ``tasks`` set, taken and renewed like the parallel
        # leases of the QuotaLimiter (the same scripts).
        self._release_and_look = client.register_script(ROUND_END)
        self._claim = client.register_script(LEASE_SCRIPT)
        self._hold = client.register_script(RENEW_SCRIPT)
        self._lateness = client.register_script(_LATENESS)
        self._watch_in = client.register_script(_WATCH_IN)
        self._lock = RedisLock(client, keys.SCHEDULER_LOCK)

    # --- due times -----------------------------------------------------------------------------

    def activate(self, target: str, delay_s: float = 0.0, *, client: redis.client.Pipeline | None = None) -> None:
        """The target has work: due in ``delay_s`` unless it is due already (then that stands)."""
        self._activate(keys=[keys.TARGETS, keys.DUE, keys.NUDGE], args=[target, max(0, int(delay_s * 1000))],
                       client=client)

    def activate_if_pending(self, target: str, delay_s: float, *, client: redis.client.Pipeline) -> None:
        """Queue in a producer's pipeline (one Redis, not a Cluster): register the target, and make it
        due in ``delay_s`` (unless due already) if values are pending for it."""
        self._activate_if_pending(keys=[keys.TARGETS, keys.DUE, keys.NUDGE, keys.target_keys(target)["buf"]],
                                  args=[target, max(0, int(delay_s * 1000))], client=client)

    def activate_registry_only(self, target: str) -> None:
        """Register the target (status and metrics list it) without making it due."""
        seconds, micros = self.redis.time()
        self.redis.zadd(keys.TARGETS, {target: int(seconds) * 1000 + int(micros) // 1000})

    def defer(self, target: str, delay_s: float) -> None:
        """The target must wait ``delay_s``: due then, or later if a later time is set already."""
        self._defer(keys=[keys.DUE, keys.NUDGE], args=[target, max(0, int(delay_s * 1000))])

    def due(self, limit: int = 100) -> list[Due]:
        """Entries due now (up to ``limit``): :meth:`look`'s."""
        return self.look(limit).due

    def look(self, limit: int = 100) -> Look:
        """:meth:`due` and :meth:`checks` (up to ``limit`` each) and the wait until the next entry
        of either, in one call; the next is 0 when a list came back full (more may be due)."""
        raw = self._look(keys=[keys.DUE, keys.CHECK], args=[limit])
        now, nxt, n = int(raw[0]), int(raw[1]), int(raw[2])
        pairs = [Due(raw[i].decode(), int(float(raw[i + 1])), now) for i in range(3, len(raw), 2)]
        return Look(pairs[:n], pairs[n:], None if nxt < 0 else nxt / 1000)

    def done(self, entry: Due, *, client: redis.client.Pipeline | None = None) -> bool:
        """Remove a due entry unless it was moved since it was read (with ``client``: queued in that
        pipeline, its reply is the pipeline's)."""
        return bool(self._remove_if(keys=[keys.DUE], args=[entry.target, entry.due_ms], client=client))

    def wait_for_nudge(self, timeout_s: float) -> bool:
        """Block until a producer nudges (a new due entry) or ``timeout_s`` passes."""
        if timeout_s <= 0:
            return bool(self.redis.lpop(keys.NUDGE))
        # One wake-up covers every nudge that came before it: the list goes once it is popped
        # (the DEL waits behind the BLPOP on the server, so both cost one round trip).
        pipe = self.redis.pipeline(transaction=False)
        pipe.blpop([keys.NUDGE], timeout=max(0.001, timeout_s))
        pipe.delete(keys.NUDGE)
        popped, _ = pipe.execute()
        return popped is not None

    # --- leftovers of dead workers ------------------------------------------------------------

    def watch(self, target: str, at_ms: int, *, client: redis.client.Pipeline | None = None) -> None:
        """Look at ``target`` for leftovers (expired leases or task slots) at ``at_ms`` (server ms),
        or earlier if an earlier look is set already (each look sets the next one)."""
        (client if client is not None else self.redis).zadd(keys.CHECK, {target: at_ms}, lt=True)

    def watch_in(self, target: str, in_ms: int, *, client: redis.client.Pipeline | None = None) -> None:
        """:meth:`watch`, ``in_ms`` from now by the server's clock (so it can ride in a pipeline)."""
        self._watch_in(keys=[keys.CHECK], args=[target, int(in_ms)], client=client)

    def checks(self, limit: int = 100) -> list[Due]:
        """Targets to check now (up to ``limit``): :meth:`look`'s."""
        return self.look(limit).checks

    def checked(self, entry: Due) -> bool:
        return bool(self._remove_if(keys=[keys.CHECK], args=[entry.target, entry.due_ms]))

    # --- task slots ----------------------------------------------------------------------------

    def claim(self, target: str) -> str | None:
        """A flush-task slot for ``target`` (a token), or None if ``max_parallel`` are out."""
        token = uuid.uuid4().hex[:12]
        return token if self._claim_slot(target, token) else None

    def _claim_slot(self, target: str, token: str, *, client: redis.client.Pipeline | None = None) -> int:
        return self._claim(keys=[keys.target_keys(target)["tasks"]], args=[self.max_parallel, self.queue_ttl_ms, token],
                           client=client)

    def claim_due(self, entry: Due) -> str | None:
        """For a due entry: :meth:`claim` a slot, remove the entry (:meth:`done`) and set a look at
        the target for when the slot's task could be lost (:meth:`watch`), in one round trip on
        one Redis (on a Cluster the slot lives under the target's tag: three calls). The entry
        goes whether a slot was free or not (when none is, each running flush makes the target
        due again as it ends with work left); a caller whose send then fails releases the slot and
        makes the target due again. The look stands either way: it is only a look."""
        token, watch_at = uuid.uuid4().hex[:12], entry.now_ms + self.queue_ttl_ms + 100
        if is_cluster(self.redis):
            claimed = self._claim_slot(entry.target, token)
            self.done(entry)
            self.watch(entry.target, watch_at)
        else:
            pipe = self.redis.pipeline(transaction=False)
            self._claim_slot(entry.target, token, client=pipe)
            self.done(entry, client=pipe)
            self.watch(entry.target, watch_at, client=pipe)
            claimed = pipelines.raise_first(pipelines.execute(pipe))[0]
        return token if claimed else None

    def hold(self, target: str, token: str) -> bool:
        """Keep a slot alive; False if it expired (its task must do nothing more)."""
        return int(self.hold_at(target, token)) > 0

    def hold_at(self, target: str, token: str, *, client: redis.client.Pipeline | None = None) -> int:
        """:meth:`hold`, answering the server's clock (ms) when held, 0 when the slot expired
        (with ``client``: queued in that pipeline, its reply is the pipeline's)."""
        return self._hold(keys=[keys.target_keys(target)["tasks"]], args=[token, self.task_ttl_ms], client=client)

    def record_lateness(self, due_ms: int, *, client: redis.client.Pipeline | None = None) -> None:
        """Count a flush task begun ``due_ms`` (server ms) after its due time came, by the server's clock."""
        self._lateness(keys=[keys.SCHEDULER_STATS], args=[int(due_ms)], client=client)

    def release(self, target: str, token: str) -> None:
        self.redis.zrem(keys.target_keys(target)["tasks"], token)

    def release_and_look(self, target: str, token: str) -> bool:
        """Free a slot, then say whether the target has a pending value that can be taken now (the
        buffer's TAKEABLE), in one script: a producer that wrote meanwhile either saw the slot
        free or wrote before the look."""
        k = keys.target_keys(target)
        return bool(self._release_and_look(keys=[k["tasks"], k["buf"], k["busy"]], args=[token]))

    def slots_expiry(self, target: str) -> int | None:
        """When the first live slot of ``target`` expires (server ms); None if none is live."""
        seconds, micros = self.redis.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        first = self.redis.zrangebyscore(keys.target_keys(target)["tasks"], f"({now}", "+inf", start=0, num=1,
                                         withscores=True)
        return int(first[0][1]) if first else None

    def tasks_out(self, target: str) -> int:
        """Slots held now (expired ones not counted)."""
        seconds, micros = self.redis.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        return int(self.redis.zcount(keys.target_keys(target)["tasks"], f"({now}", "+inf"))

    # --- the scheduler lock -------------------------------------------------------------------

    def lock(self, owner: str, ttl_s: float) -> bool:
        return self._lock.hold(owner, ttl_s)

    def unlock(self, owner: str) -> None:
        self._lock.release(owner)

    # --- registry ------------------------------------------------------------------------------

    def targets(self) -> list[str]:
        return [t.decode() for t in self.redis.zrange(keys.TARGETS, 0, -1)]

    def stats(self) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self.redis.hgetall(keys.SCHEDULER_STATS).items()}


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000
