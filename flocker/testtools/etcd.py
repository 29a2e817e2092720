"""A real etcd cluster on loopback for tests: `EtcdCluster`.

Each member is a real ``etcd`` process (Debian's ``etcd-server``, 3.4) with
its own data directory under the test's directory and its own client and
peer ports, picked free on 127.0.0.1 when the cluster is made — never a
fixed port, so tests do not collide with a system etcd or with each other.

A member killed with `EtcdCluster.kill_member` (SIGKILL) keeps its data
directory and ports; `EtcdCluster.start_member` starts it again and it
rejoins the cluster from its data.  `EtcdCluster.stop` kills every member
it started and is safe to call twice; the members also die with the test
process (``PR_SET_PDEATHSIG``), so an interrupted run leaves none behind.

Members start with the same command line and environment as a local
cluster's (`flocker.testtools.lab_etcd`).  The methods block (they start
processes and poll ``/health``); call them from fixtures and tests, not
from product code.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from .lab_etcd import healthy, member_command, member_environment

__all__ = ["EtcdCluster", "EtcdNotAvailable", "etcd_available", "free_port"]

#: How long a cluster (or a restarted member) may take to become healthy.
START_TIMEOUT = 30.0

class EtcdNotAvailable(Exception):
    """No usable ``etcd`` binary on this machine."""


def etcd_available() -> str | None:
    """``None`` if an ``etcd`` binary is installed, else why not (a skip reason)."""
    if shutil.which("etcd") is None:
        return "etcd is not installed (apt-get install etcd-server)"
    return None


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    return _free_ports(1)[0]


def _free_ports(n: int) -> list[int]:
    """``n`` different TCP ports nothing listens on at 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class _PortTaken(Exception):
    """A member could not listen: another process took its port meanwhile."""


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the test process dies."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


class _Member:
    """One member's name, ports, directory and (while running) process."""

    def __init__(
        self, name: str, directory: Path, client_port: int, peer_port: int
    ) -> None:
        self.name = name
        self.directory = directory
        self.client_port = client_port
        self.peer_port = peer_port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def log(self) -> Path:
        return self.directory / "etcd.log"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class EtcdCluster:
    """
    A running etcd cluster of ``members`` real processes on 127.0.0.1.

    If another process takes one of the ports picked before a member
    listens on it, the cluster is started again on other ports.

    :ivar endpoints: each member's client URL (``http://127.0.0.1:PORT``),
        in member order, whether it is running or not.
    :ivar url: the ``etcd://host:port,…`` form of all the endpoints, as
        ``flocker-control --store`` takes it.
    """

    def __init__(self, directory: Path | str, members: int = 1) -> None:
        """Start the members and wait until every one is healthy."""
        if members < 1:
            raise ValueError("an etcd cluster needs at least one member")
        problem = etcd_available()
        if problem is not None:
            raise EtcdNotAvailable(problem)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._members: list[_Member] = []
        for attempt in range(self.START_ATTEMPTS):
            ports = _free_ports(2 * members)
            self._members = [
                _Member(
                    f"m{i}",
                    self.directory / f"{attempt}-m{i}",
                    ports[2 * i],
                    ports[2 * i + 1],
                )
                for i in range(members)
            ]
            self._initial_cluster = ",".join(
                f"{m.name}={m.peer_url}" for m in self._members
            )
            try:
                for i in range(members):
                    self._spawn(i)
                self._wait_healthy(range(members))
                return
            except _PortTaken:
                self.stop()
                if attempt == self.START_ATTEMPTS - 1:
                    raise
            except BaseException:
                self.stop()
                raise

    #: How many times to pick ports and start, when ports were taken.
    START_ATTEMPTS = 3

    @property
    def endpoints(self) -> list[str]:
        """Every member's client URL, in member order."""
        return [m.client_url for m in self._members]

    @property
    def url(self) -> str:
        """``etcd://127.0.0.1:P1,127.0.0.1:P2,…``: every member's client address."""
        return "etcd://" + ",".join(f"127.0.0.1:{m.client_port}" for m in self._members)

    def _spawn(self, i: int) -> None:
        member = self._members[i]
        member.directory.mkdir(parents=True, exist_ok=True)
        args = member_command(
            member.name,
            str(member.directory / "data"),
            member.client_url,
            member.peer_url,
            self._initial_cluster,
            f"flocker-test-{os.getpid()}-{id(self)}",
            str(member.log),
        )
        member.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=member_environment(),
            preexec_fn=_die_with_parent,
        )

    def _wait_healthy(self, indexes: Iterable[int]) -> None:
        """Wait until the given members are healthy; fail if any exits."""
        waiting = [self._members[i] for i in indexes]
        deadline = time.monotonic() + START_TIMEOUT
        while waiting:
            waiting = [m for m in waiting if not healthy(m.client_url)]
            for member in self._members:
                process = member.process
                if process is None or process.poll() is None:
                    continue
                if "address already in use" in member.log_tail(50):
                    raise _PortTaken(member.name)
                raise RuntimeError(
                    f"etcd member {member.name} exited with {process.returncode} "
                    f"while starting:\n{member.log_tail()}"
                )
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(
                    f"etcd member {waiting[0].name} was not healthy within "
                    f"{START_TIMEOUT} s:\n{waiting[0].log_tail()}"
                )
            if waiting:
                time.sleep(0.02)

    def kill_member(self, i: int) -> None:
        """Kill member ``i`` with SIGKILL and reap it; its data stays."""
        process = self._members[i].process
        self._members[i].process = None
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait()

    def start_member(self, i: int) -> None:
        """Start member ``i`` again (after `kill_member`) and wait until healthy."""
        member = self._members[i]
        if member.process is not None and member.process.poll() is None:
            raise RuntimeError(f"etcd member {member.name} is already running")
        self._spawn(i)
        self._wait_healthy([i])

    def running(self, i: int) -> bool:
        """Whether member ``i``'s process is alive."""
        process = self._members[i].process
        return process is not None and process.poll() is None

    def compact(self, revision: int) -> None:
        """Compact the key-value history up to ``revision`` (via a running member)."""
        running = [m for i, m in enumerate(self._members) if self.running(i)]
        if not running:
            raise RuntimeError("no etcd member is running")
        request = urllib.request.Request(
            running[0].client_url + "/v3/kv/compaction",
            data=json.dumps({"revision": str(revision), "physical": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            r.read()

    def stop(self) -> None:
        """Kill every member (SIGKILL) and reap them; safe to call again."""
        for i in range(len(self._members)):
            self.kill_member(i)
