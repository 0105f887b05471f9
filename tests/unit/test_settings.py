"""load_settings: defaults, credentials, and one clear line for every malformed variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from ymsync.config.settings import Credentials, Quota, Secret, SettingsError, load_settings

TOKEN = "y0_AgAAAAB-very-secret-token-123"


def test_defaults():
    settings = load_settings({})
    assert settings.api_url == "https://api.partner.market.yandex.ru"
    assert settings.redis_url == settings.broker_url == settings.result_backend == "redis://127.0.0.1:6379/0"
    assert dict(settings.quotas) == {
        "update_stocks": Quota(100_000, 60),
        "get_stocks": Quota(100_000, 60),
        "report_generate": Quota(1, 120),
        "report_info": Quota(100, 60),
        "update_stocks_v3": Quota(50, 60),
        "get_stocks_v3": Quota(500, 60),
        "warehouses_v3": Quota(100, 3600),
        "warehouses_v2": Quota(100, 3600),
        "stocks_report_v3": Quota(1, 120),
    }
    assert settings.max_parallel == 4
    assert settings.flush_delay_ms == 250
    assert (settings.connect_timeout, settings.read_timeout) == (5.0, 60.0)
    assert settings.max_report_bytes == 512 * 1024 * 1024
    assert settings.download_hosts == ("*.yandex.ru", "*.yandex.net", "*.yandex.com")
    assert settings.reports_dir == Path("reports")
    assert settings.retry_max_age_s == 24 * 3600
    assert not settings.credentials
    assert settings.credentials.headers() == {}


def test_missing_credentials_refused_when_required():
    with pytest.raises(SettingsError, match=r"^YM_API_KEY or YM_OAUTH_TOKEN must be set"):
        load_settings({}).require_credentials()


def test_api_key_header():
    settings = load_settings({"YM_API_KEY": f"  {TOKEN} "})
    assert settings.credentials.headers() == {"Api-Key": TOKEN}
    assert settings.require_credentials() is settings.credentials


def test_oauth_header_with_business():
    creds = load_settings({"YM_OAUTH_TOKEN": TOKEN, "YM_BUSINESS_ID": "77"}).credentials
    assert creds.headers() == {"Authorization": f"Bearer {TOKEN}", "X-Business-Id": "77"}
    assert load_settings({"YM_OAUTH_TOKEN": TOKEN}).credentials.headers() == {"Authorization": f"Bearer {TOKEN}"}


def test_both_tokens_refused():
    with pytest.raises(SettingsError) as info:
        load_settings({"YM_API_KEY": TOKEN, "YM_OAUTH_TOKEN": TOKEN + "x"})
    assert str(info.value) == "set only one of YM_API_KEY and YM_OAUTH_TOKEN"
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("raw", [f"Bearer {TOKEN}", f"OAuth {TOKEN}", "abc def"])
def test_prefixed_token_refused_without_echoing_it(raw):
    with pytest.raises(SettingsError) as info:
        load_settings({"YM_OAUTH_TOKEN": raw})
    assert str(info.value) == "YM_OAUTH_TOKEN: expected the bare token without a prefix or spaces"


@pytest.mark.parametrize("raw", ["abc", "10/0", "-1/60", "0/60", "100", "100/", "/60", "1.5/60", "10/-5"])
def test_malformed_quota(raw):
    with pytest.raises(SettingsError) as info:
        load_settings({"YM_QUOTA_UPDATE_STOCKS": raw})
    message = str(info.value)
    assert message == f"YM_QUOTA_UPDATE_STOCKS: expected AMOUNT/SECONDS like 100000/60, or 0 for off; got {raw!r}"
    assert "\n" not in message


@pytest.mark.parametrize("raw", ["100/nan", "100/inf"])
def test_non_finite_quota_window_refused(raw):
    with pytest.raises(SettingsError):
        load_settings({"YM_QUOTA_UPDATE_STOCKS": raw})


def test_quota_zero_means_off_and_others_parse():
    quotas = load_settings({"YM_QUOTA_UPDATE_STOCKS": "0", "YM_QUOTA_REPORT_INFO": " 50/30.5 "}).quotas
    assert quotas["update_stocks"] is None
    assert quotas["report_info"] == Quota(50, 30.5)
    assert quotas["get_stocks"] == Quota(100_000, 60)


@pytest.mark.parametrize("raw", ["localhost:6379", "http://127.0.0.1:6379/0", "redis://", "redis:///0"])
def test_bad_redis_url(raw):
    with pytest.raises(SettingsError) as info:
        load_settings({"REDIS_URL": raw})
    assert str(info.value) == f"REDIS_URL: expected a URL starting with redis:// or rediss:// or unix://, got {raw!r}"


def test_unix_socket_redis_url_accepted():
    assert load_settings({"REDIS_URL": "unix:///run/redis/redis.sock"}).redis_url == "unix:///run/redis/redis.sock"


def test_redis_url_feeds_broker_and_backend():
    settings = load_settings({"REDIS_URL": "redis://cache:6380/2"})
    assert settings.broker_url == settings.result_backend == "redis://cache:6380/2"


def test_bad_api_url():
    with pytest.raises(SettingsError, match=r"^YM_API_URL: expected a URL starting with https:// or http://, got 'ftp://x'$"):
        load_settings({"YM_API_URL": "ftp://x"})
    assert load_settings({"YM_API_URL": "http://127.0.0.1:8080/"}).api_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("raw, message", [
    ("abc", "YM_MAX_PARALLEL: expected an integer, got 'abc'"),
    ("2.5", "YM_MAX_PARALLEL: expected an integer, got '2.5'"),
    ("0", "YM_MAX_PARALLEL: must be at least 1, got '0'"),
    ("-3", "YM_MAX_PARALLEL: must be at least 1, got '-3'"),
])
def test_bad_max_parallel(raw, message):
    with pytest.raises(SettingsError) as info:
        load_settings({"YM_MAX_PARALLEL": raw})
    assert str(info.value) == message


@pytest.mark.parametrize("name, raw, message", [
    ("YM_BUSINESS_ID", "0", "YM_BUSINESS_ID: must be at least 1, got '0'"),
    ("YM_BUSINESS_ID", "acme", "YM_BUSINESS_ID: expected an integer, got 'acme'"),
    ("YM_HTTP_READ_TIMEOUT", "0.01", "YM_HTTP_READ_TIMEOUT: must be at least 0.1, got '0.01'"),
    ("YM_HTTP_CONNECT_TIMEOUT", "soon", "YM_HTTP_CONNECT_TIMEOUT: expected a number, got 'soon'"),
    ("YM_MAX_REPORT_BYTES", "100", "YM_MAX_REPORT_BYTES: must be at least 1024, got '100'"),
])
def test_other_numbers(name, raw, message):
    with pytest.raises(SettingsError) as info:
        load_settings({name: raw})
    assert str(info.value) == message


@pytest.mark.parametrize("name", ["YM_HTTP_READ_TIMEOUT", "YM_HTTP_CONNECT_TIMEOUT"])
@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_non_finite_timeouts_refused(name, raw):
    with pytest.raises(SettingsError, match=f"^{name}: "):
        load_settings({name: raw})


def test_download_hosts_parsed():
    assert load_settings({"YM_DOWNLOAD_HOSTS": " Files.Example.com, ,*.cdn.test "}).download_hosts == (
        "files.example.com", "*.cdn.test")


@pytest.mark.parametrize("env", [{"YM_API_KEY": TOKEN}, {"YM_OAUTH_TOKEN": TOKEN, "YM_BUSINESS_ID": "9"}])
def test_token_never_in_repr(env):
    settings = load_settings(env)
    for text in (repr(settings), str(settings), repr(settings.credentials), str(settings.credentials),
                 repr(Secret(TOKEN)), str(Secret(TOKEN)), f"{Secret(TOKEN)}"):
        assert TOKEN not in text
    assert settings.credentials.secrets() == [TOKEN]


def test_secret_equality_without_revealing():
    assert Secret(TOKEN) == Secret(TOKEN) != Secret("other")
    assert Credentials(api_key=Secret(TOKEN)) == Credentials(api_key=Secret(TOKEN))


# --- beat schedule (celeryconfig.beat_schedule) ------------------------------------------------


def test_schedules_empty_by_default():
    settings = load_settings({})
    assert settings.reconcile_campaigns == settings.snapshot_campaigns == ()
    assert (settings.reconcile_every_s, settings.snapshot_every_s) == (3600, 24 * 3600)
    assert settings.reconcile_fix is False
    assert settings.snapshot_format == "CSV"


def test_schedules_parsed():
    settings = load_settings({
        "YM_RECONCILE_CAMPAIGNS": " 1001, 1002 1001,", "YM_RECONCILE_EVERY": "30m", "YM_RECONCILE_FIX": "Yes",
        "YM_SNAPSHOT_CAMPAIGNS": "1002", "YM_SNAPSHOT_EVERY": "6h", "YM_SNAPSHOT_FORMAT": "file",
    })
    assert settings.reconcile_campaigns == (1001, 1002)
    assert settings.reconcile_every_s == 1800
    assert settings.reconcile_fix is True
    assert settings.snapshot_campaigns == (1002,)
    assert settings.snapshot_every_s == 6 * 3600
    assert settings.snapshot_format == "FILE"


@pytest.mark.parametrize("raw, seconds", [("3600", 3600), ("90s", 90), ("90 S", 90), ("1.5h", 5400), ("1d", 86400)])
def test_schedule_durations(raw, seconds):
    env = {"YM_SNAPSHOT_CAMPAIGNS": "7", "YM_SNAPSHOT_EVERY": raw}
    assert load_settings(env).snapshot_every_s == seconds


@pytest.mark.parametrize("env, message", [
    ({"YM_RECONCILE_CAMPAIGNS": "1001,abc"}, "YM_RECONCILE_CAMPAIGNS: expected campaign ids like 1001,1002; got 'abc'"),
    ({"YM_SNAPSHOT_CAMPAIGNS": "0"}, "YM_SNAPSHOT_CAMPAIGNS: expected campaign ids like 1001,1002; got '0'"),
    ({"YM_RECONCILE_CAMPAIGNS": "-5"}, "YM_RECONCILE_CAMPAIGNS: expected campaign ids like 1001,1002; got '-5'"),
    ({"YM_RECONCILE_CAMPAIGNS": "1", "YM_RECONCILE_EVERY": "soon"},
     "YM_RECONCILE_EVERY: expected a duration like 3600, 90s, 30m, 6h or 1d; got 'soon'"),
    ({"YM_RECONCILE_CAMPAIGNS": "1", "YM_RECONCILE_EVERY": "-1h"},
     "YM_RECONCILE_EVERY: expected a duration like 3600, 90s, 30m, 6h or 1d; got '-1h'"),
    ({"YM_RECONCILE_CAMPAIGNS": "1", "YM_RECONCILE_EVERY": "10s"},
     "YM_RECONCILE_EVERY: must be at least 60 seconds, got '10s'"),
    ({"YM_RECONCILE_EVERY": "1h"}, "YM_RECONCILE_EVERY is set but YM_RECONCILE_CAMPAIGNS names no campaign "
     "(nor YM_RECONCILE_BUSINESSES a business)"),
    ({"YM_SNAPSHOT_EVERY": "1d"}, "YM_SNAPSHOT_EVERY is set but YM_SNAPSHOT_CAMPAIGNS names no campaign "
     "(nor YM_SNAPSHOT_BUSINESSES a business)"),
    ({"YM_RECONCILE_FIX": "maybe"}, "YM_RECONCILE_FIX: expected true or false, got 'maybe'"),
    ({"YM_SNAPSHOT_FORMAT": "xlsx"}, "YM_SNAPSHOT_FORMAT: expected CSV, JSON or FILE, got 'XLSX'"),
])
def test_malformed_schedules(env, message):
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert str(info.value) == message


def test_empty_schedule_values_mean_unset():
    # docker-compose passes ${YM_RECONCILE_EVERY:-} through as an empty string.
    settings = load_settings({"YM_RECONCILE_CAMPAIGNS": "", "YM_RECONCILE_EVERY": "", "YM_SNAPSHOT_EVERY": " ",
                              "YM_SNAPSHOT_FORMAT": "", "YM_RECONCILE_FIX": ""})
    assert settings.reconcile_campaigns == settings.snapshot_campaigns == ()


def test_v3_quotas_from_the_environment() -> None:
    env = {"YM_QUOTA_UPDATE_STOCKS_V3": "5/10", "YM_QUOTA_GET_STOCKS_V3": "0", "YM_QUOTA_WAREHOUSES_V3": "3/60",
           "YM_QUOTA_STOCKS_REPORT_V3": "1/60"}
    quotas = load_settings(env).quotas
    assert quotas["update_stocks_v3"] == Quota(5, 10) and quotas["get_stocks_v3"] is None
    assert quotas["warehouses_v3"] == Quota(3, 60) and quotas["stocks_report_v3"] == Quota(1, 60)
    with pytest.raises(SettingsError, match="YM_QUOTA_UPDATE_STOCKS_V3"):
        load_settings({"YM_QUOTA_UPDATE_STOCKS_V3": "fifty"})


def test_engine_timings_default_to_the_production_values_and_can_be_shortened():
    """The timings tests shorten (YM_REPORT_STEP_LEASE_S, YM_REPORT_RESEND_S, YM_LEASE_MARGIN_S,
    YM_BATCH_WAIT_S, YM_FLUSH_BUDGET_S, YM_FLUSH_START_S): production values by default, read from the
    environment."""
    s = load_settings({})
    assert (s.report_step_lease_s, s.report_resend_s, s.lease_margin_s, s.batch_wait_s, s.flush_budget_s,
            s.flush_start_s, s.fanout_after_s, s.task_events_every_s) == (30.0, 60.0, 10.0, 1.0, 5.0, 60.0, 1.0, 0.25)
    assert s.lease_s == s.unknown_outcome_s + 10
    short = load_settings({"YM_REPORT_STEP_LEASE_S": "1.5", "YM_REPORT_RESEND_S": "3", "YM_LEASE_MARGIN_S": "2",
                           "YM_BATCH_WAIT_S": "0.2", "YM_FLUSH_BUDGET_S": "1", "YM_UNKNOWN_OUTCOME_S": "2",
                           "YM_FLUSH_START_S": "4", "YM_TASK_EVENTS_EVERY_S": "0"})
    assert (short.report_step_lease_s, short.report_resend_s, short.lease_margin_s, short.batch_wait_s,
            short.flush_budget_s, short.flush_start_s, short.task_events_every_s) == (1.5, 3.0, 2.0, 0.2, 1.0, 4.0, 0.0)
    assert short.lease_s == 4.0


@pytest.mark.parametrize("name, raw, message", [
    ("YM_REPORT_STEP_LEASE_S", "0.1", "YM_REPORT_STEP_LEASE_S: must be at least 0.3, got '0.1'"),
    ("YM_REPORT_RESEND_S", "soon", "YM_REPORT_RESEND_S: expected a number, got 'soon'"),
    ("YM_LEASE_MARGIN_S", "0", "YM_LEASE_MARGIN_S: must be at least 0.1, got '0'"),
    ("YM_BATCH_WAIT_S", "-1", "YM_BATCH_WAIT_S: must be at least 0, got '-1'"),
    ("YM_FLUSH_BUDGET_S", "inf", "YM_FLUSH_BUDGET_S: expected a finite number, got 'inf'"),
    ("YM_FLUSH_START_S", "0.1", "YM_FLUSH_START_S: must be at least 0.5, got '0.1'"),
    ("YM_FANOUT_AFTER_S", "-1", "YM_FANOUT_AFTER_S: must be at least 0, got '-1'"),
    ("YM_TASK_EVENTS_EVERY_S", "often", "YM_TASK_EVENTS_EVERY_S: expected a number, got 'often'"),
])
def test_malformed_engine_timings(name, raw, message):
    with pytest.raises(SettingsError) as info:
        load_settings({name: raw})
    assert str(info.value) == message
