"""Report jobs scheduled by due time in Redis, not in countdown messages.

A report job (generate → poll → download → parse) is a row in Redis: its :class:`PollState`,
the message that runs its next step (a JSON task signature, opaque here: the library never
imports Celery), a *mode* and a *due* time. An index zset (``keys.REPORT_DUE``) orders jobs by
due time; one scheduler at a time (:meth:`ReportJobs.due`, :meth:`ReportJobs.dispatch`) re-sends
the stored signature of each due job. So a job's future lives in Redis, not in a broker message
that a SIGKILLed worker takes with it for the broker's visibility timeout.

Modes (field ``mode``) and what ``due`` means in each:

=============  =====================================================================
``running``    a step holds the job; ``due`` is its lease (renewed while it works).
               A worker that dies mid-step lets the lease lapse: the job is due again.
``waiting``    between polls; ``due`` is when the next step should run.
``reporting``  the outcome is stored and the task is handing it to Celery (result
               backend, chord); ``due`` is a lease as for ``running``.
``done``       Celery has the result: any later message for the job is dropped.
=============  =====================================================================

``sent`` = 1 marks a job whose step the scheduler has sent (``due`` then says when to send it
again should that message be lost). A step may start (:meth:`claim`) only when the job is sent
or due: an early or duplicate message (a redelivery, a second dispatch) finds it busy or not
due and is dropped, so no step runs twice at once and no report is generated twice. Every write
a step makes is fenced by the token its claim got: a step that outlived its lease (another
delivery took over) cannot overwrite the newer state or report a second outcome.

All times are the Redis server's clock (``TIME`` inside the scripts), so workers whose clocks
disagree still agree on when a job is due. Each script touches only the job's own hash (the
index and the wake list are written in separate calls, for Redis Cluster): the index may lag
the hash for a moment, and :meth:`dispatch` re-reads the hash, so a stale index entry costs
one look, never a wrong dispatch.
"""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import redis

from ymsync.store import keys

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# ARGV: token, lease_ms, initial state JSON ('' = do not create), signature JSON, ttl_s
_CLAIM = _NOW + """
local mode = redis.call('HGET', KEYS[1], 'mode')
local lease = tonumber(ARGV[2])
if not mode then
  if ARGV[3] == '' then return {'missing', '', 0} end
  redis.call('HSET', KEYS[1], 'state', ARGV[3], 'sig', ARGV[4], 'mode', 'running', 'token', ARGV[1],
             'due', now + lease, 'sent', 0)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
  return {'run', ARGV[3], now + lease}
end
if mode == 'done' then return {'done', '', 0} end
local due = tonumber(redis.call('HGET', KEYS[1], 'due') or '0')
local sent = redis.call('HGET', KEYS[1], 'sent') == '1'
if not sent and due > now then
  if mode == 'waiting' then return {'early', '', due} end
  return {'busy', '', due}
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'due', now + lease, 'sent', 0)
if mode == 'reporting' then return {'report', redis.call('HGET', KEYS[1], 'outcome') or '', now + lease} end
redis.call('HSET', KEYS[1], 'mode', 'running')
return {'run', redis.call('HGET', KEYS[1], 'state') or '', now + lease}
"""

# ARGV: token, new mode, payload field, payload JSON, after_ms, ttl_s  -> due, or -1 if fenced out
_MOVE = _NOW + """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return -1 end
local mode = redis.call('HGET', KEYS[1], 'mode')
if mode ~= 'running' and mode ~= 'reporting' then return -1 end
local due = now + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'mode', ARGV[2], 'due', due, ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return due
"""

# ARGV: token, lease_ms -> due, or -1 if the step no longer holds the job
_RENEW = _NOW + """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return -1 end
local mode = redis.call('HGET', KEYS[1], 'mode')
if mode ~= 'running' and mode ~= 'reporting' then return -1 end
local due = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'due', due)
return due
"""

# ARGV: ttl_s. Celery holds the result now: keep only the fact, for late duplicates to find.
_REPORTED = """
if not redis.call('HGET', KEYS[1], 'mode') then return 0 end
redis.call('HSET', KEYS[1], 'mode', 'done')
redis.call('HDEL', KEYS[1], 'state', 'sig', 'token', 'due', 'sent')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# ARGV: resend_after_ms -> {verdict, payload, due, lateness_ms}
_DISPATCH = _NOW + """
local mode = redis.call('HGET', KEYS[1], 'mode')
if not mode or mode == 'done' then return {'gone', '', 0, 0} end
local due = tonumber(redis.call('HGET', KEYS[1], 'due') or '0')
if due > now then return {'later', '', due, 0} end
local sig = redis.call('HGET', KEYS[1], 'sig')
if not sig then return {'gone', '', 0, 0} end
local again = now + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'sent', 1, 'due', again)
return {'send', sig, again, now - due}
"""

# -> {now_ms, {job, score, job, score ...}, next_due_ms or -1}
_DUE = _NOW + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {now, due, nxt[2] or '-1'}
"""


@dataclass(frozen=True)
class Claim:
    """What a delivered message may do: ``run`` a step (``state``), ``report`` the stored
    ``outcome`` again, or nothing (``busy``, ``early``, ``done``, ``missing``)."""

    verdict: str
    token: str
    payload: dict[str, Any] | None = None
    due_ms: int = 0


@dataclass(frozen=True)
class Dispatch:
    verdict: str  # send | later | gone
    signature: dict[str, Any] | None
    due_ms: int
    lateness_ms: int


class ReportJobs:
    """The Redis side of report jobs; see the module docstring for the protocol."""

    def __init__(self, client: redis.Redis, *, lease_s: float = 30.0, resend_after_s: float = 60.0,
                 ttl_s: float = 7 * 3600.0, done_ttl_s: float = 7 * 3600.0) -> None:
        self.redis = client
        self.lease_ms = int(lease_s * 1000)
        self.resend_after_ms = int(resend_after_s * 1000)
        self.ttl_s, self.done_ttl_s = int(ttl_s), int(done_ttl_s)
        self._claim = client.register_script(_CLAIM)
        self._move = client.register_script(_MOVE)
        self._renew = client.register_script(_RENEW)
        self._reported = client.register_script(_REPORTED)
        self._dispatch = client.register_script(_DISPATCH)
        self._due = client.register_script(_DUE)

    # --- a step's side --------------------------------------------------------------------

    def claim(self, job_id: str, initial: dict[str, Any] | None, signature: dict[str, Any] | None) -> Claim:
        """Take the job for one step (creating it from ``initial`` if it is new)."""
        token = uuid.uuid4().hex
        verdict, payload, due = self._claim(
            keys=[keys.report_job(job_id)],
            args=[token, self.lease_ms, json.dumps(initial) if initial is not None else "",
                  json.dumps(signature, default=str) if signature is not None else "", self.ttl_s])
        verdict = _text(verdict)
        if verdict in ("run", "report", "busy", "early"):
            self._index(job_id, int(due))
        elif verdict == "done":
            self.redis.zrem(keys.REPORT_DUE, job_id)
        return Claim(verdict, token, json.loads(payload) if payload else None, int(due))

    def wait(self, job_id: str, token: str, state: dict[str, Any], wait_s: float) -> int:
        """Park the job until ``wait_s`` from now; the due time (ms), or -1 if the step lost the job."""
        due = int(self._move(keys=[keys.report_job(job_id)],
                             args=[token, "waiting", "state", json.dumps(state), max(0, int(wait_s * 1000)), self.ttl_s]))
        if due >= 0:
            self._index(job_id, due)
            if wait_s < 1.5:  # the scheduler may be sleeping up to a second: wake it
                pipe = self.redis.pipeline(transaction=False)
                pipe.lpush(keys.REPORT_WAKE, job_id)
                pipe.ltrim(keys.REPORT_WAKE, 0, 0)
                pipe.execute()
        return due

    def finish(self, job_id: str, token: str, outcome: dict[str, Any]) -> bool:
        """Store the outcome before Celery is told; False if the step lost the job meanwhile."""
        due = int(self._move(keys=[keys.report_job(job_id)],
                             args=[token, "reporting", "outcome", json.dumps(outcome), self.lease_ms, self.ttl_s]))
        if due >= 0:
            self._index(job_id, due)
        return due >= 0

    def reported(self, job_id: str) -> None:
        """Celery stored the result (and counted the chord part): later messages are dropped."""
        self._reported(keys=[keys.report_job(job_id)], args=[self.done_ttl_s])
        self.redis.zrem(keys.REPORT_DUE, job_id)

    @contextmanager
    def holding(self, job_id: str, token: str) -> Iterator[threading.Event]:
        """Renew the step's lease every third of it while the block runs (a long download);
        the yielded event is set if the lease was lost."""
        lost, stop = threading.Event(), threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_ms / 3000):
                try:
                    due = int(self._renew(keys=[keys.report_job(job_id)], args=[token, self.lease_ms]))
                except redis.RedisError:
                    continue  # the lease may still hold; try again at the next third
                if due < 0:
                    lost.set()
                    return
                self._index(job_id, due)

        thread = threading.Thread(target=renew, name=f"report-lease-{job_id[:8]}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            # A renewal in flight must land before the caller's next write, or its index entry
            # (the lease) could overwrite the sooner due time that write sets.
            thread.join()

    def get(self, job_id: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(keys.report_job(job_id)).items()}

    # --- the scheduler's side -------------------------------------------------------------

    def due(self, limit: int = 100) -> tuple[int, list[str], int | None]:
        """(Redis now ms, ids of due jobs, earliest due time ms or None)."""
        now, flat, nxt = self._due(keys=[keys.REPORT_DUE], args=[limit])
        ids = [_text(flat[i]) for i in range(0, len(flat), 2)]
        earliest = int(float(nxt)) if _text(nxt) != "-1" else None
        return int(now), ids, earliest

    def dispatch(self, job_id: str) -> Dispatch:
        """If the job is due, mark it sent and hand back its signature to send."""
        verdict, payload, due, late = self._dispatch(keys=[keys.report_job(job_id)], args=[self.resend_after_ms])
        verdict = _text(verdict)
        if verdict == "gone":
            self.redis.zrem(keys.REPORT_DUE, job_id)
        else:
            self._index(job_id, int(due))
        return Dispatch(verdict, json.loads(payload) if verdict == "send" else None, int(due), int(late))

    def _index(self, job_id: str, due_ms: int) -> None:
        self.redis.zadd(keys.REPORT_DUE, {job_id: due_ms})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["Claim", "Dispatch", "ReportJobs"]
