"""The Celery app, configured from this package's own name (``tasks`` or ``ymsync_celery.tasks``).

Every reference below (the config module, the AMQP class, the task modules) is built from
``__package__``, so the app works under either name and never imports a shop's own top-level
``tasks`` or ``celeryconfig``. Task modules import the app from here; ``tasks/__init__.py`` only
imports them, so no module imports the package that imports it.
"""

from __future__ import annotations

import sys

from celery import Celery

# "tasks" from a checkout, "ymsync_celery.tasks" when installed.
PACKAGE = __name__.rpartition(".")[0]
_PARENT = PACKAGE.rpartition(".")[0]
CONFIG_MODULE = f"{_PARENT}.celeryconfig" if _PARENT else "celeryconfig"

# Summaries, never payloads, as the default argsrepr/kwargsrepr Flower shows (see tasks/flower.py).
app = Celery("ymsync", amqp=f"{PACKAGE}.flower:SummarizingAMQP")
app.config_from_object(CONFIG_MODULE)
app.conf.include = [f"{PACKAGE}.stocks", f"{PACKAGE}.reads", f"{PACKAGE}.reports"]

from .flower import BatchedTaskEvents  # noqa: E402  (the app's own step: task events in batches)

app.steps["consumer"].add(BatchedTaskEvents)

if "flower" in sys.modules:  # loaded by `celery -A tasks flower`: its /metrics needs auth too
    from .flower import protect_metrics

    protect_metrics()


__all__ = ["CONFIG_MODULE", "app"]
