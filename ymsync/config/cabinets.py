"""Cabinets: the businesses one deployment serves, each with its own token, API mode and tier.

Two ways to configure them, both parsed once at start by :func:`ymsync.config.settings.load_settings`:

* The simple case, today's variables: ``YM_API_KEY`` (or ``YM_OAUTH_TOKEN``), optional
  ``YM_BUSINESS_ID``, ``YM_API_MODE`` (``v2`` default, or ``v3``) and ``YM_SUBSCRIPTION``
  (``basic`` default, or ``medium``) make one cabinet that serves every campaign.
* ``YM_CABINETS_FILE``: a TOML file an ops person can read and review, one table per cabinet::

      [cabinets.shop-north]
      business_id = 7
      mode = "v3"                  # business-level stock methods (no warehouse groups)
      subscription = "medium"      # report quotas: basic 1 per 2 min, medium 1 per min
      campaigns = [1001, 1002]
      token_env = "YM_TOKEN_NORTH" # the token is read from this variable...
      # warehouse_groups = [[1001, 1002]]  # v2 only: campaigns whose warehouses form one group
      # token_file = "/run/secrets/ym_north"   # ...or from this file (one of the two)
      # token_kind = "oauth"       # default "api-key"

  Tokens are never written in the file itself (a ``token`` key is refused): the file is
  meant to be read, diffed and committed; a secret belongs in the environment or a secrets
  mount, where access is controlled separately.

Quotas and parallel caps are keyed the way the Market keys them: per business on business
paths (``b<id>``, see :meth:`Cabinet.quota_key`) and per campaign on campaign paths.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from ymsync.config.values import Credentials, Quota, Secret, SettingsError

MODES = ("v2", "v3")
SUBSCRIPTIONS = ("basic", "medium")
TOKEN_KINDS = ("api-key", "oauth")
# Quotas a Medium subscription makes faster: the stocks reports go from 1 per 2 minutes to 1 a minute.
REPORT_QUOTAS = ("report_generate", "stocks_report_v3")
_KEYS = {"business_id", "mode", "subscription", "campaigns", "fby_campaigns", "token_env", "token_file",
         "token_kind", "warehouse_groups"}


class CabinetNotFound(LookupError):
    """No configured cabinet serves this business or campaign (a message for people)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such cabinet"


class CabinetModeError(ValueError):
    """A call that the cabinet's configured API mode does not allow; says which mode to set."""


@dataclass(frozen=True)
class Cabinet:
    """One business (cabinet) on the Market. Its token lives in ``credentials`` (masked in reprs)."""

    name: str
    business_id: int | None
    credentials: Credentials = field(repr=False)
    mode: str = "v2"
    subscription: str = "basic"
    campaigns: tuple[int, ...] = ()  # every campaign of the cabinet, FBY ones included
    fby_campaigns: tuple[int, ...] = ()  # FBY/LaaS campaigns: their reports keep campaignId
    # Where the token came from ("YM_API_KEY", "file /run/secrets/x"), for messages: never the token.
    token_source: str = ""
    # Warehouse groups (v2): campaigns whose warehouses share one stock on the Market, each group
    # in the order it was configured (its first campaign names it: ``g1001``).
    warehouse_groups: tuple[tuple[int, ...], ...] = ()

    def group_of(self, campaign_id: int) -> tuple[int, ...]:
        """The configured warehouse group a campaign belongs to (``()``: none)."""
        for group in self.warehouse_groups:
            if int(campaign_id) in group:
                return group
        return ()

    @property
    def quota_key(self) -> str:
        """The QuotaLimiter key of business-path methods (the Market counts them per business)."""
        if self.business_id is None:
            raise CabinetNotFound(f"cabinet {self.name!r} has no business id (set YM_BUSINESS_ID or business_id)")
        return f"b{self.business_id}"

    def quotas(self, base: Mapping[str, Quota | None]) -> dict[str, Quota | None]:
        """``base`` (the settings' quotas) as this cabinet's subscription sees them: Medium
        halves the window of the stocks reports' generate quotas (1 per 2 min -> 1 a minute)."""
        out = dict(base)
        if self.subscription == "medium":
            for method in REPORT_QUOTAS:
                quota = out.get(method)
                if quota is not None:
                    out[method] = replace(quota, seconds=quota.seconds / 2)
        return out

    def require_mode(self, mode: str, what: str) -> None:
        """Refuse ``what`` locally, naming the setting to change, if the mode does not allow it."""
        if self.mode == mode:
            return
        setting = "YM_API_MODE" if self.name == "default" else f'mode in cabinet "{self.name}"'
        if mode == "v3":
            raise CabinetModeError(
                f"business {self.business_id}: {what} uses the Market's business-level (v3) methods, but the "
                f"cabinet is configured for v2 (campaign-level); set {setting} = v3 if the cabinet has no "
                f"warehouse groups (cabinets with groups and FBY stay on v2)")
        raise CabinetModeError(
            f"business {self.business_id}: {what} uses the campaign-level (v2) methods, but the cabinet is "
            f"configured for v3; set {setting} = v2 if the cabinet has warehouse groups")

    def stocks_report_body(self, campaign_id: int) -> dict[str, object]:
        """The stocks-on-warehouses request for one campaign. DBS/FBS/Express campaigns are asked
        as businessId + campaignIds: the spec marks campaignId as soon unavailable for them. FBY
        campaigns (and a cabinet without a known business) keep campaignId."""
        if self.business_id is None or int(campaign_id) in self.fby_campaigns:
            return {"campaignId": int(campaign_id)}
        return {"businessId": self.business_id, "campaignIds": [int(campaign_id)]}

    def describe(self) -> str:
        # The simple case's cabinet serves every campaign; a file's cabinet only those it lists.
        campaigns = ",".join(map(str, self.campaigns)) or ("any" if self.name == "default" else "none")
        groups = "".join(f", group {'+'.join(map(str, g))}" for g in self.warehouse_groups)
        return (f"{self.name}: business {self.business_id or '-'}, mode {self.mode}, {self.subscription}, "
                f"campaigns {campaigns}{groups}, token from {self.token_source}")


@dataclass(frozen=True)
class Cabinets:
    """Every configured cabinet, with lookups by business and by campaign."""

    items: tuple[Cabinet, ...] = ()
    source: str = "environment"

    def __iter__(self) -> Iterator[Cabinet]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def by_business(self, business_id: int) -> Cabinet:
        for cabinet in self.items:
            if cabinet.business_id == int(business_id):
                return cabinet
        known = ", ".join(str(c.business_id) for c in self.items if c.business_id) or "none"
        hint = (" (YM_BUSINESS_ID is not set)" if self.source == "environment" and self.items
                and self.items[0].business_id is None else "")
        raise CabinetNotFound(f"no cabinet configured for business {business_id} (configured: {known}){hint}")

    def by_campaign(self, campaign_id: int) -> Cabinet:
        for cabinet in self.items:
            if int(campaign_id) in cabinet.campaigns:
                return cabinet
        # The simple case: one cabinet that lists no campaigns serves them all (today's behaviour).
        if len(self.items) == 1 and not self.items[0].campaigns:
            return self.items[0]
        where = ("YM_CAMPAIGN_IDS" if self.source == "environment"
                 else f"a cabinet's campaigns in {self.source}")
        raise CabinetNotFound(f"no cabinet lists campaign {campaign_id} (add it to {where})")

    def serving(self, *, business_id: int | None = None, campaign_id: int | None = None) -> Cabinet:
        """The cabinet whose token a request about this campaign (else business) must carry. The
        simple case's one cabinet without YM_BUSINESS_ID serves any business, as it always did."""
        if campaign_id is not None:
            return self.by_campaign(campaign_id)
        if business_id is None:
            raise CabinetNotFound("a request names neither a business nor a campaign")
        if len(self.items) == 1 and self.items[0].business_id is None:
            return self.items[0]
        return self.by_business(business_id)

    def group_of(self, campaign_id: int) -> tuple[int, ...]:
        """The configured warehouse group of a campaign, in any cabinet (``()``: none)."""
        for cabinet in self.items:
            group = cabinet.group_of(campaign_id)
            if group:
                return group
        return ()

    def groups(self) -> list[tuple[int, ...]]:
        """Every configured warehouse group."""
        return [g for cabinet in self.items for g in cabinet.warehouse_groups]

    def secrets(self) -> list[str]:
        """Every raw token, for scrubbers that must never let one through."""
        return [s for c in self.items for s in c.credentials.secrets()]


# --- parsing --------------------------------------------------------------------------------

def _secret(value: str, where: str) -> Secret:
    value = value.strip()
    if not value:
        raise SettingsError(f"{where} is empty")
    if any(ch.isspace() for ch in value) or value.lower().startswith(("bearer", "oauth")):
        raise SettingsError(f"{where}: expected the bare token without a prefix or spaces")
    return Secret(value)


def _credentials(kind: str, token: Secret, business_id: int | None) -> Credentials:
    if kind == "oauth":
        return Credentials(oauth_token=token, business_id=business_id)
    return Credentials(api_key=token, business_id=business_id)


def _choice(raw: Any, name: str, choices: tuple[str, ...], default: str) -> str:
    value = (str(raw).strip().lower() if raw is not None else "") or default
    if value not in choices:
        raise SettingsError(f"{name}: expected {' or '.join(choices)}, got {raw!r}")
    return value


def from_environment(credentials: Credentials, *, mode: str = "", subscription: str = "",
                     fby_campaigns: tuple[int, ...] = (), campaigns: tuple[int, ...] = (),
                     warehouse_groups: tuple[tuple[int, ...], ...] = ()) -> Cabinets:
    """The simple case: today's single-cabinet variables (read by settings.py) make one cabinet
    named ``default``: YM_API_MODE, YM_SUBSCRIPTION, YM_FBY_CAMPAIGNS and YM_CAMPAIGN_IDS arrive as
    arguments. Without YM_CAMPAIGN_IDS the cabinet lists no campaign and serves every one (what
    ymsync always did); with it, only those (and the FBY ones). YM_WAREHOUSE_GROUPS arrives as
    ``warehouse_groups``."""
    mode = _choice(mode, "YM_API_MODE", MODES, "v2")
    groups = check_groups(warehouse_groups, "YM_WAREHOUSE_GROUPS", mode, campaigns)
    tier = _choice(subscription, "YM_SUBSCRIPTION", SUBSCRIPTIONS, "basic")
    if mode == "v3" and credentials.business_id is None:
        raise SettingsError("YM_API_MODE=v3 needs YM_BUSINESS_ID (the v3 methods address a business)")
    if not credentials:
        return Cabinets((), "environment")
    source = "YM_API_KEY" if credentials.api_key is not None else "YM_OAUTH_TOKEN"
    listed = tuple(dict.fromkeys(tuple(campaigns) + tuple(fby_campaigns))) if campaigns else ()
    return Cabinets((Cabinet("default", credentials.business_id, credentials, mode, tier, listed,
                             tuple(fby_campaigns), source, groups),), "environment")


def check_groups(raw: Any, where: str, mode: str, campaigns: tuple[int, ...] | list[int]) -> tuple[tuple[int, ...], ...]:
    """Warehouse groups as given (a list of lists of campaign ids): each of at least two
    campaigns, no campaign in two groups, every one listed by the cabinet (when it lists any),
    and only in a v2 cabinet (v3 cabinets have no groups: the Market documents v2 for them)."""
    if raw is None or raw == () or raw == []:
        return ()
    if not isinstance(raw, (list, tuple)) or not all(
            isinstance(g, (list, tuple)) and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in g)
            for g in raw):
        raise SettingsError(f"{where}: warehouse groups must be lists of campaign ids, got {raw!r}")
    if mode != "v2":
        raise SettingsError(f"{where}: warehouse groups need mode v2 (a cabinet with groups uses the "
                            "campaign-level methods)")
    seen: set[int] = set()
    groups = []
    for group in raw:
        group = tuple(dict.fromkeys(int(c) for c in group))
        if len(group) < 2:
            raise SettingsError(f"{where}: a warehouse group needs at least two campaigns, got {list(group)}")
        for c in group:
            if c in seen:
                raise SettingsError(f"{where}: campaign {c} is in two warehouse groups")
            if campaigns and c not in campaigns:
                raise SettingsError(f"{where}: campaign {c} of a warehouse group is not among the cabinet's campaigns")
            seen.add(c)
        groups.append(group)
    return tuple(groups)


def load_file(path: Path, env: Mapping[str, str]) -> Cabinets:
    """Parse ``YM_CABINETS_FILE``; every problem is one line naming the file, cabinet and key."""
    where = f"YM_CABINETS_FILE {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{where}: not valid TOML ({exc})") from None
    unknown = set(data) - {"cabinets"}
    if unknown:
        raise SettingsError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                            "(cabinets go in [cabinets.NAME] tables)")
    tables = data.get("cabinets")
    if not isinstance(tables, dict) or not tables:
        raise SettingsError(f"{where}: no cabinet defined (add a [cabinets.NAME] table)")
    cabinets = [_cabinet(name, table, f"{where}: cabinet {name!r}", env) for name, table in tables.items()]
    _check_unique(cabinets, where)
    return Cabinets(tuple(cabinets), str(path))


def _cabinet(name: str, table: Any, where: str, env: Mapping[str, str]) -> Cabinet:
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: expected a table of settings")
    if "token" in table:
        raise SettingsError(f"{where}: tokens are not written in this file; use token_env = \"VARIABLE\" "
                            "or token_file = \"/path/to/secret\"")
    unknown = set(table) - _KEYS
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(_KEYS))})")
    business = table.get("business_id")
    if not isinstance(business, int) or isinstance(business, bool) or business < 1:
        raise SettingsError(f"{where}: business_id must be a positive integer, got {business!r}")
    campaigns, fby = table.get("campaigns", []), table.get("fby_campaigns", [])
    for key, value in (("campaigns", campaigns), ("fby_campaigns", fby)):
        if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                                                  for c in value):
            raise SettingsError(f"{where}: {key} must be a list of positive integers, got {value!r}")
    mode = _choice(table.get("mode"), f"{where}: mode", MODES, "v2")
    tier = _choice(table.get("subscription"), f"{where}: subscription", SUBSCRIPTIONS, "basic")
    kind = _choice(table.get("token_kind"), f"{where}: token_kind", TOKEN_KINDS, "api-key")
    token_env, token_file = table.get("token_env"), table.get("token_file")
    if (token_env is None) == (token_file is None):
        raise SettingsError(f"{where}: set exactly one of token_env and token_file")
    if token_env is not None:
        if not isinstance(token_env, str) or not token_env.strip():
            raise SettingsError(f"{where}: token_env must name an environment variable")
        source = token_env.strip()
        if not env.get(source, "").strip():
            raise SettingsError(f"{where}: environment variable {source} (token_env) is not set")
        token = _secret(env[source], f"{where}: {source}")
    else:
        if not isinstance(token_file, str) or not token_file.strip():
            raise SettingsError(f"{where}: token_file must be a path")
        source = f"file {token_file}"
        try:
            raw = Path(token_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"{where}: cannot read token_file {token_file} ({exc.strerror or exc})") from None
        token = _secret(raw, f"{where}: token_file {token_file}")
    listed = tuple(dict.fromkeys(campaigns + fby))
    groups = check_groups(table.get("warehouse_groups"), f"{where}: warehouse_groups", mode, listed)
    return Cabinet(name, business, _credentials(kind, token, business), mode, tier,
                   listed, tuple(dict.fromkeys(fby)), source, groups)


def _check_unique(cabinets: list[Cabinet], where: str) -> None:
    businesses: dict[int | None, str] = {}
    campaigns: dict[int, str] = {}
    for cabinet in cabinets:
        if cabinet.business_id in businesses:
            raise SettingsError(f"{where}: business {cabinet.business_id} is configured twice "
                                f"({businesses[cabinet.business_id]!r} and {cabinet.name!r})")
        businesses[cabinet.business_id] = cabinet.name
        for campaign in cabinet.campaigns:
            if campaign in campaigns:
                raise SettingsError(f"{where}: campaign {campaign} is listed by two cabinets "
                                    f"({campaigns[campaign]!r} and {cabinet.name!r})")
            campaigns[campaign] = cabinet.name


__all__ = ["Cabinet", "CabinetModeError", "CabinetNotFound", "Cabinets", "check_groups", "from_environment", "load_file",
           "MODES", "SUBSCRIPTIONS"]
