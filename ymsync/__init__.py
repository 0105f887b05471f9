"""ymsync: keep a web shop's stock levels in sync with Yandex Market.

The library (this package) knows nothing about Celery; ``tasks/`` builds the workers on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ymsync.engine.producer import InvalidInput, push_business_stocks, push_stocks
    from ymsync.engine.retire import RetireResult, retire_business_stocks, retire_stocks
    from ymsync.errors import Unavailable, YmsyncError

# Imported on first use (PEP 562): ``import ymsync`` is what every ``ymsync`` command starts with,
# and the producer brings redis, marshmallow and the schemas with it.
_LAZY = {
    "InvalidInput": "ymsync.engine.producer",
    "push_business_stocks": "ymsync.engine.producer",
    "push_stocks": "ymsync.engine.producer",
    "RetireResult": "ymsync.engine.retire",
    "retire_business_stocks": "ymsync.engine.retire",
    "retire_stocks": "ymsync.engine.retire",
    "Unavailable": "ymsync.errors",
    "YmsyncError": "ymsync.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ymsync' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["InvalidInput", "RetireResult", "Unavailable", "YmsyncError", "push_business_stocks", "push_stocks",
           "retire_business_stocks", "retire_stocks", "__version__"]
