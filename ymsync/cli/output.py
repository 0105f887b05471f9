"""Tables for people: what a command prints must never cut a name short.

Rich sizes a table to the console, 80 columns when the output is not a terminal (a pipe, a log,
``watch``), and squeezes every column to fit, so ``campaign=1001`` became ``campaign…``. Here the
columns a person looks things up by (target names, counts) are never narrower than their values; free text (a pause
reason) folds onto more lines instead; and output that is not a terminal is as wide as it needs.
"""

from __future__ import annotations

from typing import IO, Iterable

from rich import box
from rich.console import Console
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ymsync.engine.status import CampaignStatus
from ymsync.store import keys

WIDE = 4096  # not a terminal: nobody's window to fit, so nothing is squeezed


def console(file: IO[str] | None = None) -> Console:
    probe = Console(file=file)
    return probe if probe.is_terminal else Console(file=file, width=WIDE)


def status_table(rows: Iterable[CampaignStatus]) -> Group:
    """The table, then one line per paused target saying why (a reason is a sentence: in a column
    it would squeeze every other one)."""
    cells, reasons = [], []
    for r in rows:
        name = keys.describe_target(r.target) if r.target else str(r.campaign)
        if r.campaigns:  # a warehouse group: which campaigns share its stock
            name += f" ({','.join(map(str, r.campaigns))})"
        quota = f"{r.quota_used}/{r.quota_amount}" if r.quota_amount else "off"
        paused = f"{r.paused_until:%H:%M:%S}Z" if r.paused_until else "-"
        cells.append((name, str(r.pending), str(r.in_flight), str(r.delivered), str(r.dead_letters), quota, paused))
        if r.paused_until and r.pause_reason:
            reasons.append(Text(f"{name} paused until {paused}: {r.pause_reason}", overflow="fold"))
    # No side borders and one space between columns: the room goes to the values.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    headers = ("target", "pending", "in flight", "delivered", "dead letters", "quota used", "paused until")
    for i, header in enumerate(headers):
        # Exactly as wide as its longest value (or header word): rich then squeezes nothing, and a
        # header wraps onto two lines rather than a name or a count being cut.
        width = max([len(c[i]) for c in cells] + [len(word) for word in header.split()])
        table.add_column(header, width=width)
    for row in cells:
        table.add_row(*row)
    return Group(table, *reasons)


__all__ = ["console", "status_table"]
