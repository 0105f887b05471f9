"""Chaos: hostile input everywhere it enters, fuzzed with hypothesis (bounded, derandomised).

- the producer API: ``push_stocks`` with arbitrary JSON-ish items raises ``InvalidInput`` or
  succeeds, never anything else, and when it raises, Redis is byte-for-byte unchanged;
- the CLI's input files: ``read_items`` + ``check_updates`` on arbitrary bytes give
  ``UnreadableInput`` or errors labelled by line, never a crash;
- report archives (truncated or corrupted ZIPs and XLSX, wrong columns, huge cells): the report
  reader raises ``ReportParseError`` or ``UnsafeArchive``, never a raw zipfile/openpyxl/csv error;
- a real worker fed garbage ``ymsync.stocks.update`` messages keeps running and dead-letters.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.processes import wait_for
from tests.support.stock_harness import sandbox_config
from ymsync import InvalidInput, push_stocks
from ymsync.engine.buffer import IngestResult, StockBuffer
from ymsync.engine.inputs import UnreadableInput, read_items
from ymsync.engine.producer import check_updates
from ymsync.reports.columns import STOCKS_ON_WAREHOUSES
from ymsync.reports.parse import ReportParseError, read_rows
from ymsync.reports.unpack import UnsafeArchive
from ymsync.sandbox.report_files import write_report

pytestmark = pytest.mark.chaos

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
TALLY: dict[str, int] = {}

leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-10, 10**10),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40))
json_ish = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=4), max_leaves=12)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
stamps = st.one_of(
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)),
              offsets),
    st.builds(lambda d: d.isoformat(), st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1))),  # no offset
    st.text(max_size=30), json_ish)
item = st.one_of(json_ish, st.fixed_dictionaries(
    {"sku": st.one_of(st.text(min_size=0, max_size=300), json_ish), "count": st.one_of(st.integers(), json_ish)},
    optional={"updatedAt": stamps, "extra": json_ish}))
items_st = st.one_of(st.lists(item, max_size=12), json_ish)
campaigns = st.one_of(st.integers(-3, 10**12), json_ish)


def keyspace(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {k: client.dump(k) for k in client.keys("*")}


@pytest.fixture(scope="module")
def fuzz_buffer(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield StockBuffer(client)
    client.flushdb()


@FUZZ
@given(campaign=campaigns, items=items_st)
@example(campaign=1, items=[{"sku": "a", "count": 1, "updatedAt": "1969-12-31T23:59:59+00:00"}])
@example(campaign=1, items=[{"sku": "a", "count": 1, "updatedAt": "0001-01-01T00:00:00+00:00"}])
@example(campaign=1, items=5)
@example(campaign=1, items=None)
@example(campaign=True, items=[])
@example(campaign=1, items=[{"sku": "ok", "count": 1}] * 1500 + [{"sku": "bad", "count": -1}])
def test_push_stocks_raises_invalid_input_or_queues_everything(fuzz_buffer, campaign, items):
    client = fuzz_buffer.redis
    client.flushdb()
    before = keyspace(client)
    try:
        result = push_stocks(campaign, items, buffer=fuzz_buffer)
    except InvalidInput as exc:
        assert exc.errors and str(exc)
        assert keyspace(client) == before, "InvalidInput raised but something was queued"
        TALLY["producer_invalid"] = TALLY.get("producer_invalid", 0) + 1
        return
    assert isinstance(result, IngestResult)
    TALLY["producer_ok"] = TALLY.get("producer_ok", 0) + 1


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=3000),
    st.lists(st.lists(st.text(max_size=25), max_size=4), max_size=25).map(
        lambda rows: "\n".join(",".join(r) for r in [["sku", "count", "updatedAt"], *rows]).encode()),
    st.lists(json_ish.map(repr), max_size=20).map(lambda rows: "\n".join(rows).encode())),
    name=st.sampled_from(["-", "stocks.csv", "stocks.jsonl", "stocks.txt"]))
@example(data=b"[" * 100_000, name="stocks.jsonl")
@example(data=b"sku,count\n" + b"a" * 200_000 + b",1\n", name="stocks.csv")
@example(data=b'sku,count\n"unterminated,1\n', name="stocks.csv")
@example(data=b'{"sku": "a", "count": 1, "updatedAt": "1969-12-31T23:59:59Z"}\n', name="stocks.jsonl")
def test_input_files_give_labelled_errors_or_unreadable(data, name):
    try:
        read = read_items(io.BytesIO(data), name)
    except UnreadableInput as exc:
        assert str(exc)
        TALLY["files_unreadable"] = TALLY.get("files_unreadable", 0) + 1
        return
    assert len(read.items) == len(read.labels)
    assert all(p.startswith("line ") for p in read.problems), read.problems
    checked = check_updates(read.items, read.labels)
    assert all(e.startswith("line ") for e in checked.errors), checked.errors[:3]
    TALLY["files_read"] = TALLY.get("files_read", 0) + 1


def _report_bytes(tmp: Path, fmt: str, rows: list[dict]) -> bytes:
    path = tmp / f"base-{fmt}.bin"
    write_report(path, fmt, STOCKS_ON_WAREHOUSES, rows)
    return path.read_bytes()


@pytest.fixture(scope="module")
def report_bases(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("reports")
    rows = [{c.csv: (i if c.kind != "str" else f"v{i}") for c in STOCKS_ON_WAREHOUSES.columns} for i in range(30)]
    return {fmt: _report_bytes(tmp, fmt, rows) for fmt in ("FILE", "CSV", "JSON")}


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def _judge(tmp_path: Path, blob: bytes, suffix: str) -> str:
    path = tmp_path / f"report{suffix}"
    path.write_bytes(blob)
    try:
        read_rows(path)
    except (ReportParseError, UnsafeArchive) as exc:
        assert str(exc)
        return "refused"
    return "read"


@FUZZ
@given(fmt=st.sampled_from(["FILE", "CSV", "JSON"]), cut=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6))
def test_damaged_report_archives_raise_clear_errors(report_bases, tmp_path, fmt, cut, flips):
    blob = bytearray(report_bases[fmt])
    blob = blob[:max(1, int(len(blob) * (1 - cut / 2)))] if cut > 0.5 else blob  # truncated half the time
    for where, byte in flips:
        blob[min(len(blob) - 1, int(where * len(blob)))] = byte
    outcome = _judge(tmp_path, bytes(blob), ".xlsx" if fmt == "FILE" else ".zip")
    TALLY[f"archives_{outcome}"] = TALLY.get(f"archives_{outcome}", 0) + 1


@FUZZ
@given(header=st.lists(st.text(max_size=30), max_size=8), cells=st.lists(st.lists(st.one_of(
    st.text(max_size=50), st.integers().map(str), st.just("x" * 200_000)), max_size=8), max_size=10),
    kind=st.sampled_from(["csv", "json", "xlsx-xml"]))
def test_wrong_columns_and_huge_cells_raise_clear_errors(tmp_path, header, cells, kind):
    if kind == "csv":
        text = "\n".join(",".join(r) for r in [header, *cells])
        blob = _zip({"stocks-on-warehouses.csv": text.encode()})
    elif kind == "json":
        blob = _zip({"stocks-on-warehouses.json": repr([dict(zip(header, r)) for r in cells]).encode()})
    else:  # an XLSX whose sheet XML is garbage
        blob = _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": ",".join(header).encode(),
                     "xl/worksheets/sheet1.xml": "".join(map(str, cells)).encode()})
    outcome = _judge(tmp_path, blob, ".zip")
    TALLY[f"tables_{outcome}"] = TALLY.get(f"tables_{outcome}", 0) + 1


GARBAGE: list[tuple[list, dict]] = [
    ([], {}), (["x"], {}), ([1, 2, 3], {}), ([None, None], {}), ([True, []], {}), ([-5, []], {}),
    ([10**30, []], {}), ([1, "items"], {}), ([1, {"sku": "a"}], {}), ([1, [None, 5, "x", [], {}]], {}),
    ([1, [{"sku": {"deep": [1, 2]}, "count": [3]}]], {}), ([1, [{"sku": "x" * 10_000, "count": 1}]], {}),
    ([1, [{"sku": "a", "count": 1, "updatedAt": "1969-12-31T23:59:59Z"}]], {}),
    ([1, [{"sku": "a", "count": 1}]], {"unexpected": 1}),
]


def test_a_worker_fed_garbage_messages_keeps_running(bench_for, case, redis_server):
    """A worker fed garbage ymsync.stocks.update messages keeps running and dead-letters"""
    from celery import Celery
    from kombu import Connection, Exchange, Producer

    bench = bench_for(sandbox_config())
    worker = bench.start_worker("garbage", concurrency=1)
    foreign = Celery(broker=redis_server.url)
    campaign = 2501
    try:
        for args, kwargs in GARBAGE:
            if args and args[0] == 1:
                args = [campaign, *args[1:]]
            foreign.send_task("ymsync.stocks.update", args=args, kwargs=kwargs, queue="stocks")
        foreign.send_task("ymsync.stocks.flush", args=["not a campaign"], queue="stocks")
        with Connection(redis_server.url) as conn:  # bodies no Celery client would send
            producer = Producer(conn.channel(), exchange=Exchange("stocks", type="direct"), routing_key="stocks")
            producer.publish(b"\x00\xffnot json", content_type="application/json", content_encoding="binary")
            producer.publish(b"\x80\x04K\x01.", content_type="application/x-python-serialize",
                             content_encoding="binary")  # pickle: must be refused, never loaded
            producer.publish({"task": "ymsync.stocks.update"}, serializer="json")
        foreign.send_task("ymsync.stocks.update", args=[campaign, [{"sku": "after-garbage", "count": 7}]],
                          kwargs={"stamped_at": datetime.now(timezone.utc).isoformat()}, queue="stocks")
        wait_for(lambda: bench.stocks(campaign).get("after-garbage") == 7, 30, "the valid message after the garbage")
    finally:
        alive = worker.process is not None and worker.process.poll() is None
    dead = bench.buffer.dead_letters(campaign)
    # The hypothesis tallies of the fuzz tests that ran before this one in the session (none when run alone).
    case.figures.update({"garbage_messages": len(GARBAGE) + 4, "worker_alive": alive, "dead_letters": len(dead),
                         "hypothesis_examples": dict(sorted(TALLY.items()))})
    case.check("the worker survived every garbage message and delivered the next valid one", alive)
    case.check("invalid items were dead-lettered with a reason", dead and all(d["reason"] for d in dead), dead)
    case.check("the pre-1970 stamp was refused, not queued", bench.stocks(campaign).get("a") in (None, 1))
