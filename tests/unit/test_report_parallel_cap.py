"""v2 report calls (generate, info) take a lease of the parallel cap of the token's business, the
cap its pushes, reads and warehouse directory share (issue 17, item 5): with all four slots of
``b7`` taken, the poller sends nothing and says when to look again."""

from __future__ import annotations

from types import SimpleNamespace

from ymsync.engine.quota import QuotaLimiter
from ymsync.market.clock import MarketClock
from ymsync.reports.poller import GENERATE, INFO, PollState, ReportPoller
from ymsync.reports.request import ReportRequest


class Market:
    clock = MarketClock()
    base_url = "http://market.test"
    timeout = (1.0, 1.0)
    max_report_bytes = 1 << 20

    def __init__(self) -> None:
        self.calls: list[str] = []

    def generate_stocks_on_warehouses_report(self, body, *, format: str):
        self.calls.append("generate")
        return SimpleNamespace(report_id="r1", estimated_generation_ms=1000)

    def get_report_info(self, report_id: str):
        self.calls.append("info")
        return SimpleNamespace(failed=False, done=False, status="PROCESSING", estimated_generation_ms=1000,
                               sub_status=None, file_url=None)


def test_v2_report_calls_wait_for_a_slot_of_the_token_business(clean_redis, tmp_path):
    market = Market()
    limiter = QuotaLimiter(clean_redis, {GENERATE: None, INFO: None})
    poller = ReportPoller(market, limiter, clean_redis, tmp_path, gate="b7")  # type: ignore[arg-type]
    held = [limiter.lease("b7") for _ in range(limiter.max_parallel)]
    assert all(held)

    step = poller.step(PollState.new(ReportRequest.build({"businessId": 7}, "CSV")))
    assert market.calls == [] and step.wait_s is not None and step.wait_s > 0

    limiter.release("b7", held.pop())
    step = poller.step(step.state)
    assert market.calls == ["generate"] and step.state.phase == "poll"

    held.append(limiter.lease("b7"))  # all four taken again: the info call waits too
    assert all(held)
    step = poller.step(step.state)
    assert market.calls == ["generate"] and step.wait_s is not None and step.wait_s > 0
    limiter.release("b7", held.pop())
    poller.step(step.state)
    assert market.calls == ["generate", "info"]
