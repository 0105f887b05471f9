"""One API request as the sandbox's method handlers see it: the public interface between the
HTTP layer (server.py) and the methods (campaign.py for v2, business.py for v3).

A handler is ``handler(call, operation, key, body, *path_args) -> (status, payload, cost, lost)``.
It runs after authentication, the access check of the path's campaign or business and its
parallel cap; it uses the :class:`ApiCall` for everything else: the body as JSON, access checks
of ids named in the body, the quota charge, injected faults and the lost-reply fault. Handlers
never reach into the HTTP handler, so the methods can change without touching the transport.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None

from ymsync.sandbox.business_state import scope_allows
from ymsync.sandbox.failures import ApiFailure
from ymsync.sandbox.reports import ReportDesk
from ymsync.sandbox.state import SandboxState, epoch_in, http_date

Reply = tuple[int, Any, int, bool]  # (status, payload, quota cost, reply lost)


@dataclass
class ApiCall:
    state: SandboxState
    desk: ReportDesk
    query: dict[str, str]  # the query string, last value of each name
    host: str  # for the download links the report info hands out
    token: str | None = None  # the caller's, once authenticated (access checks use its scope)
    scheduled: str | None = None  # this stock update's entry of faults.schedule, if any

    def json(self, body: bytes, *, required: bool, fast: bool = False) -> Any:
        """The body parsed. ``fast``: by orjson where it can (in C; json.loads was a sixth of the
        sandbox's time under load), json.loads for what orjson refuses (NaN, a lone surrogate, UTF-16). orjson reads an integer beyond 64 bits as a float, so a caller
        asking for ``fast`` may trust only plain values (fastpath.py) and parses again without it
        for anything else."""
        if not body:
            if required:
                raise ApiFailure(400, "BAD_REQUEST", "Request body is required")
            return {}
        if fast and _orjson is not None:
            try:
                return _orjson.loads(body)
            except ValueError:
                pass
        try:
            return json.loads(body)
        except ValueError:
            raise ApiFailure(400, "BAD_REQUEST", "Request body is not valid JSON") from None

    # --- access -------------------------------------------------------------------------------

    def campaign_id(self, raw: str) -> int:
        """The campaign id of a path or body, checked: it exists and the token may use it (403)."""
        if not raw.isdigit() or int(raw) < 1:
            raise ApiFailure(400, "BAD_REQUEST", f"campaignId must be an integer >= 1, got {raw!r}")
        campaign_id = int(raw)
        if self.state.campaign(campaign_id) is None or not scope_allows(
                self.state.token_scopes.get(self.token), campaign_id=campaign_id, campaign_business=self.business_of):
            raise ApiFailure(403, "FORBIDDEN", f"Access denied to campaignId {campaign_id}")
        return campaign_id

    def business_id(self, raw: str) -> int:
        """The business id of a path, checked: it exists and the token may use it (403)."""
        if not raw.isdigit() or int(raw) < 1:
            raise ApiFailure(400, "BAD_REQUEST", f"businessId must be an integer >= 1, got {raw!r}")
        business_id = int(raw)
        if self.state.business.get(business_id) is None or not self.may_use_business(business_id):
            raise ApiFailure(403, "FORBIDDEN", f"Access denied to businessId {business_id}")
        return business_id

    def may_use_business(self, business_id: int) -> bool:
        return scope_allows(self.state.token_scopes.get(self.token), business_id=business_id,
                            campaign_business=self.business_of)

    def business_of(self, campaign_id: int) -> int | None:
        campaign = self.state.campaigns.get(campaign_id)
        return campaign.business_id if campaign is not None else None

    # --- the effect's gates ---------------------------------------------------------------------

    def charge(self, operation: str, key: str, cost: int) -> None:
        """Count ``cost`` against the method's quota for ``key``, or refuse with the Market's 420."""
        wait = self.state.admit(operation, key, cost)
        if wait > 0:
            quota = self.state.config.quotas.get(operation)
            amount, period = (quota.amount, f"{quota.seconds:g}s") if quota else ("?", "?")
            until = epoch_in(wait, self.state.config.clock_offset_s)
            failure = ApiFailure(420, "LIMIT_EXCEEDED", f"Hit rate limit of '{amount}' requests per '{period}' for "
                                 f"resource '{operation}' (key {key})", {"X-RateLimit-Resource-Until": http_date(until)})
            failure.until = until
            raise failure

    def faults(self) -> None:
        """Injected failures (500, 423): as scheduled, else at their configured rates."""
        faults, rng = self.state.config.faults, self.state.rng
        if self.scheduled is not None:  # the schedule decides alone, no chance involved
            if self.scheduled == "500":
                raise ApiFailure(500, "INTERNAL_ERROR", "Internal error (injected)")
            if self.scheduled == "423":
                raise ApiFailure(423, "LOCKED", "Cabinet is being migrated, retry later (injected)")
            return
        if faults.error_rate and rng.random() < faults.error_rate:
            raise ApiFailure(500, "INTERNAL_ERROR", "Internal error (injected)")
        if faults.locked_rate and rng.random() < faults.locked_rate:
            raise ApiFailure(423, "LOCKED", "Cabinet is being migrated, retry later (injected)")

    def lost(self) -> bool:
        """Whether this reply is lost on the way (applied, but the client never hears back)."""
        faults = self.state.config.faults
        if self.scheduled is not None:
            return self.scheduled == "lost"
        return bool(faults.lost_reply_rate) and self.state.rng.random() < faults.lost_reply_rate


MethodHandler = Callable[..., Reply]  # (call, operation, key, body, *path_args) -> Reply

__all__ = ["ApiCall", "MethodHandler", "Reply"]
