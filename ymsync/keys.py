"""Every Redis key ymsync uses, built in one place. All share the ``ymsync:`` prefix.

Per campaign ``{c}``:
  buf:{c}        hash  sku -> "count|stamp_ms|first_ms"   pending values (latest wins)
  queue:{c}      list  sku                                pending SKUs in arrival order, each once
  hwm:{c}        hash  sku -> "stamp_ms|count"            newest value ever accepted (bounded by catalog)
  busy:{c}       set   sku                                SKUs inside an in-flight batch
  inflight:{c}:{batch} hash, like buf                     one batch being sent
  batches:{c}    zset  batch -> lease deadline ms         in-flight batches (expired = worker died)
  delivered:{c}  hash  sku -> "count|stamp_ms|at_ms"      last value the Market accepted
  dead:{c}       hash  sku -> JSON                        dead letters with reason and time (bounded by catalog)
  invalid:{c}    list  JSON                               invalid input from foreign producers, newest 10,000
  stats:{c}      hash  counters
  flush:{c}      string (TTL)                             a flush is scheduled or running
  halt:{c}       string (TTL)                             401/403: no traffic until it expires
Shared:
  campaigns      set                                      campaigns ymsync has seen
  wake           list                                     campaigns whose flush must be scheduled
  quota:{method}:{key} zset + quota:{method}:{key}:used   sliding-window log and its running sum
  lease:{key}    zset  lease -> expiry ms                 parallel slots
  pause:{method}:{key} string (TTL)                       a 420 told everyone to wait
"""

from __future__ import annotations

PREFIX = "ymsync:"
CAMPAIGNS = PREFIX + "campaigns"
WAKE = PREFIX + "wake"
SWEEP_LOCK = PREFIX + "sweep-lock"


def campaign_keys(campaign_id: int) -> dict[str, str]:
    c = int(campaign_id)
    return {
        name: f"{PREFIX}{name}:{c}"
        for name in ("buf", "queue", "hwm", "busy", "batches", "delivered", "dead", "invalid", "stats", "flush",
                     "halt")
    }


def inflight(campaign_id: int, batch: str) -> str:
    return f"{PREFIX}inflight:{int(campaign_id)}:{batch}"


def quota(method: str, key: str) -> str:
    return f"{PREFIX}quota:{method}:{key}"


def lease(key: str) -> str:
    return f"{PREFIX}lease:{key}"


def pause(method: str, key: str) -> str:
    return f"{PREFIX}pause:{method}:{key}"


# === Report jobs (issue 11 item 6, issue 12 item 5; owned by the reports side) ====================
# Kept apart from the stock keys above. Every key of one report job shares the job's hash tag
# ``{job_id}`` so a script may touch several of them (Redis Cluster slots); the due-time index and
# the scheduler's lock and wake list are global and are only ever written in their own calls.
#
#   report:{job}:job     hash    state, sig, mode, due, token, sent, outcome   (TTL: job deadline
#                                + broker visibility timeout; shortened once the result is reported)
#   report:{job}:events  list    status transitions the CLI shows                  (TTL 24 h, 200 kept)
#   report:due           zset    job -> due ms (Redis clock)   index of report:{job}:job's "due"
#   report:sched-lock    string  (PX)                          the one worker whose thread dispatches
#   report:wake          list    at most one element           "a due time within the next second"
#   report:req:{digest}  string  (TTL)                         identical-request dedup record

REPORT_DUE = PREFIX + "report:due"
REPORT_SCHEDULER_LOCK = PREFIX + "report:sched-lock"
REPORT_WAKE = PREFIX + "report:wake"


def report_job(job_id: str) -> str:
    return f"{PREFIX}report:{{{job_id}}}:job"


def report_events(job_id: str) -> str:
    return f"{PREFIX}report:{{{job_id}}}:events"


def report_dedup(digest: str) -> str:
    return f"{PREFIX}report:req:{digest}"
REPORT_EVENTS_PATTERN = PREFIX + "report:{*}:events"  # SCAN pattern for every job's events
