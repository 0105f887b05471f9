"""The plain Celery baseline: how most projects push stock to a marketplace.

One task per stock update, enqueued with ``delay()``; the task sends the PUT itself with
``requests``, paced by Celery's ``rate_limit`` and retried with ``autoretry_for`` (exponential
backoff with jitter). No buffer, no coalescing, no shared quota: ``rate_limit`` is a token
bucket per worker instance. Run it as ``celery -A bench.baseline worker -Q baseline``.

Environment (set by the bench runner): ``REDIS_URL``, ``YM_API_URL``, ``YM_API_KEY`` and
``BASELINE_RATE_LIMIT`` (Celery syntax, e.g. ``2000/s``; empty = none). The report baseline
(``report``) polls the report's info on a fixed 5 s countdown, the usual ``self.retry`` loop.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import requests
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
API_URL = os.environ.get("YM_API_URL", "http://127.0.0.1:8765").rstrip("/")
API_KEY = os.environ.get("YM_API_KEY", "sandbox-token")
RATE_LIMIT = os.environ.get("BASELINE_RATE_LIMIT") or None
REPORTS_DIR = Path(os.environ.get("YM_REPORTS_DIR", "reports"))

app = Celery("baseline", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="baseline",
                task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True,
                broker_connection_retry_on_startup=True)

session = requests.Session()  # one per process, as a careful project would


class MarketRetryable(Exception):
    """420, 5xx or a network failure: Celery retries the task."""


def _put(campaign_id: int, sku: str, count: int, updated_at: str | None) -> None:
    item = {"count": count}
    if updated_at:
        item["updatedAt"] = updated_at
    try:
        r = session.put(f"{API_URL}/v2/campaigns/{campaign_id}/offers/stocks",
                        json={"skus": [{"sku": sku, "items": [item]}]},
                        headers={"Api-Key": API_KEY}, timeout=(5, 60))
    except requests.RequestException as exc:
        raise MarketRetryable(str(exc)) from None
    if r.status_code == 420 or r.status_code >= 500:
        raise MarketRetryable(f"HTTP {r.status_code}")
    r.raise_for_status()


@app.task(name="baseline.push_stock", rate_limit=RATE_LIMIT, autoretry_for=(MarketRetryable,),
          retry_backoff=True, retry_backoff_max=60, retry_jitter=True, max_retries=10)
def push_stock(campaign_id: int, sku: str, count: int, updated_at: str | None = None) -> None:
    _put(campaign_id, sku, count, updated_at)


@app.task(name="baseline.report", bind=True, ignore_result=False, autoretry_for=(MarketRetryable,), retry_backoff=True,
          max_retries=20)
def report(self, campaign_id: int, report_id: str | None = None) -> dict:
    """Generate, then poll every 5 s, download and parse the CSV into rows on disk."""
    headers = {"Api-Key": API_KEY}
    if report_id is None:
        r = session.post(f"{API_URL}/v2/reports/stocks-on-warehouses/generate", params={"format": "CSV"},
                         json={"campaignId": campaign_id}, headers=headers, timeout=(5, 60))
        if r.status_code == 420:
            raise MarketRetryable("HTTP 420")
        r.raise_for_status()
        report_id = r.json()["result"]["reportId"]
        raise self.retry(countdown=5, args=(campaign_id, report_id))
    r = session.get(f"{API_URL}/v2/reports/info/{report_id}", headers=headers, timeout=(5, 60))
    if r.status_code == 420:
        raise MarketRetryable("HTTP 420")
    r.raise_for_status()
    info = r.json()["result"]
    if info["status"] in ("PENDING", "PROCESSING"):
        raise self.retry(countdown=5, args=(campaign_id, report_id), max_retries=100)
    if info["status"] != "DONE":
        return {"status": info["status"]}
    data = session.get(info["file"], timeout=(5, 60)).content
    rows = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            text = z.read(name).decode("utf-8-sig")
            rows.extend(csv.DictReader(io.StringIO(text)))
    REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    out = REPORTS_DIR / f"baseline-{report_id}.rows.csv"
    with open(out, "w", newline="") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return {"status": "DONE", "path": str(out), "rows": len(rows)}
