"""The Market sandbox itself: paging, quotas, report life cycle, admin hooks, shutdown."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import requests

from ymsync.market import MarketClient, MarketQuotaExceeded, StockLevel
from ymsync.market.errors import parse_http_date
from ymsync.sandbox import CampaignConfig, MarketSandbox, SandboxConfig
from ymsync.config.settings import Credentials, Quota, Secret

TOKEN = "sandbox-token"
HEADERS = {"Api-Key": TOKEN}


def admin(market, route: str, payload=None):
    url = f"{market.url}/_admin/{route}"
    response = requests.post(url, json=payload) if payload is not None else requests.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def connect(market) -> MarketClient:
    return MarketClient(market.url, Credentials(api_key=Secret(TOKEN)))


def poll(client: MarketClient, report_id: str, timeout: float = 5.0) -> list:
    """Every info answer until the report finishes."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(client.get_report_info(report_id))
        if seen[-1].finished:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"report still {seen[-1].status} after {timeout}s")


@pytest.fixture(scope="module")
def shared_market():
    config = SandboxConfig(campaigns=(CampaignConfig(5), CampaignConfig(6), CampaignConfig(7, model="FBY")),
                           quotas={}, report_delay_s=0.05)
    with MarketSandbox(config=config) as sandbox:
        yield sandbox


@pytest.fixture
def market(shared_market):
    admin(shared_market, "reset", {})
    return shared_market


def test_pagination_covers_every_sku_once_at_the_limit_of_100(market):
    skus = {f"sku-{i:04d}": i for i in range(250)}
    admin(market, "stocks/5", skus)
    client, pages, token = connect(market), [], None
    while True:
        page = client.get_stocks(5, limit=100, page_token=token)
        pages.append([o.offer_id for o in page.offers])
        token = page.next_page_token
        if token is None:
            break
        assert len(pages) < 10
    assert [len(p) for p in pages] == [100, 100, 50]
    seen = [sku for page in pages for sku in page]
    assert sorted(seen) == sorted(skus) and len(seen) == len(set(seen))


def test_bad_page_token_is_400(market):
    response = requests.post(f"{market.url}/v2/campaigns/5/offers/stocks?page_token=%21%21", json={}, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith("page_token is not valid")


def test_quota_420_carries_until_header():
    with MarketSandbox(config=SandboxConfig(quotas={"updateStocks": Quota(2, 60)})) as market:
        url = f"{market.url}/v2/campaigns/5/offers/stocks"
        body = {"skus": [{"sku": "a", "items": [{"count": 1}]}, {"sku": "b", "items": [{"count": 1}]}]}
        ok = requests.put(url, json=body, headers=HEADERS)
        assert ok.status_code == 200
        assert (ok.headers["X-RateLimit-Resource-Limit"], ok.headers["X-RateLimit-Resource-Remaining"]) == ("2", "0")
        refused = requests.put(url, json={"skus": body["skus"][:1]}, headers=HEADERS)
        assert (refused.status_code, refused.reason) == (420, "Method Failure")
        until = parse_http_date(refused.headers["X-RateLimit-Resource-Until"])
        now = datetime.now(timezone.utc)
        assert until is not None and now < until and (until - now).total_seconds() <= 61
        assert refused.json() == {"status": "ERROR", "errors": [{"code": "LIMIT_EXCEEDED", "message":
            "Hit rate limit of '2' requests per '60s' for resource 'updateStocks' (key 5)"}]}
        with pytest.raises(MarketQuotaExceeded) as exc:
            connect(market).update_stocks(5, [StockLevel("c", 1)])
        assert exc.value.until == until and exc.value.resource == "updateStocks"
        state = admin(market, "state")
        assert state["quotas"]["updateStocks:5"]["rejected"] == 2 and state["quotas"]["updateStocks:5"]["peak"] == 2
        assert admin(market, "stocks/5").keys() == {"a", "b"}  # refused calls changed nothing


def test_stock_rule_errors_name_the_sku():
    # The sandbox's own words for a body the spec itself refuses: its spec check (test mode) off.
    with MarketSandbox(config=SandboxConfig(quotas={}), spec_check=False) as market:
        url = f"{market.url}/v2/campaigns/5/offers/stocks"
        dup = {"skus": [{"sku": "a", "items": [{"count": 1}]}, {"sku": " a", "items": [{"count": 2}]}]}
        assert requests.put(url, json=dup, headers=HEADERS).json()["errors"] == [
            {"code": "BAD_REQUEST", "message": "Duplicate shop-sku 'a' (also item 0)"}]
        assert requests.put(url, json={"skus": []}, headers=HEADERS).json()["errors"] == [
            {"code": "BAD_REQUEST", "message": "skus: skus holds 0 items, 1 to 2000 allowed"}]


def test_report_walks_pending_processing_done():
    with MarketSandbox(config=SandboxConfig(quotas={}, report_delay_s=0.6)) as market:
        admin(market, "stocks/5", {"a": 1})
        client = connect(market)
        ticket = client.generate_stocks_on_warehouses_report({"campaignId": 5})
        assert ticket.estimated_generation_ms == 600
        answers = poll(client, ticket.report_id)
    statuses = [a.status for a in answers]
    assert [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]] == ["PENDING", "PROCESSING", "DONE"]
    waiting = [a.estimated_generation_ms for a in answers if not a.finished]
    assert waiting == sorted(waiting, reverse=True) and all(0 <= w <= 600 for w in waiting)
    assert all(a.file_url is None and a.generation_finished_at is None for a in answers[:-1])
    assert answers[-1].file_url and answers[-1].generation_finished_at


def test_empty_campaign_report_fails_no_data(market):
    client = connect(market)
    done = poll(client, client.generate_stocks_on_warehouses_report({"campaignId": 6}).report_id)[-1]
    assert (done.status, done.sub_status, done.file_url) == ("FAILED", "NO_DATA", None)
    assert done.generation_finished_at


def test_each_info_call_mints_a_new_link(market):
    admin(market, "stocks/5", {"a": 1, "b": 2})
    client = connect(market)
    report_id = client.generate_stocks_on_warehouses_report({"campaignId": 5}, format="CSV").report_id
    first = poll(client, report_id)[-1].file_url
    second = client.get_report_info(report_id).file_url
    assert first != second
    one, two = requests.get(first), requests.get(second)
    assert one.status_code == two.status_code == 200 and one.content == two.content
    assert one.headers["Content-Type"] == "application/zip"
    assert requests.get(first.rsplit("/", 1)[0] + "/forged-token").status_code == 403


def test_fail_next(market):
    admin(market, "stocks/5", {"a": 1})
    client = connect(market)
    assert admin(market, "reports/fail-next", {"subStatus": "TOO_LARGE"}) == {"queued": 1}
    failed = poll(client, client.generate_stocks_on_warehouses_report({"campaignId": 5}).report_id)[-1]
    assert (failed.status, failed.sub_status) == ("FAILED", "TOO_LARGE")
    after = poll(client, client.generate_stocks_on_warehouses_report({"campaignId": 5}).report_id)[-1]
    assert after.done


def test_unknown_campaign_is_403_when_campaigns_are_configured(market):
    response = requests.post(f"{market.url}/v2/campaigns/999/offers/stocks", json={}, headers=HEADERS)
    assert response.status_code == 403
    assert response.json()["errors"][0] == {"code": "FORBIDDEN", "message": "Access denied to campaignId 999"}


def test_admin_rejects_unknown_settings(market):
    assert requests.post(f"{market.url}/_admin/faults", json={"boom": 1}).status_code == 400
    assert requests.post(f"{market.url}/_admin/config", json={"nope": 1}).status_code == 400
    assert requests.get(f"{market.url}/_admin/faults").status_code == 405


def test_sandbox_stops_cleanly():
    sandbox = MarketSandbox(config=SandboxConfig(quotas={}, report_delay_s=0))
    sandbox.start()
    url, files = sandbox.url, sandbox.desk.files_dir
    admin(sandbox, "stocks/5", {"a": 1})
    client = connect(sandbox)
    info = poll(client, client.generate_stocks_on_warehouses_report({"campaignId": 5}).report_id)[-1]
    assert requests.get(info.file_url).status_code == 200 and any(files.iterdir())
    thread = sandbox._thread
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 2
    assert thread is not None and not thread.is_alive()
    assert not files.exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_admin/state", timeout=1)
    sandbox.stop()  # a second stop is harmless


def test_a_fault_schedule_strikes_stock_updates_in_arrival_order_then_the_rates_apply():
    """The seeded schedule: the n-th stock update meets the n-th entry (other calls draw none)."""
    from ymsync.sandbox import Faults

    schedule = ("500", "ok", "423", "lost", "late", "ok")
    config = SandboxConfig(quotas={}, faults=Faults(late_apply_s=0.3, schedule=schedule))
    body = {"skus": [{"sku": "S-1", "items": [{"count": 1}]}]}
    with MarketSandbox(config=config) as market:
        seen = []
        for n in range(len(schedule) + 2):
            body["skus"][0]["items"][0]["count"] = n
            if n == 1:  # a read between updates takes no entry of the schedule
                assert requests.post(f"{market.url}/v2/campaigns/5/offers/stocks", headers=HEADERS, json={},
                                     timeout=5).status_code == 200
            started = time.monotonic()
            try:
                status = requests.put(f"{market.url}/v2/campaigns/5/offers/stocks", headers=HEADERS, json=body,
                                      timeout=5).status_code
            except requests.ConnectionError:
                status = "lost"
            seen.append((status, round(time.monotonic() - started, 1) >= 0.3))
        assert [s for s, _ in seen] == [500, 200, 423, "lost", 200, 200, 200, 200]
        assert [late for _, late in seen] == [False, False, False, False, True, False, False, False]
        stock = admin(market, "stocks/5")
        assert stock["S-1"]["count"] == len(schedule) + 1  # "lost" applied, like every 200
        assert admin(market, "state")["requests"]["updateStocks 0"] == 1
        # A schedule set over the admin API starts with the next update.
        admin(market, "faults", {"schedule": ["423"]})
        assert requests.put(f"{market.url}/v2/campaigns/5/offers/stocks", headers=HEADERS, json=body,
                            timeout=5).status_code == 423
    with pytest.raises(ValueError, match="unknown scheduled faults"):
        Faults(schedule=("teapot",))


def test_a_reply_is_whole_and_an_http_0_9_request_still_gets_its_body():
    """The sandbox writes a reply's headers and body in one socket call (Handler._send_bytes): the
    status line, headers and a body of the announced length; a request without a version (HTTP/0.9)
    gets the body alone, as the standard handler sends it. (A request the description refuses on
    purpose: no spec check.)"""
    import socket

    def exchange(url: str, request: bytes) -> bytes:
        host, port = url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(request)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        return reply

    with MarketSandbox(config=SandboxConfig(tokens=("sandbox-token",)), spec_check=False) as market:
        reply = exchange(market.url, b"GET /v2/reports/info/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 4") and b"Content-Length: %d\r\n" % len(body) in head + b"\r\n"
        assert body.startswith(b'{"status": "ERROR"')
        assert exchange(market.url, b"GET /v2/reports/info/1\r\n\r\n") == body
