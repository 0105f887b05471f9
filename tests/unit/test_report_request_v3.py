"""ReportRequest for the v3 business stocks report: validation, canonical form, JSON round trip."""

from __future__ import annotations

import json

import pytest

from ymsync.market import InvalidRequest
from ymsync.reports.request import ReportRequest


def test_canonical_and_round_trip():
    a = ReportRequest.business_stocks(7, "csv", warehouse_ids=[12, 11], category_ids=[5], has_stocks=False)
    b = ReportRequest.business_stocks(7, "CSV", warehouse_ids=[11, 12], category_ids=[5], has_stocks=False)
    assert a.body == {"businessId": 7, "categoryIds": [5], "hasStocks": False, "partnerWarehouseIds": [11, 12]}
    assert a.fingerprint == b.fingerprint and a.api == "v3" and a.format == "CSV"
    again = ReportRequest.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again == a and again.api == "v3"
    assert a.describe() == "business=7 CSV v3 partnerWarehouseIds=2 categoryIds=1 hasStocks=False"


def test_v2_fingerprints_unchanged_and_distinct_from_v3():
    v2 = ReportRequest.build({"businessId": 7}, "CSV")
    assert v2.to_dict() == {"request": {"businessId": 7}, "format": "CSV"}  # no "api" key: old dedup keys hold
    assert v2.fingerprint != ReportRequest.business_stocks(7, "CSV").fingerprint


@pytest.mark.parametrize("body, fmt, message", [
    ({"businessId": 0}, "CSV", "businessId: a positive integer is required"),
    ({}, "CSV", "businessId: a positive integer is required"),
    ({"businessId": 7, "partnerWarehouseIds": ["x"]}, "CSV", "partnerWarehouseIds"),
    ({"businessId": 7, "warehouseIds": [1]}, "CSV", "warehouseIds"),  # the v2 name is refused, not ignored
    ({"businessId": 7}, "XLS", "format must be one of FILE, CSV, JSON"),
])
def test_refusals(body, fmt, message):
    with pytest.raises(InvalidRequest, match=message):
        ReportRequest.build(body, fmt, api="v3")
    with pytest.raises(InvalidRequest, match="api must be v2 or v3"):
        ReportRequest.build({"businessId": 7}, "CSV", api="v4")


@pytest.mark.parametrize("api", ["v2", "v3"])
def test_both_kinds_list_every_problem_of_format_shape_and_body(api):
    """One build path: a bad format is listed together with the body's problems, for either kind."""
    with pytest.raises(InvalidRequest) as caught:
        ReportRequest.build({"businessId": 7, "categoryIds": "x"}, "XLS", api=api)
    text = str(caught.value)
    assert "format must be one of FILE, CSV, JSON" in text and "categoryIds" in text
    with pytest.raises(InvalidRequest, match="request must be an object.*format must be one of"):
        ReportRequest.build(["not", "a", "body"], "XLS", api=api)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="api must be v2 or v3"):
        ReportRequest.build({"businessId": 7}, "CSV", api=["v2"])  # type: ignore[arg-type]
