"""Fixtures of the chaos suite: a bench per case and a recorder for its figures."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from tests.chaos.figures import write_figures


class Case:
    """What one chaos case measured (``figures``) and claimed (``checks``), written at teardown."""

    def __init__(self, name: str, title: str) -> None:
        self.name, self.title = name, title
        self.figures: dict[str, Any] = {}
        self.checks: list[str] = []
        self.started = time.monotonic()

    def check(self, claim: str, ok: bool, detail: object = "") -> None:
        """Assert ``ok`` and note the claim for the report (only claims that held are written)."""
        assert ok, f"{claim}: {detail}"
        self.checks.append(claim)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.chaos_passed = report.passed  # type: ignore[attr-defined]


@pytest.fixture()
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    """``case`` names the figures file after the test (minus ``test_``); its docstring's first line is the title."""
    name = request.node.name.removeprefix("test_").replace("[", "-").rstrip("]")
    doc = (request.node.function.__doc__ or name).strip().splitlines()[0]
    recorded = Case(name, doc)
    yield recorded
    recorded.figures["passed"] = bool(getattr(request.node, "chaos_passed", False))
    write_figures(recorded.name, recorded.title, recorded.figures, recorded.checks, recorded.started)
