"""A batch: the values one request carries, as a take moved them from pending to in flight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import msgpack


class Entry(NamedTuple):
    """A SKU's value inside a batch: ``stamp_ms`` orders it, ``first_ms`` dates its first try.
    A named tuple: a request makes 2,000 of them, and a frozen dataclass cost ~1 µs each."""

    sku: str
    count: int
    stamp_ms: int
    first_ms: int


def entries_of(raw: list[bytes], start: int) -> tuple[Entry, ...]:
    """The entries of a take's reply: ``sku, "count|stamp_ms|first_ms"`` pairs from ``raw[start]`` on."""
    values = (v.split(b"|") for v in raw[start + 1::2])
    return tuple(Entry(sku.decode(), int(c), int(s), int(f)) for sku, (c, s, f) in zip(raw[start::2], values))


class TakenEntries(Sequence[Entry]):
    """A taken batch's entries as the take's reply holds them (``pairs``: ``sku, b"count|stamp_ms|
    first_ms"``). A delivered request needs only their number and its body, which is written straight
    from the pairs (ymsync.market.wire.campaign_stock_bytes); the Entry tuples, ~0.8 µs a SKU, are
    made the first time anything else (isolation, a failure) reads the entries."""

    __slots__ = ("pairs", "_entries")

    def __init__(self, pairs: list[bytes]) -> None:
        self.pairs = pairs
        self._entries: tuple[Entry, ...] | None = None

    def _all(self) -> tuple[Entry, ...]:
        if self._entries is None:
            self._entries = entries_of(self.pairs, 0)
        return self._entries

    def __len__(self) -> int:
        return len(self.pairs) // 2

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]  (int or slice, as a tuple's)
        return self._all()[index]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return tuple(self._all()) == (tuple(other) if isinstance(other, (tuple, list, TakenEntries)) else other)

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


def taken_entries(packed: bytes) -> TakenEntries:
    """A take's batch (TAKE's reply: ``sku, value`` pairs packed by msgpack), its Entry tuples
    made only when read (TakenEntries). Unpacked in C, and Redis sends one string."""
    return TakenEntries(msgpack.unpackb(packed, raw=True))


@dataclass(frozen=True)
class Batch:
    target: str
    batch_id: str
    entries: Sequence[Entry]  # a tuple, or TakenEntries as a take returned them
    # The newest stamp its values may carry (epoch ms): the taker's cap on the Market's clock or a
    # higher one an earlier batch of the target took (see TAKE); None: the sender's clock decides.
    cap_ms: int | None = None
    # The target's stamp floor as the take found it, kept where ``cap_ms`` is None too (a process
    # that has not seen the Market's clock yet): a strict retry never stamps below it (stamps.py).
    floor_ms: int | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def campaign_id(self) -> int:
        """The campaign of a campaign target (``c1001``)."""
        return int(self.target[1:])


__all__ = ["Batch", "Entry", "TakenEntries", "entries_of", "taken_entries"]
