"""``ymsync warehouses`` (each cabinet's own warehouses, from the shared cache) and ``ymsync cabinets``."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from ymsync.market import MarketError
from ymsync.reads.warehouse_groups import GroupDirectory, GroupList, contradictions
from ymsync.reads.warehouses import WarehouseDirectory, WarehouseList
from ymsync.cli import cabinet as ctx
from ymsync.cli import main


def directory() -> WarehouseDirectory:
    return WarehouseDirectory(ctx.redis_client(), ctx.client, ctx.limiter)


def group_directory() -> GroupDirectory:
    return GroupDirectory(ctx.redis_client(), ctx.client, ctx.limiter)


@main.command()
@click.option("--business", "business_id", type=click.IntRange(min=1),
              help="Business (cabinet) id; default: every configured cabinet with a business id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per business.")
@click.option("--refresh", is_flag=True, help="Ask the Market now instead of using the cached list (100 calls an hour).")
def warehouses(business_id: int | None, as_json: bool, refresh: bool) -> None:
    """List each cabinet's warehouses: id, name, work models and whether the API may stock them."""
    if business_id is not None:
        ids = [ctx.cabinet(business_id).business_id]
    else:
        ids = [c.business_id for c in ctx.settings().cabinets if c.business_id is not None]
        if not ids:
            raise click.ClickException("no cabinet has a business id: set YM_BUSINESS_ID or pass --business")
    store, groups = directory(), group_directory()
    for bid in ids:
        v2 = ctx.cabinet(int(bid)).mode == "v2"
        try:
            # A v2 cabinet (warehouse groups): getPagedWarehouses, each warehouse with its campaign and group.
            listing = (groups if v2 else store).get(int(bid), refresh=refresh)
        except MarketError as exc:
            raise click.ClickException(f"business {bid}: {exc.message}") from None
        if as_json:
            click.echo(json.dumps(listing.to_json(), ensure_ascii=False))
        else:
            click.echo(render_groups(listing) if v2 else render(listing))
        if v2:
            cabinet = ctx.cabinet(int(bid))
            for line in contradictions(cabinet.warehouse_groups, listing.groups(), int(bid),
                                       (w.campaign_id for w in listing.warehouses)):
                click.echo(line, err=True)


def render(listing: WarehouseList) -> str:
    header = ("ID", "NAME", "MODELS", "API")
    rows = [(str(w.id), w.name, ", ".join(f"{m.program}:{m.api_availability}" for m in w.models) or "-",
             "available" if w.available else "NOT AVAILABLE") for w in listing.warehouses]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    when = datetime.fromtimestamp(listing.fetched_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    note = " (stale: could not refresh now)" if listing.stale else ""
    title = f"business {listing.business_id}: {len(rows)} warehouse(s), fetched {when}{note}"
    return "\n".join([title, line.format(*header)] + [line.format(*r) for r in rows])


def render_groups(listing: GroupList) -> str:
    header = ("ID", "NAME", "CAMPAIGN", "GROUP")
    rows = [(str(w.id), w.name, str(w.campaign_id),
             f"{w.group_id} {w.group_name or ''}".strip() if w.group_id is not None else "-") for w in listing.warehouses]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    when = datetime.fromtimestamp(listing.fetched_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    note = " (stale: could not refresh now)" if listing.stale else ""
    shared = "; ".join("+".join(map(str, g)) for g in listing.groups()) or "none"
    title = (f"business {listing.business_id} (v2): {len(rows)} warehouse(s), groups sharing one stock: {shared}, "
             f"fetched {when}{note}")
    return "\n".join([title, line.format(*header)] + [line.format(*r) for r in rows])


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per cabinet.")
def cabinets(as_json: bool) -> None:
    """The configured cabinets: business, API mode, subscription, campaigns, where the token comes from."""
    configured = ctx.settings().cabinets
    for cabinet in configured:
        if as_json:
            click.echo(json.dumps({"name": cabinet.name, "business_id": cabinet.business_id, "mode": cabinet.mode,
                                   "subscription": cabinet.subscription, "campaigns": list(cabinet.campaigns),
                                   "fby_campaigns": list(cabinet.fby_campaigns),
                                   "token_from": cabinet.token_source}))
        else:
            click.echo(cabinet.describe())
    if not as_json:
        click.echo(f"{len(configured)} cabinet(s) from {configured.source}")
