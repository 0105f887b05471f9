"""One environment variable's value, parsed and checked: numbers, durations, URLs, flags, campaign
lists, secrets and quotas. settings.py reads each variable through these; the message of every
refusal is one line naming the variable.
"""

from __future__ import annotations

import math
import re
from typing import Mapping
from urllib.parse import urlsplit

from ymsync.config.values import Quota, Secret, SettingsError


def url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix" and parts.path):
        raise SettingsError(
            f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {value!r}"
        )
    return value.rstrip("/") if name == "YM_API_URL" else value


def number(env: Mapping[str, str], name: str, default: float, *, minimum: float, integer: bool) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise SettingsError(f"{name}: expected {kind}, got {raw!r}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}: expected a finite number, got {raw!r}")
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum:g}, got {raw!r}")
    return value


def parse_quota(name: str, raw: str) -> Quota | None:
    """``AMOUNT/SECONDS`` (e.g. ``100000/60``); ``0`` switches the quota off."""
    raw = raw.strip()
    if raw == "0":
        return None
    amount, sep, seconds = raw.partition("/")
    try:
        quota = Quota(int(amount), float(seconds)) if sep else None
    except ValueError:
        quota = None
    if quota is None or quota.amount < 1 or not (0 < quota.seconds < math.inf):
        raise SettingsError(f"{name}: expected AMOUNT/SECONDS like 100000/60, or 0 for off; got {raw!r}")
    return quota


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_SCHEDULE_S = 60.0


def parse_duration(name: str, raw: str, *, minimum: float = MIN_SCHEDULE_S) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``6h`` or ``1d``; at least ``minimum``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", raw.strip().lower())
    if not match:
        raise SettingsError(f"{name}: expected a duration like 3600, 90s, 30m, 6h or 1d; got {raw!r}")
    seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if seconds < minimum:
        raise SettingsError(f"{name}: must be at least {minimum:g} seconds, got {raw!r}")
    return seconds


def duration(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    return parse_duration(name, raw) if raw else default


def campaigns(env: Mapping[str, str], name: str) -> tuple[int, ...]:
    """``1001,1002`` (spaces allowed); empty means none. Duplicates are dropped, order kept."""
    ids: list[int] = []
    for part in env.get(name, "").replace(" ", ",").split(","):
        if not part.strip():
            continue
        if not part.strip().isdigit() or int(part) < 1:
            raise SettingsError(f"{name}: expected campaign ids like 1001,1002; got {part.strip()!r}")
        if int(part) not in ids:
            ids.append(int(part))
    return tuple(ids)


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def secret(env: Mapping[str, str], name: str) -> Secret | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if any(c.isspace() for c in raw) or raw.lower().startswith(("bearer", "oauth")):
        # A pasted "Bearer xyz" would be sent twice-prefixed and fail as 401 much later.
        raise SettingsError(f"{name}: expected the bare token without a prefix or spaces")
    return Secret(raw)
