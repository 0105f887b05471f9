"""The report job protocol on a real redis-server: claims, leases, fencing, dispatch, duplicates.

These are the rules that make a redelivered or duplicated message harmless (no second report, no
second chord part) and let a job whose worker died mid-step come back by itself."""

from __future__ import annotations

import time

import pytest

from ymsync.store import keys
from ymsync.reports.jobs import ReportJobs

pytestmark = pytest.mark.integration
SIG = {"task": "ymsync.reports.stocks_on_warehouses", "args": [{"campaignId": 1}, "CSV"], "kwargs": {},
       "options": {"task_id": "j1", "group_id": "g1", "group_index": 0, "chord": {"task": "merge"}}}


@pytest.fixture()
def store(clean_redis):
    return ReportJobs(clean_redis, lease_s=0.4, resend_after_s=0.5, ttl_s=600, done_ttl_s=60)


def test_one_step_at_a_time_and_only_when_due(store, clean_redis):
    first = store.claim("j1", {"phase": "generate"}, SIG)
    assert (first.verdict, first.payload) == ("run", {"phase": "generate"})
    assert store.claim("j1", {"phase": "generate"}, SIG).verdict == "busy"  # a duplicate while it runs
    due = store.wait("j1", first.token, {"phase": "poll", "report_id": "r1"}, 0.3)
    assert clean_redis.zscore(keys.REPORT_DUE, "j1") == due
    assert store.claim("j1", None, SIG).verdict == "early"  # a stale redelivery before it is due
    assert store.dispatch("j1").verdict == "later"
    time.sleep(0.35)
    sent = store.dispatch("j1")
    assert sent.verdict == "send" and sent.signature == SIG and 0 <= sent.lateness_ms < 200
    assert store.dispatch("j1").verdict == "later"  # sent: not again until resend_after
    second = store.claim("j1", None, SIG)
    assert (second.verdict, second.payload) == ("run", {"phase": "poll", "report_id": "r1"})
    assert store.claim("j1", None, SIG).verdict == "busy"  # the second copy of a sent message


def test_a_step_whose_worker_died_comes_back_and_its_late_writes_are_fenced(store):
    dead = store.claim("j2", {"phase": "poll"}, SIG)
    time.sleep(0.45)  # the lease lapses: the worker is gone
    assert store.dispatch("j2").verdict == "send"
    taken = store.claim("j2", None, SIG)
    assert taken.verdict == "run"
    assert store.wait("j2", dead.token, {"phase": "stale"}, 0) == -1  # the old step cannot write
    assert store.finish("j2", dead.token, {"status": "DONE"}) is False
    assert store.finish("j2", taken.token, {"status": "DONE", "rows": 3}) is True
    assert store.get("j2")["mode"] == "reporting"


def test_an_outcome_is_reported_once_then_every_message_is_dropped(store, clean_redis):
    step = store.claim("j3", {"phase": "poll"}, SIG)
    store.finish("j3", step.token, {"status": "DONE", "rows": 3})
    assert store.claim("j3", None, SIG).verdict == "busy"  # the reporter is still at it
    time.sleep(0.45)  # ... and died before Celery had the result: the outcome is handed over again
    assert store.dispatch("j3").verdict == "send"
    again = store.claim("j3", None, SIG)
    assert (again.verdict, again.payload) == ("report", {"status": "DONE", "rows": 3})
    store.reported("j3")
    assert store.claim("j3", {"phase": "generate"}, SIG).verdict == "done"
    assert store.dispatch("j3").verdict == "gone"
    assert clean_redis.zscore(keys.REPORT_DUE, "j3") is None
    assert set(store.get("j3")) == {"mode", "outcome"} and 0 < clean_redis.ttl(keys.report_job("j3")) <= 60


def test_records_are_bounded_and_a_vanished_job_leaves_the_index(store, clean_redis):
    store.claim("j4", {"phase": "generate"}, SIG)
    assert 0 < clean_redis.ttl(keys.report_job("j4")) <= 600
    clean_redis.delete(keys.report_job("j4"))  # expired
    time.sleep(0.45)
    now, due, _ = store.due()
    assert due == ["j4"] and store.dispatch("j4").verdict == "gone"
    assert clean_redis.zcard(keys.REPORT_DUE) == 0
    assert keys.report_job("j4").count("{j4}") == 1 and keys.report_events("j4").count("{j4}") == 1
