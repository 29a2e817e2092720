"""
Acceptance test of the control service, driven the way an operator would.

Certificates come from the real ``flocker-ca`` command; ``flocker-control``
runs as a real process on 127.0.0.1; the REST API is driven over HTTPS with
client certificates by treq, by ``curl`` and by Flocker's own API client; real agent AMP clients connect
with node certificates, report state and receive configuration changes; the
control service is killed with SIGKILL, restarted on the same ports, and
still has every acknowledged change.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import attrs
import pytest
import pytest_twisted
import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.client import Agent

from flocker.apiclient import FlockerClient
from flocker.ca import ClusterPolicyForHTTPS, load_tls_files
from flocker.common import loop_until, run_command
from flocker.control import Deployment, DeploymentState, NodeState
from flocker.control._protocol_agent import AgentAMPClient

pytestmark = pytest.mark.acceptance

#: Hang guard for every wait: 600 steps of 0.05 s (not a timing assertion).
STEPS = [0.05] * 600

ROOT = Path(__file__).resolve().parents[3]


@attrs.define
class Cluster:
    """Directories laid out as each party expects ``/etc/flocker``."""

    control: Path
    nodes: list[tuple[str, Path]]
    user: Path


async def flocker_ca(*argv: str, cwd: Path) -> str:
    """Run the real ``flocker-ca`` CLI; its standard output."""
    result = await run_command(
        reactor, [sys.executable, "-m", "flocker.ca.script", *argv], path=str(cwd)
    )
    return result.stdout.decode()


def _party(root: Path, name: str, ca: Path, files: dict[str, Path]) -> Path:
    directory = root / name
    directory.mkdir()
    shutil.copy(ca / "cluster.crt", directory / "cluster.crt")
    for target, source in files.items():
        shutil.copy(source, directory / target)
    return directory


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    """A cluster's certificates made with ``flocker-ca``: control, two nodes, alice."""
    ca = tmp_path / "ca"
    ca.mkdir()

    async def make() -> Cluster:
        await flocker_ca("initialize", "acceptance", cwd=ca)
        await flocker_ca("create-control-certificate", "127.0.0.1", cwd=ca)
        await flocker_ca("create-api-certificate", "alice", cwd=ca)
        nodes = []
        for i in range(2):
            before = set(ca.glob("*.crt"))
            await flocker_ca("create-node-certificate", cwd=ca)
            [new] = set(ca.glob("*.crt")) - before
            uuid = new.stem
            directory = _party(
                tmp_path,
                f"node-{i}",
                ca,
                {"node.crt": new, "node.key": new.with_suffix(".key")},
            )
            nodes.append((uuid, directory))
        control = _party(
            tmp_path,
            "control",
            ca,
            {
                "control-service.crt": ca / "control-127.0.0.1.crt",
                "control-service.key": ca / "control-127.0.0.1.key",
            },
        )
        user = _party(
            tmp_path,
            "user",
            ca,
            {"alice.crt": ca / "alice.crt", "alice.key": ca / "alice.key"},
        )
        return Cluster(control, nodes, user)

    return pytest_twisted.blockon(Deferred.fromCoroutine(make()))  # type: ignore[no-any-return]


@attrs.define
class ControlProcess:
    """A running ``flocker-control`` and the ports it listens on."""

    process: subprocess.Popen[bytes]
    api_port: int
    agent_port: int


@attrs.define
class Runner:
    """Starts and kills ``flocker-control`` processes for one test."""

    tmp_path: Path
    cluster: Cluster
    running: list[subprocess.Popen[bytes]] = attrs.field(factory=list)

    async def start(self, api_port: int = 0, agent_port: int = 0) -> ControlProcess:
        """Start ``flocker-control``; wait until it says which ports it listens on."""
        ports_file = self.tmp_path / "ports.json"
        if ports_file.exists():
            ports_file.unlink()
        log = open(self.tmp_path / "control.stderr", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flocker.control.script",
                "--data-path",
                str(self.tmp_path / "data"),
                "--certificates-directory",
                str(self.cluster.control),
                "--log-dir",
                str(self.tmp_path / "logs"),
                "--listen-address",
                "127.0.0.1",
                "--port",
                str(api_port),
                "--agent-port",
                str(agent_port),
                "--ports-file",
                str(ports_file),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.running.append(process)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    "flocker-control exited: "
                    + (self.tmp_path / "control.stderr").read_text()
                )
            return ports_file.exists()

        await loop_until(reactor, ready, STEPS)
        ports = json.loads(ports_file.read_text())
        return ControlProcess(process, ports["api"], ports["agent"])

    def stop_all(self) -> None:
        """Kill whatever is still running."""
        for process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def runner(tmp_path: Path, cluster: Cluster) -> Iterator[Runner]:
    """Start ``flocker-control`` processes; kill them afterwards."""
    r = Runner(tmp_path, cluster)
    yield r
    r.stop_all()


@attrs.define
class RestClient:
    """HTTPS requests with alice's certificate, by treq and by curl."""

    cluster: Cluster
    port: int
    http: HTTPClient

    def url(self, path: str) -> str:
        """The URL of an API path."""
        return f"https://127.0.0.1:{self.port}{path}"

    async def treq(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A request through treq; (status, decoded JSON body)."""
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        response = await self.http.request(method, self.url(path), **kwargs)
        return response.code, json.loads(await response.content())

    async def curl(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The same request through ``curl``; (status, decoded JSON body)."""
        user = self.cluster.user
        argv = [
            "curl",
            "--silent",
            "--show-error",
            "--cacert",
            str(user / "cluster.crt"),
            "--cert",
            str(user / "alice.crt"),
            "--key",
            str(user / "alice.key"),
            "--request",
            method,
            "--write-out",
            "\n%{http_code}",
        ]
        if body is not None:
            argv += ["--header", "Content-Type: application/json"]
            argv += ["--data", json.dumps(body)]
        result = await run_command(reactor, [*argv, self.url(path)])
        text, _, status = result.stdout.decode().rpartition("\n")
        return int(status), json.loads(text)


def rest_client(cluster: Cluster, port: int) -> RestClient:
    """A REST client for the control service on ``port``."""
    tls = load_tls_files(cluster.user, "alice")
    agent = Agent(
        reactor, contextFactory=ClusterPolicyForHTTPS(tls.credential, tls.authority)
    )
    return RestClient(cluster, port, treq.client.HTTPClient(agent))


@attrs.define
class AgentProcessStandIn:
    """A real agent AMP client (in this process) and what it was pushed."""

    node_uuid: str
    client: AgentAMPClient
    updates: list[tuple[Deployment, DeploymentState]]

    def latest_configuration(self) -> Deployment | None:
        """The last configuration pushed, if any."""
        return self.updates[-1][0] if self.updates else None


@pytest.fixture
def agents() -> Iterator[list[AgentProcessStandIn]]:
    """Agents started by the test; stopped afterwards."""
    started: list[AgentProcessStandIn] = []
    yield started
    for agent in started:
        pytest_twisted.blockon(agent.client.stopService())


def start_agent(
    started: list[AgentProcessStandIn], node: tuple[str, Path], port: int, kind: str
) -> AgentProcessStandIn:
    """Connect an agent with a node's certificate to the control service."""
    uuid, directory = node
    updates: list[tuple[Deployment, DeploymentState]] = []
    client = AgentAMPClient.for_control_service(
        reactor,
        "127.0.0.1",
        port,
        load_tls_files(directory, "node"),
        kind,
        lambda c, s: updates.append((c, s)),
    )
    client.startService()
    agent = AgentProcessStandIn(uuid, client, updates)
    started.append(agent)
    return agent


def dataset_ids(configuration: Deployment | None) -> set[str]:
    """The ids of the datasets in a configuration."""
    if configuration is None:
        return set()
    return {d.dataset_id for d, _ in configuration.all_datasets()}


@pytest_twisted.ensureDeferred
async def test_control_service_end_to_end(
    cluster: Cluster, runner: Runner, agents: list[AgentProcessStandIn]
) -> None:
    """
    flocker-control serves REST and agents, and keeps its configuration across
    SIGKILL and restart.
    """
    control = await runner.start()
    rest = rest_client(cluster, control.api_port)
    status, version = await rest.treq("GET", "/v1/version")
    assert status == 200 and "flocker" in version
    status, version_by_curl = await rest.curl("GET", "/v1/version")
    assert (status, version_by_curl) == (200, version)

    (node0, _), (node1, _) = cluster.nodes
    dataset_agent = start_agent(agents, cluster.nodes[0], control.agent_port, "dataset")
    container_agent = start_agent(
        agents, cluster.nodes[1], control.agent_port, "container"
    )
    await dataset_agent.client.connected()
    await container_agent.client.connected()
    await dataset_agent.client.report_state(
        NodeState(uuid=node0, hostname="127.0.0.11", datasets={})
    )
    await container_agent.client.report_state(
        NodeState(uuid=node1, hostname="127.0.0.12", applications={})
    )
    status, nodes = await rest.treq("GET", "/v1/state/nodes")
    assert status == 200
    assert {n["uuid"]: n["host"] for n in nodes} == {
        node0: "127.0.0.11",
        node1: "127.0.0.12",
    }

    # Writes through curl and treq; each reaches both agents.
    status, first = await rest.curl(
        "POST",
        "/v1/configuration/datasets",
        {"primary": node0, "metadata": {"name": "pg"}, "maximum_size": 67108864},
    )
    assert status == 201, first
    status, second = await rest.treq(
        "POST", "/v1/configuration/datasets", {"primary": node1}
    )
    assert status == 201, second
    # And through Flocker's own API client (treq underneath).
    client = FlockerClient.from_certificates(
        reactor, "127.0.0.1", control.api_port, cluster.user, "alice"
    )
    third = await client.create_dataset(UUID(node0), metadata={"name": "third"})
    wanted = {first["dataset_id"], second["dataset_id"], str(third.dataset_id)}

    def everyone_has_them() -> bool:
        return all(
            dataset_ids(a.latest_configuration()) == wanted
            for a in (dataset_agent, container_agent)
        )

    await loop_until(reactor, everyone_has_them, STEPS)
    # A bad request is refused precisely and changes nothing.
    status, error = await rest.curl(
        "POST", "/v1/configuration/datasets", {"primary": "not-a-uuid"}
    )
    assert 400 <= status < 500 and "description" in error

    status, before = await rest.treq("GET", "/v1/configuration/datasets")
    assert status == 200 and {d["dataset_id"] for d in before} == wanted

    # SIGKILL: no chance to flush anything; acknowledged writes must survive.
    control.process.send_signal(signal.SIGKILL)
    control.process.wait()
    pushes_before = {a.node_uuid: len(a.updates) for a in agents}
    await loop_until(
        reactor,
        lambda: (
            not dataset_agent.client.is_connected
            and not container_agent.client.is_connected
        ),
        STEPS,
    )
    restarted = await runner.start(control.api_port, control.agent_port)
    listed = await client.list_datasets_configuration()
    assert {str(d) for d in listed.datasets} == wanted
    assert listed.datasets[third.dataset_id].metadata == {"name": "third"}
    status, after = await rest.curl("GET", "/v1/configuration/datasets")
    assert status == 200
    assert sorted(after, key=lambda d: d["dataset_id"]) == sorted(
        before, key=lambda d: d["dataset_id"]
    )

    # The agents reconnect by themselves, report again, and are pushed the
    # configuration that survived.
    await dataset_agent.client.connected()
    await container_agent.client.connected()
    await loop_until(
        reactor,
        lambda: all(len(a.updates) > pushes_before[a.node_uuid] for a in agents),
        STEPS,
    )
    for agent in agents:
        assert dataset_ids(agent.latest_configuration()) == wanted

    async def nodes_known() -> bool:
        _, listed = await rest.treq("GET", "/v1/state/nodes")
        return {n["uuid"] for n in listed} == {node0, node1}

    await loop_until(reactor, cast(Any, nodes_known), STEPS)
    restarted.process.send_signal(signal.SIGTERM)
    assert await _exit_status(restarted.process) == 0


async def _exit_status(process: subprocess.Popen[bytes]) -> int:
    """Wait (without blocking the reactor) for a process to exit."""
    await loop_until(reactor, lambda: process.poll() is not None, STEPS)
    return process.returncode
