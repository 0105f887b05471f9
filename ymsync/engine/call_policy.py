"""One Market call policy: quota → parallel lease → call → settle, and what a reply means.

Every Market call ymsync makes (stock pushes v2 and v3, stock reads v2 and v3, the warehouse
directory, report generation and polling) goes through :class:`CallPolicy`, so they agree on:

- **the parallel cap**: a request holds one of the ``max_parallel`` leases of its gate (the
  campaign ``c1001`` or the business ``b7``, see ``keys.lease``) while in flight;
- **what a reply means** (:class:`Kind`): success; a 420 of one of the Market's three kinds, told
  apart by its message (``"... parallel requests ..."``: the cap, retry in a moment; ``"Active
  reports limit exceeded"``: too many reports generating; any other 420: a resource's limit per
  period, ``X-RateLimit-Resource-Until`` says until when); 401/403 (halt: the token is refused);
  another 4xx (refused: the caller decides, a 400 is split, a 404 ends a job); 5xx, 423, a
  timeout or a dropped reply (unknown outcome: the request may still land); a request that never
  left this process (not sent);
- **how long to wait after a 420**: its ``Until`` measured on the Market's clock
  (:class:`MarketClock`, from the replies' ``Date`` headers), never the worker's, at least
  ``MIN_WAIT_S`` and at most what the Market can truly ask: the quota's period, plus the second
  Until is rounded up to, plus what the clock cannot tell (a 420 asking longer is not believed;
  one asking a moment past the period is: its window frees at the period, its header says the
  next whole second, and a request before it would be one the Market said to hold); a parallel
  420 waits at most ``PARALLEL_WAIT_S`` (another client's requests end in moments); every worker
  waits, through the limiter's pause;
- **what a request costs** (:func:`cost_kept`), the Market's documented rule (README, "Quotas
  and what a request costs"): a reply of 2xx or 4xx (420 included) is counted, a 5xx is not; a
  request whose reply never came may have been counted, so it is; one never sent is not.

The policy never sleeps: :meth:`CallPolicy.admit` and :meth:`CallPolicy.attempt` answer with a
wait, which the Flusher writes back as a due time and the report poller returns as a Step.
:meth:`CallPolicy.call` is the blocking wrapper for reads and the warehouse directory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Generic, Protocol, TypeVar

from ymsync.engine.quota import Grant, MarketCount, QuotaLimiter
from ymsync.market.clock import MarketClock
from ymsync.market.errors import (MarketActiveReportsLimit, MarketError, MarketForbidden, MarketNetworkError,
                                  MarketParallelLimitExceeded, MarketRateLimited, MarketUnauthorized,
                                  RateLimitInfo)
from ymsync.market.schemas import InvalidRequest

log = logging.getLogger("ymsync.engine.call_policy")

T = TypeVar("T")

MIN_WAIT_S = 0.05  # the shortest wait after a 420 or for a lease: the Market's clock has 1 s steps
PARALLEL_WAIT_S = 1.0  # a parallel 420: slots held by another client free up within moments
UNTIL_STEP_S = 1.0  # Until is an RFC 822 date: whole seconds, rounded up by the Market
DEFAULT_MAX_PAUSE_S = 120.0  # cap of a 420's wait when the method has no quota to bound it
NO_UNTIL_S = 1.0  # a resource 420 without Until (the Market always sends one): look again soon


class Kind(str, Enum):
    OK = "ok"
    WAIT = "wait"  # not sent: quota or lease not available now (``wait_s``)
    PARALLEL = "parallel"  # 420 "parallel requests"
    QUOTA = "quota"  # 420 of a resource's limit per period
    ACTIVE_REPORTS = "active-reports"  # 420 "Active reports limit exceeded"
    HALT = "halt"  # 401/403: the token is refused
    REFUSED = "refused"  # another 4xx: the Market said no to this request
    UNKNOWN = "unknown"  # 5xx, 423, timeout, dropped reply: it may still land
    NOT_SENT = "not-sent"  # never left this process (refused by our own schema, connection refused)

    @property
    def rate_limited(self) -> bool:
        return self in (Kind.PARALLEL, Kind.QUOTA, Kind.ACTIVE_REPORTS)


@dataclass(frozen=True)
class Call:
    """One kind of request: whose quota (``method`` units at ``quota_key``), whose parallel cap
    (``gate``; None: the call counts against no cap ymsync keeps), and how much to reserve.
    ``counts_response``: the quota counts what the reply returns (getStocks: offers), so a
    refusal, which returns nothing, costs nothing."""

    method: str
    quota_key: str
    gate: str | None
    clock: MarketClock
    want: int = 1
    minimum: int = 1
    counts_response: bool = False


@dataclass
class Ticket:
    """Quota granted and a lease held for one request; ``keep_s`` > 0 holds the lease that much
    longer when released (a request of unknown outcome may still be in flight at the Market)."""

    call: Call
    grant: Grant
    lease_id: str | None
    keep_s: float = 0.0


@dataclass
class Reply(Generic[T]):
    kind: Kind
    value: T | None = None
    error: MarketError | None = None
    wait_s: float = 0.0  # WAIT and 420s: how long every caller should wait before the next try

    @property
    def ok(self) -> bool:
        return self.kind is Kind.OK


class CallStats(Protocol):
    """What the blocking wrapper counts (``ReadStats`` has these)."""

    requests: int
    rate_limited: int
    retries: int
    waited_s: float


class CallGaveUp(MarketError):
    """The blocking wrapper would have to wait past its budget (quota, 420s) or retried too often."""

    def __init__(self, message: str, *, wait_s: float = 0.0, cause: MarketError | None = None) -> None:
        super().__init__(message, status=cause.status if cause else None)
        self.wait_s, self.cause = wait_s, cause


def classify(exc: MarketError) -> Kind:
    if isinstance(exc, MarketParallelLimitExceeded):
        return Kind.PARALLEL
    if isinstance(exc, MarketActiveReportsLimit):
        return Kind.ACTIVE_REPORTS
    if isinstance(exc, MarketRateLimited):
        return Kind.QUOTA
    if isinstance(exc, (MarketUnauthorized, MarketForbidden)):
        return Kind.HALT
    if isinstance(exc, MarketNetworkError) and not exc.sent:
        return Kind.NOT_SENT
    if exc.outcome_unknown:
        return Kind.UNKNOWN
    return Kind.REFUSED


def cost_kept(exc: MarketError | None, reserved: int, counts_response: bool = False) -> int:
    """Units of a reservation the Market counted: the whole request on a 2xx/4xx reply (a reply
    carrying nothing on a 4xx when the quota counts the reply), nothing on a 5xx, all of it when no
    reply came (it may have been a 2xx), nothing when the request never left."""
    if exc is None:
        return reserved
    if isinstance(exc, MarketNetworkError):
        return reserved if exc.sent else 0
    status = exc.status or 0
    if status >= 500:
        return 0
    if 400 <= status < 500:
        return 0 if counts_response else reserved
    return reserved  # a reply we could not read (status 200 or none): it was served


def market_count(call: Call, rate: RateLimitInfo | None) -> MarketCount | None:
    """A reply's X-RateLimit-Resource-* headers as the limiter takes them: Until as seconds from
    now on the Market's clock (MarketClock), never the worker's."""
    if rate is None or (rate.limit is None and rate.remaining is None):
        return None
    until_s = call.clock.seconds_until(rate.until.timestamp()) if rate.until is not None else None
    return MarketCount(rate.limit, rate.remaining, until_s)


class CallPolicy:
    def __init__(self, limiter: QuotaLimiter) -> None:
        self.limiter = limiter

    # --- the non-blocking steps ---------------------------------------------------------------

    def admit(self, call: Call) -> Ticket | float:
        """Quota and a lease for one request now, or how many seconds to wait for them."""
        grant = self.limiter.acquire(call.method, call.quota_key, call.want, call.minimum)
        if not grant.granted:
            return max(MIN_WAIT_S, grant.wait_s)
        lease_id = None
        if call.gate is not None:
            lease_id = self.limiter.lease(call.gate)
            if lease_id is None:  # other requests of this campaign/business fill the cap
                self.limiter.settle(grant, 0)
                return MIN_WAIT_S
        return Ticket(call, grant, lease_id)

    def send(self, ticket: Ticket, request: Callable[[int], T],
             used: Callable[[T], int] | None = None, units: int | None = None, *,
             settle_success: bool = True) -> Reply[T]:
        """Send one request with the ticket's granted units and settle its quota: ``units`` is
        what the request carries (default: the grant; a batch may be smaller), ``used`` what a
        success cost (default: ``units``). 420s pause every worker. The lease is kept:
        :meth:`release` it (the Flusher holds it across a batch's isolation).
        ``settle_success=False``: a success is left to the caller to settle (with
        :func:`market_count` of its reply), in the same call as its own bookkeeping."""
        call, grant = ticket.call, ticket.grant
        carried = grant.granted if units is None else max(0, min(units, grant.granted))
        try:
            value = request(grant.granted)
        except InvalidRequest:
            self.limiter.settle(grant, 0)  # refused by our own schema: nothing was sent
            raise
        except MarketError as exc:
            kind = classify(exc)
            self.limiter.settle(grant, cost_kept(exc, carried, call.counts_response),
                                market_count(call, exc.rate_limit), counted=kind is Kind.REFUSED or kind is Kind.HALT)
            wait = self.wait_after(call, exc, kind) if kind.rate_limited else 0.0
            if kind in (Kind.PARALLEL, Kind.QUOTA):
                # Set before the lease is released: no request of ours slips through the gap.
                self.limiter.pause(call.method, call.quota_key, wait)
            return Reply(kind, error=exc, wait_s=wait)
        except BaseException:
            self.limiter.settle(grant, counted=False)  # interrupted mid-request: it may have been counted
            raise
        if not settle_success:
            return Reply(Kind.OK, value)
        spent = carried if used is None else used(value)
        # Every reply's headers carry the Market's own count: settle folds it in, one round trip.
        self.limiter.settle(grant, spent, market_count(call, getattr(value, "rate_limit", None)))
        self._book_excess(call, spent - grant.granted)
        return Reply(Kind.OK, value)

    def cancel(self, ticket: Ticket) -> None:
        """Give back an admitted request that will not be sent: its units and its lease."""
        self.limiter.settle(ticket.grant, 0)
        self.release(ticket)

    def release(self, ticket: Ticket) -> None:
        gate, lease_id = ticket.call.gate, ticket.lease_id
        if gate is None or lease_id is None:
            return
        if ticket.keep_s > 0:
            self.limiter.renew(gate, lease_id, ticket.keep_s)
        else:
            self.limiter.release(gate, lease_id)

    def attempt(self, call: Call, request: Callable[[int], T],
                used: Callable[[T], int] | None = None) -> Reply[T]:
        """admit → send → release: one try, never a sleep (a WAIT reply says how long)."""
        ticket = self.admit(call)
        if not isinstance(ticket, Ticket):
            return Reply(Kind.WAIT, wait_s=ticket)
        try:
            return self.send(ticket, request, used)
        finally:
            self.release(ticket)

    def wait_after(self, call: Call, exc: MarketError, kind: Kind) -> float:
        """How long a 420 asks every caller to wait: its Until on the Market's clock, bounded."""
        until = exc.rate_limit.until
        wait = call.clock.seconds_until(until.timestamp()) if until is not None else NO_UNTIL_S
        if kind is Kind.PARALLEL:
            return max(MIN_WAIT_S, min(wait, PARALLEL_WAIT_S))
        cap = self._believable_wait_s(call)
        if wait > cap:
            log.warning("%s %s: a 420 asked to wait %.0fs (Until %s); capped at %.0fs", call.method,
                        call.quota_key, wait, until.isoformat() if until else "-", cap)
            wait = cap
        return max(MIN_WAIT_S, wait)

    def _believable_wait_s(self, call: Call) -> float:
        """The longest wait a resource 420 can truly ask: its window frees within the quota's
        period, Until rounds that up to the next whole second, and the wait is measured from the
        Market's clock's lower bound, which trails its true time by at most the bounds' spread."""
        quota = self.limiter.quotas.get(call.method)
        if quota is None:
            return DEFAULT_MAX_PAUSE_S
        bounds = call.clock.bounds()
        spread = max(0.0, bounds[1] - bounds[0]) if bounds is not None else UNTIL_STEP_S
        return max(1.0, quota.seconds) + UNTIL_STEP_S + spread

    def _book_excess(self, call: Call, extra: int) -> None:
        """A reply that cost more than reserved (a read page with more offers than asked): book the
        excess, so the shared window stays honest, without waiting for room (it is spent already)."""
        quota = self.limiter.quotas.get(call.method)
        while extra > 0 and quota is not None:
            part = min(extra, quota.amount)
            grant = self.limiter.acquire(call.method, call.quota_key, part, part)
            if not grant.granted:
                log.info("%s %s: %d units over the reservation could not be booked now", call.method,
                         call.quota_key, extra)
                return
            self.limiter.settle(grant)
            extra -= part

    # --- the blocking wrapper ---------------------------------------------------------------------

    def call(self, call: Call, request: Callable[[int], T], used: Callable[[T], int] | None = None, *,
             sleep: Callable[[float], None] = time.sleep, stats: CallStats | None = None,
             max_wait_s: float = 600.0, slice_s: float = 5.0, retries: int = 5,
             what: str = "") -> T:
        """Send until the Market answers with a success: waits for quota, leases and 420s (in
        slices of at most ``slice_s``, so a pause set by another worker is seen soon), retries an
        unknown outcome ``retries`` times with backoff. Raises the Market's error on a halt or a
        refusal, :class:`CallGaveUp` past ``max_wait_s`` of waiting or ``retries``."""
        waited, failures = 0.0, 0
        while True:
            reply = self.attempt(call, request, used)
            if reply.kind not in (Kind.WAIT, Kind.NOT_SENT) and stats is not None:
                stats.requests += 1
            if reply.ok:
                return reply.value  # type: ignore[return-value]
            if reply.kind in (Kind.HALT, Kind.REFUSED):
                assert reply.error is not None
                raise reply.error
            if reply.kind.rate_limited and stats is not None:
                stats.rate_limited += 1
            if reply.kind in (Kind.UNKNOWN, Kind.NOT_SENT):
                failures += 1
                if failures > retries:
                    raise CallGaveUp(f"{what or call.method}: {reply.error.message if reply.error else ''}",
                                     cause=reply.error)
                if stats is not None:
                    stats.retries += 1
                wait = min(30.0, 0.5 * 2 ** (failures - 1))
                log.warning("%s: %s; retry %d in %.1fs", what or call.method,
                            reply.error.message if reply.error else "", failures, wait)
            else:
                wait = reply.wait_s
                if reply.kind.rate_limited:
                    log.warning("%s: 420 (%s), waiting %.1fs", what or call.method, reply.kind.value, wait)
            if waited + wait > max_wait_s:
                why = f"the quota ({call.method}) is spent for {wait:.0f}s more" if reply.kind is Kind.WAIT \
                    else f"the Market rate-limited it for {wait:.0f}s" if reply.kind.rate_limited \
                    else f"{reply.error.message if reply.error else 'failed'}; would retry in {wait:.0f}s"
                raise CallGaveUp(f"{what or call.method}: {why}", wait_s=wait, cause=reply.error)
            nap = max(0.01, min(wait, slice_s))
            waited += nap
            if stats is not None:
                stats.waited_s += nap
            sleep(nap)


__all__ = ["Call", "CallGaveUp", "CallPolicy", "CallStats", "Kind", "Reply", "Ticket", "classify", "cost_kept"]
