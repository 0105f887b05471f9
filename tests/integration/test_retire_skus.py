"""Retiring SKUs with real workers and the sandbox: the final count 0 reaches the Market before the
records go, and reconciliation then leaves the retired SKUs alone (issue 21 item 6)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.support.processes import wait_for
from tests.support.stock_harness import sandbox_config
from ymsync.cli import main
from ymsync.cli import push as push_cli
from ymsync.config.settings import get_settings
from ymsync.reads.reconcile import Reconciler
from ymsync.reads.reconcile_core import MarketStock
from ymsync.store import keys

pytestmark = pytest.mark.integration

C = 3201


def test_retire_sends_the_final_zero_then_forgets_the_skus(bench_for, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = bench_for(sandbox_config())
    bench.start_worker("retire")
    levels = {f"R-{i}": 10 + i for i in range(6)}
    bench.push(C, levels.items())
    bench.wait_latest(C, 60)
    # A dead letter of one of them, as a refused value would leave it.
    bench.redis.hset(keys.campaign_keys(C)["dead"], "R-1", '{"sku": "R-1", "count": 3, "stamp_ms": 1, '
                     '"first_ms": 1, "reason": "400", "at_ms": 1}')

    monkeypatch.setenv("REDIS_URL", bench.redis_url)
    for name in ("YM_API_KEY", "YM_CABINETS_FILE", "YM_CAMPAIGN_IDS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    push_cli._settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["retire", "--campaign", str(C), "--final-count", "0", "R-0", "R-1"])
    finally:
        get_settings.cache_clear()
        push_cli._settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "retired 2 SKU(s) of campaign 3201" in result.output and "1 dead letter(s) dropped" in result.output

    expected = {**levels, "R-0": 0, "R-1": 0}
    bench.wait_latest(C, 60, expected)  # the final zero went out as an ordinary update...
    wait_for(lambda: bench.redis.hlen(keys.campaign_keys(C)["retired"]) == 0, 30, "the retirement marks cleared")
    delivered = bench.buffer.delivered(C)
    assert "R-0" not in delivered and "R-1" not in delivered and "R-2" in delivered  # ...and left no record
    assert bench.buffer.dead_letters(C) == []

    # The shop deleted the products: the Market lists them no more. Nothing retired is re-queued.
    market = {sku: MarketStock(count) for sku, count in bench.stocks(C).items() if sku not in ("R-0", "R-1")}
    reconciled = Reconciler(bench.buffer, reader=None).compare(C, market, fix=True)  # type: ignore[arg-type]
    assert reconciled.rows == [] and reconciled.requeued == 0 and reconciled.checked == 4
    assert bench.buffer.pending(C) == 0
