"""Which campaigns share one stock, for the read side (reads, reconciliation, report snapshots).

The campaigns of a warehouse group (v2) hold one stock on the Market: a write through any of them
is seen through all. So a read or a drift check asked for several campaigns of one group needs one
read, through one of them, and says which campaigns share what it shows. :func:`shared_stocks`
turns the campaigns asked for into one :class:`SharedStock` per stock; groups come from
``engine/group_target.group_of`` (configured, else the Market's cached getPagedWarehouses copy).

:func:`own_warehouses` is what the cached getPagedWarehouses copy says a campaign's own warehouses
are; the v2 reconciler prefers it to guessing from the read (reads/reconcile.py).

This module knows nothing about Celery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from ymsync.engine.group_target import group_of
from ymsync.market import MarketError

log = logging.getLogger("ymsync.reads.shared")

GroupOf = Callable[[int], tuple[int, ...]]


@dataclass(frozen=True)
class SharedStock:
    """One stock: read through ``via``; ``campaigns`` is the whole group (or just ``via``);
    ``asked`` the campaigns of it the caller named, in their order."""

    via: int
    campaigns: tuple[int, ...]
    asked: tuple[int, ...]

    @property
    def grouped(self) -> bool:
        return len(self.campaigns) > 1

    @property
    def label(self) -> str:
        """``1001,1002`` for a group (the report column's value), ``""`` for a lone campaign."""
        return ",".join(map(str, self.campaigns)) if self.grouped else ""

    def describe(self) -> str:
        """One line for people: ``campaigns 1001, 1002 share one stock (warehouse group); read once, through 1001``."""
        if not self.grouped:
            return f"campaign {self.via}"
        return (f"campaigns {', '.join(map(str, self.campaigns))} share one stock (warehouse group); "
                f"read once, through {self.via}")


def shared_stocks(campaigns: Iterable[int], group: GroupOf = group_of) -> list[SharedStock]:
    """One :class:`SharedStock` per stock among ``campaigns`` (repeats dropped), in the order each
    stock was first named; a group is read through the first of its campaigns named."""
    out: list[SharedStock] = []
    index: dict[tuple[int, ...], int] = {}
    for campaign in dict.fromkeys(int(c) for c in campaigns):
        members = tuple(group(campaign)) or (campaign,)
        if members in index:
            kept = out[index[members]]
            out[index[members]] = SharedStock(kept.via, kept.campaigns, kept.asked + (campaign,))
            continue
        index[members] = len(out)
        out.append(SharedStock(campaign, members, (campaign,)))
    return out


def own_warehouses(listing: object, campaign_id: int) -> frozenset[int]:
    """The warehouses getPagedWarehouses lists for ``campaign_id`` (a ``GroupList``, or None when
    no copy could be had): empty when the listing does not name the campaign."""
    warehouses = getattr(listing, "warehouses", ()) or ()
    return frozenset(w.id for w in warehouses if w.campaign_id == int(campaign_id))


class Listing(Protocol):
    def get(self, business_id: int) -> object: ...


def v2_business(cabinets: object, campaign_id: int) -> int | None:
    """The business of the v2 cabinet serving ``campaign_id`` (its getPagedWarehouses), else None."""
    try:
        cabinet = cabinets.serving(campaign_id=int(campaign_id))  # type: ignore[attr-defined]
    except LookupError:
        return None
    return cabinet.business_id if cabinet.mode == "v2" else None


def warehouses_from(directory: Listing, business_of: Callable[[int], int | None]) -> Callable[[int], frozenset[int]]:
    """``warehouses_of`` for the v2 reconciler: a campaign's own warehouses from ``directory``
    (a ``GroupDirectory``: the cached getPagedWarehouses copy, refreshed past its TTL) of the
    business ``business_of`` names (None: not a v2 cabinet with a business id). Empty when no
    copy can be had: the reconciler then guesses, as before, rather than fail the check."""
    def of(campaign_id: int) -> frozenset[int]:
        business = business_of(int(campaign_id))
        if business is None:
            return frozenset()
        try:
            return own_warehouses(directory.get(int(business)), campaign_id)
        except MarketError as exc:
            log.info("campaign %s: no warehouse list from the Market (%s); guessing its own warehouse",
                     campaign_id, exc)
            return frozenset()
    return of


__all__ = ["GroupOf", "Listing", "SharedStock", "own_warehouses", "shared_stocks", "v2_business", "warehouses_from"]
