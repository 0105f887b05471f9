"""Every Python snippet of the README runs as written, as a shop would run it (its own process,
settings from the environment), against the sandbox and a real stocks worker; each delivers what it
says. The ``send_task`` snippet is sent from the shop's own Celery app, not ymsync's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

from tests.support.processes import ROOT, CeleryWorker, wait_for
from ymsync.sandbox import MarketSandbox, SandboxConfig

pytestmark = pytest.mark.integration
TOKEN = "sandbox-token"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets() -> list[str]:
    return FENCE.findall((ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def market() -> Iterator[MarketSandbox]:
    # Unconfigured, every campaign and business exists; business 7 has no warehouse groups (v3).
    with MarketSandbox(config=SandboxConfig(tokens=(TOKEN,), report_delay_s=0.5)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def world(redis_server, market, tmp_path_factory) -> Iterator[dict[str, dict[str, str]]]:
    """The environments a shop's processes get, and one stocks worker serving both cabinets: a v2
    one with campaign 1001 and the v3 business 7."""
    folder = tmp_path_factory.mktemp("readme")
    # The session's Redis may hold what earlier modules left (task slots of flush messages their
    # killed workers never ran, which wait a minute; a cached warehouse directory of business 100):
    # a shop's first deployment starts empty.
    redis.Redis.from_url(redis_server.url).flushall()
    cabinets = folder / "cabinets.toml"
    cabinets.write_text('[cabinets.shop]\nbusiness_id = 100\ncampaigns = [1001]\ntoken_env = "YM_TOKEN"\n\n'
                        '[cabinets.north]\nbusiness_id = 7\nmode = "v3"\ntoken_env = "YM_TOKEN"\n')
    base = {"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_FLUSH_DELAY_MS": "50"}
    envs = {"cabinets": {**base, "YM_CABINETS_FILE": str(cabinets), "YM_TOKEN": TOKEN},
            "simple": {**base, "YM_API_KEY": TOKEN}}  # MarketClient.from_settings: the one token
    worker = CeleryWorker(envs["cabinets"], concurrency=2, name="readme", log_path=folder / "worker.log").start()
    try:
        yield envs
    finally:
        worker.stop()


def _run(code: str, env: dict[str, str], cwd: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("YM_API", "YM_CABINETS", "REDIS_URL"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**clean, **env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the snippet failed:\n{code}\n{done.stderr}"


def _stocks(market: MarketSandbox, campaign: int) -> dict:
    return requests.get(f"{market.url}/_admin/stocks/{campaign}", timeout=5).json()


def test_every_readme_snippet_has_a_case_below() -> None:
    markers = ("MarketClient.from_settings", "ymsync.push_stocks(campaign_id, request", "ymsync.push_stocks(1001",
               "send_task(", "push_business_stocks(", "push_on_commit(", "ymsync.retire_stocks(1001",
               "def repush_catalogue(")
    unknown = [s for s in snippets() if not any(m in s for m in markers)]
    assert not unknown and len(snippets()) == len(markers), unknown  # a new snippet needs its own test


def test_the_client_snippet_updates_reads_and_downloads_a_report(market, world, tmp_path) -> None:
    [code] = [s for s in snippets() if "MarketClient.from_settings" in s]
    _run(code, world["simple"], tmp_path)
    assert {k: v["count"] for k, v in _stocks(market, 1001).items() if k in ("SKU-1", "SKU-2")} == \
        {"SKU-1": 5, "SKU-2": 0}
    assert (tmp_path / "reports" / "stocks.zip").stat().st_size > 0


def test_the_push_stocks_snippet_reaches_the_market(market, world, tmp_path) -> None:
    requests.post(f"{market.url}/_admin/stocks/1001", json={"SKU-1": 1, "SKU-2": 1}, timeout=5)
    [code] = [s for s in snippets() if "ymsync.push_stocks(1001" in s]
    _run(code, world["cabinets"], tmp_path)
    wait_for(lambda: {k: v["count"] for k, v in _stocks(market, 1001).items() if k in ("SKU-1", "SKU-2")}
             == {"SKU-1": 5, "SKU-2": 0}, 30, "the pushed values at the Market")


def test_the_send_task_snippet_from_the_shops_own_celery_app_delivers(market, world, tmp_path) -> None:
    [code] = [s for s in snippets() if "send_task(" in s]
    assert "import ymsync" not in code and "Celery(" in code  # the shop's own app, no ymsync import
    _run(code, world["cabinets"], tmp_path)
    wait_for(lambda: _stocks(market, 1001).get("SKU-3", {}).get("count") == 7, 30,
             "SKU-3 = 7 sent with send_task to reach the Market")


def test_the_business_snippet_reaches_each_warehouse(market, world, tmp_path) -> None:
    [code] = [s for s in snippets() if "push_business_stocks(" in s]
    _run(code, world["cabinets"], tmp_path)

    def per_warehouse() -> dict:
        stocks = requests.get(f"{market.url}/_admin/business/7/stocks", timeout=5).json()
        return {w: {sku: v["count"] for sku, v in skus.items()} for w, skus in stocks.items()}

    wait_for(lambda: per_warehouse() == {"501": {"SKU-1": 5}, "502": {"SKU-1": 0}}, 30,
             "SKU-1 on warehouses 501 and 502")


def test_the_flask_snippet_queues_what_the_market_then_holds(market, world, tmp_path) -> None:
    [code] = [s for s in snippets() if "ymsync.push_stocks(campaign_id, request" in s]
    drive = ("\nweb = app.test_client()\n"
             "ok = web.post('/campaigns/1001/stocks', json=[{'sku': 'FLASK-1', 'count': 2}])\n"
             "assert ok.status_code == 202 and ok.get_json() == {'accepted': 1}, ok.get_json()\n"
             "bad = web.post('/campaigns/1001/stocks', json=[{'sku': 'FLASK-2', 'count': -1}])\n"
             "assert bad.status_code == 400 and 'count' in bad.get_json()['errors'][0], bad.get_json()\n")
    _run(code + drive, world["cabinets"], tmp_path)
    wait_for(lambda: _stocks(market, 1001).get("FLASK-1", {}).get("count") == 2, 30, "FLASK-1 at the Market")
    assert "FLASK-2" not in _stocks(market, 1001)


def test_the_django_recipe_is_the_one_the_django_tests_run() -> None:
    """tests/integration/test_django.py runs tests/django_shop/signals.py with real Django, SQLite and a
    worker; the README's recipe is that file's code, word for word."""
    [code] = [s for s in snippets() if "push_on_commit(" in s]
    tested = (ROOT / "tests" / "django_shop" / "signals.py").read_text(encoding="utf-8")
    assert tested.split('"""', 2)[2].strip() == code.strip()


def test_the_retire_snippet_sends_the_final_count_and_forgets_the_skus(market, world, tmp_path) -> None:
    _run("import ymsync\nymsync.push_stocks(1001, [{'sku': 'SKU-7', 'count': 3}, {'sku': 'SKU-9', 'count': 4}])",
         world["cabinets"], tmp_path)
    wait_for(lambda: _stocks(market, 1001).get("SKU-9", {}).get("count") == 4, 30, "SKU-7 and SKU-9 delivered")
    [code] = [s for s in snippets() if "ymsync.retire_stocks(1001" in s]
    _run("import ymsync\n" + code, world["cabinets"], tmp_path)  # the snippet follows one that imports ymsync
    wait_for(lambda: {k: _stocks(market, 1001).get(k, {}).get("count") for k in ("SKU-7", "SKU-9")}
             == {"SKU-7": 0, "SKU-9": 0}, 30, "the final count 0 of both retired SKUs at the Market")


def test_the_repush_recipe_restores_what_the_market_lost(market, world, tmp_path) -> None:
    [code] = [s for s in snippets() if "def repush_catalogue(" in s]
    drive = "\nrepush_catalogue(1001, lambda: [('REPUSH-1', 11), ('REPUSH-2', 12)])\n"
    _run(code + drive, world["cabinets"], tmp_path)
    wait_for(lambda: {k: _stocks(market, 1001).get(k, {}).get("count") for k in ("REPUSH-1", "REPUSH-2")}
             == {"REPUSH-1": 11, "REPUSH-2": 12}, 30, "the re-pushed catalogue at the Market")
