"""The sandbox's fast updateStocks check must agree with the schema wherever it answers."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from marshmallow import ValidationError

from ymsync.market import schemas as s
from ymsync.sandbox.fastpath import fast_update_body, update_entries


def _schema(body):
    try:
        return update_entries(s.UpdateStocksRequestSchema().load(body))
    except ValidationError:
        return None


def test_plain_valid_body_takes_the_fast_path_and_matches_the_schema() -> None:
    now = datetime.now(timezone.utc)
    body = {"skus": [{"sku": f" SKU-{i} ", "items": [{"count": i, "updatedAt": (now - timedelta(seconds=i)).isoformat()}]}
                     for i in range(2000)]}
    body["skus"][7]["items"][0].pop("updatedAt")
    fast = fast_update_body(body)
    assert fast is not None and fast == _schema(body)


def test_anything_doubtful_is_left_to_the_schema() -> None:
    now = datetime.now(timezone.utc)
    rng = random.Random(5)
    values = [0, 7, s.MAX_COUNT, s.MAX_COUNT + 1, -1, True, 1.0, "3", None]
    stamps = [None, "x", "2026-01-01T00:00:00", (now - timedelta(hours=1)).isoformat(),
              (now + timedelta(hours=1)).isoformat(), (now - timedelta(days=2)).isoformat()]
    names = ["A", " A ", "B", "", " ", "a\x01", "x" * 255, "x" * 256, "ok\tx", 5, None, "\x85z", "Ящик", "a\x7f"]
    fast_hits = 0
    for _ in range(5000):
        entries = []
        for _ in range(rng.randint(0, 3)):
            entry = {"sku": rng.choice(names), "items": [{"count": rng.choice(values)}]}
            if rng.random() < 0.5:
                entry["items"][0]["updatedAt"] = rng.choice(stamps)
            if rng.random() < 0.05:
                entry["extra"] = 1
            if rng.random() < 0.05:
                entry["items"].append({"count": 1})
            entries.append(entry)
        body = json.loads(json.dumps({"skus": entries}))
        if rng.random() < 0.05:
            body["extra"] = 1
        fast = fast_update_body(body)
        if fast is not None:
            fast_hits += 1
            assert fast == _schema(body), body
    assert fast_hits > 50
    assert fast_update_body({"skus": []}) is None
    assert fast_update_body({"skus": [{"sku": "A", "items": [{"count": 1}]}] * 2}) is None  # duplicate
    assert fast_update_body([]) is None


def test_the_sandbox_reads_a_body_as_json_loads_does() -> None:
    """ApiCall.json(fast=True) parses with orjson where it can and leaves the rest to json.loads: a
    plain body reads the same, one only json.loads accepts (NaN, UTF-16) still reads, and a huge
    integer (a float to orjson) is no longer plain, so the fast path leaves it to the schema."""
    import math

    import pytest

    from ymsync.sandbox.call import ApiCall
    from ymsync.sandbox.failures import ApiFailure

    def read(body: bytes, fast: bool = True):  # type: ignore[no-untyped-def]
        return ApiCall.json(None, body, required=True, fast=fast)  # type: ignore[arg-type]  (self is not used)

    plain = json.dumps({"skus": [{"sku": "Ящик-1", "items": [{"count": 3, "updatedAt": "2026-12-06T10:00:00+00:00"}]}]})
    assert read(plain.encode()) == json.loads(plain)
    assert math.isnan(read(b'{"count": NaN}')["count"])
    assert read('{"sku": "a"}'.encode("utf-16")) == {"sku": "a"}
    huge = b'{"skus": [{"sku": "a", "items": [{"count": 123456789012345678901234567890}]}]}'
    assert fast_update_body(read(huge)) is None  # not plain: the handler parses again and the schema refuses
    assert read(huge, fast=False)["skus"][0]["items"][0]["count"] == 123456789012345678901234567890
    with pytest.raises(ApiFailure):
        read(b'{"skus": [')
