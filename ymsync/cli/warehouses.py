"""``ymsync warehouses`` (each cabinet's own warehouses, from the shared cache) and ``ymsync cabinets``."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from ymsync.market import MarketError
from ymsync.reads.warehouses import WarehouseDirectory, WarehouseList
from ymsync.cli import cabinet as ctx
from ymsync.cli import main


def directory() -> WarehouseDirectory:
    return WarehouseDirectory(ctx.redis_client(), ctx.client, ctx.limiter)


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
    store = directory()
    for bid in ids:
        try:
            listing = store.get(int(bid), refresh=refresh)
        except MarketError as exc:
            raise click.ClickException(f"business {bid}: {exc.message}") from None
        click.echo(json.dumps(listing.to_json(), ensure_ascii=False) if as_json else render(listing))


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
