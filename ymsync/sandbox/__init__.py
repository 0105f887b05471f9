"""A local Market: a real HTTP server emulating the Partner API methods ymsync drives.

Use it from tests (``with MarketSandbox(config=...) as market: market.url``) or run it with
``ymsync sandbox``. It needs nothing outside this package at run time.
"""

from ymsync.sandbox.server import MarketSandbox
from ymsync.sandbox.state import DEFAULT_QUOTAS, CampaignConfig, Faults, SandboxConfig

__all__ = ["DEFAULT_QUOTAS", "CampaignConfig", "Faults", "MarketSandbox", "SandboxConfig"]
