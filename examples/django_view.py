"""A minimal Django view that queues stock updates for Yandex Market through ymsync.

Wire it up in your ``urls.py``::

    from django.urls import path
    from .django_view import push_stocks

    urlpatterns = [path("campaigns/<int:campaign_id>/stocks", push_stocks)]

and give the Django process ``REDIS_URL`` (ymsync's Redis, e.g. ``redis://:PASSWORD@redis:6379/0``).
Same contract as ``flask_app.py``: 202 with the counts, 400 with every problem located
(nothing queued), 503 with ``Retry-After`` when Redis is unreachable.

Called from your own code instead of over HTTP (a signal handler, an order service), the
whole integration is the one call: ``ymsync.push_stocks(campaign_id, items)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import ymsync

log = logging.getLogger(__name__)


@csrf_exempt  # a machine-to-machine endpoint: authenticate it your way (token, mTLS, internal network)
@require_POST
def push_stocks(request, campaign_id: int) -> JsonResponse:
    try:
        body = json.loads(request.body)
    except ValueError:
        body = None
    items = body.get("items") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return JsonResponse({"errors": ['body: expected a JSON list of {sku, count, updatedAt?} or {"items": [...]}']},
                            status=400)
    try:
        result = ymsync.push_stocks(campaign_id, items)
    except ymsync.InvalidInput as exc:
        return JsonResponse({"errors": exc.errors}, status=400)
    except ymsync.Unavailable as exc:  # not queued (or maybe, if .maybe_queued): the client may retry
        log.warning("stock queue unavailable: %s", type(exc).__name__)
        response = JsonResponse({"errors": ["stock queue unavailable, retry later"]}, status=503)
        response["Retry-After"] = "5"
        return response
    counts = {k: v for k, v in dataclasses.asdict(result).items() if isinstance(v, int) and not isinstance(v, bool)}
    return JsonResponse({"campaign_id": campaign_id, **counts}, status=202)
