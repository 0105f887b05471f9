"""Chaos: the API token stays secret, Flower stays shut, downloads and archives stay contained.

A real stocks+reports worker (log level DEBUG) and a real Flower (``--basic-auth``) run with a
distinctive ``YM_API_KEY``; pushes, report jobs and failures (the token revoked mid-way, so 401s
whose text could echo headers) go through them. Then everything that could carry the token is
scanned for it, raw and base64-encoded: every Redis key of every type (broker messages with
their base64 bodies decoded, results, dead letters), the worker's log, and Flower's API.
"""

from __future__ import annotations

from datetime import datetime, timezone

import base64
import json
import threading
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.support.processes import ROOT, CeleryWorker, wait_for
from tests.support.stock_harness import sandbox_config
from ymsync.embedded import free_port
from ymsync.market import MarketClient
from ymsync.market.errors import DownloadRefused, ReportTooLarge
from ymsync.reports.unpack import SafeArchive, UnsafeArchive
from ymsync.config.settings import Credentials, Secret

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

TOKEN = "ymtok-" + uuid.uuid4().hex  # distinctive: any hit is a leak, never a coincidence
AUTH = ("chaos", "flower-" + uuid.uuid4().hex[:12])


def needles() -> list[bytes]:
    """The token, raw and as it would look inside base64 at any of the three alignments."""
    raw = TOKEN.encode()
    found = [raw]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw)
        found.append(enc[4 * ((pad + 2) // 3) + 2: -4])  # a stretch wholly inside the token's bytes
    return [n for n in found if len(n) >= 16]


def leaks(blob: bytes) -> bool:
    return any(n in blob for n in needles())


def decoded_bodies(value: bytes) -> list[bytes]:
    """Kombu messages carry their body base64-encoded inside a JSON envelope: decode it too."""
    out = []
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return out
    if isinstance(doc, dict) and doc.get("properties", {}).get("body_encoding") == "base64":
        out.append(base64.b64decode(doc.get("body", "")))
    return out


def redis_dump(client) -> list[tuple[str, bytes]]:
    values = []
    for key in client.scan_iter("*", count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            items = [client.get(key) or b""]
        elif kind == "list":
            items = client.lrange(key, 0, -1)
        elif kind == "hash":
            items = [b"%s=%s" % kv for kv in client.hgetall(key).items()]
        elif kind == "set":
            items = list(client.smembers(key))
        elif kind == "zset":
            items = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            items = [json.dumps(str(e)).encode() for e in client.xrange(key)]
        else:
            items = []
        for item in items:
            values.append((key.decode(errors="replace"), item))
            values.extend((key.decode(errors="replace") + " (body)", b) for b in decoded_bodies(item))
            if b"=" in item:  # a hash field holding a message envelope
                values.extend((key.decode(errors="replace") + " (body)", b)
                              for b in decoded_bodies(item.split(b"=", 1)[1]))
    return values


class Flower:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        worker = CeleryWorker(env)  # borrow its environment handling
        self.args = [worker.args[0], "-m", "celery", "-A", "tasks", "flower", "--address=127.0.0.1",
                     f"--port={self.port}", f"--basic-auth={AUTH[0]}:{AUTH[1]}", "--persistent=False"]
        self.env, self.log = worker.env, log
        self.process = None

    def start(self) -> "Flower":
        import subprocess

        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=open(self.log, "ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self._up(), 30, "Flower to answer")
        return self

    def _up(self) -> bool:
        try:
            return requests.get(self.url + "/healthcheck", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False

    def stop(self) -> None:
        import os
        import signal

        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(20)


def test_the_token_never_leaks_and_flower_needs_credentials(bench_for, case, redis_server, tmp_path):
    """The API token never appears in broker messages, results, logs, Flower or dead letters"""
    from celery import Celery

    bench = bench_for(sandbox_config(tokens=(TOKEN,), report_delay_s=0.3))
    env = bench.env(YM_API_KEY=TOKEN, YM_REPORTS_DIR=str(tmp_path / "reports"))
    worker = CeleryWorker(env, queues="stocks,reports", name="secret", log_path=tmp_path / "secret.log")
    worker.args[worker.args.index("INFO")] = "DEBUG"
    bench.workers.append(worker.start())
    flower = Flower(env, tmp_path / "flower.log").start()
    foreign = Celery(broker=redis_server.url, backend=redis_server.url)
    campaign = 2601
    try:
        bench.push(campaign, [(f"S-{i:04d}", i) for i in range(3000)])
        foreign.send_task("ymsync.stocks.update", args=[campaign, [{"sku": "via-task", "count": 1},
                                                                  {"sku": "", "count": "bad"}]],
                          kwargs={"stamped_at": datetime.now(timezone.utc).isoformat()}, queue="stocks")
        report = foreign.send_task("ymsync.reports.stocks_on_warehouses", args=[{"campaignId": campaign}, "CSV"],
                                   queue="reports")
        wait_for(lambda: len(bench.stocks(campaign)) == 3001, 30, "the pushes to arrive")
        outcome = report.get(timeout=30)
        # Now the token dies: every later call answers 401, whose text could echo the request.
        bench.admin("revoke", {"token": TOKEN})
        bench.push(campaign, [(f"S-{i:04d}", 10_000 + i) for i in range(500)])
        failed = foreign.send_task("ymsync.reports.stocks_on_warehouses", args=[{"campaignId": campaign}, "CSV"],
                                   queue="reports")
        failed_outcome = failed.get(timeout=30)
        wait_for(lambda: bench.halted(campaign) and bench.buffer.dead_letters(campaign), 20, "the 401 to halt")
        wait_for(lambda: requests.get(flower.url + "/api/tasks", auth=AUTH, timeout=5).json(), 20,
                 "Flower to have seen tasks")

        # --- Flower refuses requests without (or with wrong) credentials ----------------------
        routes = ["/", "/api/tasks", "/api/workers", "/api/task/types", "/metrics", "/tasks", "/workers"]
        refused = {r: requests.get(flower.url + r, timeout=10).status_code for r in routes}
        wrong = {r: requests.get(flower.url + r, auth=(AUTH[0], "wrong"), timeout=10).status_code for r in routes}

        # --- scan everything that could carry the token ----------------------------------------
        scanned: dict[str, int] = {}
        hits: list[str] = []
        for key, value in redis_dump(bench.redis):
            scanned["redis_values"] = scanned.get("redis_values", 0) + 1
            if leaks(value):
                hits.append(f"redis {key}")
        flower_docs = {"/api/tasks": requests.get(flower.url + "/api/tasks", auth=AUTH, timeout=10).content,
                       "/api/workers": requests.get(flower.url + "/api/workers?refresh=1", auth=AUTH,
                                                    timeout=30).content,
                       "/metrics": requests.get(flower.url + "/metrics", auth=AUTH, timeout=10).content}
        for task_id in json.loads(flower_docs["/api/tasks"]):
            flower_docs[f"/api/task/info/{task_id}"] = requests.get(f"{flower.url}/api/task/info/{task_id}",
                                                                   auth=AUTH, timeout=10).content
        for route, body in flower_docs.items():
            scanned["flower_documents"] = scanned.get("flower_documents", 0) + 1
            if leaks(body):
                hits.append(f"flower {route}")
        for log in (worker.log_path, flower.log):
            text = log.read_bytes()
            scanned["log_bytes"] = scanned.get("log_bytes", 0) + len(text)
            if leaks(text):
                hits.append(f"log {log.name}")
        dead = bench.buffer.dead_letters(campaign)
        reasons = json.dumps(dead).encode() + json.dumps([outcome, failed_outcome]).encode()
        if leaks(reasons):
            hits.append("dead letters / results")
    finally:
        flower.stop()
    log_text = worker.log_path.read_text(errors="replace")
    case.figures.update({
        "scanned": scanned, "token_hits": hits, "dead_letters": len(dead),
        "http_401_seen": bench.requests_by_status().get(401, 0),
        "report_outcome": [outcome.get("status"), outcome.get("reason")], "report_after_revoke": [failed_outcome.get("status"), failed_outcome.get("reason")],
        "flower_without_credentials": refused, "flower_wrong_password": wrong,
        "worker_log_level": "DEBUG",
    })
    case.check("the worker logged at DEBUG and saw the 401s", "DEBUG" in log_text and "401" in log_text)
    case.check("the token appears nowhere: Redis (broker, results, dead letters), logs, Flower API", not hits, hits)
    case.check("Flower answers 401 to every route without credentials or with a wrong password",
               set(refused.values()) == {401} and set(wrong.values()) == {401}, (refused, wrong))


class _FileHost(BaseHTTPRequestHandler):
    """A loopback "file host": redirects, big files, and a record of the headers it was sent."""

    seen: list[dict[str, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        _FileHost.seen.append(dict(self.headers))
        if self.path == "/redirect-away":
            self.send_response(302)
            self.send_header("Location", "https://evil.example.com/steal")
            self.end_headers()
        elif self.path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            for _ in range(40):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            body = b"PK\x05\x06" + b"\0" * 18
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


def test_downloads_and_archives_stay_contained(case, tmp_path):
    """Report downloads follow only allowed hosts, are size-capped; archives cannot write outside their folder"""
    host = ThreadingHTTPServer(("127.0.0.1", 0), _FileHost)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{host.server_address[1]}"
    creds = Credentials(api_key=Secret(TOKEN))
    local = MarketClient(base, creds, max_report_bytes=1024 * 1024)  # a loopback API: the sandbox
    remote = MarketClient("https://api.partner.market.yandex.ru", creds, max_report_bytes=1024 * 1024)
    custom = MarketClient("https://api.partner.market.yandex.ru", creds, download_hosts=("files.example.org",))
    outcomes: dict[str, str] = {}

    def attempt(name: str, client: MarketClient, url: str) -> None:
        try:
            client.download_report(url, tmp_path / "dl" / f"{name}.zip")
            outcomes[name] = "downloaded"
        except (DownloadRefused, ReportTooLarge) as exc:
            outcomes[name] = type(exc).__name__
            assert TOKEN not in str(exc) and TOKEN not in repr(exc)

    try:
        attempt("loopback_link_with_loopback_api", local, base + "/ok")
        attempt("redirect_to_foreign_host", local, base + "/redirect-away")
        attempt("chunked_file_over_the_cap", local, base + "/big-chunked")
        attempt("plain_http_to_allowed_host", remote, "http://files.yandex.net/report.zip")
        attempt("foreign_https_host", remote, "https://evil.example.com/report.zip")
        attempt("loopback_link_with_remote_api", remote, base + "/ok")
        attempt("default_host_not_in_configured_list", custom, "https://files.yandex.net/report.zip")
        try:
            custom._check_download_url("https://files.example.org/r.zip")
            outcomes["configured_host"] = "allowed"
        except DownloadRefused:
            outcomes["configured_host"] = "DownloadRefused"
    finally:
        host.shutdown()
    sent_token = [h for h in _FileHost.seen if TOKEN in json.dumps(h)]

    # Archives: a member that climbs out, an absolute path, a symlink.
    archive_outcomes = {}
    for name, member, mode in [("dotdot", "../../escaped.txt", None), ("absolute", "/tmp/escaped.txt", None),
                               ("backslash", "..\\..\\escaped.txt", None), ("symlink", "link", 0o120777)]:
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            info = zipfile.ZipInfo(member)
            if mode:
                info.external_attr = mode << 16
            zf.writestr(info, b"/etc/passwd" if mode else b"escaped")
        try:
            with SafeArchive(path) as archive:
                archive.extract_all(tmp_path / f"out-{name}")
            archive_outcomes[name] = "extracted"
        except UnsafeArchive:
            archive_outcomes[name] = "UnsafeArchive"
    escaped = [p for p in tmp_path.parent.rglob("escaped.txt")]

    case.figures.update({"downloads": outcomes, "file_host_requests": len(_FileHost.seen),
                         "file_host_requests_carrying_the_token": len(sent_token), "archives": archive_outcomes,
                         "files_written_outside": len(escaped)})
    case.check("only https links to allowed hosts (configurable; loopback only for a loopback API) are followed",
               outcomes == {"loopback_link_with_loopback_api": "downloaded", "redirect_to_foreign_host": "DownloadRefused",
                            "chunked_file_over_the_cap": "ReportTooLarge", "plain_http_to_allowed_host": "DownloadRefused",
                            "foreign_https_host": "DownloadRefused", "loopback_link_with_remote_api": "DownloadRefused",
                            "default_host_not_in_configured_list": "DownloadRefused", "configured_host": "allowed"},
               outcomes)
    case.check("downloads are size-capped even without a Content-Length", outcomes["chunked_file_over_the_cap"]
               == "ReportTooLarge" and not list((tmp_path / "dl").glob(".part-*")))
    case.check("the token is never sent to a file host", not sent_token, sent_token)
    case.check("archives cannot write outside their folder", set(archive_outcomes.values()) == {"UnsafeArchive"}
               and not escaped, (archive_outcomes, escaped))
