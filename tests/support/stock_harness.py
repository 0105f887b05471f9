"""A stock-pipeline test bench: private Redis, the sandbox over HTTP and real Celery workers.

Failure tests share it: they start a sandbox with the limits they need, push updates with
explicit, increasing stamps (so "latest" is unambiguous), start worker processes and then
judge the pipeline by what the sandbox saw (its admin API), never by what ymsync says it did.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

import redis
import requests

from tests.support.processes import CeleryWorker, wait_for
from ymsync.store import keys
from ymsync import push_stocks
from ymsync.engine.buffer import StockBuffer
from ymsync.sandbox import MarketSandbox, SandboxConfig
from ymsync.config.settings import Quota

# Only updateStocks is exercised; the other quotas are off so they cannot interfere.
QUIET_QUOTAS: dict[str, Quota | None] = {"getStocks": None, "generateStocksOnWarehousesReport": None,
                                         "getReportInfo": None}


def sandbox_config(update_stocks: Quota | None = Quota(100_000, 60), **kwargs: Any) -> SandboxConfig:
    return SandboxConfig(quotas={"updateStocks": update_stocks, **QUIET_QUOTAS}, **kwargs)


class Stamps:
    """Strictly increasing ISO stamps in the recent past (the Market refuses ones older than a day)."""

    def __init__(self) -> None:
        self.base = datetime.now(timezone.utc) - timedelta(minutes=20)
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return (self.base + timedelta(milliseconds=self.n)).isoformat()


class Bench:
    def __init__(self, market: MarketSandbox, redis_url: str, tmp_path: Path) -> None:
        self.market, self.redis_url, self.tmp_path = market, redis_url, tmp_path
        self.redis = redis.Redis.from_url(redis_url)
        self.buffer = StockBuffer(self.redis)
        self.stamps = Stamps()
        self.latest: dict[int, dict[str, int]] = {}
        self.workers: list[CeleryWorker] = []

    # --- producing ------------------------------------------------------------------------

    def push(self, campaign: int, levels: Iterable[tuple[str, int]]) -> None:
        """Queue ``(sku, count)`` updates, each stamped later than every earlier one."""
        items = [{"sku": sku, "count": count, "updatedAt": self.stamps.next()} for sku, count in levels]
        for start in range(0, len(items), 1000):
            push_stocks(campaign, items[start:start + 1000], buffer=self.buffer)
        self.latest.setdefault(campaign, {}).update((item["sku"], item["count"]) for item in items)

    # --- workers --------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        # The sandbox applies a request before it answers (its late-apply fault aside, which a test
        # sets a bound for), so a request of unknown outcome can land no later than 2 s after it
        # was sent: SKUs are held that long, not the production default of minutes.
        return {"REDIS_URL": self.redis_url, "YM_API_URL": self.market.url, "YM_API_KEY": "sandbox-token",
                "YM_FLUSH_DELAY_MS": "50", "YM_UNKNOWN_OUTCOME_S": "2", "YM_MAX_BACKOFF_S": "5", **extra}

    def start_worker(self, name: str, concurrency: int = 2, **env: str) -> CeleryWorker:
        worker = CeleryWorker(self.env(**env), concurrency=concurrency, name=name,
                              log_path=self.tmp_path / f"{name}.log").start()
        self.workers.append(worker)
        return worker

    def reset(self) -> None:
        """Between tests that share this bench and its workers: the sandbox forgets stock, poison,
        counters and quota windows (keeping its configuration), Redis forgets every ymsync key
        (Celery's own keys stay: the running workers' queues and bindings), the bench its values."""
        self.admin("reset", {})
        keys_left = list(self.redis.scan_iter(f"{keys.PREFIX}*", count=1000))
        for start in range(0, len(keys_left), 500):
            self.redis.delete(*keys_left[start:start + 500])
        self.latest.clear()
        self.stamps = Stamps()

    def stop(self) -> None:
        """Teardown: SIGKILL (a graceful stop costs seconds per worker and no test here judges it; the
        next test empties Redis, so nothing a killed worker leaves behind carries over)."""
        for worker in self.workers:
            worker.kill()

    # --- the sandbox's view ---------------------------------------------------------------

    def admin(self, route: str, payload: Any = None) -> Any:
        url = f"{self.market.url}/_admin/{route}"
        # Generous: the sandbox shares this process's GIL, and a 20k-SKU state is a large reply.
        response = requests.post(url, json=payload, timeout=30) if payload is not None else requests.get(url, timeout=30)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict[str, Any]:
        return self.admin("state")

    def stocks(self, campaign: int) -> dict[str, int]:
        return {sku: v["count"] for sku, v in self.admin(f"stocks/{campaign}").items()}

    def log(self, op: str = "updateStocks") -> list[dict[str, Any]]:
        return [entry for entry in self.admin("log") if entry["op"] == op]

    def units(self, campaign: int) -> int:
        """SKUs the sandbox has applied for ``campaign`` (each retry counts again)."""
        return self.state()["campaigns"].get(str(campaign), {}).get("sku_units", 0)

    def requests_by_status(self, op: str = "updateStocks") -> dict[int, int]:
        return {int(k.split()[1]): v for k, v in self.state()["requests"].items() if k.split()[0] == op}

    def wait_latest(self, campaign: int, timeout: float, expected: dict[str, int] | None = None) -> None:
        want = self.latest[campaign] if expected is None else expected
        try:
            # The Redis check is cheap; the sandbox's whole state only once nothing is left to send.
            wait_for(lambda: self.settled(campaign) and self.stocks(campaign) == want, timeout,
                     f"the sandbox to hold the latest {len(want)} values of campaign {campaign}", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose(campaign)}") from None

    def diagnose(self, campaign: int) -> str:
        """What a timed-out wait needs to be understood: both sides' view and the workers' logs."""
        k = keys.campaign_keys(campaign)
        have = self.stocks(campaign)
        want = self.latest.get(campaign, {})
        wrong = {sku: (have.get(sku), count) for sku, count in want.items() if have.get(sku) != count}
        lines = [f"sandbox differs on {len(wrong)} SKUs, e.g. {list(wrong.items())[:3]}",
                 f"buffer: pending={self.buffer.pending(campaign)} in_flight={self.buffer.in_flight(campaign)} "
                 f"batches={self.redis.zrange(k['batches'], 0, -1, withscores=True)} "
                 f"tasks={self.redis.zrange(k['tasks'], 0, -1, withscores=True)} halt_ttl={self.redis.pttl(k['halt'])} "
                 f"stats={self.buffer.stats(campaign)} due={self.redis.zrange(keys.DUE, 0, -1, withscores=True)} "
                 f"check={self.redis.zrange(keys.CHECK, 0, -1, withscores=True)}",
                 f"sandbox: { {k: v for k, v in self.state().items() if k != 'faults'} }"]
        for worker in self.workers:
            text = worker.log_path.read_text(errors="replace") if worker.log_path and worker.log_path.exists() else ""
            alive = worker.process is not None and worker.process.poll() is None
            lines.append(f"--- worker {worker.name} (alive={alive}), last lines:\n" + "\n".join(text.splitlines()[-25:]))
        return "\n".join(lines)

    def settled(self, campaign: int) -> bool:
        """Nothing pending or in flight in ymsync's buffer."""
        return self.buffer.pending(campaign) == 0 and self.buffer.in_flight(campaign) == 0

    def halted(self, campaign: int) -> bool:
        return bool(self.redis.exists(keys.campaign_keys(campaign)["halt"]))

    def quiet_period(self, seconds: float) -> None:
        """Let time pass to show that nothing happens in it (absence cannot be waited for)."""
        time.sleep(seconds)
