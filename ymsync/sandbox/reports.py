"""The sandbox's report desk: stocks-on-warehouses reports from request to downloadable file.

A report snapshots the stock store when it is requested, walks PENDING → PROCESSING → DONE
(or FAILED/NO_DATA when the selection is empty) over ``report_delay_s``, and is written on
first demand once DONE. Every info call on a DONE report mints a new file link that expires
after ``link_ttl_s``, as the Market's do.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ymsync.reports.columns import MASS_SHARED_STOCKS, STOCKS_BUSINESS, STOCKS_ON_WAREHOUSES, Sheet
from ymsync.sandbox.business_state import BusinessConfig, WarehouseConfig
from ymsync.sandbox.report_files import write_report
from ymsync.sandbox.state import CampaignConfig, SandboxState

_EXTENSIONS = {"FILE": "xlsx", "CSV": "zip", "JSON": "zip"}


@dataclass
class ReportJob:
    report_id: str
    fmt: str
    sheet: Sheet
    rows: list[dict[str, Any]]
    requested_at: datetime
    started: float
    delay_s: float
    forced_failure: str | None = None
    quirk: "ReportQuirk | None" = None
    path: Path | None = None
    links: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry

    def status(self, now: float) -> tuple[str, str | None]:
        elapsed = now - self.started
        if elapsed < self.delay_s / 3:
            return "PENDING", None
        if elapsed < self.delay_s:
            return "PROCESSING", None
        if self.quirk is not None and self.quirk.status is not None:
            return self.quirk.status, self.quirk.sub_status
        if self.forced_failure:
            return "FAILED", self.forced_failure
        return ("FAILED", "NO_DATA") if not self.rows else ("DONE", None)


@dataclass(frozen=True)
class ReportQuirk:
    """A way the Market answers that ymsync must cope with, for one report (admin: quirk-next).

    ``report_id``: the id the generate call returns (``../x``: an id that must not become a path);
    ``status``/``sub_status``: what info says once the report is ready (``DONE`` + ``NO_DATA``, or
    a status ymsync does not know); ``file``: False to answer DONE without a file link;
    ``estimate_ms``: the estimatedGenerationTime every answer gives (understated: more polls)."""

    report_id: str | None = None
    status: str | None = None
    sub_status: str | None = None
    file: bool = True
    estimate_ms: int | None = None


class ReportDesk:
    def __init__(self, state: SandboxState, files_dir: Path | None = None) -> None:
        self.state = state
        self.jobs: dict[str, ReportJob] = {}
        self.lock = threading.Lock()
        self.fail_next: list[str] = []  # sub-statuses to force on the next reports
        self.quirks_next: list[ReportQuirk] = []  # quirks of the next reports, in order
        self.dead_links = 0  # the next N file links minted are expired on arrival
        self._tmp = tempfile.TemporaryDirectory(prefix="ymsync-sandbox-") if files_dir is None else None
        self.files_dir = Path(self._tmp.name) if self._tmp else Path(files_dir)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def active(self, now: float) -> int:
        with self.lock:
            return sum(1 for job in self.jobs.values() if job.status(now)[0] in ("PENDING", "PROCESSING"))

    def generate(self, request: dict[str, Any], fmt: str) -> ReportJob:
        """A v2 stocks-on-warehouses report (the sheet depends on the model and the owner sent)."""
        sheet, rows = self._select(request)
        return self._start(sheet, rows, fmt)

    def generate_business(self, business: BusinessConfig, request: dict[str, Any], fmt: str) -> ReportJob:
        """A v3 business stocks report: the business stocks sheet over its own warehouses."""
        return self._start(STOCKS_BUSINESS, business_rows(self.state, business, request), fmt)

    def _start(self, sheet: Sheet, rows: list[dict[str, Any]], fmt: str) -> ReportJob:
        with self.lock:
            quirk = self.quirks_next.pop(0) if self.quirks_next else None
            job = ReportJob(
                report_id=(quirk.report_id if quirk and quirk.report_id else None) or secrets.token_hex(12),
                fmt=fmt,
                sheet=sheet,
                rows=rows,
                requested_at=datetime.now(timezone.utc),
                started=time.monotonic(),
                delay_s=self.state.config.report_delay_s,
                forced_failure=self.fail_next.pop(0) if self.fail_next else None,
                quirk=quirk,
            )
            self.jobs[job.report_id] = job
        return job

    def info(self, report_id: str, base_url: str) -> dict[str, Any] | None:
        now = time.monotonic()
        with self.lock:
            job = self.jobs.get(report_id)
            if job is None:
                return None
            status, sub_status = job.status(now)
            result: dict[str, Any] = {"status": status,
                                      "generationRequestedAt": job.requested_at.isoformat(timespec="seconds")}
            if status in ("PENDING", "PROCESSING"):
                result["estimatedGenerationTime"] = max(0, int((job.started + job.delay_s - now) * 1000))
                if job.quirk is not None and job.quirk.estimate_ms is not None:
                    result["estimatedGenerationTime"] = job.quirk.estimate_ms
            else:
                finished = job.requested_at.timestamp() + job.delay_s
                result["generationFinishedAt"] = datetime.fromtimestamp(finished, timezone.utc).isoformat(timespec="seconds")
            if sub_status:
                result["subStatus"] = sub_status
            if status == "DONE" and (job.quirk is None or job.quirk.file):
                if job.path is None:
                    job.path = self.files_dir / f"{job.report_id}.{_EXTENSIONS[job.fmt]}"
                    write_report(job.path, job.fmt, job.sheet, job.rows)
                token = secrets.token_urlsafe(16)
                if self.dead_links > 0:
                    self.dead_links -= 1
                    job.links[token] = now  # minted already expired: a link that died in transit
                else:
                    job.links[token] = now + self.state.config.link_ttl_s
                result["file"] = f"{base_url}/_files/{job.report_id}/{token}"
            return result

    def file(self, report_id: str, token: str) -> ReportJob | None:
        """The job whose file this link fetches, or None if the link is unknown or expired."""
        with self.lock:
            job = self.jobs.get(report_id)
            if job is None or job.path is None or job.links.get(token, 0.0) <= time.monotonic():
                return None
            return job

    def expire_links(self) -> int:
        with self.lock:
            count = 0
            for job in self.jobs.values():
                count += len(job.links)
                job.links.clear()
            return count

    # --- what a report holds --------------------------------------------------------------

    def _select(self, request: dict[str, Any]) -> tuple[Sheet, list[dict[str, Any]]]:
        state = self.state
        if request.get("campaignId") is not None:
            campaign = state.campaign(request["campaignId"])
            assert campaign is not None  # the server checked access before
            campaigns = [campaign]
            sheet = STOCKS_ON_WAREHOUSES if campaign.model == "FBY" else MASS_SHARED_STOCKS
        else:
            wanted = set(request.get("campaignIds") or [])
            campaigns = [c for c in state.campaigns.values()
                         if c.business_id == request["businessId"] and c.model != "FBY"
                         and (not wanted or c.id in wanted)]
            sheet = STOCKS_BUSINESS
        rows: list[dict[str, Any]] = []
        warehouses = set(request.get("warehouseIds") or [])
        with state.lock:
            for campaign in campaigns:
                if warehouses and campaign.warehouse_id not in warehouses:
                    continue
                for sku, record in sorted(state.stocks.get(campaign.id, {}).items()):
                    if request.get("hasStocks") is not None and (record.count > 0) != request["hasStocks"]:
                        continue
                    rows.append(_row(sheet, campaign, sku, record.count))
        return sheet, rows


def _row(sheet: Sheet, campaign: CampaignConfig, sku: str, count: int) -> dict[str, Any]:
    name = f"Товар {sku}"
    if sheet is STOCKS_ON_WAREHOUSES:
        return {"SHOP_SKU": sku, "ARTICLE": sku, "MARKET_SKU": 100_000_000 + zlib.crc32(sku.encode()) % 10**8,
                "PRODUCT_NAME": name, "VALID": count, "RESERVED": 0, "AVAILABLE_FOR_ORDER": count,
                "QUARANTINE": 0, "UTILIZATION": 0, "DEFECT": 0, "EXPIRED": 0,
                "WAREHOUSE": f"Яндекс Маркет ({campaign.warehouse_id})"}
    if sheet is MASS_SHARED_STOCKS:
        return {"ERRORS": "", "WARNINGS": "", "SHOP_SKU": sku, "PRODUCT_NAME": name, "COUNT": count}
    return {"ERRORS": "", "SHOP_SKU": sku, "PRODUCT_NAME": name, "PLACEMENT_TYPE": campaign.model,
            "WAREHOUSE_AND_SHOP": f"Склад {campaign.warehouse_id} / магазин {campaign.id}", "COUNT": count,
            "RESERVE": 0, "PRICE": "", "STATUS": "", "COMMENT": ""}


def business_rows(state: SandboxState, business: BusinessConfig, request: dict[str, Any]) -> list[dict[str, Any]]:
    """The business stocks sheet's rows ("Остатки на складах"): one per (warehouse, SKU) held,
    warehouses in id order, SKUs sorted; ``partnerWarehouseIds`` and ``hasStocks`` filter
    (the sandbox keeps no categories, so ``categoryIds`` selects everything)."""
    wanted = set(request.get("partnerWarehouseIds") or ())
    has_stocks = request.get("hasStocks")
    rows = []
    with state.lock:
        stock = state.business.stock(business.id)
        for wid in sorted(stock.stocks):
            if wanted and wid not in wanted:
                continue
            warehouse = business.warehouse(wid) or WarehouseConfig(wid)
            for sku, record in sorted(stock.stocks[wid].items()):
                if has_stocks is not None and (record.count > 0) != has_stocks:
                    continue
                rows.append({"ERRORS": "", "SHOP_SKU": sku, "PRODUCT_NAME": f"Товар {sku}",
                             "PLACEMENT_TYPE": warehouse.placement_type,
                             "WAREHOUSE_AND_SHOP": f"{warehouse.title} (ID {wid})", "COUNT": record.count,
                             "RESERVE": 0, "PRICE": "", "STATUS": "На продаже" if record.count > 0 else "Нет в наличии",
                             "COMMENT": ""})
    return rows
