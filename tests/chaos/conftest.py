"""Fixtures of the chaos suite: a bench per case and a recorder for its figures."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from tests.chaos.figures import clear_figures, write_figures


class Case:
    """What one chaos case measured (``figures``) and claimed (``checks``), written once the test is over."""

    def __init__(self, name: str, title: str) -> None:
        self.name, self.title = name, title
        self.figures: dict[str, Any] = {}
        self.checks: list[str] = []
        self.started = time.monotonic()

    def check(self, claim: str, ok: bool, detail: object = "") -> None:
        """Assert ``ok`` and note the claim for the report (only claims that held are written)."""
        assert ok, f"{claim}: {detail}"
        self.checks.append(claim)


def case_name(item: pytest.Item) -> str:
    return item.name.removeprefix("test_").replace("[", "-").rstrip("]")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # The figures of an earlier run must not stand for this one: a case that errors before it
    # writes anything leaves no file, never an old one.
    if "case" in getattr(item, "fixturenames", ()):
        clear_figures(case_name(item))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.passed:  # failed, or skipped part-way: either way not a passing run
        item.chaos_failed = True  # type: ignore[attr-defined]
    recorded: Case | None = getattr(item, "chaos_case", None)
    if report.when == "teardown" and recorded is not None:
        # Written only now, after every fixture's teardown (the bench, the spec check): a case
        # passed when its setup, its call and its teardown all passed; otherwise its figures say
        # failed.
        recorded.figures["passed"] = not getattr(item, "chaos_failed", False)
        write_figures(recorded.name, recorded.title, recorded.figures, recorded.checks, recorded.started)


@pytest.fixture()
def case(request: pytest.FixtureRequest) -> Case:
    """``case`` names the figures file after the test (minus ``test_``); its docstring's first line is the title."""
    name = case_name(request.node)
    doc = (request.node.function.__doc__ or name).strip().splitlines()[0]
    recorded = Case(name, doc)
    request.node.chaos_case = recorded
    return recorded
