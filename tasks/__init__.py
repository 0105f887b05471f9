"""The Celery app: ``celery -A tasks worker -Q stocks`` from the repository root.

Task modules here are thin: they parse arguments, call the ``ymsync`` library and decide
what Celery should do next (retry, re-enqueue, give up). The library never imports Celery.
"""

from celery import Celery

app = Celery("ymsync")
app.config_from_object("celeryconfig")

__all__ = ["app"]
