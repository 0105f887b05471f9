"""Every Redis key ymsync uses, built in one place. All share the ``ymsync:`` prefix.

Keys are grouped by hash tag (the part in braces) so that every script touches one Redis Cluster
slot: a stock target's keys share ``{<target>}``, and so do the quota, pause, Market view and
parallel gate of that target's identity (issue 18: everything one request touches is in one slot,
so one script can later do a request's whole work); quotas of no target (a token's report quota,
``all``) share ``{q:<key>}``; the scheduler's global keys share ``{sched}``. A producer's write to
a target and its due-time write to the scheduler are two calls.

A stock target is where one request goes and what one quota counts: ``c1001`` is campaign 1001
(values keyed by SKU), ``b7`` is business 7 (values keyed by warehouse and SKU, see targets.py).

Per target ``{t}``:
  ymsync:{t}:buf         hash  sku -> "count|stamp_ms|first_ms"   pending values (latest wins)
  ymsync:{t}:queue       list  sku                                pending SKUs in arrival order, each once
  ymsync:{t}:hwm:<gen>   hash  sku -> "stamp_ms|count"            a value that left without a record elsewhere
                                                                  (dead-lettered, retired, merged in): its stamp
                                                                  still outranks older pushes, by generation
  ymsync:{t}:delivered:<gen> hash sku -> "count|stamp_ms|at_ms"   last value the Market accepted, by generation
  ymsync:{t}:busy        set   sku                                SKUs inside an in-flight batch
  ymsync:{t}:flight      hash  batch -> msgpack [sku, value, ...] the batches being sent (values as in buf), in
                                                                  one key ingest can name: a push is judged
                                                                  against the value in flight (read only then)
  ymsync:{t}:inflight:<batch>  string or hash                     a batch an older release took (read and removed
                                                                  when it settles or its lease runs out)
  ymsync:{t}:batches     zset  batch -> lease deadline ms         in-flight batches (expired = worker died)
  ymsync:{t}:isolating   hash  batch -> JSON                      isolation of a refused batch, parked for quota
  ymsync:{t}:dead        hash  sku -> JSON                        dead letters (bounded by the catalogue)
  ymsync:{t}:invalid     list  JSON                               invalid input from foreign producers, newest 10,000
  ymsync:{t}:stats       hash  counters; and marks: failstreak (failures in a row), behind (a value
                                                                  was pushed behind an in-flight one: settling
                                                                  looks behind its batch until nothing is in flight)
  ymsync:{t}:retired     hash  sku -> stamp_ms                    SKUs retired (ymsync retire) while a value of
                                                                  theirs may be in flight; expires a horizon after
                                                                  the last retirement
  ymsync:{t}:tasks       zset  token -> expiry ms                 flush tasks sent and not finished (<= max_parallel)
  ymsync:{t}:halt        string (TTL)                             401/403: no traffic until it expires
  ymsync:{t}:backoff     string (TTL)                             failures: wait before the next try
  ymsync:{t}:floor       string (TTL 25 h)                        the highest stamp cap a batch took (stamps.py)
  ymsync:{t}:moved       string (TTL the horizon)                 a campaign target's group: no batch is taken
  ymsync:{t}:absorbed    string (TTL the horizon)                 its delivered records went to that group
  ymsync:{t}:carrier_of  string (TTL the horizon)                 a campaign target's: the group target that
                                                                  last sent its campaign's stock
  ymsync:{t}:quota:<method>  zset (TTL) "o|s|u:<entry>:<units>" -> stamp ms   the quota log of the
                                                                  identity's ``method`` (quota_lua.py)
  ymsync:{t}:quota:<method>:used  string (TTL)                    the sum of that log's units
  ymsync:{t}:pause:<method>  string (TTL)                         a 420 told everyone to wait
  ymsync:{t}:market:<method> hash (TTL a day past the last reply) the Market's own count of that quota,
                                                                  from its X-RateLimit-* headers
  ymsync:{t}:lease       zset  lease -> expiry ms                 the parallel gate (max_parallel requests
                                                                  in flight), across every method
Generations: a per-SKU record lives in the hash of the generation it was last written in; a
generation's hash expires three generations after it began, so a record idle past the horizon
goes without any sweep (see buffer.py).
Latest wins over one record per SKU, wherever its newest value is: pending (``buf``), in flight
(``flight``), delivered (``delivered``), or gone otherwise (``hwm``). A push older than the newest
of them is stale. Until issue 18 ingest also wrote every accepted value into ``hwm`` (a second
hash field created per update); the ``hwm`` records such a release wrote still count, so a batch
it left in flight (not in ``flight``) is judged by them.

Quota keys and their tags (``quota_tag``): the QuotaLimiter names a quota by a key. A campaign's
is its bare id (``1001``, kept from 0.1 and shared by its stock reads), tagged as the campaign
target ``{c1001}``; an identity (``b7``, ``g1001``, ``c1001``) is tagged as itself (so ``c1001``
and ``1001`` are one quota: both name campaign 1001's); any other key (a token's report quotas:
``all``, ``cabinet:<name>``) keeps ``{q:<key>}``, which no target's tag can equal:
ymsync:{q:k}:quota:<method> (+ ``:used``), ymsync:{q:k}:pause:<method>, ymsync:{q:k}:market:<method>,
as above. ``parse_quota``
gives back the key the limiter uses (``1001`` for ``{c1001}``), for metrics.
The parallel gate is named by the identity alone (``c1001``, ``b7``), never by the method: the
Market caps requests in flight per campaign on campaign paths and per business on business paths,
across every method, so a v3 push, a v3 read, the warehouse directory and a v3 report generate of
business 7 all lease ``ymsync:{b7}:lease``. A gate that is no identity (tests) keeps ``{g:<gate>}``.
Until issue 18 every quota key had its own ``{q:<key>}`` and every gate ``{g:<identity>}``;
``ymsync migrate`` moves such state (``legacy_tagged``).

Scheduler ``{sched}``:
  ymsync:{sched}:due      zset  target -> due ms        targets whose flush should be sent then
  ymsync:{sched}:check    zset  target -> ms            when to look for a dead worker's leftovers
  ymsync:{sched}:targets  zset  target -> last write ms every target ymsync has seen
  ymsync:{sched}:nudge    list                          wakes the scheduler early (kept short)
  ymsync:{sched}:lock     string (TTL)                  who drains the schedule now
  ymsync:{sched}:stats    hash                          scheduler counters (wake-up lateness...)
"""

from __future__ import annotations

import re

PREFIX = "ymsync:"
_SCHED = PREFIX + "{sched}:"
DUE = _SCHED + "due"
CHECK = _SCHED + "check"
TARGETS = _SCHED + "targets"
NUDGE = _SCHED + "nudge"
SCHEDULER_LOCK = _SCHED + "lock"
SCHEDULER_STATS = _SCHED + "stats"

TARGET_KEYS = ("buf", "queue", "busy", "flight", "batches", "dead", "invalid", "stats", "tasks", "halt", "backoff", "retired",
               "floor")


def campaign_target(campaign_id: int) -> str:
    """The stock target of a campaign (v2 campaign-level pushes)."""
    return f"c{int(campaign_id)}"


def business_target(business_id: int) -> str:
    """The identity of a business (v3 business-level pushes, reads, warehouses, reports): ``b7``.
    It names the business's stock target, its quota key and its parallel gate."""
    return f"b{int(business_id)}"


def group_target(first_campaign: int) -> str:
    """The stock target of a warehouse group, named by its first campaign: ``g1001``."""
    return f"g{int(first_campaign)}"


def refused_carrier(target: str, campaign_id: int) -> str:
    """String with TTL: a campaign of a warehouse group the Market refused (401/403); the next one
    of the group carries the group's stock until it expires (engine/group_target.py)."""
    return f"{target_prefix(target)}refused:{int(campaign_id)}"


def describe_target(target: str) -> str:
    """How people name a target: ``campaign=1001`` for ``c1001``, ``group=1001`` for ``g1001``."""
    kinds = {"c": "campaign", "b": "business", "g": "group"}
    return f"{kinds[target[0]]}={target[1:]}" if target[:1] in kinds else f"target={target}"


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first ``{`` and the next ``}``."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1:end] if start >= 0 and end > start + 1 else key


def target_prefix(target: str) -> str:
    return f"{PREFIX}{{{target}}}:"


def target_keys(target: str) -> dict[str, str]:
    p = target_prefix(target)
    return {name: p + name for name in TARGET_KEYS}


def campaign_keys(campaign_id: int) -> dict[str, str]:
    return target_keys(campaign_target(campaign_id))


def isolating(target: str) -> str:
    """Hash: batch id -> the isolation work a quota wait parked (engine/isolation.py)."""
    return f"{target_prefix(target)}isolating"


def hwm(target: str, generation: int) -> str:
    return f"{target_prefix(target)}hwm:{int(generation)}"


def delivered(target: str, generation: int) -> str:
    return f"{target_prefix(target)}delivered:{int(generation)}"


def inflight(target: str, batch: str) -> str:
    return f"{target_prefix(target)}inflight:{batch}"


_ID = "(?:0|[1-9][0-9]*)"  # an id as str(int) writes it: "01001" is not campaign 1001
_CAMPAIGN_ID = re.compile(_ID)
_IDENTITY = re.compile(f"[cbg]{_ID}")  # campaign, business, warehouse group (targets.py)
_OTHER = "q:"  # the tag prefix of a quota that is no target's: no target name contains ':'
_QUOTA_LOG = re.compile(re.escape(PREFIX) + r"\{([^{}]+)\}:quota:([^:{}]+)")


def quota_tag(key: str) -> str:
    """The hash tag of quota ``key``'s keys: ``c1001`` for ``1001`` or ``c1001``, ``b7`` for
    ``b7``, ``q:all`` for ``all`` (see above)."""
    if _CAMPAIGN_ID.fullmatch(key):
        return campaign_target(int(key))
    if _IDENTITY.fullmatch(key):
        return key
    return _OTHER + key


def _quota_prefix(key: str) -> str:
    return f"{PREFIX}{{{quota_tag(key)}}}:"


def quota(method: str, key: str) -> str:
    """Zset: the quota log of ``method`` at ``key`` (its sum is this name + ``:used``)."""
    return f"{_quota_prefix(key)}quota:{method}"


def quota_market(method: str, key: str) -> str:
    """Hash: the Market's own count of a quota (its headers' Limit, Remaining, Until, and the
    foreign use they reveal), shared by every worker; TTL a day past its last reply."""
    return f"{_quota_prefix(key)}market:{method}"


def quota_pattern() -> str:
    """SCAN pattern matching every quota log (and its ``:used`` sum, and possibly other names:
    filter with :func:`parse_quota`)."""
    return PREFIX + "{*}:quota:*"


def parse_quota(name: str) -> tuple[str, str] | None:
    """(method, key) of a quota log key, with the key the limiter was given (``1001`` for a
    campaign's log under ``{c1001}``); None for anything else (its ``:used`` sum included)."""
    found = _QUOTA_LOG.fullmatch(name)
    if found is None:
        return None
    tag, method = found.groups()
    key = tag[len(_OTHER):] if tag.startswith(_OTHER) else tag[1:] if tag[:1] == "c" else tag
    # Only a name quota() builds: a log left in the layout before issue 18 (``{q:1001}``) must not
    # show beside its successor as a second sample of the same quota.
    return (method, key) if key and quota(method, key) == name else None


def pause(method: str, key: str) -> str:
    """String (TTL): a 420 told every worker to wait before the next ``method`` call on ``key``."""
    return f"{_quota_prefix(key)}pause:{method}"


def lease(identity: str) -> str:
    """The parallel gate of a campaign (``campaign_target``) or a business (``business_target``),
    under its target's tag; a gate that is no identity keeps a tag of its own (``{g:<gate>}``)."""
    tag = identity if _IDENTITY.fullmatch(identity) else f"g:{identity}"
    return f"{PREFIX}{{{tag}}}:lease"


# Names before issue 18 (one tag per quota key and per gate), read only by ``ymsync migrate``.
LEGACY_PATTERNS = (PREFIX + "{q:*}:*", PREFIX + "{g:*}:lease")
_LEGACY = re.compile(re.escape(PREFIX) + r"(?:\{q:([^{}]+)\}:(quota|pause|market):([^:{}]+)(:used)?"
                     r"|\{g:([^{}]+)\}:lease)")


def legacy_tagged(name: str) -> tuple[str, str] | None:
    """(kind, current name) of a key in the layout before issue 18, ``kind`` one of ``quota``,
    ``used``, ``pause``, ``market``, ``lease``; None for any other name. The current name may be
    the same (a quota of no target: ``{q:all}``)."""
    found = _LEGACY.fullmatch(name)
    if found is None:
        return None
    key, kind, method, used, gate = found.groups()
    if gate is not None:
        return "lease", lease(gate)
    if kind == "quota":
        return ("used", quota(method, key) + ":used") if used else ("quota", quota(method, key))
    if used:
        return None
    return kind, pause(method, key) if kind == "pause" else quota_market(method, key)


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


# === Cabinets (issue 13; owned by the cabinets side) =============================================
#   warehouses:{b<id>}        string (TTL)  JSON: a business's warehouses from getPartnerWarehouses
#   warehouses:{b<id>}:lock   string (PX)   one process refreshes them; the others wait for its copy
#   warehouse-groups:{b<id>}  string (TTL)  JSON: a v2 business's warehouses, campaigns, groups (getPagedWarehouses)
#   warehouse-groups:{b<id>}:lock string (PX) as warehouses' lock
# Their own hash tag group: never touched by a script together with a stock target's keys.


def warehouses(business_id: int) -> str:
    return f"{PREFIX}warehouses:{{{business_target(business_id)}}}"


def warehouses_lock(business_id: int) -> str:
    return f"{warehouses(business_id)}:lock"


def warehouse_groups(business_id: int) -> str:
    """JSON: a v2 business's warehouses with their campaigns and groups (getPagedWarehouses);
    set with the directory's keep TTL, like ``warehouses``."""
    return f"{PREFIX}warehouse-groups:{{{business_target(business_id)}}}"


def warehouse_groups_lock(business_id: int) -> str:
    return f"{warehouse_groups(business_id)}:lock"



def moved(target: str) -> str:
    """String (TTL: the horizon): the group target (``g1001``) a campaign target's campaign was
    found in. No batch is taken from the campaign target while it is set (its values move to the
    group instead), so none can settle after the group took over its records (engine/group_move.py)."""
    return f"{target_prefix(target)}moved"


def carrier_of(target: str) -> str:
    """String (TTL: the horizon): the group target (``g1001``) whose round last found the campaign
    of this campaign target among its campaigns. A group the campaign is in now waits while that
    other one still has a batch in flight: the same stock (engine/group_move.py, rule 6)."""
    return f"{target_prefix(target)}carrier_of"


def absorbed(target: str) -> str:
    """String (TTL: the horizon): the group target (``g1001``) a campaign target's delivered
    records were merged into once its campaign was found in a group (engine/group_move.py)."""
    return f"{target_prefix(target)}absorbed"
