"""The StockBuffer's read side: what is pending, in flight, delivered, dead-lettered, and which
targets exist. Reads only; every write is a script in buffer.py."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

import msgpack

from ymsync.store import keys

if TYPE_CHECKING:
    import redis

    from ymsync.engine.schedule import Schedule


class BufferReads:
    """Mixed into :class:`ymsync.engine.buffer.StockBuffer`, which provides these attributes."""

    redis: "redis.Redis"
    schedule: "Schedule"
    generation_ms: int

    @staticmethod
    def target(target: int | str) -> str:
        raise NotImplementedError

    def businesses(self) -> list[int]:
        return sorted(int(t[1:]) for t in self.schedule.targets() if t.startswith("b"))

    def groups(self) -> list[int]:
        """Warehouse groups with stock targets, by their first campaign (``g1001`` -> 1001)."""
        return sorted(int(t[1:]) for t in self.schedule.targets() if t.startswith("g"))

    def campaigns(self) -> list[int]:
        return sorted(int(t[1:]) for t in self.schedule.targets() if t.startswith("c"))

    def pending(self, target_id: int | str) -> int:
        return int(self.redis.hlen(keys.target_keys(self.target(target_id))["buf"]))

    def in_flight(self, target_id: int | str) -> int:
        return int(self.redis.scard(keys.target_keys(self.target(target_id))["busy"]))

    def stats(self, target_id: int | str) -> dict[str, int]:
        raw = self.redis.hgetall(keys.target_keys(self.target(target_id))["stats"])
        return {k.decode(): int(v) for k, v in raw.items()}

    def generations(self) -> list[int]:
        """Live generations, oldest first (server clock)."""
        seconds, micros = self.redis.time()
        g = (int(seconds) * 1000 + int(micros) // 1000) // self.generation_ms
        return [g - 2, g - 1, g]

    def delivered(self, target_id: int | str) -> dict[str, tuple[int, int, int]]:
        """sku -> (count, stamp_ms, delivered_at_ms) of the last value the Market accepted, for
        SKUs written within the horizon (older records are gone, by design)."""
        target = self.target(target_id)
        out: dict[str, tuple[int, int, int]] = {}
        for g in self.generations():  # newer generations override older ones
            for k, v in self.redis.hgetall(keys.delivered(target, g)).items():
                out[k.decode()] = tuple(int(x) for x in v.split(b"|"))  # type: ignore[assignment]
        return out

    def delivered_of(self, target_id: int | str, skus: Sequence[str]) -> list[tuple[int, int, int] | None]:
        """``delivered`` for the given SKUs only, in their order (None: no record)."""
        return self._records(keys.delivered, target_id, skus)

    def latest_of(self, target_id: int | str, skus: Sequence[str]) -> list[tuple[int, int] | None]:
        """(stamp_ms, count) of the newest value accepted for each SKU (None: no record), found
        as INGEST finds it: the ``hwm`` record where one exists (kept the newest while it does), else
        the pending value, else the value in flight, else the delivered record."""
        if not skus:
            return []
        k = keys.target_keys(self.target(target_id))
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(k["buf"], list(skus))
        pipe.hvals(k["flight"])
        pending, batches = pipe.execute()
        in_flight: dict[bytes, bytes] = {}
        for packed in batches:
            pairs = msgpack.unpackb(packed, raw=True)
            in_flight.update(zip(pairs[::2], pairs[1::2]))
        left = self._records(keys.hwm, target_id, skus)
        delivered = self._records(keys.delivered, target_id, skus)
        out: list[tuple[int, int] | None] = []
        for i, sku in enumerate(skus):
            value = pending[i] or in_flight.get(sku.encode())  # "count|stamp|first"
            if left[i] is not None:
                out.append(left[i])
            elif value is not None:
                count, stamp, _first = value.split(b"|")
                out.append((int(stamp), int(count)))
            else:
                out.append((delivered[i][1], delivered[i][0]) if delivered[i] is not None else None)
        return out

    def _records(self, name, target_id: int | str, skus: Sequence[str]) -> list:
        if not skus:
            return []
        target = self.target(target_id)
        pipe = self.redis.pipeline(transaction=False)
        gens = list(reversed(self.generations()))  # newest first
        for g in gens:
            pipe.hmget(name(target, g), list(skus))
        rows = pipe.execute()
        out = []
        for i in range(len(skus)):
            raw = next((row[i] for row in rows if row[i] is not None), None)
            out.append(tuple(int(x) for x in raw.split(b"|")) if raw is not None else None)
        return out

    def dead_letters(self, target_id: int | str) -> list[dict]:
        k = keys.target_keys(self.target(target_id))
        pipe = self.redis.pipeline(transaction=False)
        pipe.hvals(k["dead"])
        pipe.lrange(k["invalid"], 0, -1)
        values, invalid = pipe.execute()
        return sorted((json.loads(v) for v in [*values, *invalid]), key=lambda d: (d["at_ms"], d["sku"]))

    def dead_letter_count(self, target_id: int | str) -> int:
        k = keys.target_keys(self.target(target_id))
        pipe = self.redis.pipeline(transaction=False)
        pipe.hlen(k["dead"])
        pipe.llen(k["invalid"])
        return sum(pipe.execute())
