"""Whether a Redis server may evict ymsync's keys (``maxmemory-policy``).

Only ``noeviction`` is safe. The ``allkeys-*`` policies may drop a pending value or a quota
window at any moment. The ``volatile-*`` policies look safe but are not: they evict keys that
carry a TTL, and ymsync sets TTLs on keys that must live until they expire on their own terms
(parallel leases and batch leases, whose early loss breaks the 4-request cap or re-sends a batch
still in flight; the per-SKU latest-wins and delivered generations, whose early loss lets an older
value win; report jobs' dedup records). So every policy but ``noeviction`` is refused.
"""

from __future__ import annotations

import redis

SAFE_POLICY = "noeviction"


def eviction_policy(client: redis.Redis) -> str:
    """The server's ``maxmemory-policy``. ``INFO memory`` first: managed Redis services often
    disable ``CONFIG``; ``CONFIG GET`` as the fallback for servers whose INFO lacks the field."""
    info = client.info("memory")
    policy = info.get("maxmemory_policy")
    if not policy:
        policy = (client.config_get("maxmemory-policy") or {}).get("maxmemory-policy", "")
    return policy.decode() if isinstance(policy, bytes) else str(policy)


def eviction_problem(client: redis.Redis) -> str | None:
    """Why this Redis must not hold ymsync's state (one line), or None when it keeps every key."""
    policy = eviction_policy(client)
    if policy == SAFE_POLICY:
        return None
    return (f"Redis maxmemory-policy is {policy!r}: it may evict ymsync's pending values, leases and "
            f"latest-wins records (volatile-* policies evict the keys ymsync gives a TTL); set "
            f"maxmemory-policy {SAFE_POLICY} (CONFIG SET maxmemory-policy {SAFE_POLICY}, or in redis.conf)")


__all__ = ["SAFE_POLICY", "eviction_policy", "eviction_problem"]
