"""Where the official Market OpenAPI description is, for the contract tests and the sandbox's test mode.

``YM_OPENAPI_SPEC`` names openapi.yaml; otherwise it is looked for beside the project, as the
project's shared folder lays it out (``../shared/market-openapi/openapi/openapi.yaml``).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.processes import ROOT


def spec_path() -> Path:
    return Path(os.environ.get("YM_OPENAPI_SPEC") or ROOT / "../shared/market-openapi/openapi/openapi.yaml").resolve()


def spec_check_missing() -> str | None:
    """Why the sandbox's test mode cannot run here (no description, no test dependencies), or None."""
    if not spec_path().is_file():
        return f"official Market OpenAPI description not found at {spec_path()} (set YM_OPENAPI_SPEC)"
    try:
        import fastjsonschema  # noqa: F401
        import openapi_core  # noqa: F401
    except ImportError as exc:
        return f"the sandbox's spec check needs the test dependencies (pip install -e '.[test]'): {exc}"
    return None


def spec_variables() -> dict[str, str]:
    """The sandbox test mode's variables (set by tests/conftest.py), for a child process started
    with a scrubbed environment (the demo)."""
    return {name: os.environ[name] for name in ("YM_SANDBOX_SPEC_CHECK", "YM_SANDBOX_SPEC_VIOLATIONS")
            if name in os.environ}
