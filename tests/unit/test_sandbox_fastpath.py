"""The sandbox's fast updateStocks check must agree with the schema wherever it answers."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from marshmallow import ValidationError

from ymsync.market import schemas as s
from ymsync.sandbox.fastpath import fast_update_body


def _schema(body):
    try:
        return s.UpdateStocksRequestSchema().load(body)
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
    names = ["A", " A ", "B", "", " ", "a\x01", "x" * 256, "ok\tx", 5, None, "\x85z"]
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
