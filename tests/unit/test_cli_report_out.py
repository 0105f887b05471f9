"""``ymsync report --out DIR``: a folder that cannot be written ends with one clean line, not a traceback."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from ymsync.cli.reports import _copy_out


def _outcome(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "reports").mkdir()
    report, rows = tmp_path / "reports" / "r1.csv", tmp_path / "reports" / "r1.rows.csv"
    report.write_text("a;b\n1;2\n")
    rows.write_text("a,b\n1,2\n")
    return {"status": "DONE", "path": str(report), "rows_path": str(rows)}


def test_copies_report_and_rows(tmp_path):
    copied = _copy_out(_outcome(tmp_path), tmp_path / "out")
    assert Path(copied["path"]).read_text() == "a;b\n1;2\n"
    assert Path(copied["rows_path"]).parent == (tmp_path / "out").resolve()


def test_unwritable_folder_is_a_clean_error_naming_the_kept_report(tmp_path):
    outcome = _outcome(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # mkdir under a file fails for root too (a read-only dir would not)
    with pytest.raises(click.ClickException) as caught:
        _copy_out(outcome, blocker / "out")
    message = caught.value.format_message()
    assert message.startswith(f"the report is done ({outcome['path']}), but copying it to {blocker / 'out'} failed: ")
    assert "Not a directory" in message and "\n" not in message


def test_read_only_folder_as_an_unprivileged_user(tmp_path):
    """The image's case (uid 10001 in a root-owned /app): run where permissions apply."""
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions; the Not-a-directory case covers the same path")
    outcome = _outcome(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(click.ClickException, match="Permission denied"):
        _copy_out(outcome, locked / "out")
