"""ymsync: keep a web shop's stock levels in sync with Yandex Market.

The library (this package) knows nothing about Celery; ``tasks/`` builds the workers on top.
"""

__version__ = "0.1.0"
