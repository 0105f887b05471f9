"""Target kinds are sibling classes behind one interface; a name becomes a target in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from ymsync.engine import targets
from ymsync.engine.targets import BusinessTarget, CampaignTarget, Target, item_key, target


def test_each_kind_is_its_own_class_and_answers_the_same_questions() -> None:
    c, b = target("c1001"), target("b7")
    assert type(c) is CampaignTarget and type(b) is BusinessTarget and target(1001) == c
    assert (c.quota_key, c.gate, c.per_request, c.label("SKU")) == ("1001", "c1001", False, "SKU")
    assert (b.quota_key, b.gate, b.per_request, b.label(item_key(5, "S"))) == ("b7", "b7", True, "S@5")


@pytest.mark.parametrize("name", ["x1", "c", "b7a", ""])
def test_a_name_of_no_known_kind_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a stock target name"):
        target(name)


def test_a_third_kind_is_one_class_and_one_registration(monkeypatch) -> None:
    @dataclass(frozen=True)
    class GroupTarget(Target):
        kind: ClassVar[str] = "group"
        method: ClassVar[str] = "update_stocks"
        per_request: ClassVar[bool] = False

    monkeypatch.setitem(targets.KINDS, "g", GroupTarget)
    g = target("g3")
    assert type(g) is GroupTarget and (g.id, g.gate, g.quota_key) == (3, "g3", "g3")
