"""`ymsync status`'s table never cuts a target name or a count short, in a narrow terminal too."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from rich.console import Console

from ymsync.cli.output import console, status_table
from ymsync.engine.status import CampaignStatus


def _row(target: str, pending: int, reason: str | None = None) -> CampaignStatus:
    return CampaignStatus(campaign=int(target[1:]), pending=pending, in_flight=2000, delivered=1_234_567,
                          dead_letters=12, quota_used=99_999, quota_amount=100_000,
                          paused_until=datetime(2026, 12, 6, 12, tzinfo=timezone.utc) if reason else None,
                          pause_reason=reason, target=target)


def test_an_80_column_terminal_keeps_every_name_and_count_whole() -> None:
    rows = [_row("c123456789", 120_000, "halted: HTTP 403 Access denied to campaignId 123456789"),
            _row("b7", 3)]
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=True, color_system=None).print(status_table(rows))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    for whole in ("campaign=123456789", "business=7", "120000", "1234567", "99999/100000", "12:00:00Z"):
        assert whole in text, text
    assert "Access denied" in text  # the reason folds onto more lines, cut nowhere


def test_output_that_is_not_a_terminal_is_as_wide_as_the_table() -> None:
    out = io.StringIO()
    reason = "halted: HTTP 403 Access denied to campaignId 123456789"
    console(out).print(status_table([_row("c123456789", 120_000, reason)]))
    assert reason in out.getvalue()  # one line, whole: grep finds it
