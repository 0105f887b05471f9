"""The demo's Market: one v2 cabinet beside one v3 cabinet, and the cabinets file that names them.

* ``shop-v2``: business 100 with warehouse groups (so it stays on the campaign-level methods),
  campaigns 1001 and 1002 (FBS), whose warehouses form one group: one stock, seen through both,
  which ymsync pushes as one target (``g1001``) through one of them.
* ``shop-v3``: business 200 without groups, two warehouses of its own (201, 202), stock pushed
  by (warehouse, SKU) through the business-level (v3) methods.

The cabinets file is what an ops person would write: tokens are never in it, the v2 cabinet's
comes from a variable (``token_env``), the v3 one's from a secrets file (``token_file``). Both
hold the sandbox's one token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ymsync.sandbox import CampaignConfig
from ymsync.sandbox.business_state import BusinessConfig, WarehouseConfig

CAMPAIGNS = (1001, 1002)
GROUPS = (CAMPAIGNS,)  # the v2 cabinet's warehouse group: both campaigns share one stock
V2_BUSINESS = 100
BUSINESS = 200  # the v3 cabinet
WAREHOUSES = (201, 202)
WAREHOUSE_NAMES = {201: "Москва", 202: "Казань"}
TOKEN_ENV = "YM_DEMO_V2_TOKEN"

CABINETS_TOML = """\
# The sandbox's cabinets (ymsync demo / ymsync dev write this file; YM_CABINETS_FILE names it).
[cabinets.shop-v2]
business_id = {v2}
mode = "v2"            # warehouse groups: campaign-level stock methods
campaigns = [{campaigns}]
warehouse_groups = [[{campaigns}]]  # one stock behind both campaigns: pushed once, through one
token_env = "{token_env}"

[cabinets.shop-v3]
business_id = {v3}
mode = "v3"            # no warehouse groups: business-level stock methods, by warehouse
token_file = {token_file}
"""


def sandbox_campaigns() -> tuple[CampaignConfig, ...]:
    return tuple(CampaignConfig(c, V2_BUSINESS, "FBS") for c in CAMPAIGNS)


def sandbox_groups() -> tuple[tuple[int, ...], ...]:
    return GROUPS


def sandbox_businesses() -> tuple[BusinessConfig, ...]:
    v2 = BusinessConfig(V2_BUSINESS, (WarehouseConfig(101, "Группа складов"),), groups=True)
    v3 = BusinessConfig(BUSINESS, tuple(WarehouseConfig(w, WAREHOUSE_NAMES[w]) for w in WAREHOUSES))
    return v2, v3


def write_cabinets(folder: Path, token: str, token_env: str = TOKEN_ENV) -> Path:
    """The cabinets file and the v3 cabinet's token file (mode 0600) in ``folder``; the file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "shop-v3.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    path = folder / "cabinets.toml"
    path.write_text(CABINETS_TOML.format(v2=V2_BUSINESS, campaigns=", ".join(map(str, CAMPAIGNS)),
                                         token_env=token_env, v3=BUSINESS,
                                         token_file=json.dumps(str(token_file))))
    return path


__all__ = ["BUSINESS", "CAMPAIGNS", "GROUPS", "TOKEN_ENV", "V2_BUSINESS", "WAREHOUSES", "WAREHOUSE_NAMES",
           "sandbox_businesses", "sandbox_campaigns", "sandbox_groups", "write_cabinets"]
