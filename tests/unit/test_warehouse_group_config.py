"""Warehouse groups configured (issue 20 item 1) and a group as one stock target (item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ymsync.config.settings import SettingsError, configure, load_settings
from ymsync.engine.group_target import GroupTarget, campaign_stock_target, describe_group
from ymsync.engine.targets import target

GROUPED = """
[cabinets.shop]
business_id = 100
campaigns = [1001, 1002, 1003]
warehouse_groups = [[1001, 1002]]
token_env = "YM_TOKEN"
"""


def test_cabinets_file_declares_groups(tmp_path: Path):
    path = tmp_path / "cabinets.toml"
    path.write_text(GROUPED)
    cabinets = load_settings({"YM_CABINETS_FILE": str(path), "YM_TOKEN": "t0ken"}).cabinets
    assert cabinets.group_of(1002) == (1001, 1002)
    assert cabinets.group_of(1003) == ()
    assert cabinets.groups() == [(1001, 1002)]
    assert "group 1001+1002" in next(iter(cabinets)).describe()


def test_simple_case_groups_from_the_environment():
    cabinets = load_settings({"YM_API_KEY": "t0ken", "YM_WAREHOUSE_GROUPS": "1001,1002; 2001, 2002"}).cabinets
    assert cabinets.groups() == [(1001, 1002), (2001, 2002)]
    assert cabinets.group_of(2002) == (2001, 2002)


@pytest.mark.parametrize("groups, message", [
    ("1001", "at least two campaigns"),
    ("1001,1002;1002,1003", "campaign 1002 is in two warehouse groups"),
    ("1001,x", "expected campaign ids"),
])
def test_bad_groups_are_one_line(groups: str, message: str):
    with pytest.raises(SettingsError, match=message):
        load_settings({"YM_API_KEY": "t0ken", "YM_WAREHOUSE_GROUPS": groups})


def test_groups_need_v2_and_listed_campaigns(tmp_path: Path):
    with pytest.raises(SettingsError, match="need mode v2"):
        load_settings({"YM_API_KEY": "t0ken", "YM_BUSINESS_ID": "7", "YM_API_MODE": "v3",
                       "YM_WAREHOUSE_GROUPS": "1001,1002"})
    path = tmp_path / "cabinets.toml"
    path.write_text(GROUPED.replace("[[1001, 1002]]", "[[1001, 1009]]"))
    with pytest.raises(SettingsError, match="campaign 1009 of a warehouse group is not among"):
        load_settings({"YM_CABINETS_FILE": str(path), "YM_TOKEN": "t0ken"})
    with pytest.raises(SettingsError, match="YM_WAREHOUSE_GROUPS cannot be combined"):
        load_settings({"YM_CABINETS_FILE": str(path), "YM_TOKEN": "t0ken", "YM_WAREHOUSE_GROUPS": "1,2"})


def test_a_campaign_of_a_group_maps_to_the_group_target_sent_through_a_carrier():
    configure({"YM_API_KEY": "t0ken", "YM_WAREHOUSE_GROUPS": "1001,1002"})
    try:
        assert campaign_stock_target(1002) == campaign_stock_target(1001) == "g1001"
        assert campaign_stock_target(1003) == "c1003"  # not in a group: as before
        g = target("g1001")
        assert isinstance(g, GroupTarget) and g.kind == "group" and g.carriers() == (1001, 1002)
        assert (g.quota_key, g.gate) == ("1001", "c1001")  # the first campaign's quota and cap
        via = g.carried_by(1002)
        assert (via.name, via.quota_key, via.gate, via.method) == ("g1001", "1002", "c1002", "update_stocks")
        assert describe_group("g1001") == "group=1001 campaigns=1001,1002"
        assert target("c1001").carriers() == ()  # other kinds have one path
    finally:
        configure(None)
