"""What Flower is shown when a sender gives no argsrepr: summaries, never payloads."""

from __future__ import annotations

from tasks import app
from tasks.flower import summarize


def test_the_public_update_task_reads_like_send_updates():
    items = [{"sku": f"SKU-{i}", "count": i} for i in range(2500)]
    assert summarize("ymsync.stocks.update", (1001, items), {}) == ("(campaign=1001, 2500 SKUs)", "{}")


def test_other_arguments_by_size_and_long_strings_by_length():
    args, kwargs = summarize("ymsync.reports.stocks_on_warehouses", ({"campaignId": 1}, "CSV"),
                             {"state": {"a": 1, "b": 2}, "out_dir": "x" * 200, "n": None})
    assert args == "({1 keys}, 'CSV')"
    assert kwargs == "{state={2 keys}, out_dir=<200 chars>, n=None}"


def test_the_app_uses_summaries_and_keeps_given_reprs():
    payload = [{"sku": "SECRET-PAYLOAD", "count": 1}] * 3
    message = app.amqp.as_task_v2("t1", "ymsync.stocks.update", (7, payload), {}, create_sent_event=True)
    assert message.headers["argsrepr"] == "(campaign=7, 3 SKUs)"
    assert message.sent_event["args"] == "(campaign=7, 3 SKUs)"  # the task-sent event Flower reads
    given = app.amqp.as_task_v2("t2", "ymsync.stocks.flush", (7,), {}, argsrepr="(campaign=7)")
    assert given.headers["argsrepr"] == "(campaign=7)"
