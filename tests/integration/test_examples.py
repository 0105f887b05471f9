"""examples/flask_app.py with Flask's test client against the private redis-server: the
recommended producer path (ymsync.push_stocks, REDIS_URL from the environment) end to end."""

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


def test_django_view_compiles():
    source = (EXAMPLE.parent / "django_view.py").read_text()
    compile(source, "django_view.py", "exec")
