"""Reading `ymsync push` input files: CSV with a header and JSON Lines, every line labelled."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest

from ymsync.engine.inputs import UnreadableInput, detect_format, read_items
from ymsync.engine.producer import check_updates


def read(text: str | bytes, name: str = "-", fmt: str | None = None):
    data = text.encode() if isinstance(text, str) else text
    return read_items(io.BytesIO(data), name, fmt)


def test_csv_with_bom_crlf_quotes_and_optional_stamp() -> None:
    stamp = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    got = read(f'\ufeffsku,count,updatedAt\r\n"A,1",5,{stamp}\r\nB,0,\r\n\r\n', "in.csv")
    assert got.items == [{"sku": "A,1", "count": 5, "updatedAt": stamp},
                         {"sku": "B", "count": 0, "updatedAt": None}]
    assert got.labels == ["line 2", "line 3"]
    assert got.problems == []
    checked = check_updates(got.items, got.labels)
    assert checked.errors == []
    assert [u[:2] for u in checked.updates] == [("A,1", 5), ("B", 0)]


def test_csv_counts_that_are_not_integers_stay_text_for_a_precise_error() -> None:
    got = read("sku,count\nA,1.5\nB, 7 \nC,\n")
    checked = check_updates(got.items, got.labels)
    assert checked.errors == ["line 2: count: count must be an integer, got '1.5'",
                              "line 4: count: count must be an integer, got ''"]
    assert checked.updates == [("B", 7, None)]


@pytest.mark.parametrize("header", ["count,sku,color", "sku", "sku,count,count", ""])
def test_a_csv_header_without_the_right_columns_is_refused(header: str) -> None:
    with pytest.raises(UnreadableInput):
        read(header + "\nA,1\n" if header else "", fmt="csv")


def test_json_lines_keep_going_past_bad_lines_and_label_each() -> None:
    got = read('{"sku": "A", "count": 1}\n[1, 2]\n{"sku": "B"\n\n{"sku": "C", "count": 2, "updatedAt": null}\n')
    assert got.problems == ["line 3: not valid JSON (Expecting ',' delimiter at column 12)"]
    checked = check_updates(got.items, got.labels)
    assert [u[:2] for u in checked.updates] == [("A", 1), ("C", 2)]
    assert len(checked.errors) == 1 and checked.errors[0].startswith("line 2: ")


def test_non_utf8_input_is_refused_with_the_byte_offset() -> None:
    with pytest.raises(UnreadableInput, match=r"not UTF-8 text .* at byte 10"):
        read(b"sku,count\n\xff,1\n", "latin.csv")


@pytest.mark.parametrize(("name", "head", "fmt"), [
    ("x.csv", "{", "csv"), ("x.jsonl", "sku", "jsonl"), ("x.ndjson", "", "jsonl"), ("-", '  {"sku"', "jsonl"),
    ("-", "sku,count", "csv"),
])
def test_format_comes_from_the_extension_else_the_first_character(name: str, head: str, fmt: str) -> None:
    assert detect_format(name, head) == fmt


def test_a_stamp_older_than_the_horizon_is_refused_with_the_reason() -> None:
    now = datetime.now(timezone.utc)
    items = [{"sku": "A", "count": 1, "updatedAt": (now - timedelta(hours=26)).isoformat()},
             {"sku": "B", "count": 2, "updatedAt": (now - timedelta(hours=24)).isoformat()}]
    checked = check_updates(items, horizon_s=25 * 3600)
    assert len(checked.errors) == 1
    assert checked.errors[0].startswith("item 0: updatedAt: updatedAt is older than 25 h "
                                        "(the Market refuses stamps older than a day)")
    assert [u[0] for u in checked.updates] == ["B"]
