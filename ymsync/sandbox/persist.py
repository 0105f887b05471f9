"""The sandbox's stock in a file: ``ymsync sandbox --state-file PATH``.

The real Market remembers what it was given; a sandbox that forgot its stock on every restart
would disagree with Redis (which remembers what ymsync delivered) after a plain ``docker compose
down``/``up``: a re-push would send nothing and reconciliation would list every SKU as missing.
So the compose sandbox keeps its stock and archived offers (per campaign, and per business
warehouse for the v3 methods) in a file on a volume: loaded at start, saved a moment after each
change (by a background thread) and once more when it stops.

Only the Market's data is kept. Quota windows, counters, faults and report jobs are a run's
own and start afresh. Writes are atomic (a temporary file, then ``os.replace``), so a sandbox
killed mid-save leaves the previous file intact.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from ymsync.files import atomic_writer
from ymsync.sandbox.state import SandboxState, StockRecord

FORMAT = 1
log = logging.getLogger(__name__)


class StateFileError(ValueError):
    """The state file exists but cannot be read as one; the message names the file."""


def dump(state: SandboxState) -> dict[str, Any]:
    """The part of ``state`` that outlives a restart, as plain JSON data."""
    with state.lock:
        return {
            "format": FORMAT,
            "stocks": {str(cid): {sku: [r.count, r.updated_at.isoformat()] for sku, r in store.items()}
                       for cid, store in state.stocks.items()},
            "archived": {str(cid): sorted(skus) for cid, skus in state.archived.items() if skus},
            "businesses": state.business.dump(),  # v3 stock per (warehouse, SKU); absent in older files
        }


def save(state: SandboxState, path: Path) -> int:
    """Write the state atomically; return the revision written."""
    with state.lock:
        revision = state.revision
        data = dump(state)
    with atomic_writer(path, fsync=True) as out:  # fsync: a power cut must not leave half a state
        json.dump(data, out, separators=(",", ":"))
    return revision


def load(state: SandboxState, path: Path) -> int:
    """Fill ``state`` from ``path``; return the number of SKUs (campaign SKUs and business
    (warehouse, SKU) items) loaded (0 when there is no file yet)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{path}: cannot read the sandbox state ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileError(f"{path}: not a sandbox state file of format {FORMAT}")
    try:
        stocks = {int(cid): {str(sku): StockRecord(int(count), datetime.fromisoformat(stamp))
                             for sku, (count, stamp) in store.items()}
                  for cid, store in data.get("stocks", {}).items()}
        archived = {int(cid): set(map(str, skus)) for cid, skus in data.get("archived", {}).items()}
        items = state.business.restore(data.get("businesses", {}))
    except (TypeError, ValueError, AttributeError) as exc:
        raise StateFileError(f"{path}: malformed sandbox state ({exc})") from None
    with state.lock:
        state.stocks.clear()
        state.stocks.update(stocks)
        state.archived.clear()
        state.archived.update(archived)
        state._sorted.clear()
        state.link_groups()  # a warehouse group's campaigns share one stock again
        state.revision += 1
    return sum(len(store) for store in stocks.values()) + items


class StateFile:
    """Loads ``path`` into ``state`` and keeps it saved: ``start()``, then ``close()`` at the end."""

    def __init__(self, state: SandboxState, path: Path, *, interval_s: float = 1.0) -> None:
        self.state, self.path, self.interval_s = state, Path(path), interval_s
        self._saved = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Load the file (if any) and start saving; return the number of SKUs loaded."""
        loaded = load(self.state, self.path)
        self._saved = self.state.revision
        self._thread = threading.Thread(target=self._run, name="sandbox-state-file", daemon=True)
        self._thread.start()
        return loaded

    def flush(self) -> None:
        if self.state.revision != self._saved:
            self._saved = save(self.state, self.path)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.flush()
            except OSError as exc:  # a full or read-only disk: try again next round and at close()
                log.warning("sandbox state file %s not saved: %s", self.path, exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
