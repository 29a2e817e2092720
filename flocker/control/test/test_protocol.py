"""
Unit tests of the agent protocol over in-memory connections (``iosim``).

The control service's `ControlAMPService` and agents' `AgentAMPClient`
talk through ``twisted.test.iosim`` pumps with a `Clock`; the peer's
certificate identity is injected through the fake transport.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import attrs
import pytest
from eliot import MemoryLogger
from eliot.testing import LoggedAction, LoggedMessage
from hypothesis import HealthCheck, given, settings
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim

from flocker.ca import PeerIdentity, UnknownPeer
from flocker.control import (
    ClusterStateService,
    ConfigurationService,
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    Manifestation,
    MemoryConfigurationStore,
    Node,
    NodeState,
)
from flocker.control._protocol import (
    KEEPALIVE_INTERVAL,
    PROTOCOL_VERSION,
    BadNodeState,
    ChunkedBytes,
    ClusterStatusCommand,
    ControlAMP,
    ControlAMPService,
    HandshakeRequired,
    NodeStateCommand,
    OutOfSync,
    VersionCommand,
    WrongNode,
)
from flocker.control._protocol_agent import (
    AgentAMP,
    AgentAMPClient,
    NotConnected,
    _decode_configuration,
)
from flocker.control._protocol_diff import apply_diff, diff_documents
from flocker.control._protocol_logging import (
    AGENT_REFUSED,
    IDENTITY_REFUSED,
    PUSH_CLUSTER_STATUS,
    REPORT_STATE,
)
from flocker.control._serialization import deployment_to_json, serialize_node_state
from flocker.control.strategies import deployments

CLUSTER = UUID("c1c1c1c1-0000-4000-8000-0000000000c1")
NODE_A = "0a0a0a0a-0000-4000-8000-00000000000a"
NODE_B = "0b0b0b0b-0000-4000-8000-00000000000b"
EXPIRATION = 120.0


def node_identity(node_uuid: str) -> PeerIdentity:
    """The identity a node's certificate gives."""
    return PeerIdentity(kind="node", node_uuid=UUID(node_uuid), cluster_uuid=CLUSTER)


def identify(transport: Any) -> PeerIdentity:
    """Read the identity the test gave the fake transport."""
    identity: PeerIdentity | None = transport.test_identity
    if identity is None:
        raise UnknownPeer("no certificate")
    return identity


@attrs.define
class Control:
    """A control service on a Clock with an in-memory store."""

    clock: Clock
    configuration: ConfigurationService
    state: ClusterStateService
    service: ControlAMPService

    def change(self, deployment: Deployment) -> None:
        """Replace the configuration (synchronously, memory store)."""
        self.configuration.change(lambda _: deployment)


@pytest.fixture
def control() -> Control:
    """A started control AMP service without a listening port."""
    clock = Clock()
    configuration = ConfigurationService(MemoryConfigurationStore())
    configuration.load()
    state = ClusterStateService(clock, expiration=EXPIRATION)
    service = ControlAMPService(clock, configuration, state, identify=identify)
    service.startService()
    return Control(clock, configuration, state, service)


@attrs.define
class Agent:
    """One agent connected to the control service through an iosim pump."""

    client: AgentAMPClient
    protocol: AgentAMP
    server: ControlAMP
    pump: iosim.IOPump
    updates: list[tuple[Deployment, DeploymentState]]


def connect(
    control: Control,
    node_uuid: str | None = NODE_A,
    kind: str = "dataset",
    version: int = PROTOCOL_VERSION,
    identity: PeerIdentity | None = None,
    client: AgentAMPClient | None = None,
) -> Agent:
    """Connect an agent for ``node_uuid`` (its certificate's identity) and pump."""
    updates: list[tuple[Deployment, DeploymentState]] = []
    if client is None:
        client = AgentAMPClient(
            control.clock,
            None,  # type: ignore[arg-type]
            kind,
            lambda c, s: updates.append((c, s)),
            protocol_version=version,
        )
    if identity is None and node_uuid is not None:
        identity = node_identity(node_uuid)

    def server_transport(protocol: Any) -> iosim.FakeTransport:
        transport: iosim.FakeTransport = iosim.makeFakeServer(protocol)
        transport.test_identity = identity  # type: ignore[attr-defined]
        return transport

    protocol, server, pump = iosim.connectedServerAndClient(
        control.service.build_protocol,
        lambda: AgentAMP(client),
        serverTransportFactory=server_transport,
        clock=control.clock,
    )
    pump.flush()
    return Agent(client, protocol, server, pump, updates)


def collect(d: Any) -> list[Any]:
    """
    A list that receives ``d``'s result (a Failure if it failed).

    Call it before pumping: AMP drops the connection if an error answer
    arrives at a Deferred with no errback yet.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    return results


def result_of(d: Any) -> Any:
    """The result a fired Deferred has (a Failure if it failed)."""
    results = collect(d)
    assert results, "the Deferred has not fired"
    return results[0]


def deployment_with(*dataset_ids: str, node: str = NODE_A) -> Deployment:
    """A configuration with the given datasets on ``node``."""
    deployment = Deployment().update_node(Node(uuid=node))
    for dataset_id in dataset_ids:
        deployment = deployment.add_dataset(Dataset(dataset_id=dataset_id), node)
    return deployment


def dataset_id(n: int) -> str:
    """A distinct dataset UUID for each ``n``."""
    return str(UUID(int=n | (4 << 76) | (8 << 60)))


# --------------------------------------------------------------------------


def test_handshake_then_full_push(control: Control, eliot_logger: MemoryLogger) -> None:
    """After the handshake the agent receives the whole configuration and state."""
    control.change(deployment_with(dataset_id(1)))
    agent = connect(control)
    assert agent.server.handshaken and agent.server.node_uuid == NODE_A
    assert agent.client.is_connected
    assert agent.updates == [
        (control.configuration.deployment, control.state.as_deployment_state())
    ]
    [push] = LoggedAction.of_type(eliot_logger.messages, PUSH_CLUSTER_STATUS)
    assert push.start_message["base"] == 0 and push.succeeded


def test_report_state(control: Control, eliot_logger: MemoryLogger) -> None:
    """A node's report reaches the cluster state and is acknowledged."""
    agent = connect(control)
    state = NodeState(uuid=NODE_A, hostname="10.0.0.1", datasets={})
    reported = agent.client.report_state(state)
    agent.pump.flush()
    assert result_of(reported) is None
    assert control.state.as_deployment_state().get_node(NODE_A) == state


def test_a_report_sent_again_is_merged_again(control: Control) -> None:
    """
    A report equal to the connection's previous one still counts: it brings
    back a node whose state was forgotten meanwhile (e.g. expired).
    """
    agent = connect(control)
    state = NodeState(uuid=NODE_A, hostname="10.0.0.1", datasets={})
    agent.client.report_state(state)
    agent.pump.flush()
    control.state.remove_node(NODE_A)
    assert NODE_A not in control.state.as_deployment_state().nodes
    agent.client.report_state(state)
    agent.pump.flush()
    assert control.state.as_deployment_state().get_node(NODE_A) == state


def test_report_for_another_node_refused(
    control: Control, eliot_logger: MemoryLogger
) -> None:
    """A report for a node other than the certificate's is refused and logged."""
    agent = connect(control)
    reported = collect(
        agent.client.report_state(NodeState(uuid=NODE_B, hostname="evil"))
    )
    agent.pump.flush()
    [failure] = reported
    assert isinstance(failure, Failure) and failure.check(WrongNode)
    assert control.state.as_deployment_state().nodes == {}
    [refusal] = LoggedMessage.of_type(eliot_logger.messages, IDENTITY_REFUSED)
    assert refusal.message["claimed_uuid"] == NODE_B
    assert refusal.message["node_uuid"] == NODE_A
    eliot_logger.flush_tracebacks(WrongNode)


def test_incompatible_version_refused(
    control: Control, eliot_logger: MemoryLogger
) -> None:
    """An agent of another protocol version (e.g. yesterday's 1 or a future one) is refused with a logged reason."""
    agent = connect(control, version=PROTOCOL_VERSION + 1)
    assert agent.pump.clientIO.disconnecting
    assert not agent.server.handshaken and not agent.client.is_connected
    assert agent.updates == []
    reasons = [
        m.message["reason"]
        for m in LoggedMessage.of_type(eliot_logger.messages, AGENT_REFUSED)
    ]
    assert any(f"incompatible agent protocol version {PROTOCOL_VERSION + 1}" in r for r in reasons)
    eliot_logger.flush_tracebacks(Exception)


def test_agent_of_protocol_one_refused(control: Control, eliot_logger: MemoryLogger) -> None:
    """An agent from before format 2 (protocol 1) is refused, not fed what it cannot read."""
    agent = connect(control, version=1)
    assert not agent.server.handshaken and agent.updates == []
    eliot_logger.flush_tracebacks(Exception)


def fence_agent(control: Control, fence_after: float) -> Agent:
    """Connect a dataset agent that tells the control service its fence-after."""
    client = AgentAMPClient(
        control.clock,
        None,  # type: ignore[arg-type]
        "dataset",
        lambda c, s: None,
        fence_after=fence_after,
    )
    return connect(control, client=client)


def test_agent_fencing_too_late_for_failover_refused(
    control: Control, eliot_logger: MemoryLogger
) -> None:
    """
    An agent whose fence-after plus the margin is not below the control
    service's failover_after is refused with a reason saying what to
    change: it could still serve a dataset after a replica is promoted.
    """
    control.service.failover_after = 20.0
    agent = fence_agent(control, 15.0)
    assert agent.pump.clientIO.disconnecting
    assert not agent.server.handshaken
    reasons = [
        m.message["reason"]
        for m in LoggedMessage.of_type(eliot_logger.messages, AGENT_REFUSED)
    ]
    assert any("fence-after (15 s)" in r and "failover_after (20 s)" in r for r in reasons)
    eliot_logger.flush_tracebacks(Exception)


def test_agent_fencing_in_time_accepted(control: Control) -> None:
    """An agent that fences well before failover_after is accepted."""
    control.service.failover_after = 20.0
    agent = fence_agent(control, 10.0)
    assert agent.server.handshaken


def test_unknown_agent_kind_refused(
    control: Control, eliot_logger: MemoryLogger
) -> None:
    """An agent claiming an unknown kind is refused."""
    agent = connect(control, kind="toaster")
    assert agent.pump.clientIO.disconnecting
    assert not agent.server.handshaken
    eliot_logger.flush_tracebacks(Exception)


@pytest.mark.parametrize(
    "identity",
    [
        None,
        PeerIdentity(kind="user", username="alice", cluster_uuid=CLUSTER),
        PeerIdentity(kind="control", cluster_uuid=CLUSTER),
    ],
)
def test_non_node_peer_refused(
    control: Control, eliot_logger: MemoryLogger, identity: PeerIdentity | None
) -> None:
    """A peer without a node certificate is disconnected before any command."""
    agent = connect(control, node_uuid=None, identity=identity)
    assert agent.pump.serverIO.disconnecting
    assert agent.updates == [] and not agent.server.handshaken
    assert LoggedMessage.of_type(eliot_logger.messages, AGENT_REFUSED)
    eliot_logger.flush_tracebacks(Exception)


def test_commands_before_handshake_refused(control: Control) -> None:
    """A state report before the version handshake is refused."""

    def server_transport(protocol: Any) -> iosim.FakeTransport:
        transport: iosim.FakeTransport = iosim.makeFakeServer(protocol)
        transport.test_identity = node_identity(NODE_A)  # type: ignore[attr-defined]
        return transport

    raw, server, pump = iosim.connectedServerAndClient(
        control.service.build_protocol,
        amp.AMP,
        serverTransportFactory=server_transport,
        clock=control.clock,
    )
    sent = raw.callRemote(
        NodeStateCommand,
        state=serialize_node_state(NodeState(uuid=NODE_A)),
        eliot_context="",
    )
    outcome = collect(sent)
    pump.flush()
    assert outcome[0].check(HandshakeRequired)
    assert control.state.as_deployment_state().nodes == {}


def test_malformed_state_refused(control: Control) -> None:
    """A report that is not a serialized NodeState is refused."""
    agent = connect(control)
    sent = agent.protocol.callRemote(
        NodeStateCommand, state=b'{"uuid": 1}', eliot_context=""
    )
    outcome = collect(sent)
    agent.pump.flush()
    assert outcome[0].check(BadNodeState)
    assert control.state.as_deployment_state().nodes == {}


def test_configuration_change_pushed_without_delay(control: Control) -> None:
    """A configuration change reaches a connected agent with no clock advance."""
    agent = connect(control)
    new = deployment_with(dataset_id(2))
    control.change(new)
    agent.pump.flush()
    assert agent.updates[-1][0] == new
    assert agent.server.acknowledged[0] == agent.protocol.version > 1


def test_second_push_is_a_diff(control: Control, eliot_logger: MemoryLogger) -> None:
    """After the first push, an agent receives diffs against what it acknowledged."""
    control.change(deployment_with(*[dataset_id(i) for i in range(1, 30)]))
    agent = connect(control)
    control.change(deployment_with(*[dataset_id(i) for i in range(1, 31)]))
    agent.pump.flush()
    first, second = LoggedAction.of_type(eliot_logger.messages, PUSH_CLUSTER_STATUS)
    assert first.start_message["base"] == 0
    assert second.start_message["base"] == first.start_message["version"]
    assert second.start_message["size"] < first.start_message["size"] / 10
    assert agent.updates[-1][0] == control.configuration.deployment


def test_state_reports_pushed_to_other_agents(control: Control) -> None:
    """A report from one node reaches the other node's agent."""
    a = connect(control, NODE_A)
    b = connect(control, NODE_B, kind="container")
    a.client.report_state(NodeState(uuid=NODE_A, hostname="a"))
    a.pump.flush()
    b.pump.flush()
    assert b.updates[-1][1].get_node(NODE_A).hostname == "a"


def test_roles_and_epochs_travel_both_ways(control: Control) -> None:
    """
    A copy's reported role and epoch reach the cluster state, and reach the
    other agents in the pushed diffs, also when only the role changes.
    """
    a = connect(control, NODE_A)
    b = connect(control, NODE_B)
    ds = dataset_id(1)

    def report(role: str, epoch: int) -> None:
        copy = DatasetState(dataset_id=ds, role=role, epoch=epoch)
        a.client.report_state(NodeState(uuid=NODE_A, datasets={ds: copy}))
        a.pump.flush()
        b.pump.flush()

    report("replica", 0)
    pushed = b.updates[-1][1].get_node(NODE_A).datasets[ds]
    assert (pushed.role, pushed.epoch) == ("replica", 0)
    report("diverged", 0)
    pushed = b.updates[-1][1].get_node(NODE_A).datasets[ds]
    assert (pushed.role, pushed.epoch) == ("diverged", 0)
    stored = control.state.as_deployment_state().get_node(NODE_A).datasets[ds]
    assert (stored.role, stored.epoch) == ("diverged", 0)


def test_pushes_coalesce_while_one_is_in_flight(control: Control) -> None:
    """Changes made while a push is unacknowledged go out together in the next."""
    agent = connect(control)
    before = len(agent.updates)
    for i in range(1, 6):
        control.change(deployment_with(*[dataset_id(j) for j in range(1, i + 1)]))
    agent.pump.flush()
    assert len(agent.updates) == before + 2
    assert agent.updates[-1][0] == control.configuration.deployment


def test_out_of_sync_agent_gets_full_document(control: Control) -> None:
    """An agent that lost track of its document is sent the whole document again."""
    agent = connect(control)
    agent.protocol.version = 12345  # as if it had applied something else
    new = deployment_with(dataset_id(3))
    control.change(new)
    agent.pump.flush()
    assert agent.updates[-1][0] == new
    assert agent.protocol.version == agent.server.acknowledged[0]


def test_large_values_are_chunked(control: Control) -> None:
    """Reports and pushes larger than AMP's 64 KiB value limit arrive intact."""
    agent = connect(control)
    datasets = {
        dataset_id(i): DatasetState(dataset_id=dataset_id(i), path="/x" * 100)
        for i in range(1, 400)
    }
    state = NodeState(uuid=NODE_A, datasets=datasets)
    assert len(serialize_node_state(state)) > 2 * 65536
    reported = agent.client.report_state(state)
    agent.pump.flush()
    assert result_of(reported) is None
    assert control.state.as_deployment_state().get_node(NODE_A) == state
    assert agent.updates[-1][1].get_node(NODE_A) == state


def test_eliot_task_continues_across_the_wire(
    control: Control, eliot_logger: MemoryLogger
) -> None:
    """The control service logs a report inside the agent's own eliot task."""
    agent = connect(control)
    agent.client.report_state(NodeState(uuid=NODE_A))
    agent.pump.flush()
    reports = LoggedAction.of_type(eliot_logger.messages, REPORT_STATE)
    assert len(reports) == 2  # the agent's, and the control's inside it
    tasks = {r.start_message["task_uuid"] for r in reports}
    assert len(tasks) == 1
    levels = sorted(len(r.start_message["task_level"]) for r in reports)
    assert levels[1] > levels[0]


def test_keepalives_keep_node_state(control: Control) -> None:
    """A connected node's state does not expire while keep-alives flow."""
    agent = connect(control)
    agent.client.report_state(NodeState(uuid=NODE_A, hostname="a"))
    agent.pump.flush()
    for _ in range(int(EXPIRATION * 3 / KEEPALIVE_INTERVAL)):
        control.clock.advance(KEEPALIVE_INTERVAL)
        agent.pump.flush()
    assert NODE_A in control.state.as_deployment_state().nodes


def test_agents_are_heard_from_by_kind(control: Control) -> None:
    """Reports and keep-alives note when each kind of agent was last heard from."""
    dataset_agent = connect(control, kind="dataset")
    dataset_agent.client.report_state(NodeState(uuid=NODE_A, datasets={}))
    dataset_agent.pump.flush()
    assert control.state.last_heard(NODE_A, "dataset") == control.clock.seconds()
    assert control.state.last_heard(NODE_A, "container") is None
    control.clock.advance(KEEPALIVE_INTERVAL)
    dataset_agent.pump.flush()
    assert control.state.last_heard(NODE_A, "dataset") == control.clock.seconds()


def test_silent_node_state_expires(control: Control) -> None:
    """A node whose agent disconnected is forgotten after the expiry time."""
    agent = connect(control)
    agent.client.report_state(NodeState(uuid=NODE_A, hostname="a"))
    agent.pump.flush()
    agent.protocol.transport.loseConnection()  # type: ignore[union-attr]
    agent.pump.flush()
    assert control.service.connections == frozenset()
    control.clock.advance(EXPIRATION / 2)
    assert NODE_A in control.state.as_deployment_state().nodes
    control.clock.advance(EXPIRATION)
    assert NODE_A not in control.state.as_deployment_state().nodes


def test_unanswered_keepalive_drops_connection(
    control: Control, eliot_logger: MemoryLogger
) -> None:
    """A peer that stops answering keep-alives is disconnected."""
    agent = connect(control)
    control.clock.advance(KEEPALIVE_INTERVAL)  # keep-alives sent, never pumped
    control.clock.advance(KEEPALIVE_INTERVAL)
    agent.pump.flush()
    assert agent.pump.serverIO.disconnecting
    assert control.service.connections == frozenset()
    assert not agent.client.is_connected


def test_report_while_disconnected(control: Control) -> None:
    """A report made while disconnected fails, and is sent once connected."""
    updates: list[Any] = []
    client = AgentAMPClient(
        control.clock,
        None,  # type: ignore[arg-type]
        "dataset",
        lambda c, s: updates.append(s),
    )
    state = NodeState(uuid=NODE_A, hostname="later")
    assert result_of(client.report_state(state)).check(NotConnected)
    waiting = client.connected()
    connect(control, client=client)
    assert result_of(waiting) is None
    assert control.state.as_deployment_state().get_node(NODE_A) == state


def test_agent_refuses_push_with_unknown_base(control: Control) -> None:
    """An agent answers a diff against a document it does not have with an error."""
    agent = connect(control)
    pushed = agent.server.callRemote(
        ClusterStatusCommand, base=999, version=1000, diff=b"[]", eliot_context=""
    )
    outcome = collect(pushed)
    agent.pump.flush()
    assert outcome[0].check(OutOfSync)


def test_version_answered(control: Control) -> None:
    """The control service answers the handshake with its protocol version."""
    agent = connect(control)
    answered = agent.protocol.callRemote(
        VersionCommand,
        protocol_version=PROTOCOL_VERSION,
        agent_kind="dataset",
        eliot_context="",
    )
    agent.pump.flush()
    assert result_of(answered) == {"protocol_version": PROTOCOL_VERSION}


def test_stop_drops_connections(control: Control) -> None:
    """Stopping the service closes agent connections and stops expiry."""
    agent = connect(control)
    control.service.stopService()
    agent.pump.flush()
    assert control.service.connections == frozenset()
    assert not agent.client.is_connected


def test_unchanged_parts_are_not_decoded_again(control: Control) -> None:
    """An agent reuses the values of the parts a push did not change."""
    a = connect(control, NODE_A)
    b = connect(control, NODE_B)
    a.client.report_state(NodeState(uuid=NODE_A, hostname="a"))
    a.pump.flush()
    b.pump.flush()
    configuration, state = a.updates[-1]
    b.client.report_state(NodeState(uuid=NODE_B, hostname="b"))
    b.pump.flush()
    a.pump.flush()
    new_configuration, new_state = a.updates[-1]
    assert new_state.get_node(NODE_B).hostname == "b"
    assert new_configuration is configuration
    assert new_state.nodes[NODE_A] is state.nodes[NODE_A]
    assert new_state == control.state.as_deployment_state()


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(deployments(), deployments())
def test_partial_configuration_decoding_matches_full(
    old: Deployment, new: Deployment
) -> None:
    """Decoding only the changed nodes gives the same configuration as decoding all."""
    old_doc = deployment_to_json(old)
    new_doc = apply_diff(diff_documents(old_doc, deployment_to_json(new)), old_doc)
    assert _decode_configuration(old_doc, new_doc, old) == new


def test_partial_decoding_falls_back_for_replicas() -> None:
    """A changed replica whose primary did not change is still decoded correctly."""
    dataset = Dataset(dataset_id=dataset_id(1))
    replica = Manifestation(dataset=dataset, primary=False)
    old = deployment_with(dataset_id(1), node=NODE_A).update_node(
        Node(uuid=NODE_B, manifestations={dataset_id(1): replica})
    )
    old_doc = deployment_to_json(old)
    changed = dict(old_doc, nodes=dict(old_doc["nodes"]))
    # Node B's subtree is a new object: only it is decoded, and alone it
    # holds a dataset without a primary, so the whole document is decoded.
    changed["nodes"][NODE_B] = deployment_to_json(old)["nodes"][NODE_B]
    assert _decode_configuration(old_doc, changed, old) == old


def test_agent_is_connected_when_first_pushed(control: Control) -> None:
    """The first push reaches an agent that already knows it is connected."""
    connected_at_push: list[bool] = []
    client = AgentAMPClient(
        control.clock,
        None,  # type: ignore[arg-type]
        "dataset",
        lambda c, s: connected_at_push.append(client.is_connected),
    )
    connect(control, client=client)
    assert connected_at_push == [True]


def test_agent_refusing_everything_is_not_pushed_in_a_loop(
    control: Control, eliot_logger: MemoryLogger
) -> None:
    """An agent that refuses even a full document gets one try per change."""
    refusals: list[int] = []

    class Refusing(AgentAMP):
        """An agent that cannot apply anything."""

        def cluster_status(self, base: int, version: int, data: bytes) -> None:
            refusals.append(base)
            raise OutOfSync("never")

    client = AgentAMPClient(
        control.clock,
        None,  # type: ignore[arg-type]
        "dataset",
        lambda c, s: None,
    )

    def server_transport(protocol: Any) -> iosim.FakeTransport:
        transport: iosim.FakeTransport = iosim.makeFakeServer(protocol)
        transport.test_identity = node_identity(NODE_A)  # type: ignore[attr-defined]
        return transport

    _, _, pump = iosim.connectedServerAndClient(
        control.service.build_protocol,
        lambda: Refusing(client),
        serverTransportFactory=server_transport,
        clock=control.clock,
    )
    pump.flush()
    assert refusals == [0]
    control.change(deployment_with(dataset_id(1)))
    pump.flush()
    assert refusals == [0, 0]
    eliot_logger.flush_tracebacks(OutOfSync)


def test_chunked_argument_round_trip() -> None:
    """A 300 KiB value is boxed as values AMP accepts and read back whole."""
    value = bytes(range(256)) * 1200
    strings: dict[bytes, bytes] = {}
    ChunkedBytes().toBox(b"diff", strings, {"diff": value}, None)
    assert strings[b"diff"] == b"5"
    assert all(len(v) <= 0xFFFF for v in strings.values())
    objects: dict[str, Any] = {}
    ChunkedBytes().fromBox(b"diff", strings, objects, None)
    assert objects == {"diff": value}


@pytest.mark.parametrize(
    "strings",
    [
        {},
        {b"diff": b"x"},
        {b"diff": b"-1"},
        {b"diff": b"2", b"diff.0": b"a"},
        {b"diff": b"1", b"diff.1": b"a"},
    ],
)
def test_chunked_argument_refuses_malformed_boxes(strings: dict[bytes, bytes]) -> None:
    """A missing count or a missing chunk is a malformed box, not a short value."""
    with pytest.raises(amp.MalformedAmpBox):
        ChunkedBytes().fromBox(b"diff", strings, {}, None)


def test_chunked_argument_takes_only_bytes() -> None:
    """Sending text where bytes are expected is a programming error."""
    with pytest.raises(TypeError):
        ChunkedBytes().toBox(b"diff", {}, {"diff": "text"}, None)


def test_agents_reconnect_within_seconds() -> None:
    """
    An agent's reconnection delays stay within a couple of seconds however
    many attempts failed, and its connection attempts time out as fast: an
    agent back from a partition is heard again long before a failover.
    """
    from flocker.control._protocol_agent import CONNECT_TIMEOUT, default_retry_policy

    policy = default_retry_policy()
    assert max(policy(attempt) for attempt in range(200)) <= 2.5
    assert CONNECT_TIMEOUT <= 2.0
