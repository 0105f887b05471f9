"""The Market's 2026 typed error format (ApiTypedLimitErrorResponse: ``errors[{code, message}]``,
``code`` from ApiErrorCodeType, ``message`` optional) is read like the untyped one. Neither limit
code of ApiErrorCodeType (LIMIT_EXCEEDED, REQUEST_LIMIT_EXCEEDED) is documented as one of the three
kinds of 420, so the kind is still told by the message; the code is kept on the error."""

from __future__ import annotations

import json

import pytest
import requests

from ymsync.engine.call_policy import Kind, classify
from ymsync.market.client import _failure
from ymsync.market.errors import RateLimitInfo


def reply(status: int, payload: object) -> requests.Response:
    response = requests.Response()
    response.status_code, response.reason = status, "Method Failure"
    response._content = json.dumps(payload).encode()
    return response


@pytest.mark.parametrize("code", ["LIMIT_EXCEEDED", "REQUEST_LIMIT_EXCEEDED"])
@pytest.mark.parametrize("message, kind", [
    ("Hit rate limit of 4 parallel requests for campaignId 5", Kind.PARALLEL),
    ("Active reports limit exceeded", Kind.ACTIVE_REPORTS),
    ("Hit rate limit of '100000' requests per '1m' for resource 'updateStocks'", Kind.QUOTA),
    (None, Kind.QUOTA),  # the typed format's message is optional: a resource limit, Until decides
])
def test_typed_420_is_read_and_classified(code, message, kind):
    error = {"code": code} if message is None else {"code": code, "message": message}
    exc = _failure("updateStocks", reply(420, {"status": "ERROR", "errors": [error]}), RateLimitInfo())
    assert exc.status == 420 and exc.code == code and classify(exc) is kind
    assert exc.message.startswith(f"updateStocks: HTTP 420: {code}")
