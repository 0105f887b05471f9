"""ymsync: keep a web shop's stock levels in sync with Yandex Market.

The library (this package) knows nothing about Celery; ``tasks/`` builds the workers on top.
"""

__version__ = "0.1.0"

from ymsync.engine.producer import InvalidInput, push_business_stocks, push_stocks  # noqa: E402

__all__ = ["InvalidInput", "push_business_stocks", "push_stocks", "__version__"]
