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


def test_a_targets_quota_pause_market_view_and_gate_share_its_tag() -> None:
    """Issue 18: everything one request touches is in its target's slot (one script can do it all)."""
    for method, key, target in (("update_stocks", "1001", "c1001"), ("get_stocks", "1001", "c1001"),
                                ("update_stocks_v3", "b7", "b7"), ("update_stocks", "g1001", "g1001")):
        log, pause, view = keys.quota(method, key), keys.pause(method, key), keys.quota_market(method, key)
        assert {tag(log), tag(log + ":used"), tag(pause), tag(view), tag(keys.lease(target))} == {target}
        assert tag(keys.target_keys(target)["buf"]) == target
        assert keys.parse_quota(log) == (method, key) and keys.parse_quota(log + ":used") is None
    assert keys.quota("update_stocks", "1001") == "ymsync:{c1001}:quota:update_stocks"
    assert keys.pause("update_stocks", "1001") == "ymsync:{c1001}:pause:update_stocks"
    assert keys.quota_market("update_stocks", "1001") == "ymsync:{c1001}:market:update_stocks"
    assert keys.lease("c1001") == "ymsync:{c1001}:lease" and keys.lease("b7") == "ymsync:{b7}:lease"
    # "c1001" and "1001" both name campaign 1001's quota: one log, given back as the limiter's "1001".
    assert keys.quota("update_stocks", "c1001") == keys.quota("update_stocks", "1001")


def test_a_quota_of_no_target_keeps_a_tag_no_target_can_have() -> None:
    for key in ("all", "cabinet:main", "k", "01001", "b07", "q:x"):
        log = keys.quota("report_generate", key)
        assert tag(log) == tag(keys.pause("report_generate", key)) == f"q:{key}", log
        assert keys.parse_quota(log) == ("report_generate", key)
    assert keys.lease("k") == "ymsync:{g:k}:lease"  # a gate that is no identity (tests)


def test_the_quota_pattern_finds_every_log_and_parse_keeps_only_logs(clean_redis) -> None:
    logs = {keys.quota("update_stocks", "1001"), keys.quota("update_stocks_v3", "b7"),
            keys.quota("report_generate", "all")}
    others = [*keys.target_keys("c1001").values(), keys.inflight("c1001", "x}:quota:y"), keys.hwm("c1001", 3),
              keys.pause("update_stocks", "1001"), keys.quota_market("update_stocks", "1001"), keys.lease("c1001"),
              keys.DUE, keys.report_job("j1"), keys.warehouses(7),
              "ymsync:{q:1001}:quota:update_stocks",  # the layout before issue 18: migrate moves it
              "ymsync:{c01}:quota:update_stocks", "ymsync:{sched}:quota:update_stocks"]
    for name in [*logs, *others, *(log + ":used" for log in logs)]:
        clean_redis.set(name, 1)
    found = {raw.decode() for raw in clean_redis.scan_iter(match=keys.quota_pattern())}
    assert logs <= found
    assert {keys.parse_quota(name) for name in found} - {None} == \
        {("update_stocks", "1001"), ("update_stocks_v3", "b7"), ("report_generate", "all")}
    assert {name for name in found if keys.parse_quota(name)} == logs


def test_names_before_issue_18_map_to_their_successors() -> None:
    assert keys.legacy_tagged("ymsync:{q:1001}:quota:update_stocks") == ("quota", keys.quota("update_stocks", "1001"))
    assert keys.legacy_tagged("ymsync:{q:1001}:quota:update_stocks:used") == \
        ("used", keys.quota("update_stocks", "1001") + ":used")
    assert keys.legacy_tagged("ymsync:{q:b7}:pause:update_stocks_v3") == ("pause", "ymsync:{b7}:pause:update_stocks_v3")
    assert keys.legacy_tagged("ymsync:{q:b7}:market:get_stocks_v3") == ("market", "ymsync:{b7}:market:get_stocks_v3")
    assert keys.legacy_tagged("ymsync:{g:c1001}:lease") == ("lease", "ymsync:{c1001}:lease")
    assert keys.legacy_tagged("ymsync:{q:all}:quota:report_generate") == \
        ("quota", "ymsync:{q:all}:quota:report_generate")
    for other in ("ymsync:{c1001}:quota:update_stocks", "ymsync:{q:1}:market:m:used", "ymsync:{q:1}:buf",
                  "ymsync:{g:c1}:tasks", "ymsync:quota:update_stocks:1001"):
        assert keys.legacy_tagged(other) is None, other


def test_the_schedulers_global_keys_share_their_own_tag() -> None:
    assert {tag(k) for k in (keys.DUE, keys.CHECK, keys.TARGETS, keys.NUDGE, keys.SCHEDULER_LOCK,
                             keys.SCHEDULER_STATS)} == {"sched"}


def test_a_report_jobs_keys_share_its_tag() -> None:
    assert tag(keys.report_job("j1")) == tag(keys.report_events("j1")) == "j1"


def test_a_campaign_or_business_request_is_one_slot() -> None:
    """What request_path.py's one-script path asks of the names: the quota's and the gate's keys in
    the target's slot. A warehouse group sends through a campaign's quota and gate: another slot."""
    from ymsync.engine.targets import target

    for name in ("c1001", "b7"):
        t = target(name)
        tag = keys.hash_tag(keys.target_prefix(t.name))
        assert keys.hash_tag(keys.quota(t.method, t.quota_key)) == keys.hash_tag(keys.lease(t.gate)) == tag == name
        assert keys.hash_tag(keys.pause(t.method, t.quota_key)) == tag
        assert keys.hash_tag(keys.quota_market(t.method, t.quota_key)) == tag
