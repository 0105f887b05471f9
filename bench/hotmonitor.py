"""Benchmark 13's diagnostic run: which process sends which Redis commands, seen through MONITOR.

``INFO commandstats`` also counts the commands Lua scripts call, so it cannot say which commands
cost a round trip. MONITOR shows every command as the server runs it, marked ``[0 lua]`` when a
script called it and ``[0 ADDR]`` (the client's address) otherwise; the address's port leads to
the socket's inode (``/proc/net/tcp``) and so to the process holding it (``/proc/PID/fd``).
MONITOR costs the server time (it formats every command with its arguments for the watcher), so
this run's rate and CPU are not reported: only its counts per updateStocks request.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from pathlib import Path

import redis

END_MARK = b"ymsync-bench-hotmonitor-end"  # an ECHO the driver sends when the run ends: counting stops there
LUA = "lua"


class CommandMonitor:
    """Counts (client address or ``lua``, command) over a MONITOR connection, in a thread."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        kwargs = client.connection_pool.connection_kwargs
        self.host, self.port = str(kwargs["host"]), int(kwargs["port"])
        self.counts: Counter[tuple[str, str]] = Counter()
        self.owners: dict[str, str] = {}  # client address -> which process
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hot-monitor", daemon=True)
        self._sock: socket.socket | None = None

    def start(self, pids: dict[str, list[int]]) -> None:
        self._sock = socket.create_connection((self.host, self.port))
        self._sock.sendall(b"MONITOR\r\n")
        assert self._sock.recv(5) == b"+OK\r\n"
        self._thread.start()

    def stop(self, pids: dict[str, list[int]]) -> None:
        self.owners = client_owners(self.port, _labels(pids))  # while every process still holds its sockets
        self.client.echo(END_MARK)
        self._ended.wait(60)
        assert self._sock is not None
        self._sock.close()

    def _watch(self) -> None:
        assert self._sock is not None
        rest = b""
        while True:
            data = self._sock.recv(1 << 20)
            if not data:
                return
            *lines, rest = (rest + data).split(b"\r\n")
            for line in lines:
                # +1733480000.123456 [0 127.0.0.1:54321] "evalsha" "…" …   or   … [0 lua] "hget" …
                head, _, tail = line.partition(b"] ")
                who = head.rpartition(b" ")[2].decode()
                command = tail[1:tail.find(b'"', 1)].decode().lower()
                if command == "echo" and END_MARK in tail:
                    self._ended.set()
                    return
                if command:
                    self.counts[(who, command)] += 1

    def summary(self, requests: int) -> dict[str, dict[str, float]]:
        """{who: {command: calls per request}}; who: ``lua`` or the owning process's label."""
        out: dict[str, Counter[str]] = {}
        for (who, command), n in self.counts.items():
            label = LUA if who == LUA else self.owners.get(who, "a connection closed before the end")
            out.setdefault(label, Counter())[command] += n
        return {label: {c: n / requests for c, n in calls.most_common()} for label, calls in out.items()}


def _labels(pids: dict[str, list[int]]) -> dict[int, str]:
    labels = {os.getpid(): "the bench driver"}
    for pid in pids.get("producer", []):
        labels[pid] = "producer"
    workers = pids.get("workers", [])
    for pid in workers[1:]:
        labels[pid] = "worker pool processes"
    if workers:
        labels[workers[0]] = "worker main process (consumer, scheduler threads)"
    return labels


def client_owners(server_port: int, labels: dict[int, str]) -> dict[str, str]:
    """``{"127.0.0.1:PORT": label}`` for every connection to ``server_port`` a labelled process holds."""
    inode_label: dict[str, str] = {}
    for pid, label in labels.items():
        fds = Path(f"/proc/{pid}/fd")
        try:
            for fd in fds.iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inode_label[target[8:-1]] = label
        except OSError:
            continue  # the process ended
    owners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(remote.rsplit(":", 1)[1], 16) == server_port and inode in inode_label:
                owners[f"127.0.0.1:{int(local.rsplit(':', 1)[1], 16)}"] = inode_label[inode]
    return owners


def describe(summary: dict[str, dict[str, float]], top: int = 4) -> str:
    """``producer 3.1 (EVALSHA 3.0, …); …`` by process, most commands first; script calls last."""
    parts = []
    for label, calls in sorted(summary.items(), key=lambda kv: (kv[0] == LUA, -sum(kv[1].values()))):
        name = "called by Lua scripts (no round trip)" if label == LUA else label
        listed = ", ".join(f"{c.upper()} {n:.2f}" for c, n in list(calls.items())[:top])
        parts.append(f"{name} {sum(calls.values()):.2f} ({listed})")
    return "; ".join(parts)
