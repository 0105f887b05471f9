"""One report for identical requests: a record per request fingerprint, shared through Redis.

An identical request already generating, or generated inside the quota window, reuses that
report id instead of waiting minutes for the generate quota. The record is ``{"pending": job}``
while one job sends the generate request (a claim that outlives one call), then
``{"report_id": ..., "at": ...}`` for the dedup window.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import redis

from ymsync.store import keys

# Compare-and-delete: only the holder of a claim (or the report it recorded) may remove it.
_FORGET = """
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0
"""


def dedup_key(scope: str, fingerprint: str) -> str:
    digest = hashlib.sha256(f"{scope}|{fingerprint}".encode()).hexdigest()[:32]
    return keys.report_dedup(digest)


class ReportDedup:
    """Records of one Market (``scope``: its base URL) kept ``window_s`` after generation."""

    def __init__(self, client: redis.Redis, scope: str, window_s: float, claim_ttl_s: float) -> None:
        self.redis, self.scope = client, scope
        self.window_s, self.claim_ttl_s = window_s, claim_ttl_s
        self._forget = client.register_script(_FORGET)

    def key(self, fingerprint: str) -> str:
        return dedup_key(self.scope, fingerprint)

    def record(self, fingerprint: str) -> dict[str, Any]:
        raw = self.redis.get(self.key(fingerprint))
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def claim(self, fingerprint: str, job_id: str) -> bool:
        """Take the right to send the generate request; False if an identical request has it."""
        return bool(self.redis.set(self.key(fingerprint), json.dumps({"pending": job_id}), nx=True,
                                   ex=int(self.claim_ttl_s)))

    def forget(self, fingerprint: str, holder: str) -> None:
        """Drop the record if ``holder`` (a job id or a report id) is what it holds."""
        self._forget(keys=[self.key(fingerprint)], args=[holder])

    def remember(self, fingerprint: str, report_id: str) -> None:
        self.redis.set(self.key(fingerprint), json.dumps({"report_id": report_id, "at": time.time()}),
                       ex=max(1, int(self.window_s)))

    def keep(self, fingerprint: str, report_id: str) -> None:
        """"Already generating" must stay reusable however long generation takes."""
        key = self.key(fingerprint)
        if self.record(fingerprint).get("report_id") == report_id and self.redis.pttl(key) < self.window_s * 1000:
            self.redis.pexpire(key, int(self.window_s * 1000))
