"""A lock that one process at a time holds in Redis under a TTL: the flush scheduler's and the
report scheduler's. The holder renews it every turn; when the holder dies, it lapses and any
other process takes it over. Only the owner can renew or release it, so a late release by a
holder that lost it never frees the new holder's lock."""

from __future__ import annotations

import redis

# KEYS: lock; ARGV: owner, ttl_ms. Take the lock if free, or keep it if ours: 1 if ours now.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock; ARGV: owner. Release only our own lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLock:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self.key = key
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def hold(self, owner: str, ttl_s: float) -> bool:
        """Take the lock, or keep it for another ``ttl_s`` if ``owner`` holds it; True if ours now."""
        return bool(self._hold(keys=[self.key], args=[owner, max(1, int(ttl_s * 1000))]))

    def release(self, owner: str) -> None:
        """Free the lock if ``owner`` still holds it (a warm shutdown hands over at once)."""
        self._release(keys=[self.key], args=[owner])


__all__ = ["RedisLock"]
