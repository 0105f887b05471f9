"""The sandbox's answers in the Market's error shape, and its page tokens."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from ymsync.market import schemas as s

_STOCK_RULE = re.compile(r"^(Duplicate shop-sku|Stock for) ")


class ApiFailure(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        self.errors = [{"code": code, "message": message}]
        self.until: float | None = None  # unix time of the X-RateLimit-Resource-Until a 420 carries


def bad_request(messages: Any) -> ApiFailure:
    failure = ApiFailure(400, "BAD_REQUEST", "")
    lines = s.flatten_errors(messages)
    # Stock rule messages name the SKU themselves, as the Market's do; others keep their field path.
    failure.errors = [{"code": "BAD_REQUEST", "message": line.split(": ", 1)[1] if _STOCK_RULE.match(
        line.split(": ", 1)[-1]) else line} for line in lines]
    failure.message = "; ".join(e["message"] for e in failure.errors)
    return failure


def poison_failure(poisoned: list[tuple[str, bool]]) -> ApiFailure:
    """The whole request refused for its poisoned SKUs, one error each, as the Market words them;
    SKUs poisoned "unnamed" share one error that names none (the client must bisect to find them)."""
    failure = ApiFailure(400, "BAD_REQUEST", "")
    messages = [f"Stock for '{sku}' cannot be updated: the offer is blocked" for sku, named in poisoned if named]
    if not all(named for _, named in poisoned):
        messages.append("Stocks cannot be updated: an offer in the request is blocked")
    failure.errors = [{"code": "BAD_REQUEST", "message": m} for m in messages]
    failure.message = "; ".join(messages)
    return failure


def encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()


def decode_token(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError):
        raise ApiFailure(400, "BAD_REQUEST", f"page_token is not valid: {token[:40]!r}") from None
