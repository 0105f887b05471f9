"""One stored stock value, shared by the campaign-level store (state.py) and the business-level
one (business_state.py); its own module so neither store imports the other's."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class StockRecord(NamedTuple):
    """A named tuple (never changed in place, replaced whole): the sandbox makes one per SKU of
    every request, and a dataclass instance cost ~3x as much to make."""

    count: int
    updated_at: datetime


__all__ = ["StockRecord"]
