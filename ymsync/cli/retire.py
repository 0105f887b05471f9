"""``ymsync retire``: say that SKUs are gone (the library's ``retire_stocks``)."""

from __future__ import annotations

import sys

import click

from ymsync.cli import main
from ymsync.engine.buffer import StockBuffer
from ymsync.errors import Unavailable
from ymsync.store.client import state_client

EXIT_INVALID, EXIT_UNAVAILABLE = 1, 4


@main.command()
@click.option("--campaign", "campaign_id", type=click.IntRange(min=1), help="Market campaign id (v2 cabinets).")
@click.option("--business", "business_id", type=click.IntRange(min=1), help="Business id (v3 cabinets).")
@click.option("--warehouse", type=click.IntRange(min=1), help="With --business: the warehouse of the SKUs.")
@click.option("--final-count", type=click.IntRange(min=0), default=None,
              help="Send this count (e.g. 0) as each SKU's last value before its records go.")
@click.option("--file", "path", type=click.File("r"), help="Read SKUs from a file, one a line (- for stdin).")
@click.argument("skus", nargs=-1)
def retire(campaign_id: int | None, business_id: int | None, warehouse: int | None, final_count: int | None,
           path, skus: tuple[str, ...]) -> None:
    """Retire SKUs the shop no longer sells: their pending values, latest-wins and delivered records
    and dead letters go, and reconciliation no longer re-queues them. With --final-count the count
    is sent first, as an ordinary update (its delivery then leaves no record).

    Exits 1 on invalid input (nothing retired), 4 if Redis cannot take it."""
    from ymsync.cli.push import _settings
    from ymsync.engine.producer import InvalidInput
    from ymsync.engine.retire import retire_business_stocks, retire_stocks

    if (campaign_id is None) == (business_id is None):
        raise click.UsageError("give one of --campaign (v2 cabinets) and --business (v3 cabinets)")
    if warehouse is not None and business_id is None:
        raise click.UsageError("--warehouse goes with --business")
    names = list(skus) + ([line.strip() for line in path if line.strip()] if path else [])
    if not names:
        raise click.UsageError("name the SKUs to retire (arguments or --file)")
    settings = _settings()
    buffer = StockBuffer.from_settings(state_client(settings, bounded=True), settings)
    try:
        if business_id is not None:
            result = retire_business_stocks(business_id, names, warehouse=warehouse, final_count=final_count,
                                            buffer=buffer)
            where = f"business {business_id}" + (f" warehouse {warehouse}" if warehouse else "")
        else:
            result = retire_stocks(campaign_id, names, final_count, buffer=buffer)
            where = f"campaign {campaign_id}"
    except InvalidInput as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        click.echo("nothing retired", err=True)
        sys.exit(EXIT_INVALID)
    except Unavailable as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_UNAVAILABLE)
    final = (f"; final count {final_count} queued for each, sent before its records go"
             if final_count is not None else "")
    click.echo(f"retired {result.retired} SKU(s) of {where}: {result.pending_dropped} pending value(s) dropped, "
               f"{result.dead_letters_dropped} dead letter(s) dropped{final}")
