"""The kinds of report ymsync asks for, and what differs between them: how a report is
generated, whose quota counts it and whose parallel cap it shares.

- :data:`STOCKS_ON_WAREHOUSES` (v2, ``POST v2/reports/stocks-on-warehouses/generate``): counted in
  the token's ``report_generate`` quota (``quota_key``, the cabinet);
- :data:`BUSINESS_STOCKS` (v3, ``POST v3/businesses/{businessId}/reports/stocks/generate``): a
  business path, counted per business (``b<id>``) in its own quota and sharing the business's cap
  of requests in flight with its pushes, reads and warehouse directory.

A :class:`ReportRequest` carries its kind (``request.kind``); the poller asks the kind, never the
API's name. A new kind is one class here and one entry in :data:`KINDS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ymsync.engine.call_policy import Call
from ymsync.store import keys

if TYPE_CHECKING:
    from ymsync.market import MarketClient
    from ymsync.reports.request import ReportRequest

GENERATE, INFO = "report_generate", "report_info"  # settings.DEFAULT_QUOTAS method names
GENERATE_V3 = "stocks_report_v3"  # the v3 business stocks report: its own quota, counted per business


class ReportKind:
    api: str = ""

    def gate(self, request: "ReportRequest", token_gate: str | None) -> str | None:
        """The parallel cap the report's calls (generate, info) share: ``token_gate`` is the cap of
        the business whose token asks (the Market caps report methods per business of the token)."""
        return token_gate

    def generate_call(self, request: "ReportRequest", client: "MarketClient", quota_key: str,
                      token_gate: str | None = None) -> Call:
        """The generate request's quota and cap (``quota_key``: the token's, for quotas per token)."""
        raise NotImplementedError

    def generate(self, request: "ReportRequest", client: "MarketClient") -> Any:
        """Send the generate request; the Market's ``ReportGenerated``."""
        raise NotImplementedError


class StocksOnWarehouses(ReportKind):
    api = "v2"

    def generate_call(self, request: "ReportRequest", client: "MarketClient", quota_key: str,
                      token_gate: str | None = None) -> Call:
        return Call(GENERATE, quota_key, self.gate(request, token_gate), client.clock)

    def generate(self, request: "ReportRequest", client: "MarketClient") -> Any:
        return client.generate_stocks_on_warehouses_report(request.body, format=request.format)


class BusinessStocks(ReportKind):
    api = "v3"

    def gate(self, request: "ReportRequest", token_gate: str | None) -> str | None:
        return keys.business_target(int(request.business_id or 0))

    def generate_call(self, request: "ReportRequest", client: "MarketClient", quota_key: str,
                      token_gate: str | None = None) -> Call:
        identity = keys.business_target(int(request.business_id or 0))
        return Call(GENERATE_V3, identity, identity, client.clock)

    def generate(self, request: "ReportRequest", client: "MarketClient") -> Any:
        body = request.body
        return client.generate_stocks_report_v3(
            int(body["businessId"]), format=request.format, warehouse_ids=body.get("partnerWarehouseIds", ()),
            category_ids=body.get("categoryIds", ()), has_stocks=body.get("hasStocks"))


STOCKS_ON_WAREHOUSES = StocksOnWarehouses()
BUSINESS_STOCKS = BusinessStocks()
KINDS: dict[str, ReportKind] = {kind.api: kind for kind in (STOCKS_ON_WAREHOUSES, BUSINESS_STOCKS)}


def report_kind(api: str) -> ReportKind:
    return KINDS[api]
