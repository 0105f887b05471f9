"""DeliveryTracker: has every pushed SKU reached the Market (or a dead letter)?

A pushed value is settled once the buffer's "last delivered" or dead-letter record for its
SKU carries a stamp at least as new as the pushed one. A newer value settling settles an
older one too: the Market then holds something at least as fresh as what was pushed. Values
pushed without ``updatedAt`` are stamped by the Redis server on arrival, so the tracker uses
the server's time taken just before the push as their lower bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from ymsync.store import keys
from ymsync.engine.buffer import StockBuffer

_CHUNK = 5000


@dataclass(frozen=True)
class Progress:
    total: int
    delivered: int
    dead: int

    @property
    def settled(self) -> int:
        return self.delivered + self.dead

    @property
    def done(self) -> bool:
        return self.settled >= self.total


class DeliveryTracker:
    def __init__(self, buffer: StockBuffer, campaign_id: int | str,
                 updates: Iterable[tuple[str, int, int | None]], pushed_after_ms: int) -> None:
        self.buffer = buffer
        self.campaign_id = campaign_id  # a campaign id, or a target name (b7 for a business)
        targets: dict[str, int] = {}
        for sku, _count, stamp in updates:
            stamp = pushed_after_ms if stamp is None else stamp
            targets[sku] = max(stamp, targets.get(sku, 0))
        self.remaining = targets
        self.total = len(targets)
        self.delivered = 0
        self.dead = 0
        self.dead_skus: list[str] = []

    def poll(self) -> Progress:
        """Check every SKU still outstanding (in pipelined chunks) and return the progress."""
        k = keys.target_keys(self.buffer.target(self.campaign_id))
        skus = list(self.remaining)
        for start in range(0, len(skus), _CHUNK):
            chunk = skus[start:start + _CHUNK]
            delivered = self.buffer.delivered_of(self.campaign_id, chunk)
            dead = self.buffer.redis.hmget(k["dead"], chunk)
            for sku, got, letter in zip(chunk, delivered, dead):
                target = self.remaining[sku]
                if got is not None and got[1] >= target:
                    self.delivered += 1
                elif letter is not None and (json.loads(letter).get("stamp_ms") or 0) >= target:
                    self.dead += 1
                    self.dead_skus.append(sku)
                else:
                    continue
                del self.remaining[sku]
        return Progress(self.total, self.delivered, self.dead)


def server_time_ms(buffer: StockBuffer) -> int:
    seconds, micros = buffer.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
