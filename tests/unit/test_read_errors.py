"""Read tasks refuse a campaign or business no cabinet serves with a result naming what to
configure, v2 and v3 alike (before, the v2 tasks raised a traceback); the CLI says it in one line."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import tasks.reads as read_tasks
from tests.unit.test_unlisted_campaigns import one_cabinet  # noqa: F401  (a fixture)
from ymsync.cli import main


def test_v2_and_v3_read_tasks_answer_an_unserved_target_with_a_readable_error(one_cabinet: Path) -> None:  # noqa: F811
    expected = f"no cabinet lists campaign 2002 (add it to a cabinet's campaigns in {one_cabinet})"
    assert read_tasks.stocks(2002) == {"campaign": 2002, "error": expected}
    assert read_tasks.reconcile(2002) == {"campaign": 2002, "error": expected}
    business = read_tasks.reconcile_business(9)
    assert business == {"business": 9, "warehouse": None,
                        "error": "no cabinet configured for business 9 (configured: 7)"}
    assert read_tasks.warehouse_stocks(9, 11)["error"] == business["error"]


def test_the_cli_says_it_in_one_line(one_cabinet: Path) -> None:  # noqa: F811
    result = CliRunner().invoke(main, ["stocks", "--campaign", "2002"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == f"Error: no cabinet lists campaign 2002 (add it to a cabinet's campaigns in " \
                                    f"{one_cabinet})"
