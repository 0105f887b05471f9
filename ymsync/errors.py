"""The package's own error family: one base a shop can catch, and what a producer raises.

A leaf module (it imports nothing of ymsync's), so every part may use it.
"""

from __future__ import annotations

import redis


class YmsyncError(Exception):
    """Base of every error ymsync raises on purpose (``InvalidInput``, ``Unavailable``,
    ``SettingsError``); a Market failure raises the ``MarketError`` family instead."""


# Why a re-push after an ambiguous failure is safe, said once for every producer's message.
REPUSH_IS_SAFE = ("re-pushing is safe: the newest value per SKU wins and a repeat of a value already "
                  "queued is dropped, so a value queued twice is sent once")


class Unavailable(YmsyncError, redis.ConnectionError):
    """ymsync could not queue: Redis (or the broker) refused, was unreachable or did not answer
    within ``YM_PRODUCER_TIMEOUT_S``. ``target`` names where the updates were going (``campaign
    1001``), ``count`` how many; ``maybe_queued`` is True when the request reached Redis and its
    answer never came (the updates may be queued: push them again, which is safe). It is also a
    ``redis.ConnectionError``, so a shop's code written for 0.1 (which caught redis-py's errors)
    keeps catching it."""

    def __init__(self, target: str, count: int, cause: str, *, maybe_queued: bool = False,
                 where: str = "Redis") -> None:
        self.target, self.count, self.cause, self.maybe_queued = target, count, cause, maybe_queued
        if maybe_queued:
            what = (f"{count} stock update(s) for {target} may not have been queued: {where} took the "
                    f"request but its answer never came ({cause}); they may be queued, and {REPUSH_IS_SAFE}")
        else:
            what = (f"{count} stock update(s) for {target} were not queued: {where} is unavailable "
                    f"({cause}); push them again once it answers")
        super().__init__(what)

    def __reduce__(self) -> tuple[object, ...]:  # Celery and multiprocessing pickle exceptions
        return (_unavailable, (self.target, self.count, self.cause, self.maybe_queued))


def _unavailable(target: str, count: int, cause: str, maybe_queued: bool) -> Unavailable:
    return Unavailable(target, count, cause, maybe_queued=maybe_queued)


__all__ = ["REPUSH_IS_SAFE", "Unavailable", "YmsyncError"]
