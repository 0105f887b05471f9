"""ymsync: keep a web shop's stock levels in sync with Yandex Market.

The library (this package) knows nothing about Celery; ``tasks/`` builds the workers on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ymsync.engine.producer import InvalidInput, push_business_stocks, push_stocks

# Imported on first use (PEP 562): ``import ymsync`` is what every ``ymsync`` command starts with,
# and the producer brings redis, marshmallow and the schemas with it.
_PRODUCER_NAMES = frozenset({"InvalidInput", "push_business_stocks", "push_stocks"})


def __getattr__(name: str) -> Any:
    if name in _PRODUCER_NAMES:
        from ymsync.engine import producer

        return getattr(producer, name)
    raise AttributeError(f"module 'ymsync' has no attribute {name!r}")


__all__ = ["InvalidInput", "push_business_stocks", "push_stocks", "__version__"]
