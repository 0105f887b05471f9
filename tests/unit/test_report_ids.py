"""Report ids are checked before they become file names (issue 12, item 5)."""

from __future__ import annotations

import pytest

from ymsync.reports.poller import safe_report_id


@pytest.mark.parametrize("report_id", ["abc123", "0f3a9c1d2e", "Rep_2026-11.20-abc", "a.b", "-x", "_"])
def test_plain_ids_pass(report_id):
    assert safe_report_id(report_id) == report_id


@pytest.mark.parametrize("report_id", ["", ".", "..", "../x", "/x", "x/y", "a/../../b", ".hidden", "x\\y", "x..y",
                                       "a b", "x\x00y", "x" * 129, "ё", None, 42, ["x"]])
def test_anything_that_could_name_a_folder_or_hide_is_refused(report_id):
    assert safe_report_id(report_id) is None
