"""ymsync's own Prometheus metrics, read from Redis at each scrape (``ymsync metrics``).

Nothing is counted in this process: every number is the pipeline's shared state in Redis,
the same state ``ymsync status`` shows, so any number of exporters (or none) can run and a
restart loses nothing. Counters come from the buffer's per-campaign ``stats`` hash, which only
ever grows. Flower's ``/metrics`` covers Celery itself (tasks, workers, queue latency).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Iterable, Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ymsync import connect
from ymsync.store import keys
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.quota import QuotaLimiter
from ymsync.config.settings import Settings
from ymsync.engine.status import campaign_status
from ymsync.engine.targets import business_target
from ymsync.store.client import state_client

# stats hash field -> (metric name without _total, help). Fields written by engine/buffer.py and engine/flusher.py.
COUNTERS = {
    "received": ("ymsync_updates_received", "Stock updates written to the buffer"),
    "stale": ("ymsync_updates_stale", "Updates dropped because a newer value was already held"),
    "coalesced": ("ymsync_updates_coalesced", "Updates that replaced a pending value of the same SKU"),
    "unchanged": ("ymsync_updates_unchanged", "Updates not sent: the Market was last given that same count"),
    "invalid": ("ymsync_updates_invalid", "Invalid items from foreign producers, dead-lettered"),
    "delivered": ("ymsync_skus_delivered", "SKU values the Market accepted"),
    "dead": ("ymsync_skus_dead_lettered", "SKU values dead-lettered"),
    "rate_limited": ("ymsync_rate_limited", "HTTP 420 answers to stock pushes"),
    "rate_limited_parallel": ("ymsync_rate_limited_parallel", "420 answers to stock pushes: parallel requests "
                              "(another client holds the target's slots)"),
    "rate_limited_quota": ("ymsync_rate_limited_quota", "420 answers to stock pushes: the quota per period "
                           "(the Market counted more than ymsync did)"),
    "rate_limited_active_reports": ("ymsync_rate_limited_active_reports",
                                    "420 answers: too many reports generating at once"),
    "retries": ("ymsync_push_retries", "Stock push requests that failed retryably and were retried"),
    "reclaimed": ("ymsync_skus_reclaimed", "SKUs returned to the buffer from a dead worker's batch"),
    "in_doubt": ("ymsync_skus_in_doubt", "SKUs held after a request of unknown outcome until it could no longer land"),
    "too_old": ("ymsync_updates_too_old", "Updates dropped: stamped before the state horizon"),
}
_REPORT_DONE = {"parsed", "FAILED", "ERROR"}  # the poller's last event of a job


class YmsyncCollector(Collector):
    def __init__(self, client: redis.Redis, limiter: QuotaLimiter, report_window_s: float = 24 * 3600) -> None:
        self.redis = client
        self.buffer = StockBuffer(client)
        self.limiter = limiter
        self.report_window_s = report_window_s

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ymsync_redis_up", "1 if ymsync's Redis answered this scrape")
        try:
            families = list(self._campaigns()) + list(self._quotas()) + list(self._reports())
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _campaigns(self) -> Iterable[Metric]:
        yield from self._targets("campaign", "ymsync_", self.buffer.campaigns(), lambda c: c)
        # Business (v3) targets: the same figures under their own names, labelled by business.
        yield from self._targets("business", "ymsync_business_", self.buffer.businesses(), business_target)
        # Warehouse groups: labelled by the group (its first campaign) and all its campaigns.
        yield from self._targets("group", "ymsync_group_", self.buffer.groups(), keys.group_target)

    def _targets(self, label_name: str, prefix: str, ids: list[int], name_of) -> Iterable[Metric]:
        def gauge(name: str, text: str, *extra: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(prefix + name, text, labels=[label_name, *extra])

        pending = gauge("pending_skus", "Values waiting to be sent")
        in_flight = gauge("in_flight_skus", "Values inside a request being sent (or held while its outcome is unknown)")
        dead = gauge("dead_letters", "Dead letters held now (replay or purge removes them)")
        paused = gauge("paused_seconds", "Seconds until the target may send again (420 pause, 401/403 halt or "
                       "failure backoff)")
        halted = gauge("halted", "1 while the target is halted because the Market refused the token (401/403); the "
                       "backlog waits and a probe resumes it", "reason")
        counters = {f: CounterMetricFamily(prefix + name.removeprefix("ymsync_"), text, labels=[label_name])
                    for f, (name, text) in COUNTERS.items()}
        for ident in ids:
            # The same reading as `ymsync status`, so the two never disagree about a target.
            status = campaign_status(self.buffer, self.limiter, name_of(ident))
            label = [str(ident)]
            pending.add_metric(label, status.pending)
            in_flight.add_metric(label, status.in_flight)
            dead.add_metric(label, status.dead_letters)
            wait = (status.paused_until - datetime.now(timezone.utc)).total_seconds() if status.paused_until else 0
            paused.add_metric(label, max(0.0, wait))
            if status.pause_reason and status.pause_reason.startswith("halted"):
                halted.add_metric([str(ident), status.pause_reason[:200]], 1)
            values = {key.decode(): int(value) for key, value in
                      self.redis.hgetall(keys.target_keys(self.buffer.target(name_of(ident)))["stats"]).items()}
            for f, family in counters.items():
                family.add_metric(label, values.get(f, 0))
        yield from (pending, in_flight, dead, paused, halted, *counters.values())

    def _quotas(self) -> Iterable[Metric]:
        used = GaugeMetricFamily("ymsync_quota_used", "Units counted in the current window of a Market quota",
                                 labels=["method", "key"])
        limit = GaugeMetricFamily("ymsync_quota_limit", "The quota's amount per window", labels=["method"])
        window = GaugeMetricFamily("ymsync_quota_window_seconds", "The quota's window", labels=["method"])
        foreign = GaugeMetricFamily("ymsync_quota_foreign", "Units of a quota the Market counted beyond ymsync's own "
                                    "(another client of the same cabinet), reserved in every window", labels=["method", "key"])
        market_limit = GaugeMetricFamily("ymsync_quota_market_limit", "The quota's limit as the Market's last reply "
                                         "stated it (the smaller of it and the configured amount holds)",
                                         labels=["method", "key"])
        for method, quota in sorted(self.limiter.quotas.items()):
            if quota is None:
                continue
            limit.add_metric([method], quota.amount)
            window.add_metric([method], quota.seconds)
        for raw in sorted(self.redis.scan_iter(match=keys.quota_pattern(), count=500)):
            parsed = keys.parse_quota(raw.decode())
            if parsed is None:
                continue
            method, key = parsed
            amount = self.limiter.usage(method, key)[0] if method in self.limiter.quotas else 0
            used.add_metric([method, key], amount)
            view = self.limiter.market_view(method, key)
            if "foreign" in view:
                foreign.add_metric([method, key], view["foreign"])
            if "limit" in view:
                market_limit.add_metric([method, key], view["limit"])
        yield from (used, limit, window, foreign, market_limit)

    def _reports(self) -> Iterable[Metric]:
        """Report jobs of the last day, from the poller's event lists (kept a day, then gone)."""
        jobs = GaugeMetricFamily("ymsync_report_jobs", "Report jobs with events in the last day, by last status",
                                 labels=["status"])
        duration = GaugeMetricFamily("ymsync_report_duration_seconds",
                                     "Request-to-outcome time of finished report jobs in the last day",
                                     labels=["stat"])
        by_status: dict[str, int] = {}
        durations: list[tuple[float, float]] = []  # (finished at, seconds)
        for raw in self.redis.scan_iter(match=keys.REPORT_EVENTS_PATTERN, count=500):
            first, last = self.redis.lindex(raw, 0), self.redis.lindex(raw, -1)
            if not first or not last:
                continue
            a, b = json.loads(first), json.loads(last)
            by_status[b.get("status", "?")] = by_status.get(b.get("status", "?"), 0) + 1
            if b.get("status") in _REPORT_DONE and time.time() - float(b["t"]) <= self.report_window_s:
                durations.append((float(b["t"]), float(b["t"]) - float(a["t"])))
        for status, n in sorted(by_status.items()):
            jobs.add_metric([status], n)
        if durations:
            secs = [d for _, d in durations]
            duration.add_metric(["last"], max(durations)[1])
            duration.add_metric(["max"], max(secs))
            duration.add_metric(["mean"], sum(secs) / len(secs))
        yield from (jobs, duration)


def registry_for(settings: Settings, client: redis.Redis | None = None) -> CollectorRegistry:
    """A registry holding only ymsync's collector (no process metrics: those belong to the host)."""
    client = client or state_client(settings, timeout_s=5)
    limiter = connect.quota_limiter(client, settings)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(YmsyncCollector(client, limiter))
    return registry


__all__ = ["COUNTERS", "YmsyncCollector", "registry_for"]
