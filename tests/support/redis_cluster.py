"""A private Redis Cluster for tests: 3 masters and 3 replicas on free loopback ports.

Started once per session (``redis_cluster`` fixture). ``cluster-node-timeout`` is 1 s (Redis's
default is 15 s), so a SIGKILLed master's replica takes over within a few seconds. A test that
kills a master restarts it afterwards (:meth:`RedisCluster.restart`): it rejoins as a replica,
and every master has one again before the next test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from tests.support.processes import wait_for
from ymsync.embedded import free_port, redis_binary, stop_process

NODE_TIMEOUT_MS = 1000


class RedisCluster:
    def __init__(self, nodes: int = 6, node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        # The benchmark (bench/cluster.py) asks for a longer timeout: a busy 2-core machine must
        # not fail a node over in the middle of a throughput measurement.
        self.node_timeout_ms = node_timeout_ms
        self.folder = Path(tempfile.mkdtemp(prefix="ymsync-cluster-"))
        self.ports = [free_port() for _ in range(nodes)]
        self.bus = {port: free_port() for port in self.ports}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Any one node: the client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def _spawn(self, port: int) -> None:
        folder = self.folder / str(port)
        folder.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [redis_binary(), "--port", str(port), "--cluster-port", str(self.bus[port]), "--bind", "127.0.0.1",
             "--dir", str(folder), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms), "--cluster-replica-validity-factor", "0",
             "--repl-diskless-sync-delay", "0",
             "--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: self._answers(port), 10, f"cluster node {port} to start")

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self) -> "RedisCluster":
        for port in self.ports:
            self._spawn(port)
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_healthy()
        return self

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def info(self, port: int, section: str) -> dict:
        return self.node(port).info(section)

    def wait_healthy(self, timeout: float = 30) -> None:
        """Every live node says the cluster is ok and every master has a connected replica."""
        def healthy() -> bool:
            try:
                for port in self.live():
                    if b"cluster_state:ok" not in self.node(port).execute_command("CLUSTER", "INFO"):
                        return False
                masters = [p for p in self.live() if self.info(p, "replication")["role"] == "master"]
                return len(masters) == 3 and all(self._replica_online(self.info(p, "replication")) for p in masters)
            except redis.RedisError:
                return False
        wait_for(healthy, timeout, "the Redis Cluster to be healthy (3 masters, each with a replica)", interval=0.1)

    @staticmethod
    def _replica_online(info: dict) -> bool:
        """A replica past its initial sync (a connected one may still be waiting for it)."""
        return any(isinstance(v, dict) and v.get("state") == "online" for k, v in info.items() if k.startswith("slave"))

    def live(self) -> list[int]:
        return [p for p, proc in self.processes.items() if proc.poll() is None]

    def master_of(self, key: str) -> int:
        slot = self.node(self.live()[0]).execute_command("CLUSTER", "KEYSLOT", key)
        for port in self.live():
            if self.info(port, "replication")["role"] == "master" and self._serves(self.node(port), slot):
                return port
        raise AssertionError(f"no master serves {key!r}")

    @staticmethod
    def _serves(node: redis.Redis, slot: int) -> bool:
        myself = next(line for line in node.execute_command("CLUSTER", "NODES").decode().splitlines() if "myself" in line)
        for part in myself.split()[8:]:
            low, _, high = part.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return True
        return False

    def replica_of(self, master: int) -> int:
        for port in self.live():
            info = self.info(port, "replication")
            if info["role"] == "slave" and int(info["master_port"]) == master:
                return port
        raise AssertionError(f"master {master} has no replica")

    def kill(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGKILL)
        self.processes[port].wait()

    def failed_over(self, victim: int, key: str) -> bool:
        """The cluster is whole again and ``key``'s slot is served by a node other than ``victim``."""
        try:
            return b"cluster_state:ok" in self.node(self.live()[0]).execute_command("CLUSTER", "INFO") and \
                self.master_of(key) != victim
        except Exception:
            return False

    def pause(self, port: int) -> None:
        os.kill(self.processes[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self.processes[port].pid, signal.SIGCONT)

    def restart(self, port: int) -> None:
        """A killed node back on its port with its nodes.conf: it rejoins as a replica."""
        self._spawn(port)
        self.wait_healthy()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    process.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
            stop_process(process)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is needed to create a Redis Cluster")
    cluster = RedisCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def flush_cluster(cluster: RedisCluster) -> None:
    for port in cluster.live():
        if cluster.info(port, "replication")["role"] == "master":
            cluster.node(port).flushall()
