"""celeryconfig.beat_schedule: built from the settings, naming tasks that exist, on the reports queue."""

from __future__ import annotations

import json

import celeryconfig
from ymsync.reports.request import ReportRequest
from ymsync.config.settings import load_settings


def registered_tasks() -> set[str]:
    import tasks.reads  # noqa: F401  (registers the task names)
    import tasks.reports  # noqa: F401
    from tasks import app

    return set(app.tasks)


def test_empty_by_default():
    assert celeryconfig.build_beat_schedule(load_settings({})) == {}


def test_reconcile_per_campaign_and_snapshot():
    settings = load_settings({"YM_RECONCILE_CAMPAIGNS": "1001,1002", "YM_RECONCILE_EVERY": "2h",
                              "YM_RECONCILE_FIX": "true", "YM_SNAPSHOT_CAMPAIGNS": "1002,1003",
                              "YM_SNAPSHOT_EVERY": "1d", "YM_SNAPSHOT_FORMAT": "JSON"})
    schedule = celeryconfig.build_beat_schedule(settings)
    assert set(schedule) == {"reconcile-1001", "reconcile-1002", "snapshot"}
    entry = schedule["reconcile-1001"]
    assert entry["task"] == "ymsync.reads.reconcile"
    assert (entry["schedule"], entry["args"], entry["kwargs"]) == (7200, (1001,), {"fix": True})
    assert entry["options"]["queue"] == "reports"
    assert entry["options"]["expires"] == 7200
    assert entry["options"]["argsrepr"] == "(campaign=1001)"

    snap = schedule["snapshot"]
    assert snap["task"] == "ymsync.reports.snapshot"
    assert snap["schedule"] == 86400 and snap["options"]["queue"] == "reports"
    (requests,) = snap["args"]
    # Each part is a request the snapshot task will accept, and the args travel as JSON.
    assert [ReportRequest.from_dict(r).to_dict() for r in requests] == requests
    assert [r["request"]["campaignId"] for r in requests] == [1002, 1003]
    json.dumps([e["args"] for e in schedule.values()])


def test_scheduled_task_names_exist_and_route_to_reports():
    settings = load_settings({"YM_RECONCILE_CAMPAIGNS": "1", "YM_SNAPSHOT_CAMPAIGNS": "1"})
    names = {e["task"] for e in celeryconfig.build_beat_schedule(settings).values()}
    assert names <= registered_tasks()
    from tasks import app

    for name in names:
        assert app.amqp.router.route({}, name)["queue"].name == "reports"


def test_schedule_accepted_by_celery_beat():
    from celery.beat import ScheduleEntry

    from tasks import app

    settings = load_settings({"YM_RECONCILE_CAMPAIGNS": "1", "YM_SNAPSHOT_CAMPAIGNS": "1"})
    for name, entry in celeryconfig.build_beat_schedule(settings).items():
        parsed = ScheduleEntry(name=name, app=app, **entry)
        assert parsed.schedule.run_every.total_seconds() == entry["schedule"]


def test_snapshot_mixes_v2_campaign_and_v3_business_reports():
    settings = load_settings({"YM_API_KEY": "tok-en", "YM_BUSINESS_ID": "7", "YM_API_MODE": "v3",
                              "YM_FBY_CAMPAIGNS": "3001", "YM_SNAPSHOT_CAMPAIGNS": "1001,3001",
                              "YM_SNAPSHOT_BUSINESSES": "7", "YM_SNAPSHOT_EVERY": "6h"})
    entry = celeryconfig.build_beat_schedule(settings)["snapshot"]
    assert entry["task"] in registered_tasks() and entry["schedule"] == 6 * 3600
    (requests,) = entry["args"]
    assert requests == [
        {"request": {"businessId": 7, "campaignIds": [1001]}, "format": "CSV"},  # DBS/FBS/Express: no campaignId
        {"request": {"campaignId": 3001}, "format": "CSV"},  # FBY keeps campaignId
        {"request": {"businessId": 7}, "format": "CSV", "api": "v3"},
    ]
    built = [ReportRequest.from_dict(r) for r in json.loads(json.dumps(requests))]  # valid after the JSON trip
    assert [r.api for r in built] == ["v2", "v2", "v3"]
    assert "tok-en" not in json.dumps(entry)
    assert entry["options"]["argsrepr"] == "(3 reports: campaigns 1001,3001; businesses 7 (v3), CSV)"
    # Only YM_SNAPSHOT_BUSINESSES with YM_SNAPSHOT_EVERY is a schedule too.
    only = load_settings({"YM_API_KEY": "tok-en", "YM_BUSINESS_ID": "7", "YM_API_MODE": "v3",
                          "YM_SNAPSHOT_BUSINESSES": "7", "YM_SNAPSHOT_EVERY": "1d"})
    assert celeryconfig.build_beat_schedule(only)["snapshot"]["args"] == \
        ([{"request": {"businessId": 7}, "format": "CSV", "api": "v3"}],)


def test_reconcile_per_v3_business_on_the_reports_queue():
    settings = load_settings({"YM_API_KEY": "tok-en", "YM_BUSINESS_ID": "7", "YM_API_MODE": "v3",
                              "YM_RECONCILE_BUSINESSES": "7", "YM_RECONCILE_EVERY": "30m", "YM_RECONCILE_FIX": "1",
                              "YM_RECONCILE_GRACE": "2m"})
    assert settings.reconcile_grace_s == 120
    schedule = celeryconfig.build_beat_schedule(settings)
    assert set(schedule) == {"reconcile-business-7"}
    entry = schedule["reconcile-business-7"]
    assert entry["task"] == "ymsync.reads.reconcile_business" and entry["task"] in registered_tasks()
    assert (entry["schedule"], entry["args"], entry["kwargs"]) == (1800, (7,), {"fix": True})
    assert entry["options"]["queue"] == "reports" and entry["options"]["argsrepr"] == "(business=7)"


def test_reconcile_of_a_business_not_in_v3_refused_at_start():
    import pytest

    from ymsync.config.settings import SettingsError

    with pytest.raises(SettingsError, match="YM_RECONCILE_BUSINESSES: business 7: .* set YM_API_MODE = v3"):
        load_settings({"YM_API_KEY": "tok-en", "YM_BUSINESS_ID": "7", "YM_RECONCILE_BUSINESSES": "7"})
