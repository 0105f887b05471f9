"""``ymsync dead-letters list|replay|purge``: stock values the Market refused, or that failed for
too long, for campaigns (v2, ``--campaign``) and businesses (v3, ``--business``, by warehouse)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import click
import redis

from ymsync.cli import main
from ymsync.cli.push import _buffer, _settings
from ymsync.engine.buffer import StockBuffer
from ymsync.engine.group_target import campaign_stock_target
from ymsync.engine.targets import SEP, business_target, split_key
from ymsync.store import keys


@dataclass(frozen=True)
class Where:
    """Which dead letters a command is about: a campaign, a business (maybe one warehouse), or all."""

    campaign: int | None = None
    business: int | None = None
    warehouse: int | None = None

    def targets(self, buffer: StockBuffer) -> list[str]:
        if self.campaign is not None:
            return [campaign_stock_target(self.campaign)]  # a campaign of a group: the group's
        if self.business is not None:
            return [business_target(self.business)]
        return [keys.campaign_target(c) for c in buffer.campaigns()] + \
            [business_target(b) for b in buffer.businesses()] + [keys.group_target(g) for g in buffer.groups()]

    def describe(self) -> str:
        if self.campaign is not None:
            return f"campaign {self.campaign}"
        if self.business is not None:
            return f"business {self.business}" + (f" warehouse {self.warehouse}" if self.warehouse else "")
        return "any campaign or business"


def _where(campaign: int | None, business: int | None, warehouse: int | None, *, required: bool) -> Where:
    if campaign is not None and business is not None:
        raise click.UsageError("give one of --campaign (v2 cabinets) and --business (v3 cabinets)")
    if required and campaign is None and business is None:
        raise click.UsageError("give --campaign (v2 cabinets) or --business (v3 cabinets)")
    if warehouse is not None and business is None:
        raise click.UsageError("--warehouse goes with --business (campaign letters have no warehouse)")
    return Where(campaign, business, warehouse)


def _located(target: str, letter: dict[str, Any]) -> dict[str, Any]:
    """A letter as people read it: its campaign, or its business, warehouse and bare SKU. A
    business letter's SKU field is ``<warehouse>\\x1f<sku>``; invalid input names its warehouse."""
    field = str(letter.get("sku", ""))
    if target.startswith("b"):
        out = {"business": int(target[1:]), **letter, "key": field}
        if SEP in field:
            out["warehouse"], out["sku"] = split_key(field)
        else:
            out.setdefault("warehouse", None)
        return out
    return {"campaign": int(target[1:]), **letter, "key": field}


def _letters(buffer: StockBuffer, where: Where) -> list[tuple[str, dict[str, Any]]]:
    try:
        found = [(t, _located(t, letter)) for t in where.targets(buffer) for letter in buffer.dead_letters(t)]
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis at {_settings().redis_url}: {exc}") from None
    return [(t, d) for t, d in found if where.warehouse is None or d.get("warehouse") == where.warehouse]


def campaign_option(f):
    return click.option("--campaign", "campaign_id", type=click.IntRange(min=1), help="A campaign (v2).")(f)


def business_options(f):
    f = click.option("--warehouse", type=click.IntRange(min=1),
                     help="With --business: only this warehouse (partnerWarehouseId).")(f)
    return click.option("--business", "business_id", type=click.IntRange(min=1), help="A business (v3).")(f)


@main.group("dead-letters")
def dead_letters() -> None:
    """Stock values the Market refused or that failed too long: list, replay, purge."""


@dead_letters.command("list")
@campaign_option
@business_options
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
def list_dead(campaign_id: int | None, business_id: int | None, warehouse: int | None, as_json: bool) -> None:
    """Every dead letter with its campaign (or business and warehouse), SKU, value, reason and time."""
    where = _where(campaign_id, business_id, warehouse, required=False)
    letters = _letters(_buffer(), where)
    if not letters:
        # On stderr with --json, so a JSON Lines reader still gets an empty stream.
        click.echo(f"no dead letters for {where.describe()}", err=as_json)
        return
    for _target, d in letters:
        if as_json:
            click.echo(json.dumps({k: v for k, v in d.items() if k != "key"}, ensure_ascii=False))
            continue
        when = datetime.fromtimestamp(d["at_ms"] / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        owner = str(d["campaign"]) if "campaign" in d else \
            f"business {d['business']} warehouse {d['warehouse'] if d['warehouse'] is not None else '-'}"
        click.echo(f"{owner}\t{d['sku']}\t{d['count']}\t{when}Z\t{d['reason']}")


@dead_letters.command()
@campaign_option
@business_options
@click.option("--sku", "skus", multiple=True, help="Only these SKUs (repeatable); default all.")
def replay(campaign_id: int | None, business_id: int | None, warehouse: int | None, skus: tuple[str, ...]) -> None:
    """Queue dead letters again (a newer value that arrived since wins)."""
    where = _where(campaign_id, business_id, warehouse, required=True)
    buffer = _buffer()
    if campaign_id is not None:
        n = buffer.replay(campaign_id, skus)
    else:
        # A business letter is keyed by warehouse and SKU: pick the keys the filters select (an
        # empty selection must not reach replay, where no SKUs means every letter).
        wanted = set(skus)
        chosen = [d["key"] for _t, d in _letters(buffer, where)
                  if SEP in d["key"] and (not wanted or d["sku"] in wanted)]
        n = buffer.replay(business_target(business_id), chosen) if chosen else 0  # type: ignore[arg-type]
    click.echo(f"replayed {n} dead letter(s) for {where.describe()}")


@dead_letters.command()
@campaign_option
@business_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(campaign_id: int | None, business_id: int | None, warehouse: int | None, yes: bool) -> None:
    """Forget dead letters of a campaign, or of a business (or one of its warehouses)."""
    where = _where(campaign_id, business_id, warehouse, required=True)
    if not yes:
        click.confirm(f"Forget every dead letter of {where.describe()}?", abort=True)
    buffer = _buffer()
    if campaign_id is not None:
        n = buffer.purge(campaign_id)
    else:
        n = buffer.purge(business_target(business_id), warehouse)  # type: ignore[arg-type]
    click.echo(f"purged {n} dead letter(s) for {where.describe()}")
