"""A compose project of docker-compose.yml for the deployment test: its own name, .env and ports.

Works with Compose v2 (``docker compose``) and v1.29 (``docker-compose``); ``YM_TEST_COMPOSE``
names another command. Nothing here reads the developer's ``.env``: the project gets its own
file (``--env-file``) with fresh secrets and free host ports, and a clean environment.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import requests

from tests.support.processes import ROOT
from ymsync.embedded import free_port

COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose_command() -> list[str]:
    if os.environ.get("YM_TEST_COMPOSE"):
        return shlex.split(os.environ["YM_TEST_COMPOSE"])
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


def build_image(tag: str = "ymsync:local") -> float:
    """``docker build`` of the repository; extra arguments from YM_TEST_DOCKER_BUILD_ARGS (e.g.
    ``--network host`` where pip only has the host's route). Returns the seconds it took."""
    started = time.monotonic()
    extra = shlex.split(os.environ.get("YM_TEST_DOCKER_BUILD_ARGS", ""))
    done = subprocess.run(["docker", "build", *extra, "-t", tag, str(ROOT)], capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"docker build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


class Stack:
    def __init__(self, folder: Path, **settings: str) -> None:
        self.folder = folder
        self.project = f"ymsyncdeploy{os.getpid()}"
        self.redis_password = secrets.token_hex(16)
        self.flower_auth = ("admin", secrets.token_hex(12))
        self.ports = {name: free_port() for name in ("REDIS_PORT", "SANDBOX_PORT", "FLOWER_HOST_PORT",
                                                      "METRICS_HOST_PORT")}
        self.env_file = folder / "deploy.env"
        example = (ROOT / ".env.example").read_text().splitlines()
        self.values = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in example
                       if line and not line.startswith("#") and "=" in line}
        self.values.update({"COMPOSE_PROJECT_NAME": self.project, "REDIS_PASSWORD": self.redis_password,
                            "FLOWER_BASIC_AUTH": ":".join(self.flower_auth),
                            **{k: str(v) for k, v in self.ports.items()}, **settings})
        self.write_env()
        self.command = compose_command()

    def write_env(self) -> None:
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))

    def set(self, **values: str) -> None:
        self.values.update(values)
        self.write_env()

    # --- running compose ----------------------------------------------------------------------

    def environ(self) -> dict[str, str]:
        # Nothing of the caller's shell that compose would interpolate instead of the env file.
        return {k: v for k, v in os.environ.items() if k not in self.values and not k.startswith(("YM_", "CELERY_"))}

    def compose(self, *args: str, input: bytes | None = None, check: bool = True,
                timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([*self.command, "-p", self.project, "-f", str(COMPOSE_FILE),
                               "--env-file", str(self.env_file), *args],
                              cwd=ROOT, env=self.environ(), input=input, capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout.decode(errors='replace')[-3000:]}\n{done.stderr.decode(errors='replace')[-3000:]}")
        return done

    def exec(self, service: str, *args: str, input: bytes | None = None, check: bool = True,
             timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        return self.compose("exec", "-T", service, *args, input=input, check=check, timeout=timeout)

    def containers(self, service: str | None = None) -> list[dict[str, str]]:
        """Running containers of the project (name, service, state, health, and how often the
        engine restarted it under its restart policy) from the engine itself."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = subprocess.run(["docker", "ps", "-q", *filters], capture_output=True, text=True, check=True).stdout.split()
        if not ids:
            return []
        data = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)
        return [{"id": c["Id"], "name": c["Name"].lstrip("/"), "service": c["Config"]["Labels"]["com.docker.compose.service"],
                 "state": c["State"]["Status"], "health": (c["State"].get("Health") or {}).get("Status", "none"),
                 "restarts": c.get("RestartCount", 0)}
                for c in data]

    def wait_healthy(self, expected: dict[str, int], timeout: float = 300) -> list[dict[str, str]]:
        """Until each service runs ``expected[service]`` containers, all healthy (or running
        where the service has no healthcheck)."""
        deadline = time.monotonic() + timeout
        while True:
            running = self.containers()
            counts = {s: sum(1 for c in running if c["service"] == s and c["state"] == "running"
                             and c["health"] in ("healthy", "none")) for s in expected}
            if counts == expected and all(sum(1 for c in running if c["service"] == s) == n for s, n in expected.items()):
                return running
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy after {timeout:g}s: want {expected}, have "
                                     f"{[(c['service'], c['state'], c['health']) for c in running]}")
            time.sleep(2)

    # --- the host's view ----------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.redis_password}@127.0.0.1:{self.ports['REDIS_PORT']}/0"

    def url(self, port_name: str) -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}"

    def sandbox_stocks(self, campaign: int) -> dict[str, int]:
        data = requests.get(f"{self.url('SANDBOX_PORT')}/_admin/stocks/{campaign}", timeout=30).json()
        return {sku: v["count"] for sku, v in data.items()}

    def status(self, campaign: int) -> dict[str, int]:
        out = self.exec("worker-stocks", "ymsync", "status", "--campaign", str(campaign), "--json").stdout
        return json.loads(out)[0]

    def down(self) -> None:
        self.compose("--profile", "metrics", "down", "--volumes", "--remove-orphans", check=False, timeout=300)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 1.0) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (requests.RequestException, AssertionError, json.JSONDecodeError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
