"""Cabinets: the simple environment case, the TOML file, lookups, tiers, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from ymsync.config.cabinets import CabinetModeError, CabinetNotFound
from ymsync.config.settings import Quota, SettingsError, load_settings

TOKEN_A = "y0_AgAAAAB-cabinet-a-secret-111"
TOKEN_B = "y0_AgAAAAB-cabinet-b-secret-222"

FILE = """
[cabinets.north]
business_id = 7
mode = "v3"
subscription = "medium"
campaigns = [1001, 1002]
token_env = "YM_TOKEN_NORTH"

[cabinets.south]
business_id = 8
campaigns = [2001]
token_file = "{secret}"
token_kind = "oauth"
"""


@pytest.fixture()
def cabinets_file(tmp_path: Path) -> Path:
    secret = tmp_path / "south.token"
    secret.write_text(TOKEN_B + "\n")
    path = tmp_path / "cabinets.toml"
    path.write_text(FILE.format(secret=secret))
    return path


def _env(path: Path, **extra: str) -> dict[str, str]:
    return {"YM_CABINETS_FILE": str(path), "YM_TOKEN_NORTH": TOKEN_A, **extra}


def test_simple_case_v3_from_environment():
    settings = load_settings({"YM_API_KEY": TOKEN_A, "YM_BUSINESS_ID": "7", "YM_API_MODE": "v3"})
    (cabinet,) = settings.cabinets
    assert (cabinet.business_id, cabinet.mode, cabinet.subscription) == (7, "v3", "basic")
    assert cabinet.credentials.headers() == {"Api-Key": TOKEN_A}
    assert settings.cabinets.by_business(7) is cabinet
    assert settings.cabinets.by_campaign(555) is cabinet  # one cabinet listing no campaigns serves them all
    assert cabinet.quota_key == "b7"
    assert settings.require_credentials().headers() == {"Api-Key": TOKEN_A}


def test_simple_case_defaults_to_v2_todays_behaviour():
    settings = load_settings({"YM_OAUTH_TOKEN": TOKEN_A})
    (cabinet,) = settings.cabinets
    assert cabinet.mode == "v2" and cabinet.business_id is None
    with pytest.raises(CabinetNotFound, match="YM_BUSINESS_ID is not set"):
        settings.cabinets.by_business(7)


def test_no_token_no_cabinet_and_workers_refuse():
    settings = load_settings({})
    assert not settings.cabinets
    with pytest.raises(SettingsError, match="YM_CABINETS_FILE"):
        settings.require_cabinets()


@pytest.mark.parametrize("env, message", [
    ({"YM_API_KEY": TOKEN_A, "YM_API_MODE": "v3"}, "YM_API_MODE=v3 needs YM_BUSINESS_ID"),
    ({"YM_API_KEY": TOKEN_A, "YM_API_MODE": "v4"}, "YM_API_MODE: expected v2 or v3"),
    ({"YM_API_KEY": TOKEN_A, "YM_SUBSCRIPTION": "gold"}, "YM_SUBSCRIPTION: expected basic or medium"),
])
def test_simple_case_refusals(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_file_cabinets_and_lookups(cabinets_file: Path):
    settings = load_settings(_env(cabinets_file))
    north, south = settings.cabinets
    assert (north.name, north.business_id, north.mode, north.subscription, north.campaigns) == \
        ("north", 7, "v3", "medium", (1001, 1002))
    assert (south.business_id, south.mode, south.subscription) == (8, "v2", "basic")
    assert north.credentials.headers() == {"Api-Key": TOKEN_A}
    assert south.credentials.headers() == {"Authorization": f"Bearer {TOKEN_B}", "X-Business-Id": "8"}
    assert settings.cabinets.by_business(8) is south
    assert settings.cabinets.by_campaign(1002) is north
    assert settings.cabinets.by_campaign(2001) is south
    with pytest.raises(CabinetNotFound, match="no cabinet lists campaign 3001"):
        settings.cabinets.by_campaign(3001)
    with pytest.raises(CabinetNotFound, match=r"business 9 \(configured: 7, 8\)"):
        settings.cabinets.by_business(9)
    # Several cabinets: a caller that names none cannot silently get one of their tokens.
    with pytest.raises(SettingsError, match="2 cabinets are configured"):
        settings.require_credentials()
    assert settings.require_cabinets() is settings.cabinets


def test_tokens_never_show(cabinets_file: Path):
    settings = load_settings(_env(cabinets_file))
    text = repr(settings) + str(settings) + " ".join(c.describe() for c in settings.cabinets)
    assert TOKEN_A not in text and TOKEN_B not in text
    assert "YM_TOKEN_NORTH" in text  # where it came from is shown, never what it is
    assert sorted(settings.cabinets.secrets()) == sorted([TOKEN_A, TOKEN_B])


def test_subscription_tier_sets_report_quotas(cabinets_file: Path):
    settings = load_settings(_env(cabinets_file))
    north, south = settings.cabinets
    assert north.quotas(settings.quotas)["stocks_report_v3"] == Quota(1, 60)
    assert north.quotas(settings.quotas)["report_generate"] == Quota(1, 60)
    assert north.quotas(settings.quotas)["get_stocks_v3"] == Quota(500, 60)
    assert south.quotas(settings.quotas)["stocks_report_v3"] == Quota(1, 120)


def test_mode_refusal_names_the_setting(cabinets_file: Path):
    settings = load_settings(_env(cabinets_file))
    north, south = settings.cabinets
    north.require_mode("v3", "a stock read")
    with pytest.raises(CabinetModeError, match='set mode in cabinet "south" = v3'):
        south.require_mode("v3", "a stock read")
    simple = next(iter(load_settings({"YM_API_KEY": TOKEN_A, "YM_BUSINESS_ID": "7"}).cabinets))
    with pytest.raises(CabinetModeError, match="set YM_API_MODE = v3"):
        simple.require_mode("v3", "a stock read")


@pytest.mark.parametrize("text, message", [
    ("[cabinets.a]\nbusiness_id = 7\ntoken = \"abc\"\n", "tokens are not written in this file"),
    ("[cabinets.a]\nbusiness_id = 7\n", "set exactly one of token_env and token_file"),
    ("[cabinets.a]\nbusiness_id = 7\ntoken_env = \"NOPE\"\n", "environment variable NOPE"),
    ("[cabinets.a]\nbusiness_id = 7\ntoken_file = \"/nonexistent/x\"\n", "cannot read token_file /nonexistent/x"),
    ("[cabinets.a]\nbusiness_id = \"7\"\ntoken_env = \"YM_TOKEN_NORTH\"\n", "business_id must be a positive integer"),
    ("[cabinets.a]\nbusiness_id = 7\nmode = \"v5\"\ntoken_env = \"YM_TOKEN_NORTH\"\n", "cabinet 'a': mode: expected v2 or v3"),
    ("[cabinets.a]\nbusiness_id = 7\nbusines = 1\ntoken_env = \"YM_TOKEN_NORTH\"\n", "unknown key.*busines"),
    ("[cabinets.a]\nbusiness_id = 7\ncampaigns = [1, \"x\"]\ntoken_env = \"YM_TOKEN_NORTH\"\n", "campaigns must be"),
    ("[cabinets.a]\nbusiness_id = 7\ntoken_env = \"YM_TOKEN_NORTH\"\n[cabinets.b]\nbusiness_id = 7\n"
     "token_env = \"YM_TOKEN_NORTH\"\n", "business 7 is configured twice"),
    ("[cabinets.a]\nbusiness_id = 7\ncampaigns = [5]\ntoken_env = \"YM_TOKEN_NORTH\"\n[cabinets.b]\n"
     "business_id = 8\ncampaigns = [5]\ntoken_env = \"YM_TOKEN_NORTH\"\n", "campaign 5 is listed by two cabinets"),
    ("[cabinets\n", "not valid TOML"),
    ("cabinet = 1\n", "unknown top-level key"),
    ("", "no cabinet defined"),
])
def test_malformed_file_is_one_clear_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "cabinets.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(_env(path))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_secret_with_prefix_refused_without_echoing_it(tmp_path: Path, cabinets_file: Path):
    with pytest.raises(SettingsError, match="bare token") as info:
        load_settings(_env(cabinets_file, YM_TOKEN_NORTH=f"Bearer {TOKEN_A}"))
    assert TOKEN_A not in str(info.value)


def test_file_excludes_simple_case_variables(cabinets_file: Path):
    with pytest.raises(SettingsError, match="YM_API_MODE cannot be combined with YM_CABINETS_FILE"):
        load_settings(_env(cabinets_file, YM_API_MODE="v3"))


def test_missing_file(tmp_path: Path):
    with pytest.raises(SettingsError, match="cannot read it"):
        load_settings({"YM_CABINETS_FILE": str(tmp_path / "none.toml")})


def test_v2_campaign_report_defaults_to_business_and_campaign_ids(cabinets_file: Path):
    text = cabinets_file.read_text().replace("campaigns = [2001]", "campaigns = [2001]\nfby_campaigns = [2002]")
    cabinets_file.write_text(text)
    settings = load_settings(_env(cabinets_file))
    north, south = settings.cabinets
    assert north.stocks_report_body(1001) == {"businessId": 7, "campaignIds": [1001]}
    assert settings.cabinets.by_campaign(2002) is south
    assert south.stocks_report_body(2002) == {"campaignId": 2002}  # FBY keeps campaignId
    simple = load_settings({"YM_API_KEY": TOKEN_A})  # no business known: today's request
    assert next(iter(simple.cabinets)).stocks_report_body(5) == {"campaignId": 5}


def test_snapshot_businesses_must_be_v3_cabinets(cabinets_file: Path):
    assert load_settings(_env(cabinets_file, YM_SNAPSHOT_BUSINESSES="7")).snapshot_businesses == (7,)
    with pytest.raises(SettingsError, match=r"YM_SNAPSHOT_BUSINESSES: business 8: .*set mode in cabinet \"south\" = v3"):
        load_settings(_env(cabinets_file, YM_SNAPSHOT_BUSINESSES="8"))
    with pytest.raises(SettingsError, match="YM_SNAPSHOT_BUSINESSES: no cabinet configured for business 9"):
        load_settings(_env(cabinets_file, YM_SNAPSHOT_BUSINESSES="9"))


def test_campaign_clients_route_by_cabinet_and_halt_unlisted(cabinets_file: Path):
    from ymsync.connect import CampaignClients
    from ymsync.market import MarketForbidden

    clients = CampaignClients(load_settings(_env(cabinets_file)))
    north, south = clients.for_campaign(1001), clients.for_campaign(2001)
    assert clients.for_campaign(1002) is north and north is not south
    assert north.clock is south.clock is clients.clock
    with pytest.raises(MarketForbidden, match="no cabinet lists campaign 4242") as info:
        clients.for_campaign(4242)
    assert info.value.status == 403 and TOKEN_A not in str(info.value) and TOKEN_B not in str(info.value)
