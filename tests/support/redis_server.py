"""A private redis-server for the test session, on a free loopback port.

Never the machine's shared Redis: tests must pass on a fresh machine without a system service.
The locator and the process wrapper live in the library (``ymsync demo`` uses them too).
"""

from __future__ import annotations

from ymsync.embedded import EmbeddedRedis as RedisServer
from ymsync.embedded import free_port, redis_binary

__all__ = ["RedisServer", "free_port", "redis_binary"]
