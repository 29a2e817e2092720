"""
Functional tests of the agent protocol over real TLS sockets on loopback.

A `ControlAMPService` listens on port 0 with the control service's
certificate; `AgentAMPClient`s connect with node certificates made by
`make_test_cluster_credentials`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint

from flocker.ca import TLSFiles, load_tls_files, server_context_factory
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials
from flocker.common import loop_until
from flocker.control import (
    ClusterStateService,
    ConfigurationService,
    Dataset,
    Deployment,
    DeploymentState,
    MemoryConfigurationStore,
    Node,
    NodeState,
)
from flocker.control._protocol import PROTOCOL_VERSION, ControlAMPService, WrongNode
from flocker.control._protocol_agent import AgentAMPClient

pytestmark = pytest.mark.functional

#: Every wait gives up after this many 0.05 s steps (a hang guard, not a timing).
STEPS = [0.05] * 400


@attrs.define
class Control:
    """A control AMP service listening on loopback."""

    configuration: ConfigurationService
    state: ClusterStateService
    service: ControlAMPService
    port: int


async def start_control(tls: TLSFiles, port: int = 0, **kwargs: Any) -> Control:
    """Start a control AMP service (in-memory configuration) on ``port``."""
    configuration = kwargs.pop("configuration", None)
    if configuration is None:
        configuration = ConfigurationService(MemoryConfigurationStore())
        await configuration.load()
    state = ClusterStateService(reactor)
    endpoint = SSL4ServerEndpoint(
        reactor,
        port,
        server_context_factory(tls.credential, tls.authority),
        interface="127.0.0.1",
    )
    service = ControlAMPService(reactor, configuration, state, endpoint, **kwargs)
    service.startService()
    listening = await service.listening()
    return Control(configuration, state, service, cast(Any, listening.getHost()).port)


@attrs.define
class Agent:
    """A started agent client and the updates it received."""

    client: AgentAMPClient
    updates: list[tuple[Deployment, DeploymentState]]


def start_agent(
    port: int, tls: TLSFiles, kind: str = "dataset", **kwargs: Any
) -> Agent:
    """Start an agent client connecting to the control service on ``port``."""
    updates: list[tuple[Deployment, DeploymentState]] = []
    client = AgentAMPClient.for_control_service(
        reactor,
        "127.0.0.1",
        port,
        tls,
        kind,
        lambda c, s: updates.append((c, s)),
        **kwargs,
    )
    client.startService()
    return Agent(client, updates)


@pytest.fixture
def credentials(tmp_path: Path) -> TestClusterCredentials:
    """A cluster's certificates: control on 127.0.0.1 and two nodes."""
    directory = tmp_path / "credentials"
    directory.mkdir()
    return make_test_cluster_credentials(directory, nodes=2)


@pytest.fixture
def cleanup() -> Any:
    """Services to stop after the test, in reverse order."""
    services: list[Any] = []
    yield services
    for service in reversed(services):
        if service.running:
            pytest_twisted.blockon(Deferred.fromCoroutine(_stop(service)))


async def _stop(service: Any) -> None:
    await service.stopService()


def node_tls(credentials: TestClusterCredentials, index: int) -> TLSFiles:
    """A node's TLS files."""
    return load_tls_files(credentials.node_directories[index], "node")


def control_tls(credentials: TestClusterCredentials) -> TLSFiles:
    """The control service's TLS files."""
    return load_tls_files(credentials.control_directory, "control-service")


@pytest_twisted.ensureDeferred
async def test_handshake_report_and_push(
    credentials: TestClusterCredentials, cleanup: list[Any]
) -> None:
    """An agent connects, receives the state, reports, and sees changes pushed."""
    control = await start_control(control_tls(credentials))
    cleanup.append(control.service)
    node = str(credentials.node_uuids[0])
    agent = start_agent(control.port, node_tls(credentials, 0))
    cleanup.append(agent.client)
    await agent.client.connected()
    await loop_until(reactor, lambda: agent.updates, STEPS)
    [connection] = control.service.connections
    assert connection.node_uuid == node

    state = NodeState(uuid=node, hostname="127.0.0.1", datasets={})
    await agent.client.report_state(state)
    assert control.state.as_deployment_state().get_node(node) == state

    dataset = Dataset(dataset_id="d0d0d0d0-0000-4000-8000-00000000000d")
    await control.configuration.change(
        lambda d: d.update_node(Node(uuid=node)).add_dataset(dataset, node)
    )
    await loop_until(
        reactor,
        lambda: (
            agent.updates[-1][0] == control.configuration.deployment
            and agent.updates[-1][1].get_node(node) == state
        ),
        STEPS,
    )


@pytest_twisted.ensureDeferred
async def test_reconnects_after_control_restart(
    credentials: TestClusterCredentials, cleanup: list[Any]
) -> None:
    """An agent reconnects to a restarted control service and reports again."""
    tls = control_tls(credentials)
    configuration = ConfigurationService(MemoryConfigurationStore())
    await configuration.load()
    control = await start_control(tls, configuration=configuration)
    node = str(credentials.node_uuids[0])
    agent = start_agent(control.port, node_tls(credentials, 0))
    cleanup.append(agent.client)
    await agent.client.connected()
    state = NodeState(uuid=node, hostname="before")
    await agent.client.report_state(state)

    await control.service.stopService()
    await loop_until(reactor, lambda: not agent.client.is_connected, STEPS)
    restarted = await start_control(tls, control.port, configuration=configuration)
    cleanup.append(restarted.service)
    await loop_until(reactor, lambda: agent.client.is_connected, STEPS)
    # The remembered state is sent again after reconnecting.
    await loop_until(
        reactor,
        lambda: restarted.state.as_deployment_state().get_node(node) == state,
        STEPS,
    )
    before = len(agent.updates)
    dataset = Dataset(dataset_id="d0d0d0d0-0000-4000-8000-00000000000d")
    await configuration.change(
        lambda d: d.update_node(Node(uuid=node)).add_dataset(dataset, node)
    )
    await loop_until(reactor, lambda: len(agent.updates) > before, STEPS)
    assert agent.updates[-1][0] == configuration.deployment


@pytest_twisted.ensureDeferred
async def test_report_for_another_node_refused(
    credentials: TestClusterCredentials, cleanup: list[Any]
) -> None:
    """A node's certificate cannot report state for another node."""
    control = await start_control(control_tls(credentials))
    cleanup.append(control.service)
    agent = start_agent(control.port, node_tls(credentials, 0))
    cleanup.append(agent.client)
    await agent.client.connected()
    other = str(credentials.node_uuids[1])
    with pytest.raises(WrongNode):
        await agent.client.report_state(NodeState(uuid=other, hostname="evil"))
    assert control.state.as_deployment_state().nodes == {}


@pytest_twisted.ensureDeferred
async def test_certificate_from_another_cluster_refused(
    credentials: TestClusterCredentials, tmp_path: Path, cleanup: list[Any]
) -> None:
    """A node of another cluster never gets a connection."""
    control = await start_control(control_tls(credentials))
    cleanup.append(control.service)
    (tmp_path / "other").mkdir()
    other = make_test_cluster_credentials(tmp_path / "other", nodes=1)
    stranger = start_agent(control.port, node_tls(other, 0))
    cleanup.append(stranger.client)
    # A legitimate agent connecting afterwards proves the control service
    # had time to see (and refuse) the stranger's attempts.
    friend = start_agent(control.port, node_tls(credentials, 0))
    cleanup.append(friend.client)
    await friend.client.connected()
    await loop_until(reactor, lambda: friend.updates, STEPS)
    assert not stranger.client.is_connected and stranger.updates == []
    assert [c.node_uuid for c in control.service.connections if c.handshaken] == [
        str(credentials.node_uuids[0])
    ]


@pytest_twisted.ensureDeferred
async def test_incompatible_version_refused(
    credentials: TestClusterCredentials, cleanup: list[Any]
) -> None:
    """An agent of another protocol version is refused and gets no pushes."""
    control = await start_control(control_tls(credentials))
    cleanup.append(control.service)
    old = start_agent(
        control.port, node_tls(credentials, 0), protocol_version=PROTOCOL_VERSION + 7
    )
    cleanup.append(old.client)
    good = start_agent(control.port, node_tls(credentials, 1), kind="container")
    cleanup.append(good.client)
    await good.client.connected()
    await loop_until(reactor, lambda: good.updates, STEPS)
    assert not old.client.is_connected and old.updates == []
    assert {c.node_uuid for c in control.service.connections if c.handshaken} == {
        str(credentials.node_uuids[1])
    }
