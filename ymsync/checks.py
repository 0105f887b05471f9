"""``ymsync check``'s findings: is this deployment fit to go live? Framework-neutral (the broker's
consumers come in through a callable, so the library needs no Celery).

Each check answers with :class:`Finding` rows: ``ok``, ``warn`` (works, but a person should look)
or ``fail`` (ymsync would lose updates or never deliver them). The token probe is one cheap Market
call per cabinet, made through the engine's call policy: it takes its quota and a parallel lease
from the same Redis windows every worker uses, so a check never spends what a push needs and never
pushes a worker into a 420.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import redis
from urllib.parse import urlsplit, urlunsplit

from ymsync import connect
from ymsync.config.cabinets import Cabinet
from ymsync.config.settings import DEFAULT_REDIS_URL, Settings
from ymsync.engine.call_policy import Call, CallGaveUp, CallPolicy
from ymsync.market import MarketError, MarketForbidden, MarketUnauthorized
from ymsync.reads.campaign import METHOD as GET_STOCKS
from ymsync.reads.warehouses import METHOD as WAREHOUSES
from ymsync.store.eviction import eviction_problem
from ymsync.store.keys import business_target, campaign_target

OK, WARN, FAIL = "ok", "warn", "fail"
PROBE_WAIT_S = 5.0  # the longest a probe waits for its quota or lease before saying "not now"


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # OK, WARN or FAIL
    detail: str


def check_redis(settings: Settings, client: redis.Redis) -> list[Finding]:
    """Redis answers, keeps every key (maxmemory-policy noeviction), and was chosen on purpose."""
    found: list[Finding] = []
    if settings.redis_url == DEFAULT_REDIS_URL:
        found.append(Finding("REDIS_URL", WARN, f"left at its default {DEFAULT_REDIS_URL}: on a machine "
                                                "where another application uses that Redis, ymsync writes into it"))
    try:
        client.ping()
        problem = eviction_problem(client)
    except redis.RedisError as exc:
        return found + [Finding("redis", FAIL, f"cannot reach {_safe_url(settings.redis_url)}: {exc}")]
    found.append(Finding("redis", OK, f"{_safe_url(settings.redis_url)} answers"))
    found.append(Finding("redis eviction", FAIL, problem) if problem
                 else Finding("redis eviction", OK, "maxmemory-policy noeviction: no key is ever evicted"))
    return found


def check_consumers(consumers: Callable[[], Mapping[str, Iterable[str]]], broker_url: str) -> list[Finding]:
    """The broker answers and every ymsync queue has at least one worker consuming it."""
    try:
        by_queue = consumers()
    except Exception as exc:  # whatever the transport raises: the operator needs its message
        return [Finding("broker", FAIL, f"cannot reach {_safe_url(broker_url)}: {exc}")]
    found = [Finding("broker", OK, f"{_safe_url(broker_url)} answers")]
    for queue, workers in sorted(by_queue.items()):
        names = sorted(workers)
        found.append(Finding(f"queue {queue}", OK, f"consumed by {', '.join(names)}") if names else
                     Finding(f"queue {queue}", FAIL, f"no worker consumes it (start one: celery -A "
                                                     f"ymsync_celery.tasks worker -Q {queue})"))
    return found


def probe_campaign(cabinet: Cabinet, extra_campaigns: Iterable[int]) -> int | None:
    """The campaign a v2 cabinet's token is probed on: its own first, else one the operator named."""
    for campaign in (*cabinet.campaigns, *extra_campaigns):
        return int(campaign)
    return None


def check_token(settings: Settings, client: redis.Redis, cabinet: Cabinet,
                extra_campaigns: Iterable[int] = (), *, max_wait_s: float = PROBE_WAIT_S) -> Finding:
    """One cheap call with the cabinet's token: v3 cabinets list one warehouse page (limit 1), v2
    cabinets read one offer of a campaign (getStocks, limit 1: one unit of 100,000 a minute)."""
    name = f"token {cabinet.name}"
    market = connect.market_client(settings, cabinet)
    policy = CallPolicy(connect.quota_limiter(client, settings, cabinet))
    if cabinet.mode == "v3" and cabinet.business_id is not None:
        gate = business_target(cabinet.business_id)
        call = Call(WAREHOUSES, gate, gate, market.clock)
        what = f"getPartnerWarehouses business {cabinet.business_id}"
        request: Callable[[int], object] = lambda _units: market.get_partner_warehouses(cabinet.business_id, limit=1)
    else:
        campaign = probe_campaign(cabinet, extra_campaigns)
        if campaign is None:
            return Finding(name, WARN, f"not probed: the cabinet lists no campaign (token from {cabinet.token_source}); "
                                       "name one with --campaign ID")
        call = Call(GET_STOCKS, str(campaign), campaign_target(campaign), market.clock, counts_response=True)
        what = f"getStocks campaign {campaign}"
        request = lambda _units: market.get_stocks(campaign, limit=1)
    try:
        policy.call(call, request, sleep=time.sleep, max_wait_s=max_wait_s, retries=1, what=what)
    except (MarketUnauthorized, MarketForbidden) as exc:
        return Finding(name, FAIL, f"{what}: the Market refused the token from {cabinet.token_source} "
                                   f"(HTTP {exc.status}): {exc.message}")
    except CallGaveUp as exc:
        if exc.cause is not None:  # the Market did not answer (network, 5xx): nothing can be delivered
            return Finding(name, FAIL, f"the Market at {settings.api_url} did not answer: {exc.message}")
        return Finding(name, WARN, f"not probed now (the shared quota is busy): {exc.message}")
    except MarketError as exc:
        return Finding(name, FAIL, f"{what}: HTTP {exc.status}: {exc.message}")
    finally:
        market.close()
    return Finding(name, OK, f"{what}: accepted (token from {cabinet.token_source})")


def _safe_url(url: str) -> str:
    """The URL without its password (a broker or Redis URL may carry one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def failed(findings: Iterable[Finding]) -> bool:
    return any(f.status == FAIL for f in findings)


__all__ = ["FAIL", "OK", "WARN", "Finding", "check_consumers", "check_redis", "check_token", "failed",
           "probe_campaign"]
