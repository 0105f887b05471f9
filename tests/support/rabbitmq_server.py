"""A private RabbitMQ node for a test: Debian's ``rabbitmq-server`` on free loopback ports.

Never the machine's own node (5672, distribution port 25672): this one has its own node name,
AMQP and distribution ports, config file (the system's rabbitmq.conf names 5672), an empty plugin
list (no management listener on 15672) and its own data folder under /tmp. The server drops to
the ``rabbitmq`` user, so that folder belongs to it (and lies outside pytest's 0700 tmp folders).
It takes about ten seconds to accept connections; ``rabbitmqctl -n NODE stop`` ends it.

Faster, where the machine runs RabbitMQ on 127.0.0.1:5672: :class:`RabbitMQVhost`, a vhost of
the test's own on that server (created, then deleted with everything in it; the server itself is
never stopped). :func:`rabbitmq_broker` picks that one and falls back to a private node.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from ymsync.embedded import free_port


def rabbitmq_missing() -> str | None:
    """Why a private node cannot run here, or None."""
    for tool in ("rabbitmq-server", "rabbitmqctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install rabbitmq-server)"
    try:
        pwd.getpwnam("rabbitmq")
    except KeyError:
        return "there is no rabbitmq user (rabbitmq-server's package creates it)"
    if os.geteuid() != 0:
        return "rabbitmq-server drops to the rabbitmq user, which needs root to start it"
    return None


MACHINE_PORT = 5672


def machine_rabbitmq_missing() -> str | None:
    """Why the machine's RabbitMQ cannot lend a vhost here, or None."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed"
    try:
        socket.create_connection(("127.0.0.1", MACHINE_PORT), timeout=1).close()
    except OSError as exc:
        return f"no RabbitMQ answers on 127.0.0.1:{MACHINE_PORT} ({exc})"
    done = subprocess.run(["rabbitmqctl", "-q", "ping"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return f"rabbitmqctl cannot reach the machine's node: {done.stderr.strip()[:200]}"
    return None


def broker_missing() -> str | None:
    """Why neither a vhost on the machine's RabbitMQ nor a private node is available, or None."""
    machine = machine_rabbitmq_missing()
    private = rabbitmq_missing() if machine else None
    return f"{machine}; and no private node: {private}" if machine and private else None


class RabbitMQVhost:
    """A vhost of this test's own on the machine's RabbitMQ (guest may use it from loopback)."""

    port = MACHINE_PORT

    def __init__(self) -> None:
        self.vhost = f"ymsync-test-{uuid.uuid4().hex[:12]}"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{quote(self.vhost, safe='')}"

    @property
    def logged_url(self) -> str:  # how Celery's banner prints it
        return f"amqp://guest:**@127.0.0.1:{self.port}/{self.vhost}"

    def ctl(self, *args: str) -> str:
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> "RabbitMQVhost":
        self.ctl("add_vhost", self.vhost)
        self.ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        return self

    def stop(self) -> None:
        self.ctl("delete_vhost", self.vhost)  # its queues, exchanges and policies go with it


def rabbitmq_broker() -> "RabbitMQVhost | RabbitMQServer":
    """A started broker for one test module: a vhost on the machine's server, else a private node."""
    if machine_rabbitmq_missing() is None:
        return RabbitMQVhost().start()
    return RabbitMQServer().start()


class RabbitMQServer:
    vhost = "/"

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"ymsynctest{self.port}@localhost"
        self.folder = Path(tempfile.mkdtemp(prefix="ymsync-rabbitmq-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        # guest may log in from loopback only, which is exactly where this node listens.
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def logged_url(self) -> str:
        return f"amqp://guest:**@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        f = self.folder
        return {**os.environ,
                "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(f / "rabbitmq.conf"),
                "RABBITMQ_MNESIA_BASE": str(f / "mnesia"), "RABBITMQ_LOG_BASE": str(f / "log"),
                "RABBITMQ_FEATURE_FLAGS_FILE": str(f / "feature_flags"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(f / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(f / "rabbitmq.pid")}

    def start(self, timeout: float = 90.0) -> "RabbitMQServer":
        (self.folder / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.folder / "enabled_plugins").write_text("[].\n")
        for sub in ("mnesia", "log"):
            (self.folder / sub).mkdir()
        user = pwd.getpwnam("rabbitmq")
        for path in [self.folder, *self.folder.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        return self._launch(timeout)

    def _launch(self, timeout: float) -> "RabbitMQServer":
        # Its own session (so its whole process group can be reaped), no stdin or output of the test's.
        with open(self.folder / "server.out", "ab") as out:
            self.process = subprocess.Popen(["rabbitmq-server"], env=self.env(), stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"rabbitmq-server did not listen on {self.port} within {timeout:g}s: {self.output()}")

    def halt(self) -> None:
        """Stop this node, keeping its data folder (durable queues and their messages)."""
        assert self.process is not None
        self.ctl("stop")
        self.process.wait(60)
        self._reap()

    def _node_pids(self) -> list[int]:
        """This node's Erlang VM (its pid file) and every process under it. As root the server is
        started through ``su``, which gives the VM a session of its own, and erl_child_setup puts
        each port helper (inet_gethost, the disk monitor) in yet another: none of them is in the
        process group of the command this class started, so they are found by ancestry."""
        try:
            beam = int((self.folder / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return []
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        try:  # a stale pid file may name a pid reused since: only this node's VM counts
            if f"RABBITMQ_NODENAME={self.node}".encode() not in Path(f"/proc/{beam}/environ").read_bytes().split(b"\0"):
                return []
        except OSError:
            return []
        found, frontier = [beam], [beam]
        while frontier:
            children = [pid for pid, parent in parents.items() if parent in frontier]
            found += children
            frontier = children
        return found

    def crash(self) -> None:
        """SIGKILL this node's VM and its helpers (a crash: nothing is flushed), keeping its data folder."""
        pids = self._node_pids()
        assert pids, "no running node found by its pid file"
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        assert self.process is not None
        self.process.wait(30)
        self._reap()

    def _reap(self) -> None:
        """Kill whatever is left of this node: the wrapper's process group, and the VM with every
        process under it (found through the pid file), so nothing of it outlives the test or holds
        its port."""
        assert self.process is not None
        for pid in self._node_pids():
            try:
                os.kill(pid, 9)  # this node's own processes, found by ancestry from its pid file
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.process.pid, 9)  # the session this node was started in, and nothing else
        except ProcessLookupError:
            pass

    def start_again(self, timeout: float = 90.0) -> "RabbitMQServer":
        """After :meth:`halt`: the same node on the same ports and data folder."""
        return self._launch(timeout)

    def restart(self, timeout: float = 90.0) -> "RabbitMQServer":
        self.halt()
        return self._launch(timeout)

    def ctl(self, *args: str) -> str:
        # Its own session: on a timeout the whole rabbitmqctl (a shell wrapper around an Erlang VM)
        # is killed, not just the wrapper, whose VM would otherwise keep running with our pipes.
        ctl = subprocess.Popen(["rabbitmqctl", "-n", self.node, "-q", *args], env=self.env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = ctl.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ctl.pid, 9)
            ctl.communicate()
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: no answer within 60 s") from None
        if ctl.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.strip()}")
        return out

    def output(self) -> str:
        try:
            return (self.folder / "server.out").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.ctl("stop")
                self.process.wait(30)
            except (RuntimeError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, 9)  # this node's own process group only
                self.process.wait(10)
        if self.process is not None:
            self._reap()
        shutil.rmtree(self.folder, ignore_errors=True)
