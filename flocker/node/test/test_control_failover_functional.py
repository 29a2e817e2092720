"""
Functional test: a real dataset agent moves between real control service
instances as they die.

Two ``flocker-control`` processes (A and B: the same certificates, each
its own data path, on 127.0.0.1) and one ``flocker-dataset-agent`` process
(directory backend) whose ``agent.yml`` lists both.  Which instance the
agent is connected to is read from each instance's ``/v1/state/nodes``
over HTTPS with a user certificate: an instance knows the node only once
the agent has reported to it.  The instances share no configuration here;
the agent only needs any of them.  Instances die by SIGKILL, or stop
(SIGSTOP: the kernel still accepts connections for them, nothing answers).
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials
from flocker.node._control_connection import first_instance
from flocker.testtools.waiting import wait_for

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[3]

#: The node's address: a loopback address few other tests use.
NODE_ADDRESS = "127.0.23.11"

#: Hang guard for each wait (not a timing assertion).
PATIENCE = 120


@attrs.define
class ControlInstance:
    """One ``flocker-control`` process, restartable on the same ports."""

    name: str
    directory: Path
    credentials: TestClusterCredentials
    process: subprocess.Popen[bytes] | None = None
    api_port: int = 0
    agent_port: int = 0

    def start(self) -> None:
        """Start it (on its previous ports, if it ran before) and wait until it listens."""
        ports_file = self.directory / "ports.json"
        ports_file.unlink(missing_ok=True)
        with open(self.directory / "control.out", "ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "flocker.control.script",
                    "--data-path", str(self.directory / "data"),
                    "--certificates-directory", str(self.credentials.control_directory),
                    "--log-dir", str(self.directory / "logs"),
                    "--listen-address", "127.0.0.1",
                    "--port", str(self.api_port),
                    "--agent-port", str(self.agent_port),
                    "--ports-file", str(ports_file),
                ],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

        def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"control {self.name} exited: "
                    + (self.directory / "control.out").read_text()[-2000:]
                )
            return ports_file.exists() and bool(ports_file.read_text().strip())

        wait_for(listening, PATIENCE, f"control {self.name} to listen")
        ports = json.loads(ports_file.read_text())
        self.api_port, self.agent_port = ports["api"], ports["agent"]

    def pause(self, paused: bool) -> None:
        """SIGSTOP it (the kernel still accepts connections for it) or SIGCONT it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL it, as a machine dying would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.send_signal(signal.SIGCONT)
            self.process.wait()

    def nodes(self) -> set[str] | None:
        """The node UUIDs it has state of; ``None`` if it does not answer."""
        user = self.credentials.user_directories["alice"]
        context = ssl.create_default_context(cafile=str(user / "cluster.crt"))
        context.load_cert_chain(str(user / "alice.crt"), str(user / "alice.key"))
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.api_port}/v1/state/nodes"
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as reply:
                return {node["uuid"] for node in json.loads(reply.read())}
        except OSError:
            return None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two control instances, A and B, started; both killed afterwards."""
    (tmp_path / "ca").mkdir()
    credentials = make_test_cluster_credentials(tmp_path / "ca", nodes=1)
    instances = {}
    for name in ("a", "b"):
        directory = tmp_path / f"control-{name}"
        directory.mkdir()
        instances[name] = ControlInstance(name, directory, credentials)
    try:
        for instance in instances.values():
            instance.start()
        yield {"credentials": credentials, **instances}
    finally:
        for instance in instances.values():
            instance.kill()


def _free_port(address: str) -> int:
    """A port free on ``address`` now (the agent's transfer port)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def start_agent(
    tmp_path: Path, cluster: dict[str, Any]
) -> Iterator[Callable[[], Path]]:
    """
    Starts a dataset agent whose agent.yml lists A and B (as a mapping and
    as a ``HOST:PORT`` string), in the order that makes A the instance it
    tries first (`first_instance` of its address), returning its log file;
    stopped afterwards.
    """
    a, b = cluster["a"], cluster["b"]
    node = tmp_path / "node"
    started: list[subprocess.Popen[bytes]] = []

    def start() -> Path:
        (node / "data").mkdir(parents=True)
        hosts: list[Any] = [
            {"hostname": "127.0.0.1", "port": a.agent_port},
            f"127.0.0.1:{b.agent_port}",
        ]
        if first_instance(NODE_ADDRESS, 2) == 1:
            hosts.reverse()
        config = {
            "version": 1,
            "control-service": {"hosts": hosts},
            "node": {"address": NODE_ADDRESS},
            "dataset": {"backend": "directory", "root": str(node / "data")},
            "transfer": {"port": _free_port(NODE_ADDRESS)},
            "certificates": str(cluster["credentials"].node_directories[0]),
            "state-directory": str(node / "state"),
            "logging": {"directory": str(node / "logs")},
        }
        (node / "agent.yml").write_text(json.dumps(config))
        with open(node / "agent.out", "ab") as output:
            started.append(
                subprocess.Popen(
                    [
                        sys.executable, "-m", "flocker.node.script",
                        "--agent-config", str(node / "agent.yml"),
                    ],
                    cwd=ROOT,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
        return node / "logs" / "flocker-dataset-agent.log"

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def knows_node(instance: ControlInstance, node_uuid: str) -> bool:
    """Whether ``instance`` answers and has the node's state."""
    return node_uuid in (instance.nodes() or set())


def connections(log: Path) -> list[tuple[int, str]]:
    """``(agent port, status)`` of each logged connection attempt that ended."""
    found = []
    for line in log.read_text().splitlines():
        message = json.loads(line)
        if message.get("action_type") != "flocker:node:control:connect":
            continue
        if message["action_status"] == "started":
            port = message["control_port"]
        else:
            found.append((port, message["action_status"]))
    return found


def test_agent_moves_to_a_live_control_instance(
    cluster: dict[str, Any], start_agent: Callable[[], Path]
) -> None:
    """
    An agent connected to instance A moves to instance B when A is killed,
    and back to A's address when A is restarted and B killed; the log names
    the instance of each connection.
    """
    a, b = cluster["a"], cluster["b"]
    node_uuid = str(cluster["credentials"].node_uuids[0])
    log = start_agent()
    wait_for(lambda: knows_node(a, node_uuid), PATIENCE, "the agent to report to A")
    # One connection, to A only.
    assert b.nodes() == set()

    a.kill()
    wait_for(lambda: knows_node(b, node_uuid), PATIENCE, "the agent to report to B")

    a.start()  # on the same ports, with no state of the node
    assert a.nodes() == set()
    b.kill()
    wait_for(lambda: knows_node(a, node_uuid), PATIENCE, "the agent to come back to A")

    succeeded = [port for port, status in connections(log) if status == "succeeded"]
    assert succeeded[:2] == [a.agent_port, b.agent_port]
    assert succeeded[-1] == a.agent_port


def test_agent_gives_up_a_stopped_control_instance(
    cluster: dict[str, Any], start_agent: Callable[[], Path]
) -> None:
    """
    An agent whose first instance accepts connections but says nothing
    (the process is stopped) gives it up and reports to the second.
    """
    a, b = cluster["a"], cluster["b"]
    node_uuid = str(cluster["credentials"].node_uuids[0])
    a.pause(True)
    try:
        log = start_agent()
        wait_for(lambda: knows_node(b, node_uuid), PATIENCE, "the agent to report to B")
    finally:
        a.pause(False)
    messages = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(
        m.get("message_type") == "flocker:node:control:no_answer"
        and m["control_port"] == a.agent_port
        for m in messages
    )
