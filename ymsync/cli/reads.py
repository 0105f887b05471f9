"""``ymsync stocks`` and ``ymsync reconcile``: the read side from a shell.

Both run the library in this process (no worker needed for the read itself) and share the
read quota with every worker through Redis, so a shell read never pushes a worker into a 420.
``reconcile --fix`` only queues values; a stocks worker delivers them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import redis

from ymsync import connect
from ymsync.engine.buffer import StockBuffer
from ymsync.config.cabinets import CabinetNotFound
from ymsync.market import InvalidRequest, MarketError
from ymsync.reads.campaign import ReadOptions, StockReader, format_for
from ymsync.reads.business import WarehouseStockReader
from ymsync.reads.reconcile import Reconciler, render_table
from ymsync.reads.reconcile_business import BusinessReconciler
from ymsync.reads.reconcile_business import render_table as render_business_table
from ymsync.reads.shared import SharedStock, shared_stocks, v2_business, warehouses_from
from ymsync.engine.group_target import DiscoveredGroups, use_discovered_groups
from ymsync.config.settings import Settings
from ymsync.cli import cabinet as ctx
from ymsync.cli import main


def _settings() -> Settings:
    return ctx.settings()


def _redis() -> redis.Redis:
    return ctx.redis_client()


def _reader(campaign_id: int) -> StockReader:
    """A reader with the token of the cabinet that lists the campaign (the one cabinet, simply)."""
    s = _settings()
    try:
        cabinet = s.cabinets.by_campaign(campaign_id)
    except CabinetNotFound as exc:
        raise click.ClickException(str(exc)) from None
    return StockReader(connect.quota_limiter(_redis(), s), connect.market_client(s, cabinet))


def _stocks_of(campaign_ids: tuple[int, ...]) -> list[SharedStock]:
    """The campaigns asked for, one entry per stock: a warehouse group's campaigns share one
    (configured, or the Market's groups as last cached), so it is read once."""
    use_discovered_groups(DiscoveredGroups(_redis()))  # this process has no buffer to install it
    return shared_stocks(campaign_ids)


def _warehouses_of():
    """A campaign's own warehouses from the Market's warehouse list (getPagedWarehouses, cached)."""
    from ymsync.cli.warehouses import group_directory

    s = _settings()
    return warehouses_from(group_directory(), lambda c: v2_business(s.cabinets, c))


def _split_ids(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """``--offer-ids A,B --offer-ids C`` → (A, B, C); ``@FILE`` reads one id a line."""
    if not values:
        return None
    ids: list[str] = []
    for value in values:
        if value.startswith("@"):
            try:
                ids += [line.strip() for line in Path(value[1:]).read_text(encoding="utf-8").splitlines()]
            except OSError as exc:
                raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}", param_hint="--offer-ids")
        else:
            ids += value.split(",")
    return tuple(dict.fromkeys(i.strip() for i in ids if i.strip()))


@main.command()
@click.option("--campaign", "campaign_ids", type=click.IntRange(min=1), multiple=True,
              help="Market campaign id (v2 cabinets); repeatable. Campaigns of one warehouse group share one "
                   "stock: it is read once, through the first named.")
@click.option("--business", "business_id", type=click.IntRange(min=1),
              help="Business id (v3 cabinets): read one warehouse of the business; needs --warehouse.")
@click.option("--offer-ids", "offer_ids", multiple=True, metavar="SKU[,SKU…]|@FILE",
              help="Only these SKUs (comma-separated, repeatable, or @file with one a line); asked 500 at a time.")
@click.option("--archived", is_flag=True, default=None, help="Archived offers instead of active ones.")
@click.option("--warehouse", "warehouse_id", type=click.IntRange(min=1), help="Only stock on this warehouse.")
@click.option("--with-turnover", is_flag=True, default=None, help="Add turnover (FBY and LaaS campaigns).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (.csv or .jsonl; .jsonl with --business); default: JSON Lines on stdout.")
def stocks(campaign_ids: tuple[int, ...], business_id: int | None, offer_ids: tuple[str, ...], archived: bool | None,
           warehouse_id: int | None, with_turnover: bool | None, out: Path | None) -> None:
    """Read every offer's stock on the Market, page by page, within the shared read quota."""
    if bool(campaign_ids) == (business_id is not None):
        raise click.UsageError("pass exactly one of --campaign (v2) and --business (v3)")
    ids = _split_ids(offer_ids)
    if business_id is not None:
        _business_stocks(business_id, warehouse_id, ids, archived, with_turnover, out)
        return
    if ids is not None and archived:
        raise click.UsageError("--offer-ids cannot be combined with --archived (the Market's rule)")
    if out is not None:
        try:
            format_for(out)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--out") from None
    # Unset flags stay out of the request (None), as the Market's defaults apply then.
    options = ReadOptions(offer_ids=ids, archived=archived or None, warehouse_id=warehouse_id,
                          with_turnover=with_turnover or None)
    stocks_ = _stocks_of(campaign_ids)
    if out is not None and len(stocks_) > 1:
        raise click.UsageError(f"--out takes one stock, but {', '.join(s.describe() for s in stocks_)} are "
                               "separate stocks: read them one at a time")
    for stock in stocks_:
        if stock.grouped:
            click.echo(stock.describe(), err=True)
        try:
            result = _reader(stock.via).export(stock.via, options, out=out, stream=None if out else sys.stdout)
        except (InvalidRequest, MarketError) as exc:
            raise click.ClickException(str(exc)) from None
        stats = result.stats
        where = f" to {out}" if out else ""
        click.echo(f"campaign {stock.via}: {stats.offers} offers in {stats.pages} pages ({stats.requests} requests, "
                   f"{stats.waited_s:.1f}s waiting for quota){where}", err=True)


def _business_stocks(business_id: int, warehouse_id: int | None, ids: tuple[str, ...] | None,
                     archived: bool | None, with_turnover: bool | None, out: Path | None) -> None:
    if warehouse_id is None:
        raise click.UsageError("--business needs --warehouse (the Market answers for one warehouse a request; "
                               f"list them with: ymsync warehouses --business {business_id})")
    if archived or with_turnover:
        raise click.UsageError("--archived and --with-turnover are for --campaign reads")
    if out is not None and format_for_business(out) != "jsonl":
        raise click.BadParameter("business reads are written as JSON Lines: use a .jsonl file name", param_hint="--out")
    ctx.cabinet(business_id, mode="v3", what="a warehouse stock read (getStocksOnPartnerWarehouses)")
    reader = WarehouseStockReader(ctx.limiter(business_id), ctx.client(business_id))
    try:
        result = reader.export(business_id, warehouse_id, out=out, stream=None if out else sys.stdout, offer_ids=ids)
    except (InvalidRequest, MarketError) as exc:
        raise click.ClickException(str(exc)) from None
    stats = result.stats
    where = f" to {out}" if out else ""
    click.echo(f"business {business_id} warehouse {warehouse_id}: {stats.offers} offers in {stats.pages} pages "
               f"({stats.requests} requests, {stats.waited_s:.1f}s waiting for quota){where}", err=True)


def format_for_business(out: Path) -> str:
    try:
        return format_for(out)
    except ValueError:
        return "?"


@main.command()
@click.option("--campaign", "campaign_ids", type=click.IntRange(min=1), multiple=True,
              help="Market campaign id (v2 cabinets); repeatable. A warehouse group's campaigns share one stock: "
                   "judged once, through the first named.")
@click.option("--business", "business_id", type=click.IntRange(min=1),
              help="Business id (v3 cabinets): every warehouse ymsync delivered to, or --warehouse.")
@click.option("--warehouse", "warehouse_id", type=click.IntRange(min=1), help="With --business: only this warehouse.")
@click.option("--grace", "grace_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="With --business: values delivered less than this ago are in motion, not drift "
                   "(default YM_RECONCILE_GRACE, 300 s: the Market takes minutes to apply updates).")
@click.option("--fix", is_flag=True, help="Re-queue our value for each drifted SKU through the push path.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table.")
def reconcile(campaign_ids: tuple[int, ...], business_id: int | None, warehouse_id: int | None, grace_s: float | None,
              fix: bool, as_json: bool) -> None:
    """Compare the Market's stock with the last values ymsync delivered, and list the drift.

    Status per row: drift (ours differs; --fix re-queues it), missing (the Market does not list
    the SKU, e.g. it lost what it was given; --fix re-sends it), pending (a newer value is
    already queued, in flight or dead-lettered, so ours is not re-sent)."""
    if bool(campaign_ids) == (business_id is not None):
        raise click.UsageError("pass exactly one of --campaign (v2) and --business (v3)")
    if business_id is not None:
        _business_reconcile(business_id, warehouse_id, grace_s, fix, as_json)
        return
    if warehouse_id is not None or grace_s is not None:
        raise click.UsageError("--warehouse and --grace are for --business reconciliations")
    buffer = StockBuffer.from_settings(_redis(), _settings())  # installs the Market's groups too
    warehouses_of = _warehouses_of()
    results = []
    for stock in shared_stocks(campaign_ids):
        reconciler = Reconciler(buffer, _reader(stock.via), warehouses_of=warehouses_of)
        try:
            results.append(reconciler.run(stock.via, fix=fix))
        except (InvalidRequest, MarketError) as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        # One object for one stock (as always); a list when the campaigns named hold several.
        shown = results[0].as_dict() if len(results) == 1 else [r.as_dict() for r in results]
        click.echo(json.dumps(shown, ensure_ascii=False, indent=1))
        return
    click.echo("\n".join(render_table(r) for r in results))
    if fix and any(r.requeued for r in results):
        click.echo(_DELIVERED_BY)


_DELIVERED_BY = ("re-queued values are delivered by a stocks worker (ymsync worker stocks, or celery -A "
                 "ymsync_celery.tasks worker -Q stocks)")


def _business_reconcile(business_id: int, warehouse_id: int | None, grace_s: float | None, fix: bool,
                        as_json: bool) -> None:
    ctx.cabinet(business_id, mode="v3", what="a business reconciliation (getStocksOnPartnerWarehouses)")
    s = _settings()
    reader = WarehouseStockReader(ctx.limiter(business_id), ctx.client(business_id))
    reconciler = BusinessReconciler(StockBuffer.from_settings(_redis(), s), reader,
                                    grace_s=s.reconcile_grace_s if grace_s is None else grace_s)
    try:
        result = reconciler.run(business_id, warehouse_id, fix=fix)
    except (InvalidRequest, MarketError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=1))
        return
    if not result.warehouses:
        click.echo(f"business {business_id}: ymsync has delivered nothing to compare yet")
    for one in result.warehouses:
        click.echo(render_business_table(one))
    if fix and result.requeued:
        click.echo(_DELIVERED_BY)
