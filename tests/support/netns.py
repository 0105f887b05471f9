"""Worker hosts in network namespaces: the partition tests' network (root only).

The test's own (root) namespace is the infrastructure host. Two bridges live there, each with one
address of a private /24 that nothing else on the machine uses: ``infra`` (Redis: state and
broker) and ``market`` (the sandbox). Every worker host is a namespace ``ymt-<pid>-<tag>-<n>``
with one veth pair to each bridge, so a test can cut a host off entirely (both links down) or
cut only its path to the Market (the ``market`` link down) while Redis stays reachable. A link
is cut on its root side: the host's end stays up and keeps its routes, so packets are dropped
silently, as on a real partition (timeouts, never a quick "unreachable").

Cleanup runs in :meth:`Network.close` (the fixture's finalizer) and, for runs that were killed
before it could, :func:`sweep_leftovers` deletes namespaces and bridges whose creating process
is gone (the pid is in the namespace name and in each bridge's alias).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import CeleryWorker
from tests.support.redis_server import free_port, redis_binary

PREFIX = "ymt-"
LOCK = "/tmp/ymsync-test-netns.lock"
# 10.231.N.0/24 (infra) and 10.232.N.0/24 (market); N is picked per network among unused ones.
INFRA_NET, MARKET_NET = "10.231", "10.232"


def unavailable() -> str | None:
    """Why namespaces cannot be used here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("ss") is None:
        return "no `ip` or `ss` command (iproute2)"
    probe = f"{PREFIX}probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str, ns: str | None = None) -> str:
    cmd = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def sweep_leftovers() -> None:
    """Delete namespaces and bridges left by test runs whose process is gone (a SIGKILLed pytest)."""
    for line in ip("netns", "list").splitlines():
        match = re.match(rf"{PREFIX}(\d+)-\S+", line)
        if match and not _alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", match.group(0)], capture_output=True)
    for link in json.loads(ip("-j", "link", "show")):
        match = re.fullmatch(r"ymt-(\d+)", link.get("ifalias") or "")
        if match and not _alive(int(match.group(1))):
            subprocess.run(["ip", "link", "del", link["ifname"]], capture_output=True)


def _free_subnet() -> int:
    used = ip("-4", "addr", "show") + ip("-4", "route", "show")
    free = [n for n in range(1, 255) if f"{INFRA_NET}.{n}." not in used and f"{MARKET_NET}.{n}." not in used]
    if not free:
        raise RuntimeError("no free 10.231.N.0/24 subnet")
    return random.choice(free)


@dataclass
class Host:
    name: str  # the namespace
    index: int
    infra_ip: str
    market_ip: str
    infra_link: str  # root-side veth ends: what a cut takes down
    market_link: str


@dataclass
class Network:
    """Bridges, hosts and their links; :meth:`close` removes them all (safe to call twice)."""

    hosts: list[Host] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    infra_ip: str = ""
    market_ip: str = ""

    @classmethod
    def create(cls, hosts: int) -> "Network":
        net = cls()
        tag = uuid.uuid4().hex[:6]
        try:
            # One creator at a time (pytest-xdist runs cases side by side): a subnet is free until
            # its bridge holds it.
            with open(LOCK, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                sweep_leftovers()
                n = _free_subnet()
                net.infra_ip, net.market_ip = f"{INFRA_NET}.{n}.1", f"{MARKET_NET}.{n}.1"
                for role, address in (("b", net.infra_ip), ("m", net.market_ip)):
                    bridge = f"ymt{role}{tag}"
                    ip("link", "add", bridge, "type", "bridge")
                    net.bridges.append(bridge)
                    ip("link", "set", "dev", bridge, "alias", f"ymt-{os.getpid()}")
                    ip("addr", "add", f"{address}/24", "dev", bridge)
                    ip("link", "set", bridge, "up")
            for k in range(hosts):
                name = f"{PREFIX}{os.getpid()}-{tag}-{k}"
                ip("netns", "add", name)
                host = Host(name, k, f"{INFRA_NET}.{n}.{10 + k}", f"{MARKET_NET}.{n}.{10 + k}",
                            f"ymtv{tag}{k}", f"ymtw{tag}{k}")
                net.hosts.append(host)
                ip("link", "set", "lo", "up", ns=name)
                for link, inner, bridge, address in ((host.infra_link, "eth0", net.bridges[0], host.infra_ip),
                                                     (host.market_link, "eth1", net.bridges[1], host.market_ip)):
                    ip("link", "add", link, "type", "veth", "peer", "name", inner, "netns", name)
                    ip("link", "set", "dev", link, "alias", f"ymt-{os.getpid()}")  # for the sweep, as bridges
                    ip("link", "set", link, "master", bridge, "up")
                    ip("addr", "add", f"{address}/24", "dev", inner, ns=name)
                    ip("link", "set", inner, "up", ns=name)
        except BaseException:
            net.close()
            raise
        return net

    def cut(self, host: Host, market_only: bool = False) -> None:
        """Take the host's links down on the root side: its packets are dropped, not refused."""
        for link in ([] if market_only else [host.infra_link]) + [host.market_link]:
            ip("link", "set", link, "down")

    def heal(self, host: Host) -> None:
        for link in (host.infra_link, host.market_link):
            ip("link", "set", link, "up")

    def close(self) -> None:
        # The root-side ends first: a namespace outlives its name while a process is still in it
        # (a worker that could not be killed), and its veth pairs would stay with it.
        for host in self.hosts:
            for link in (host.infra_link, host.market_link):
                subprocess.run(["ip", "link", "del", link], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
        for bridge in self.bridges:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        self.hosts, self.bridges = [], []


class BoundRedis:
    """A private redis-server listening on the infra bridge's address only (the hosts reach it)."""

    def __init__(self, address: str, directory: Path) -> None:
        self.address, self.dir, self.port = address, directory, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def start(self) -> "BoundRedis":
        import redis

        from tests.support.processes import wait_for

        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", self.address, "--dir", str(self.dir), "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def up() -> bool:
            assert self.process.poll() is None, f"redis-server exited with {self.process.returncode}"
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_for(up, 10, f"redis-server on {self.address}:{self.port}")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_worker_in(bench, host: Host, name: str, concurrency: int = 2, **env: str) -> CeleryWorker:
    """``bench.start_worker`` inside ``host``'s namespace (``ip netns exec`` execs the worker, so the
    process, and its process group, are the worker's own: ``kill`` works unchanged)."""
    worker = CeleryWorker(bench.env(**env), concurrency=concurrency, name=name,
                          log_path=bench.tmp_path / f"{name}.log")
    worker.args = ["ip", "netns", "exec", host.name, *worker.args]
    worker.start()
    bench.workers.append(worker)
    return worker
