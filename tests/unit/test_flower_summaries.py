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


def test_flush_tasks_are_sent_without_a_task_sent_event_and_others_with_one():
    # As Celery.send_task passes it (positionally, from task_send_sent_event) and as a keyword.
    positional = [None] * 12 + [True]  # countdown ... soft_time_limit, then create_sent_event
    flush = app.amqp.as_task_v2("t3", "ymsync.stocks.flush", ("c7", "slot", 1), {}, *positional)
    assert flush.sent_event is None
    assert app.amqp.as_task_v2("t4", "ymsync.stocks.flush", ("c7",), {}, create_sent_event=True).sent_event is None
    update = app.amqp.as_task_v2("t5", "ymsync.stocks.update", (7, []), {}, *positional)
    assert update.sent_event is not None and update.sent_event["name"] == "ymsync.stocks.update"


def test_a_flush_sent_through_the_app_publishes_no_task_sent_event(monkeypatch):
    sent_events: list[str] = []
    assert app.conf.task_send_sent_event  # celeryconfig: events for Flower
    original = app.amqp.as_task_v2

    def spy(*args, **kwargs):
        message = original(*args, **kwargs)
        sent_events.append(args[1] if message.sent_event else "")
        return message

    monkeypatch.setattr(app.amqp, "create_task_message", spy)
    for name in ("ymsync.stocks.flush", "ymsync.stocks.update"):
        with app.connection_for_write("memory://") as connection:
            # ignore_result: else the result backend (Redis, from the environment) is asked to watch
            # for the result, a connection this test has no server for.
            app.send_task(name, ("c7",), connection=connection, ignore_result=True)
    assert sent_events == ["", "ymsync.stocks.update"]
