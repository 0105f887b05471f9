"""`ymsync dead-letters list|replay|purge` for businesses (v3, by warehouse) as well as campaigns,
and a clear line when there are none."""

from __future__ import annotations

import json
import time
from typing import Iterator

import pytest
import redis
from click.testing import CliRunner

from ymsync.cli import main
from ymsync.cli import push as push_cli
from ymsync.config.settings import get_settings
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.targets import business_target, item_key

B = business_target(7)


@pytest.fixture()
def buffer(clean_redis: redis.Redis, redis_server, monkeypatch) -> Iterator[StockBuffer]:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    for name in ("YM_CABINETS_FILE", "YM_API_MODE", "YM_CAMPAIGN_IDS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    push_cli._settings.cache_clear()
    yield StockBuffer(clean_redis)
    get_settings.cache_clear()
    push_cli._settings.cache_clear()


def run(*args: str):
    return CliRunner().invoke(main, ["dead-letters", *args], catch_exceptions=False)


def _dead(buffer: StockBuffer, target: int | str, keys: list[str]) -> None:
    stamp = int(time.time() * 1000) - 1000
    buffer.ingest(target, [(k, 5, stamp) for k in keys])
    batch = buffer.take(target, 100, 10**6, 60)
    assert batch is not None
    buffer.settle(batch, "dead", reason="refused by the Market")


def test_business_letters_are_listed_replayed_and_purged_by_warehouse(buffer: StockBuffer) -> None:
    _dead(buffer, B, [item_key(11, "A: 1"), item_key(12, "B")])
    buffer.dead_letter_raw(B, "invalid:t:0", {"sku": "C", "count": None, "stamp_ms": None, "first_ms": None,
                                              "reason": "invalid input: count: x", "at_ms": 1, "warehouse": 12})
    _dead(buffer, 1001, ["P"])

    listed = [json.loads(line) for line in run("list", "--business", "7", "--json").stdout.splitlines()]
    assert sorted((d["business"], d["warehouse"], d["sku"]) for d in listed) == [(7, 11, "A: 1"), (7, 12, "B"),
                                                                               (7, 12, "C")]
    text = run("list", "--business", "7", "--warehouse", "11").stdout.splitlines()
    assert len(text) == 1 and text[0].startswith("business 7 warehouse 11\tA: 1\t5\t")
    everything = [json.loads(line) for line in run("list", "--json").stdout.splitlines()]
    assert {(d.get("campaign"), d.get("business"), d["sku"]) for d in everything} == \
        {(1001, None, "P"), (None, 7, "A: 1"), (None, 7, "B"), (None, 7, "C")}

    assert run("replay", "--business", "7", "--warehouse", "11").stdout.strip() == \
        "replayed 1 dead letter(s) for business 7 warehouse 11"
    assert buffer.pending(B) == 1
    assert run("replay", "--business", "7", "--warehouse", "11").stdout.strip() == \
        "replayed 0 dead letter(s) for business 7 warehouse 11"  # none left there: not "replay everything"
    assert run("purge", "--business", "7", "--warehouse", "12", "--yes").stdout.strip() == \
        "purged 2 dead letter(s) for business 7 warehouse 12"
    assert buffer.dead_letters(B) == [] and len(buffer.dead_letters(1001)) == 1
    assert run("purge", "--campaign", "1001", "--yes").stdout.strip() == "purged 1 dead letter(s) for campaign 1001"


def test_a_warehouse_purge_keeps_the_other_warehouses(buffer: StockBuffer) -> None:
    _dead(buffer, B, [item_key(11, "A"), item_key(111, "A"), item_key(1, "A")])
    assert buffer.purge(B, 11) == 1
    assert sorted(d["sku"] for d in buffer.dead_letters(B)) == [item_key(1, "A"), item_key(111, "A")]


def test_none_says_so(buffer: StockBuffer) -> None:
    result = run("list")
    assert result.stdout.strip() == "no dead letters for any campaign or business"
    result = run("list", "--business", "7", "--json")
    assert result.stdout == "" and result.stderr.strip() == "no dead letters for business 7"


def test_warehouse_goes_with_business(buffer: StockBuffer) -> None:
    result = CliRunner().invoke(main, ["dead-letters", "purge", "--campaign", "1", "--warehouse", "2", "--yes"])
    assert result.exit_code == 2 and "--warehouse goes with --business" in result.output
