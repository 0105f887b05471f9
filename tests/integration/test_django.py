"""ymsync.contrib.django in a real Django (SQLite on disk) with a real stocks worker and the sandbox:
values queue when the transaction commits and never when it rolls back; invalid input rolls the
request back; QuerySet.update, bulk_update and delete follow the README's recipe; the management
command re-pushes a catalogue; bad settings stop Django at start."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

django = pytest.importorskip("django")

from tests.support.processes import ROOT, CeleryWorker, wait_for  # noqa: E402
from ymsync.config.settings import configure  # noqa: E402
from ymsync.engine.buffer import StockBuffer  # noqa: E402
from ymsync.sandbox import MarketSandbox, SandboxConfig  # noqa: E402

pytestmark = pytest.mark.integration
TOKEN = "sandbox-token"
CAMPAIGN, BUSINESS = 1001, 7


@pytest.fixture(scope="module")
def market() -> Iterator[MarketSandbox]:
    with MarketSandbox(config=SandboxConfig(tokens=(TOKEN,))) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def shop(redis_server, market, tmp_path_factory) -> Iterator[redis.Redis]:
    """Django set up as a shop's settings.py would, one stocks worker serving both cabinets."""
    from django.conf import settings

    folder = tmp_path_factory.mktemp("django")
    cabinets = folder / "cabinets.toml"
    cabinets.write_text(f'[cabinets.shop]\nbusiness_id = 100\ncampaigns = [{CAMPAIGN}]\ntoken_env = "YM_TOKEN"\n\n'
                        f'[cabinets.north]\nbusiness_id = {BUSINESS}\nmode = "v3"\ntoken_env = "YM_TOKEN"\n')
    ymsync_settings = {"REDIS_URL": redis_server.url, "YM_CABINETS_FILE": str(cabinets), "YM_TOKEN": TOKEN}
    if not settings.configured:
        settings.configure(INSTALLED_APPS=["ymsync.contrib.django", "tests.django_shop.apps.ShopConfig"],
                           DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                                  "NAME": str(folder / "shop.sqlite3")}},
                           YMSYNC=ymsync_settings, USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.AutoField")
    django.setup()
    # Django runs AppConfig.ready (which configures ymsync from YMSYNC) once a process; this fixture
    # runs again when xdist splits the module around another one, after its teardown's
    # configure(None). Configured here each time: else the producer read REDIS_URL from the
    # environment, unset in tests, and wrote to the default localhost:6379, another's Redis.
    configure({**settings.YMSYNC, **ymsync_settings})
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    # Emptied before the worker starts, never after: the worker's broker bindings (kombu keeps them
    # in this Redis) would go with the rest, and its flush tasks with them (undeliverable). The
    # first test once timed out in a CI-style run, most likely so (the worker up before the FLUSHDB).
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    worker = CeleryWorker({**ymsync_settings, "YM_API_URL": market.url, "YM_FLUSH_DELAY_MS": "50"},
                          concurrency=2, name="django", log_path=folder / "worker.log").start()
    worker.wait_ready(redis_server.url)
    try:
        yield client
    finally:
        worker.stop()
        client.close()
        configure(None)  # the rest of the session reads the environment again


def _market(market: MarketSandbox) -> dict[str, int]:
    return {sku: v["count"] for sku, v in requests.get(f"{market.url}/_admin/stocks/{CAMPAIGN}", timeout=5).json().items()}


def test_a_commit_queues_and_a_rollback_queues_nothing(shop, market) -> None:
    from django.db import transaction

    from tests.django_shop.models import Product

    buffer = StockBuffer(shop)
    with pytest.raises(RuntimeError), transaction.atomic():
        Product.objects.create(sku="ROLLED-BACK", stock=999)
        raise RuntimeError("the request failed after the save")
    assert buffer.pending(CAMPAIGN) == 0
    with transaction.atomic():
        Product.objects.create(sku="COMMITTED", stock=25)
        assert buffer.pending(CAMPAIGN) == 0  # not before the commit
    wait_for(lambda: _market(market).get("COMMITTED") == 25, 30, "the committed value at the Market")
    assert "ROLLED-BACK" not in _market(market)
    assert not Product.objects.filter(sku="ROLLED-BACK").exists()


def test_invalid_input_rolls_the_request_back_and_names_the_item(shop) -> None:
    from django.db import transaction

    from tests.django_shop.models import Product
    from ymsync import InvalidInput

    with pytest.raises(InvalidInput) as caught, transaction.atomic():
        Product.objects.create(sku="NEGATIVE", stock=-1)
    assert "count" in caught.value.errors[0] and "-1" in caught.value.errors[0]
    assert not Product.objects.filter(sku="NEGATIVE").exists()  # the row went with the transaction
    assert StockBuffer(shop).pending(CAMPAIGN) == 0


def test_queryset_update_bulk_update_and_delete_follow_the_recipe(shop, market) -> None:
    from django.db import transaction
    from django.db.models import F

    from tests.django_shop.models import Product
    from ymsync.contrib.django import push_queryset_on_commit

    with transaction.atomic():
        Product.objects.bulk_create([Product(sku=f"BULK-{i}", stock=i) for i in range(3)])  # no signals
        push_queryset_on_commit(Product.objects.filter(sku__startswith="BULK-"), campaign_id=CAMPAIGN)
    wait_for(lambda: {k: v for k, v in _market(market).items() if k.startswith("BULK-")} ==
             {"BULK-0": 0, "BULK-1": 1, "BULK-2": 2}, 30, "bulk_create's rows at the Market")

    with transaction.atomic():  # the new values are the database's (F): read after the commit
        rows = Product.objects.filter(sku__in=["BULK-0", "BULK-1"])
        rows.update(stock=F("stock") + 10)
        push_queryset_on_commit(rows, campaign_id=CAMPAIGN)
    with transaction.atomic():
        changed = list(Product.objects.filter(sku="BULK-2"))
        changed[0].stock = 42
        Product.objects.bulk_update(changed, ["stock"])
        push_queryset_on_commit(Product.objects.filter(pk__in=[p.pk for p in changed]), campaign_id=CAMPAIGN)
    wait_for(lambda: {k: v for k, v in _market(market).items() if k.startswith("BULK-")} ==
             {"BULK-0": 10, "BULK-1": 11, "BULK-2": 42}, 30, "update and bulk_update's values at the Market")

    Product.objects.filter(sku="BULK-2").get().delete()  # autocommit: the recipe's post_delete sends 0
    wait_for(lambda: _market(market).get("BULK-2") == 0, 30, "a deleted product's count 0 at the Market")


def test_the_business_form_queues_per_warehouse_on_commit(shop, market) -> None:
    from django.db import transaction

    from ymsync.contrib.django import push_business_on_commit

    with transaction.atomic():
        push_business_on_commit(BUSINESS, [{"sku": "W-1", "count": 3}], warehouse=501)
        assert StockBuffer(shop).pending(f"b{BUSINESS}") == 0
    wait_for(lambda: requests.get(f"{market.url}/_admin/business/{BUSINESS}/stocks", timeout=5).json()
             .get("501", {}).get("W-1", {}).get("count") == 3, 30, "W-1 on warehouse 501")


def test_the_management_command_re_pushes_a_catalogue_and_unchanged_values_send_nothing(shop, market) -> None:
    from django.core.management import call_command

    from tests.django_shop.models import Product

    Product.objects.bulk_create([Product(sku=f"CAT-{i:03}", stock=i) for i in range(120)])  # no signals
    out = StringIO()
    call_command("ymsync_push", "--model", "django_shop.Product", "--campaign", str(CAMPAIGN),
                 "--filter", "sku__startswith=CAT-", stdout=out)
    assert out.getvalue().startswith("120 rows: 120 queued")
    wait_for(lambda: sum(1 for k in _market(market) if k.startswith("CAT-")) == 120, 30, "the catalogue")
    assert _market(market)["CAT-077"] == 77
    again = StringIO()
    call_command("ymsync_push", "--model", "django_shop.Product", "--campaign", str(CAMPAIGN),
                 "--filter", "sku__startswith=CAT-", stdout=again)
    assert again.getvalue().strip() == "120 rows: 0 queued, 120 unchanged (already at the Market)"


def test_the_example_view_answers_202_and_queues(shop) -> None:
    from django.test import RequestFactory

    spec = importlib.util.spec_from_file_location("ymsync_example_django_view", ROOT / "examples" / "django_view.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    request = RequestFactory().post("/campaigns/1001/stocks", data=json.dumps([{"sku": "VIEW-1", "count": 4}]),
                                    content_type="application/json")
    response = module.push_stocks(request, CAMPAIGN)
    assert response.status_code == 202, response.content
    assert json.loads(response.content)["accepted"] == 1


def test_a_bad_setting_stops_django_at_start_with_one_line(tmp_path: Path) -> None:
    code = ("import django; from django.conf import settings; "
            "settings.configure(INSTALLED_APPS=['ymsync.contrib.django'], "
            "YMSYNC={'YM_QUOTA_UPDATE_STOCKS': 'lots'}); django.setup()")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: ymsync: YM_QUOTA_UPDATE_STOCKS: expected AMOUNT/SECONDS "
        "like 100000/60, or 0 for off; got 'lots'")
