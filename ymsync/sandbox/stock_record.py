"""One stored stock value, shared by the campaign-level store (state.py) and the business-level
one (business_state.py); its own module so neither store imports the other's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class StockRecord:
    count: int
    updated_at: datetime


__all__ = ["StockRecord"]
