"""Stock reads and reconciliation on the ``reports`` queue (``celery -A tasks worker -Q reports``).

``ymsync.reads.stocks`` writes every offer of a campaign to a file under ``YM_REPORTS_DIR`` and
returns its path and counts: the data travels as a file, never through the result backend.
``ymsync.reads.reconcile`` compares the Market with what ymsync delivered, writes the drift rows
as JSON next to it and, with ``fix``, re-queues ours through the normal push path;
``ymsync.reads.reconcile_business`` does the same for a v3 business, warehouse by warehouse.

Both are safe to run twice (acks_late redelivers a task whose worker died): a read rewrites
its file atomically, and a second fix finds nothing left to re-queue or re-queues the same value.
Quota waits happen inside the task, a few seconds at a time: a read is one long walk whose
page tokens are not worth persisting, and the read quota refills within a minute.
"""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from ymsync.files import write_json_atomic
from ymsync.config.cabinets import CabinetModeError, CabinetNotFound
from ymsync.market import InvalidRequest, MarketWrongApiMode
from ymsync.reads.business import WarehouseStockReader
from ymsync.reads.campaign import FORMATS, ReadOptions, format_for
from ymsync.reads.shared import shared_stocks
from ymsync.config.settings import get_settings

from . import app, runtime

# What a read refuses with a result whose ``error`` says what to configure or change (no cabinet
# serves it, the cabinet's mode, bad arguments), for v2 and v3 alike: Flower and a caller of
# ``.get()`` show one readable line, never a worker's traceback.
REFUSED = (CabinetNotFound, CabinetModeError, MarketWrongApiMode, InvalidRequest, ValueError)


@app.task(name="ymsync.reads.stocks", bind=True)
def stocks(self: Any, campaign_id: int, out: str | None = None, fmt: str | None = None,
           offer_ids: list[str] | None = None, archived: bool | None = None, warehouse_id: int | None = None,
           with_turnover: bool | None = None) -> dict[str, Any]:
    try:
        fmt = fmt or (format_for(out) if out else "jsonl")
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        path = output_path(out or default_name("stocks", int(campaign_id), self.request.id, fmt))
        # False means the Market's default, so it is sent as "unset" (and offerIds allow no archived).
        options = ReadOptions(offer_ids=tuple(offer_ids) if offer_ids is not None else None,
                              archived=archived or None, warehouse_id=warehouse_id,
                              with_turnover=with_turnover or None)
        result = runtime.reader(int(campaign_id)).export(int(campaign_id), options, out=path, fmt=fmt)
    except REFUSED as exc:
        return {"campaign": int(campaign_id), "error": str(exc)}
    # A campaign of a warehouse group: the stock read is the group's, shared by these campaigns.
    return {"campaign": int(campaign_id), "campaigns": list(shared_campaigns(int(campaign_id))), **result.as_dict()}


@app.task(name="ymsync.reads.reconcile", bind=True)
def reconcile(self: Any, campaign_id: int, fix: bool = False, out: str | None = None) -> dict[str, Any]:
    try:
        path = output_path(out or default_name("reconcile", int(campaign_id), self.request.id, "json"))
        result = runtime.reconciler(int(campaign_id)).run(int(campaign_id), fix=bool(fix))
    except REFUSED as exc:
        return {"campaign": int(campaign_id), "error": str(exc)}
    write_json_atomic(path, result.as_dict(), indent=1)
    return {"campaign": result.campaign_id, "campaigns": list(result.campaigns or (result.campaign_id,)),
            "path": str(path), "checked": result.checked, "drift": result.drift,
            "requeued": result.requeued, "in_motion": result.in_motion}


@app.task(name="ymsync.reads.reconcile_business", bind=True)
def reconcile_business(self: Any, business_id: int, warehouse_id: int | None = None, fix: bool = False,
                       out: str | None = None) -> dict[str, Any]:
    """Reconcile a v3 business (every warehouse ymsync delivered to, or ``warehouse_id``). A
    cabinet with warehouse groups (or in mode v2) is a result that says which mode to set."""
    where = {"business": int(business_id), "warehouse": warehouse_id}
    try:
        path = output_path(out or default_name("reconcile", int(business_id), self.request.id, "json"))
        result = runtime.business_reconciler(int(business_id)).run(
            int(business_id), int(warehouse_id) if warehouse_id is not None else None, fix=bool(fix))
    except REFUSED as exc:
        return {**where, "error": str(exc)}
    write_json_atomic(path, result.as_dict(), indent=1)
    return {**where, "path": str(path), "checked": result.checked, "drift": result.drift,
            "requeued": result.requeued, "in_motion": result.in_motion}


@app.task(name="ymsync.reads.warehouse_stocks", bind=True)
def warehouse_stocks(self: Any, business_id: int, warehouse_id: int, out: str | None = None) -> dict[str, Any]:
    """Every offer on one warehouse of a business (v3 getStocksOnPartnerWarehouses), as JSON Lines
    under YM_REPORTS_DIR. A cabinet with warehouse groups (or in mode v2) is a result that says
    which mode to set, not a traceback."""
    where = {"business": int(business_id), "warehouse": int(warehouse_id)}
    try:
        path = output_path(out or default_name("stocks", int(business_id), self.request.id, "jsonl"))
        runtime.cabinet_for_business(business_id).require_mode("v3", "a warehouse stock read")
        reader = WarehouseStockReader(runtime.limiter_for_business(business_id), runtime.client_for_business(business_id))
        result = reader.export(int(business_id), int(warehouse_id), out=path)
    except REFUSED as exc:
        return {**where, "error": str(exc)}
    return {**where, **result.as_dict()}


def shared_campaigns(campaign_id: int) -> tuple[int, ...]:
    """The campaigns whose stock a read through ``campaign_id`` shows (its warehouse group, or itself)."""
    runtime.buffer()  # installs the Market's groups (the cached getPagedWarehouses copy) in this process
    return shared_stocks([campaign_id])[0].campaigns


def output_path(name: str) -> Path:
    """``name`` under ``YM_REPORTS_DIR``; a message must not make a worker write elsewhere."""
    rel = PurePosixPath(str(name).replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"out must be a relative path inside YM_REPORTS_DIR, got {name!r}")
    return get_settings().reports_dir / Path(*rel.parts)


def default_name(kind: str, campaign_id: int, task_id: str | None, ext: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{kind}/{campaign_id}-{stamp}-{(task_id or 'local')[:8]}.{ext}"


def send_stock_read(campaign_id: int, *, out: str | None = None, fmt: str | None = None,
                    offer_ids: Sequence[str] | None = None, archived: bool | None = None,
                    warehouse_id: int | None = None, with_turnover: bool | None = None) -> Any:
    """Enqueue a stock read; Flower shows a one-line summary, not thousands of SKUs."""
    kwargs = {"out": out, "fmt": fmt, "offer_ids": list(offer_ids) if offer_ids is not None else None,
              "archived": archived, "warehouse_id": warehouse_id, "with_turnover": with_turnover}
    options = ReadOptions(offer_ids=tuple(offer_ids) if offer_ids is not None else None, archived=archived or None,
                          warehouse_id=warehouse_id, with_turnover=with_turnover or None)
    return stocks.apply_async((int(campaign_id),), {k: v for k, v in kwargs.items() if v is not None},
                              argsrepr=f"(campaign={int(campaign_id)})",
                              kwargsrepr=f"{{{options.describe()}, out={out or 'auto'}}}")


def send_reconcile(campaign_id: int, *, fix: bool = False, out: str | None = None) -> Any:
    return reconcile.apply_async((int(campaign_id),), {"fix": bool(fix), "out": out},
                                 argsrepr=f"(campaign={int(campaign_id)})", kwargsrepr=f"{{fix={bool(fix)}}}")


def send_business_reconcile(business_id: int, *, warehouse_id: int | None = None, fix: bool = False,
                            out: str | None = None) -> Any:
    return reconcile_business.apply_async(
        (int(business_id),), {"warehouse_id": warehouse_id, "fix": bool(fix), "out": out},
        argsrepr=f"(business={int(business_id)})",
        kwargsrepr=f"{{warehouse={warehouse_id if warehouse_id is not None else 'all'}, fix={bool(fix)}}}")


__all__ = ["stocks", "reconcile", "reconcile_business", "warehouse_stocks", "send_stock_read", "send_reconcile",
           "send_business_reconcile", "output_path"]
