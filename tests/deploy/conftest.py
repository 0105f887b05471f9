"""The deployment suite runs only on request: it needs a Docker engine and builds the image."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("YM_TEST_DOCKER") == "1":
        return
    skip = pytest.mark.skip(reason="the deployment test drives a real Docker engine: set YM_TEST_DOCKER=1 to run it")
    for item in items:
        if item.get_closest_marker("deploy"):
            item.add_marker(skip)
