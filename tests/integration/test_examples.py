"""examples/flask_app.py with Flask's test client, and examples/django_view.py through Django's
request factory, against the private redis-server: the recommended producer path
(ymsync.push_stocks, REDIS_URL from the environment) end to end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import importlib.util
from pathlib import Path

import pytest
import redis

from ymsync.engine.buffer import StockBuffer
from ymsync.config.settings import get_settings

pytest.importorskip("flask")
pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app.py"
CAMPAIGN = 7701


def load_example():
    spec = importlib.util.spec_from_file_location("ymsync_example_flask_app", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def r(clean_redis):
    return clean_redis


@pytest.fixture()
def client(redis_server, r, monkeypatch):
    # The example's module-level app uses the Redis REDIS_URL names, as in production.
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    get_settings.cache_clear()
    try:
        yield load_example().app.test_client()
    finally:
        get_settings.cache_clear()


def hours_ago(hours: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).isoformat()


def test_valid_updates_are_queued_with_202(client, r):
    response = client.post(f"/campaigns/{CAMPAIGN}/stocks", json=[
        {"sku": "SKU-1", "count": 5},
        {"sku": " SKU-2 ", "count": 0, "updatedAt": hours_ago(2)},
    ])
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert (body["campaign_id"], body["accepted"], body["stale"]) == (CAMPAIGN, 2, 0)
    assert StockBuffer(r).pending(CAMPAIGN) == 2

    # {"items": [...]} works too, and an older value for a SKU already held never wins.
    older = client.post(f"/campaigns/{CAMPAIGN}/stocks",
                        json={"items": [{"sku": "SKU-2", "count": 9, "updatedAt": hours_ago(3)}]})
    assert older.status_code == 202
    assert (older.get_json()["accepted"], older.get_json()["stale"]) == (0, 1)
    assert StockBuffer(r).pending(CAMPAIGN) == 2


def test_invalid_items_400_with_located_errors_and_nothing_queued(client, r):
    response = client.post(f"/campaigns/{CAMPAIGN}/stocks", json=[
        {"sku": "SKU-1", "count": 5},
        {"sku": "SKU-2", "count": -1},
        {"count": "x"},
    ])
    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert errors[0].startswith('item 1 (SKU "SKU-2"): count:') and "-1" in errors[0]
    assert any(e.startswith("item 2: sku:") for e in errors)
    assert any(e.startswith("item 2: count:") and "'x'" in e for e in errors)
    assert StockBuffer(r).pending(CAMPAIGN) == 0  # the valid first item was not queued either


@pytest.mark.parametrize("kwargs", [
    {"data": "not json", "content_type": "application/json"},
    {"json": {"sku": "SKU-1", "count": 5}},
    {"json": "SKU-1"},
])
def test_malformed_body_400(client, r, kwargs):
    response = client.post(f"/campaigns/{CAMPAIGN}/stocks", **kwargs)
    assert response.status_code == 400
    assert response.get_json()["errors"][0].startswith("body: expected a JSON list")
    assert StockBuffer(r).pending(CAMPAIGN) == 0


def test_bad_campaign_400(client):
    response = client.post("/campaigns/0/stocks", json=[{"sku": "SKU-1", "count": 1}])
    assert response.status_code == 400
    assert response.get_json()["errors"] == ["campaign_id must be an integer >= 1, got 0"]


def test_redis_down_503_with_retry_after(redis_server):
    from tests.support.redis_server import free_port

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = StockBuffer(redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1,
                                   retry=Retry(NoBackoff(), 0)))
    response = load_example().create_app(buffer=dead).test_client().post(
        f"/campaigns/{CAMPAIGN}/stocks", json=[{"sku": "SKU-1", "count": 1}])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


# --- examples/django_view.py: the same contract, through Django's own request handling ------------
# In a child process: Django's settings are process-wide and tests/integration/test_django.py
# configures them its own way (an installed app, a database) for the rest of its process.

DJANGO_CALLS = r"""
import json, sys
import django
from django.conf import settings
settings.configure(DEBUG=False, ALLOWED_HOSTS=["testserver"], USE_TZ=True, SECRET_KEY="test-only")
django.setup()
import importlib.util
from django.test import RequestFactory
spec = importlib.util.spec_from_file_location("ymsync_example_django_view", sys.argv[1])
view = importlib.util.module_from_spec(spec)
spec.loader.exec_module(view)
out = []
for method, raw in json.loads(sys.argv[2]):
    factory = RequestFactory()
    request = (factory.post("/campaigns/7701/stocks", data=raw.encode(), content_type="application/json")
               if method == "POST" else factory.get("/campaigns/7701/stocks"))
    response = view.push_stocks(request, campaign_id=7701)
    body = json.loads(response.content) if response.content.startswith(b"{") else None
    out.append([response.status_code, body, response.get("Retry-After")])
print(json.dumps(out))
"""


def django_calls(redis_url: str, calls: list[tuple[str, str]]) -> list[list]:
    """(status, JSON body, Retry-After) of each (method, raw body) the example view answered."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("django")
    env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run([sys.executable, "-c", DJANGO_CALLS, str(EXAMPLE.parent / "django_view.py"), json.dumps(calls)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_django_view_queues_202_refuses_400_and_only_post(redis_server, r):
    import json

    answers = django_calls(redis_server.url, [
        ("POST", json.dumps({"items": [{"sku": "D-1", "count": 3}, {"sku": "D-2", "count": 0}]})),
        ("POST", json.dumps([{"sku": "D-3", "count": 1}, {"sku": "D-4", "count": -1}])),
        ("POST", "not json"),
        ("GET", ""),
    ])
    (ok, ok_body, _), (invalid, invalid_body, _), (garbled, garbled_body, _), (get, _, _) = answers
    assert ok == 202, ok_body
    assert (ok_body["campaign_id"], ok_body["accepted"], ok_body["stale"]) == (CAMPAIGN, 2, 0)
    assert invalid == 400 and invalid_body["errors"][0].startswith('item 1 (SKU "D-4"): count:'), invalid_body
    assert garbled == 400 and garbled_body["errors"][0].startswith("body: expected a JSON list"), garbled_body
    assert get == 405  # require_POST
    assert StockBuffer(r).pending(CAMPAIGN) == 2  # neither refused body queued anything


def test_django_view_redis_down_503_with_retry_after():
    import json

    from tests.support.redis_server import free_port

    [(status, body, retry_after)] = django_calls(f"redis://127.0.0.1:{free_port()}/0",
                                                 [("POST", json.dumps([{"sku": "D-1", "count": 1}]))])
    assert status == 503, body
    assert retry_after == "5"
    assert body == {"errors": ["stock queue unavailable, retry later"]}
