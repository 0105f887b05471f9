"""Keys are grouped by hash tag so every script touches one Redis Cluster slot (issue 11, item 8)."""

from __future__ import annotations

import re

from ymsync.store import keys
from ymsync.engine.targets import business_target

TAG = re.compile(r"\{([^}]*)\}")


def tag(key: str) -> str:
    found = TAG.search(key)
    assert found, f"{key} has no hash tag"
    return found.group(1)


def test_every_key_of_a_stock_target_shares_its_tag() -> None:
    for target in ("c1001", business_target(7)):
        built = [*keys.target_keys(target).values(), keys.hwm(target, 5), keys.delivered(target, 5),
                 keys.inflight(target, "b1")]
        assert {tag(k) for k in built} == {target}, built
        assert all(k.startswith(keys.PREFIX) for k in built)


def test_a_quota_and_its_pause_share_a_tag_apart_from_any_target() -> None:
    for method, key in (("update_stocks", "1001"), ("update_stocks_v3", "b7")):
        log, pause = keys.quota(method, key), keys.pause(method, key)
        assert tag(log) == tag(pause) == f"q:{key}"  # the acquire script touches both (and log:used)
        assert tag(log + ":used") == tag(log)
        assert keys.parse_quota(log) == (method, key) and keys.parse_quota(log + ":used") is None
    assert tag(keys.lease(keys.campaign_target(1001))) == "g:c1001"


def test_the_schedulers_global_keys_share_their_own_tag() -> None:
    assert {tag(k) for k in (keys.DUE, keys.CHECK, keys.TARGETS, keys.NUDGE, keys.SCHEDULER_LOCK,
                             keys.SCHEDULER_STATS)} == {"sched"}


def test_a_report_jobs_keys_share_its_tag() -> None:
    assert tag(keys.report_job("j1")) == tag(keys.report_events("j1")) == "j1"
