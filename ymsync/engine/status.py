"""Per-campaign state of the stock pipeline, for ``ymsync status`` and dashboards."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ymsync.store import keys
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.quota import QuotaLimiter
from ymsync.engine.targets import business_target, target

UPDATE_STOCKS = "update_stocks"


@dataclass(frozen=True)
class CampaignStatus:
    """One stock target's state (a campaign; or a business, v3: then ``campaign`` is its id and
    ``target`` says which)."""

    campaign: int
    pending: int
    in_flight: int
    delivered: int  # SKU values the Market accepted, all time
    dead_letters: int  # held now (replay or purge removes them)
    quota_used: int  # SKU units in the current window
    quota_amount: int | None  # None: quota switched off
    paused_until: datetime | None  # no traffic before this (401/403 halt, 420 pause, backoff)
    pause_reason: str | None
    target: str = ""  # c1001 / b7 / g1001
    campaigns: tuple[int, ...] = ()  # a warehouse group's campaigns (they share this target's stock)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["paused_until"] = self.paused_until.isoformat() if self.paused_until else None
        return out


def campaign_status(buffer: StockBuffer, limiter: QuotaLimiter, campaign_id: int | str) -> CampaignStatus:
    t = target(campaign_id)
    c = t.id
    k = keys.target_keys(t.name)
    pipe = buffer.redis.pipeline(transaction=False)
    pipe.hlen(k["buf"])
    pipe.scard(k["busy"])
    pipe.hget(k["stats"], "delivered")
    pipe.hlen(k["dead"])
    pipe.llen(k["invalid"])
    pipe.pttl(k["halt"])
    pipe.get(k["halt"])
    pipe.pttl(k["backoff"])
    pipe.pttl(keys.pause(t.method, t.quota_key))
    pending, in_flight, delivered, dead, invalid, halt_ms, halt_reason, backoff_ms, pause_ms = pipe.execute()
    secs, micros = buffer.redis.time()  # not in the pipeline: a cluster's refuses TIME there
    used, amount = limiter.usage(t.method, t.quota_key)
    now = datetime.fromtimestamp(int(secs) + int(micros) / 1e6, timezone.utc)
    waits = {"halted: " + halt_reason.decode() if halt_reason else "halted": halt_ms,
             "backing off after failures": backoff_ms, "paused by a 420": pause_ms}
    reason, longest = max(waits.items(), key=lambda kv: kv[1])
    paused_until = now + timedelta(milliseconds=longest) if longest > 0 else None
    return CampaignStatus(c, int(pending), int(in_flight), int(delivered or 0), int(dead) + int(invalid), used, amount,
                          paused_until, reason if paused_until else None, t.name, t.carriers())


def all_statuses(buffer: StockBuffer, limiter: QuotaLimiter) -> list[CampaignStatus]:
    return [campaign_status(buffer, limiter, c) for c in buffer.campaigns()] + \
        [campaign_status(buffer, limiter, business_target(b)) for b in buffer.businesses()] + \
        [campaign_status(buffer, limiter, keys.group_target(g)) for g in buffer.groups()]
