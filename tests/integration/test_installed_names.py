"""What ``pip install`` puts into site-packages, and a shop's own ``tasks`` module beside ymsync.

The repository keeps Celery's tutorial layout (``tasks/``, ``celeryconfig.py``), but installs it
as ``ymsync_celery.tasks`` and ``ymsync_celery.celeryconfig``: a top-level ``tasks`` module of the
shop's (the layout of many Celery tutorials) in the folder ymsync runs from must not shadow ymsync's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.support.processes import ROOT, wait_for
from ymsync.sandbox import MarketSandbox, SandboxConfig
from ymsync.config.settings import child_environ

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent

SHOP_MODULE = 'raise RuntimeError("the shop\'s own {name} module was imported by ymsync")\n'


def test_every_ymsync_package_is_listed_for_installation():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ymsync").rglob("__init__.py")}
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"


def test_wheel_holds_no_top_level_tasks_or_celeryconfig(tmp_path):
    # Build from the files the Dockerfile copies, as the image does (never in the checkout itself).
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "celeryconfig.py"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("ymsync", "tasks", "workers"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("ymsync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"ymsync", "ymsync_celery"}, tops
    assert {"ymsync_celery/celeryconfig.py", "ymsync_celery/tasks/__init__.py", "ymsync_celery/tasks/consumer.py",
            "ymsync_celery/tasks/flower.py", "ymsync_celery/tasks/stocks.py"} <= set(names)
    # The launch profiles README and `ymsync worker` point to are installed too.
    assert {"ymsync_celery/workers/stocks.sh", "ymsync_celery/workers/reports.sh"} <= set(names)


def test_a_shops_own_tasks_module_does_not_break_the_ymsync_command(tmp_path, redis_server, clean_redis):
    """From a shop folder with its own tasks.py and celeryconfig.py: `ymsync report ... --wait`
    queues the report, workers/reports.sh (started in that folder too) generates and downloads it."""
    shop = tmp_path / "shop"
    shop.mkdir()
    for name in ("tasks", "celeryconfig"):
        (shop / f"{name}.py").write_text(SHOP_MODULE.format(name=name))
    with MarketSandbox(config=SandboxConfig(report_delay_s=0.2)) as market:
        market.state.plant(5, {"SHOP-1": 3, "SHOP-2": 0})
        env = child_environ({"REDIS_URL": redis_server.url, "YM_API_URL": market.url, "YM_API_KEY": "sandbox-token",
                             "YM_REPORTS_DIR": str(tmp_path / "reports"), "YM_REPORTS_CONCURRENCY": "1",
                             "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"})
        log = open(tmp_path / "worker.log", "wb")
        worker = subprocess.Popen(["sh", str(ROOT / "workers" / "reports.sh"), "--without-gossip", "--without-mingle"],
                                  cwd=shop, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: b"ready." in (tmp_path / "worker.log").read_bytes() or worker.poll() is not None,
                     90, "the reports worker to start")
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            done = subprocess.run([str(BIN / "ymsync"), "report", "stocks-on-warehouses", "--campaign", "5",
                                   "--format", "CSV", "--wait", "--timeout", "90"],
                                  cwd=shop, env=env, capture_output=True, text=True, timeout=120)
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(30)
            log.close()
    worker_log = (tmp_path / "worker.log").read_text()
    assert "shop's own" not in done.stderr + worker_log
    assert done.returncode == 0, done.stdout + done.stderr + worker_log
    assert "queued report job" in done.stdout
    report = Path(done.stdout.strip().splitlines()[-2])
    assert report.is_file() and report.is_relative_to(tmp_path / "reports"), done.stdout
