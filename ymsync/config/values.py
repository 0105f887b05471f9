"""The value types settings.py and cabinets.py both build on: errors, secrets, quotas, credentials.

They live apart from both so that neither parser imports the other's module for its types:
settings.py calls cabinets.py to parse the cabinets, and cabinets.py needs only these.
"""

from __future__ import annotations

from dataclasses import dataclass


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line naming the variable."""


class Secret:
    """A credential that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Quota:
    """At most ``amount`` units in any window of ``seconds``."""

    amount: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.amount}/{self.seconds:g}"


@dataclass(frozen=True)
class Credentials:
    """How the client authenticates: an Api-Key token or an OAuth token (+ optional business)."""

    api_key: Secret | None = None
    oauth_token: Secret | None = None
    business_id: int | None = None

    def headers(self) -> dict[str, str]:
        if self.api_key is not None:
            return {"Api-Key": self.api_key.reveal()}
        if self.oauth_token is not None:
            headers = {"Authorization": f"Bearer {self.oauth_token.reveal()}"}
            if self.business_id is not None:
                # The subscription tier's limits are applied only when the cabinet is named.
                headers["X-Business-Id"] = str(self.business_id)
            return headers
        return {}

    def __bool__(self) -> bool:
        return self.api_key is not None or self.oauth_token is not None

    def secrets(self) -> list[str]:
        """Raw secret strings, for scrubbers that must never let them through."""
        return [s.reveal() for s in (self.api_key, self.oauth_token) if s is not None]


__all__ = ["Credentials", "Quota", "Secret", "SettingsError"]
