"""The Celery side: ``celery -A tasks worker -Q stocks`` from the repository root.

Installed (pip, the image), this package is ``ymsync_celery.tasks`` and the config
``ymsync_celery.celeryconfig``: ``celery -A ymsync_celery.tasks worker -Q stocks`` from
anywhere. The app lives in ``app.py`` (named from this package's own name, so either name
works); this file only imports it and the modules that register on it, so ``-A`` finds the app
and every task and worker signal is connected.

Task modules here are thin: they parse arguments, call the ``ymsync`` library and decide
what Celery should do next (re-enqueue, give up). The library never imports Celery; the CLI
reaches these tasks only through its port (``port.py``).
"""

from __future__ import annotations

from .app import app
from . import reads, reports, stocks, worker  # noqa: F401  (each registers its tasks or signals)

__all__ = ["app"]
