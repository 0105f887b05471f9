"""`ymsync status` piped (a log, grep, watch): names and reasons come out whole, not cut at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.integration


def test_status_piped_prints_full_target_names(redis_server, clean_redis) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "COLUMNS"}, "REDIS_URL": redis_server.url,
           "YM_API_KEY": "t0k3n"}
    pushed = subprocess.run([sys.executable, "-c", "import ymsync; ymsync.push_stocks(123456789, "
                             "[{'sku': f'S{i}', 'count': i} for i in range(1234)])"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert pushed.returncode == 0, pushed.stderr
    shown = subprocess.run([sys.executable, "-m", "ymsync.cli", "status"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    [row] = [line for line in shown.stdout.splitlines() if "campaign" in line]
    assert row.split()[:2] == ["campaign=123456789", "1234"], shown.stdout
