"""MarketClient against the sandbox over real HTTP: downloads, failures, headers, secrecy."""

from __future__ import annotations

import logging
import pickle
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from ymsync.market import (
    ApiError,
    DownloadRefused,
    InvalidRequest,
    MarketActiveReportsLimit,
    MarketBadRequest,
    MarketClient,
    MarketError,
    MarketForbidden,
    MarketLocked,
    MarketNetworkError,
    MarketNotFound,
    MarketParallelLimitExceeded,
    MarketQuotaExceeded,
    MarketServerError,
    MarketUnauthorized,
    RateLimitInfo,
    ReportLinkExpired,
    ReportTooLarge,
    StockLevel,
)
from ymsync.market.errors import error_for_status, parse_http_date
from ymsync.sandbox import DEFAULT_QUOTAS, MarketSandbox, SandboxConfig
from ymsync.config.settings import Credentials, Secret

TOKEN = "s3cr3t-ymsync-token-7f3a9c"


def admin(market, route: str, payload=None):
    url = f"{market.url}/_admin/{route}"
    response = requests.post(url, json=payload) if payload is not None else requests.get(url)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def shared_market():
    config = SandboxConfig(tokens=(TOKEN,), report_delay_s=0.05,
                           quotas={**DEFAULT_QUOTAS, "generateStocksOnWarehousesReport": None})
    with MarketSandbox(config=config) as sandbox:
        yield sandbox


@pytest.fixture
def market(shared_market):
    admin(shared_market, "reset", {})
    admin(shared_market, "faults", {"error_rate": 0, "lost_reply_rate": 0, "locked_rate": 0,
                                    "latency_min_ms": 0, "latency_max_ms": 0})
    return shared_market


@pytest.fixture
def client(market):
    with MarketClient(market.url, Credentials(api_key=Secret(TOKEN))) as c:
        yield c


def no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def done_report(client: MarketClient, market, fmt: str = "FILE"):
    admin(market, "stocks/5", {"a": 1, "b": 2})
    ticket = client.generate_stocks_on_warehouses_report({"campaignId": 5}, format=fmt)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = client.get_report_info(ticket.report_id)
        if info.finished:
            assert info.done, info
            return info
        time.sleep(0.02)
    raise AssertionError("report never finished")


# --- download_report ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, magic", [("FILE", b"PK"), ("CSV", b"PK"), ("JSON", b"PK")])
def test_download_writes_file_atomically(client, market, tmp_path, fmt, magic):
    info = done_report(client, market, fmt)
    sent = []
    client.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    dest = tmp_path / "out" / "report.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old contents")
    got = client.download_report(info.file_url, dest)
    data = dest.read_bytes()
    assert data.startswith(magic) and got.size == len(data) == len(requests.get(info.file_url).content)
    assert got.path == dest and got.content_type
    assert sorted(p.name for p in dest.parent.iterdir()) == ["report.bin"]  # no .part- left behind
    assert all("Api-Key" not in r.headers and "Authorization" not in r.headers for r in sent)  # never to file hosts
    assert "<link>" in repr(info) and info.file_url not in repr(info)


@pytest.mark.parametrize("url", [
    "http://files.yandex.net/report.xlsx",  # right host, plain http
    "https://evil.example.com/report.xlsx",
    "https://files.yandex.net.evil.example/report.xlsx",
    "https://files.yandex.ru@evil.example/report.xlsx",
    "ftp://127.0.0.1/report.xlsx",
    "file:///etc/passwd",
])
def test_download_refuses_foreign_links(client, market, tmp_path, url):
    with pytest.raises(DownloadRefused, match="is not an allowed download host"):
        client.download_report(url, tmp_path / "r.xlsx")
    assert not (tmp_path / "r.xlsx").exists()


def test_loopback_link_refused_when_api_is_remote(client, market, tmp_path):
    info = done_report(client, market)
    remote = MarketClient("https://api.partner.market.yandex.ru", Credentials(api_key=Secret(TOKEN)))
    with pytest.raises(DownloadRefused, match=r"^report link to http://127\.0\.0\.1 is not an allowed download host$"):
        remote.download_report(info.file_url, tmp_path / "r.xlsx")


@pytest.mark.parametrize("link, allowed", [
    ("http://sandbox:8765/_files/r1/t", True),  # the API's own origin: the compose sandbox
    ("http://SANDBOX:8765/_files/r1/t", True),
    ("http://sandbox:8766/_files/r1/t", False),  # another port of that host
    ("http://sandbox/_files/r1/t", False),  # port 80, not 8765
    ("http://files.sandbox:8765/_files/r1/t", False),
])
def test_links_on_the_apis_own_origin_are_allowed(link, allowed):
    """Reports are downloaded from the API's own scheme, host and port besides the allow-list."""
    client = MarketClient("http://sandbox:8765", Credentials(api_key=Secret(TOKEN)))
    if allowed:
        client._check_download_url(link)
    else:
        with pytest.raises(DownloadRefused, match="is not an allowed download host"):
            client._check_download_url(link)


def test_default_ports_count_as_the_same_origin():
    client = MarketClient("https://api.example.test", Credentials(api_key=Secret(TOKEN)))
    client._check_download_url("https://api.example.test:443/file")
    with pytest.raises(DownloadRefused):
        client._check_download_url("http://api.example.test/file")


def test_download_enforces_size_cap(market, tmp_path):
    capped = MarketClient(market.url, Credentials(api_key=Secret(TOKEN)), max_report_bytes=200)
    info = done_report(capped, market)
    dest = tmp_path / "r.xlsx"
    with pytest.raises(ReportTooLarge, match=r"^report file is \d+ bytes, the cap is 200$") as exc:
        capped.download_report(info.file_url, dest)
    no_secret(str(exc.value), repr(exc.value))
    assert list(tmp_path.iterdir()) == []


def test_expired_link(client, market, tmp_path):
    info = done_report(client, market)
    assert admin(market, "reports/expire-links", {})["expired"] >= 1
    with pytest.raises(ReportLinkExpired) as exc:
        client.download_report(info.file_url, tmp_path / "r.xlsx")
    assert exc.value.status == 403 and list(tmp_path.iterdir()) == []
    fresh = client.get_report_info(info.report_id)
    assert client.download_report(fresh.file_url, tmp_path / "r.xlsx").size > 0


# --- network failures ---------------------------------------------------------------------------


def test_lost_reply_is_a_network_error_but_applied(client, market):
    admin(market, "faults", {"lost_reply_rate": 1.0})
    with pytest.raises(MarketNetworkError, match=r"^updateStocks: connection failed \(\w+\)$") as exc:
        client.update_stocks(5, [StockLevel("lost", 42)])
    assert exc.value.retryable
    no_secret(str(exc.value), repr(exc.value))
    assert admin(market, "stocks/5")["lost"]["count"] == 42


def test_timeout(market):
    admin(market, "faults", {"latency_min_ms": 1000, "latency_max_ms": 1000})
    slow = MarketClient(market.url, Credentials(api_key=Secret(TOKEN)), read_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(MarketNetworkError, match=r"^getStocks: timed out \(ReadTimeout\)$"):
        slow.get_stocks(5)
    assert time.monotonic() - started < 0.9


def test_refused_connection(market):
    closed = MarketClient("http://127.0.0.1:9", Credentials(api_key=Secret(TOKEN)), connect_timeout=0.5)
    with pytest.raises(MarketNetworkError, match=r"^getReportInfo: connection failed \(ConnectionError\)$"):
        closed.get_report_info("x")


# --- rate-limit headers and error classification -------------------------------------------------


def test_rate_limit_headers_parsed(client):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    result = client.update_stocks(5, [StockLevel("a", 1), StockLevel("b", 2), StockLevel("c", 3)])
    rate = result.rate_limit
    assert (result.sku_count, rate.limit, rate.remaining) == (3, 100_000, 99_997)
    assert rate.until.tzinfo is not None and before < rate.until <= before + timedelta(seconds=62)
    assert client.get_stocks(5).rate_limit.remaining == 100_000 - 3


@pytest.mark.parametrize("raw, expected", [
    ("Sun, 22 Nov 2026 10:00:00 GMT", datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)),
    ("Sun, 22 Nov 2026 13:00:00 +0300", datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)),
    ("22 Nov 2026 10:00:00 UT", datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)),
    (None, None), ("", None), ("soon", None), ("2026-11-22T10:00:00Z", None),
])
def test_parse_http_date(raw, expected):
    parsed = parse_http_date(raw)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


def test_rate_limit_info_tolerates_junk():
    info = RateLimitInfo.from_headers({"X-RateLimit-Resource-Limit": "abc", "X-RateLimit-Resource-Remaining": "7"})
    assert (info.limit, info.remaining, info.until) == (None, 7, None)


@pytest.mark.parametrize("status, text, cls", [
    (420, "Hit rate limit of 4 parallel requests for campaignId 5", MarketParallelLimitExceeded),
    (420, "Hit rate limit of '100' requests per '1m' for resource 'getReportInfo'", MarketQuotaExceeded),
    (420, "Active reports limit exceeded", MarketActiveReportsLimit),
    (420, "", MarketQuotaExceeded),
    (400, "bad", MarketBadRequest), (401, "", MarketUnauthorized), (403, "", MarketForbidden),
    (404, "", MarketNotFound), (423, "", MarketLocked), (500, "", MarketServerError),
    (503, "", MarketServerError), (418, "", MarketError),
])
def test_error_for_status(status, text, cls):
    assert error_for_status(status, (ApiError("LIMIT_EXCEEDED", text),) if text else ()) is cls


def test_quota_error_names_resource_and_survives_pickling():
    until = datetime(2026, 11, 22, 10, 1, tzinfo=timezone.utc)
    err = MarketQuotaExceeded("getReportInfo: HTTP 420: LIMIT_EXCEEDED: Hit rate limit of '100' requests per '1m' "
                              "for resource 'getReportInfo'", status=420, errors=(ApiError("LIMIT_EXCEEDED"),),
                              rate_limit=RateLimitInfo(100, 0, until), method="getReportInfo")
    assert err.resource == "getReportInfo" and err.until == until and err.retryable
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), copy.message, copy.until, copy.code, copy.method) == (
        MarketQuotaExceeded, err.message, until, "LIMIT_EXCEEDED", "getReportInfo")


# --- refused before sending -----------------------------------------------------------------------


NAIVE = datetime(2026, 11, 22, 10, 0)


@pytest.mark.parametrize("call, message", [
    (lambda c: c.update_stocks(5, []), "invalid stock update: skus: skus holds 0 items, 1 to 2000 allowed"),
    (lambda c: c.update_stocks(5, [StockLevel("a", -1)]),
     "invalid stock update: skus[0].items[0].count: count must be between 0 and 2000000000, got -1"),
    (lambda c: c.update_stocks(5, [StockLevel("a", 1, NAIVE)]),
     "invalid stock update: skus[0].items[0].updatedAt: updatedAt must be an ISO 8601 date-time with a UTC offset "
     "(e.g. 2026-11-22T10:00:00+03:00), got '2026-11-22T10:00:00'"),
    (lambda c: c.update_stocks(5, [StockLevel("a", 1), StockLevel(" a", 2)]),
     "invalid stock update: skus[1].sku: Duplicate shop-sku 'a' (also item 0)"),
    (lambda c: c.get_stocks(5, limit=500), "invalid stock read: limit: limit must be between 1 and 100, got 500"),
    (lambda c: c.get_stocks(5, offer_ids=["a"], page_token="t"),
     "invalid stock read: offerIds: offerIds cannot be combined with page_token"),
    (lambda c: c.get_stocks(5, has_stocks=True),
     "invalid stock read: hasStocks: hasStocks is only allowed together with stocksWarehouseId"),
    (lambda c: c.generate_stocks_on_warehouses_report({"campaignId": 5}, format="XLSX"),
     "invalid report request: format must be one of FILE, CSV, JSON, got 'XLSX'"),
    (lambda c: c.generate_stocks_on_warehouses_report({}),
     "invalid report request: campaignId: pass exactly one of campaignId and businessId"),
    (lambda c: c.get_report_info(""), "invalid report info request: reportId must be 1..255 characters, got ''"),
])
def test_invalid_request_never_sent(client, market, call, message):
    with pytest.raises(InvalidRequest) as exc:
        call(client)
    assert str(exc.value) == message
    assert admin(market, "state")["requests"] == {}


def test_non_string_sku_is_an_invalid_request(client, market):
    with pytest.raises(InvalidRequest, match=r"skus\[0\]\.sku: SKU must be a string, got 42"):
        client.update_stocks(5, [StockLevel(42, 1)])  # type: ignore[arg-type]


# --- the token stays secret ---------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [Credentials(api_key=Secret(TOKEN)),
                                         Credentials(oauth_token=Secret(TOKEN), business_id=3)])
def test_token_never_leaks(market, caplog, tmp_path, credentials):
    caplog.set_level(logging.DEBUG)
    client = MarketClient(market.url, credentials, read_timeout=0.3)
    seen: list[BaseException] = []
    client.update_stocks(5, [StockLevel("a", 1)])
    info = done_report(client, market)
    client.download_report(info.file_url, tmp_path / "r.xlsx")
    for faults in ({"error_rate": 1.0}, {"locked_rate": 1.0}, {"lost_reply_rate": 1.0},
                   {"latency_min_ms": 600, "latency_max_ms": 600}):
        admin(market, "faults", {"error_rate": 0, "locked_rate": 0, "lost_reply_rate": 0, "latency_max_ms": 0,
                                 "latency_min_ms": 0, **faults})
        with pytest.raises(MarketError) as exc:
            client.get_stocks(5)
        seen.append(exc.value)
    admin(market, "faults", {"latency_min_ms": 0, "latency_max_ms": 0})
    with pytest.raises(MarketNotFound) as exc:
        client.get_report_info("missing")
    seen.append(exc.value)
    admin(market, "revoke", {"token": TOKEN})
    with pytest.raises(MarketUnauthorized) as exc:
        client.get_stocks(5)
    seen.append(exc.value)
    assert [type(e) for e in seen] == [MarketServerError, MarketLocked, MarketNetworkError, MarketNetworkError,
                                       MarketNotFound, MarketUnauthorized]
    no_secret(repr(client), str(client), *(str(e) for e in seen), *(repr(e) for e in seen),
              *(repr(e.__dict__) for e in seen), caplog.text)
    assert any(r.name == "ymsync.market" and r.levelno == logging.DEBUG for r in caplog.records)
    for record in caplog.records:
        no_secret(record.getMessage(), repr(record.args))
