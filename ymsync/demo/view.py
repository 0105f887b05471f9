"""How the demo looks: a live rich table on a terminal, plain progress lines elsewhere, a summary."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ymsync.demo.day import CampaignView, DayResult, Snapshot


def _quota(v: CampaignView) -> str:
    # v2 quotas count SKUs, v3 ones requests (of up to 2,000 items): the unit is shown.
    return f"{v.quota_used:,}/{v.quota_amount:,} {'req' if v.unit == 'requests' else 'SKUs'}" if v.quota_amount else "off"


def live(s: Snapshot) -> RenderableType:
    table = Table(title=f"ymsync demo · {s.clock} · {s.phase}", title_justify="left", expand=False)
    for name in ("campaign / business", "pushed", "pending", "in flight", "delivered", "dead", "quota (10 s window)",
                 "420s", "retries", "state"):
        table.add_column(name, justify="left" if name in ("campaign / business", "state") else "right")
    for v in s.campaigns:
        table.add_row(str(v.campaign), f"{v.pushed:,}", f"{v.pending:,}", f"{v.in_flight:,}", f"{v.delivered:,}",
                      f"{v.dead:,}", _quota(v), str(v.rate_limited), str(v.retries),
                      Text(v.paused or "sending" if v.pending or v.in_flight else v.paused or "idle",
                           style="yellow" if v.paused else "green"))
    footer = Text(f"Market: {s.market_requests:,} stock update calls (v2 and v3), {s.market_420s} answered 420",
                  style="dim")
    return Group(table, footer, Panel("\n".join(s.events) or "…", title="the day so far", expand=False))


def plain(s: Snapshot) -> str:
    parts = [f"{v.campaign}: pending {v.pending:,} in flight {v.in_flight:,} delivered {v.delivered:,} "
             f"dead {v.dead} quota {_quota(v)} 420s {v.rate_limited}" for v in s.campaigns]
    return f"[{s.clock}] {s.phase} | " + " | ".join(parts) + f" | Market 420s {s.market_420s}"


def summary(r: DayResult) -> RenderableType:
    title = "ymsync demo: summary" + ("" if r.completed else " (stopped early)")
    table = Table(title=title, title_justify="left")
    for name in ("campaign / business", "updates pushed", "values delivered", "dead letters", "left pending", "420s",
                 "retries", "quota peak", "Market matches the shop"):
        table.add_column(name, justify="left" if name == "campaign / business" else "right")
    for v in r.views:
        same, total = r.in_sync.get(v.campaign, (0, 0))
        peak, amount = r.quota_peaks.get(v.campaign, (0, 0))
        table.add_row(str(v.campaign), f"{v.pushed:,}", f"{v.delivered:,}", f"{v.dead:,}",
                      f"{v.pending + v.in_flight:,}", str(v.rate_limited), str(v.retries),
                      f"{peak:,}/{amount:,}" if amount else "-",
                      Text(f"{same:,}/{total:,} {'SKUs' if v.unit == 'SKUs' else 'items'}",
                           style="green" if same == total else "yellow"))
    lines = [f"played {r.elapsed_s:.0f}s; the Market answered 420 {r.market_420s} times"]
    for key, (same, total) in sorted(r.in_sync.items()):
        if "@" in key:
            business, warehouse = key.split("@")
            lines.append(f"business {business} warehouse {warehouse}: the Market holds {same:,}/{total:,} SKUs as pushed")
        elif "~" in key:  # a campaign of a warehouse group: the group's one stock, as it shows it
            campaign, group = key.split("~")
            lines.append(f"campaign {campaign} (warehouse group {group}): the Market holds {same:,}/{total:,} SKUs as pushed")
    for rec in r.reconcile:
        name = (f"group {'+'.join(map(str, rec.campaigns))} (one stock, read through {rec.campaign_id})"
                if rec.campaigns else str(rec.campaign_id))
        lines.append(f"reconciliation {name}, warehouse {rec.warehouse_id} ({rec.warehouse_source}): "
                     f"{rec.checked:,} SKUs checked, {rec.drift} drifted, {rec.requeued} re-queued")
    if r.business_reconcile is not None:
        b = r.business_reconcile
        lines.append(f"reconciliation business {b.business_id} (v3): {b.checked:,} checked over "
                     f"{len(b.warehouses)} warehouses, {b.drift} drifted, {b.requeued} re-queued")
    lines.append(_snapshot_line(r.snapshot))
    return Group(table, Text("\n".join(lines)))


def _snapshot_line(snap: dict[str, Any] | None) -> str:
    if not snap:
        return "report snapshot: not finished"
    failed = "; ".join(snap.get("failed") or [])
    return (f"report snapshot {snap.get('status')}: {snap.get('rows', 0):,} rows, {snap.get('csv') or snap.get('folder')}"
            + (f" (failed: {failed})" if failed else ""))


__all__ = ["live", "plain", "summary"]
