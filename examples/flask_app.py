"""A minimal Flask endpoint that queues stock updates for Yandex Market through ymsync.

    pip install ymsync flask
    REDIS_URL=redis://:PASSWORD@127.0.0.1:6379/0 flask --app examples/flask_app.py run

    curl -X POST localhost:5000/campaigns/1001/stocks -H 'Content-Type: application/json' \\
         -d '[{"sku": "SKU-1", "count": 5}, {"sku": "SKU-2", "count": 0, "updatedAt": "2026-11-25T10:00:00+03:00"}]'

The body is a JSON list of ``{sku, count, updatedAt?}`` (or ``{"items": [...]}``). Answers:

- 202 ``{"campaign_id", "accepted", "stale", ...}``: queued; a stocks worker delivers it under the
  Market's quotas. ``stale`` counts updates older than a value ymsync already holds (latest wins).
- 400 ``{"errors": ["item 1: count: ...", ...]}``: every problem, located; nothing was queued.
- 503 with ``Retry-After``: Redis (the stock queue) is unreachable; retry, nothing was lost.

``ymsync.push_stocks`` is the whole integration: it validates, then writes to ymsync's Redis
buffer in one round trip (no Celery message per update). It reads ``REDIS_URL`` from the
environment like every ymsync process. Put the endpoint behind your own authentication.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import redis
from flask import Flask, jsonify, request

import ymsync

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024  # about 200,000 updates; larger imports: `ymsync push FILE`


def create_app(buffer: Any = None) -> Flask:
    """``buffer``: a ``ymsync.engine.buffer.StockBuffer`` to use instead of the one ``REDIS_URL`` names."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.post("/campaigns/<int:campaign_id>/stocks")
    def push_stocks(campaign_id: int):
        body = request.get_json(silent=True)
        items = body.get("items") if isinstance(body, dict) else body
        if not isinstance(items, list):
            return jsonify(errors=['body: expected a JSON list of {sku, count, updatedAt?} or {"items": [...]}']), 400
        try:
            result = ymsync.push_stocks(campaign_id, items, buffer=buffer)
        except ymsync.InvalidInput as exc:
            return jsonify(errors=exc.errors), 400
        except redis.RedisError as exc:
            log.warning("stock queue unavailable: %s", type(exc).__name__)
            return jsonify(errors=["stock queue unavailable, retry later"]), 503, {"Retry-After": "5"}
        counts = {k: v for k, v in dataclasses.asdict(result).items() if isinstance(v, int) and not isinstance(v, bool)}
        return jsonify(campaign_id=campaign_id, **counts), 202

    return app


app = create_app()
