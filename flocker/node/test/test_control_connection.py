"""Unit tests for an agent's connection to one of several control service instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from eliot.testing import LoggedAction, LoggedMessage
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from flocker.ca import load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.control import (
    AgentAMPClient,
    ClusterStateService,
    ConfigurationService,
    MemoryConfigurationStore,
)
from flocker.control._protocol import ControlAMPService
from flocker.control._protocol_agent import CONNECT_TIMEOUT
from flocker.control.test.test_protocol import (
    EXPIRATION,
    NODE_A,
    Control,
    connect,
    identify,
)
from flocker.node._control_connection import (
    ControlAddress,
    RoundRobinEndpoint,
    control_endpoint,
    first_instance,
)
from flocker.node._fence import Fence, keepalive_interval
from flocker.node._logging import CONTROL_CONNECT, CONTROL_NO_ANSWER

A = ControlAddress(host="127.0.0.1", port=4524)
B = ControlAddress(host="127.0.0.2", port=4525)
C = ControlAddress(host="fd00::3", port=4600)


@implementer(IStreamClientEndpoint)
@attrs.define
class FakeEndpoint:
    """An endpoint whose connections succeed (onto a `StringTransport`) or are refused."""

    name: str
    tried: list[str]
    alive: bool = True
    protocols: list[Protocol] = attrs.field(factory=list)

    def connect(self, factory: Any) -> Deferred[Any]:
        """Record the attempt; connect at once, or be refused."""
        self.tried.append(self.name)
        if not self.alive:
            return fail(ConnectionRefusedError(self.name))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.protocols.append(protocol)
        return succeed(protocol)


def fakes(*names: str) -> tuple[list[str], list[FakeEndpoint]]:
    """Fake endpoints named ``names``, recording their attempts in one list."""
    tried: list[str] = []
    return tried, [FakeEndpoint(name, tried) for name in names]


def string_transport(protocol: Protocol) -> StringTransport:
    """The `StringTransport` a fake endpoint connected ``protocol`` to."""
    assert isinstance(protocol.transport, StringTransport)
    return protocol.transport


def round_robin(
    endpoints: list[FakeEndpoint], clock: Clock | None = None, **kwargs: Any
) -> RoundRobinEndpoint:
    """A round-robin endpoint over the fakes, for instances A, B, C in order."""
    return RoundRobinEndpoint(
        list(zip((A, B, C), endpoints, strict=False)), clock or Clock(), **kwargs
    )


def test_each_attempt_goes_to_the_next_instance() -> None:
    """Connection attempts go to the instances in turn, starting again at the first."""
    tried, endpoints = fakes("a", "b", "c")
    endpoint = round_robin(endpoints)
    for _ in range(4):
        endpoint.connect(Factory.forProtocol(Protocol))
    assert tried == ["a", "b", "c", "a"]


def test_the_first_attempt_goes_to_the_first_instance_given() -> None:
    """An endpoint told to start at an instance goes on round-robin from it."""
    tried, endpoints = fakes("a", "b", "c")
    endpoint = round_robin(endpoints, first=2)
    for _ in range(3):
        endpoint.connect(Factory.forProtocol(Protocol))
    assert tried == ["c", "a", "b"]


def test_nodes_spread_over_the_instances() -> None:
    """
    Nodes start with the instance a hash of their address picks: always the
    same for one address, and spread over the instances for many.
    """
    addresses = [f"198.18.0.{i}" for i in range(11, 71)]
    picks = [first_instance(address, 3) for address in addresses]
    assert picks == [first_instance(address, 3) for address in addresses]
    assert all(picks.count(index) >= 10 for index in range(3))


def test_no_instance_is_refused() -> None:
    """An endpoint needs at least one instance."""
    with pytest.raises(ValueError, match="no control service instance"):
        RoundRobinEndpoint([], Clock())


def test_control_address_names_itself() -> None:
    """An address reads ``HOST:PORT``, an IPv6 one in brackets; bad ports are refused."""
    assert (str(A), str(C)) == ("127.0.0.1:4524", "[fd00::3]:4600")
    with pytest.raises(Exception, match="not a TCP port"):
        ControlAddress(host="a", port=0)


def reconnecting(endpoint: RoundRobinEndpoint, clock: Clock) -> ClientService:
    """A started ``ClientService`` (as the agents' client uses) on ``endpoint``."""
    service = ClientService(
        endpoint,
        Factory.forProtocol(Protocol),
        retryPolicy=lambda attempt: 1.0,
        clock=clock,
    )
    service.startService()
    return service


def test_lost_connection_moves_to_the_next_instance() -> None:
    """When the connection to one instance is lost, the agent reconnects to the next."""
    tried, endpoints = fakes("a", "b")
    clock = Clock()
    service = reconnecting(round_robin(endpoints, clock), clock)
    assert tried == ["a"]
    endpoints[0].protocols[0].connectionLost(Failure(ConnectionRefusedError()))
    clock.advance(1.0)
    assert tried == ["a", "b"]
    service.stopService()


def test_failed_attempt_moves_to_the_next_instance() -> None:
    """
    A refused attempt is followed by one to the next instance, round-robin,
    until one connects: a lone live instance is found again.
    """
    tried, endpoints = fakes("a", "b", "c")
    endpoints[0].alive = endpoints[1].alive = False
    clock = Clock()
    service = reconnecting(round_robin(endpoints, clock), clock)
    clock.advance(1.0)
    clock.advance(1.0)
    assert tried == ["a", "b", "c"]
    assert len(endpoints[2].protocols) == 1
    # C goes away; only B is back: the agent goes round to it.
    endpoints[2].alive = False
    endpoints[1].alive = True
    endpoints[2].protocols[0].connectionLost(Failure(ConnectionRefusedError()))
    clock.advance(1.0)
    clock.advance(1.0)
    assert tried == ["a", "b", "c", "a", "b"]
    assert len(endpoints[1].protocols) == 1
    service.stopService()


def test_a_silent_instance_is_given_up(eliot_logger: Any) -> None:
    """
    A connection on which the instance says nothing within the answer
    timeout (a stopped process still accepts connections) is aborted, and
    the agent reconnects to the next instance.
    """
    tried, endpoints = fakes("a", "b")
    clock = Clock()
    service = reconnecting(round_robin(endpoints, clock, answer_timeout=5.0), clock)
    [silent] = endpoints[0].protocols
    clock.advance(4.9)
    assert not string_transport(silent).disconnecting
    clock.advance(0.1)
    assert string_transport(silent).disconnecting
    [message] = LoggedMessage.of_type(eliot_logger.messages, CONTROL_NO_ANSWER)
    assert (message.message["control_port"], message.message["timeout"]) == (4524, 5.0)
    silent.connectionLost(Failure(ConnectionRefusedError("aborted")))
    clock.advance(1.0)
    assert tried == ["a", "b"]
    service.stopService()


def test_an_instance_that_answers_is_kept() -> None:
    """Once anything arrived from the instance, the deadline no longer applies."""
    _, endpoints = fakes("a")
    clock = Clock()
    service = reconnecting(round_robin(endpoints, clock, answer_timeout=5.0), clock)
    [answering] = endpoints[0].protocols
    answering.dataReceived(b"")
    clock.advance(60)
    assert not string_transport(answering).disconnecting
    service.stopService()


def test_attempts_are_logged_with_the_instance(eliot_logger: Any) -> None:
    """Each attempt is an action naming the instance; it fails when the attempt does."""
    _, endpoints = fakes("a", "b")
    endpoints[1].alive = False
    endpoint = RoundRobinEndpoint(
        list(zip((A, B), endpoints, strict=True)), Clock(), "container"
    )
    endpoint.connect(Factory.forProtocol(Protocol))
    endpoint.connect(Factory.forProtocol(Protocol)).addErrback(lambda _: None)
    logged = LoggedAction.of_type(eliot_logger.messages, CONTROL_CONNECT)
    assert [
        (
            action.start_message["control_host"],
            action.start_message["control_port"],
            action.start_message["agent"],
            action.start_message["instances"],
            action.succeeded,
        )
        for action in logged
    ] == [
        ("127.0.0.1", 4524, "container", 2, True),
        ("127.0.0.2", 4525, "container", 2, False),
    ]


def test_connections_leave_from_the_node_address(tmp_path: Path) -> None:
    """
    Every instance is reached at its own port from the node's own address,
    with the 2 s connect timeout (the memory reactor resolves every host to
    127.0.0.1).
    """
    credentials = make_test_cluster_credentials(tmp_path, nodes=1)
    tls = load_tls_files(credentials.node_directories[0], "node")
    reactor = MemoryReactorClock()
    endpoint = control_endpoint(reactor, [A, B], tls, "dataset", "127.0.0.11")
    assert endpoint.next_address == [A, B][first_instance("127.0.0.11", 2)]
    endpoint.connect(Factory.forProtocol(Protocol))
    endpoint.connect(Factory.forProtocol(Protocol))
    reactor.advance(0)
    # Twisted types a connection attempt's timeout as int and its bind
    # address as a host name; connectTCP is given a float and a (host, port).
    attempts = cast(
        "list[tuple[str, int, ClientFactory, float, tuple[str, int] | None]]",
        reactor.tcpClients,
    )
    assert sorted(
        (host, port, timeout, bind) for host, port, _, timeout, bind in attempts
    ) == [
        ("127.0.0.1", 4524, CONNECT_TIMEOUT, ("127.0.0.11", 0)),
        ("127.0.0.1", 4525, CONNECT_TIMEOUT, ("127.0.0.11", 0)),
    ]


def _control(clock: Clock) -> Control:
    """A control service instance (its own configuration and state) on ``clock``."""
    configuration = ConfigurationService(MemoryConfigurationStore())
    configuration.load()
    state = ClusterStateService(clock, expiration=EXPIRATION)
    service = ControlAMPService(clock, configuration, state, identify=identify)
    service.startService()
    return Control(clock, configuration, state, service)


def test_a_fence_raised_with_one_instance_comes_down_with_the_next_push() -> None:
    """
    The fence measures silence whatever the instance: when instance A falls
    silent the fence goes up, and it comes down when the connection the
    agent moved to, on instance B, pushes a configuration.
    """
    clock = Clock()
    first, second = _control(clock), _control(clock)
    fence_after = 10.0
    holder: dict[str, Fence] = {}
    client = AgentAMPClient(
        clock,
        None,  # type: ignore[arg-type]
        "dataset",
        lambda configuration, state: holder["fence"].configuration_pushed(),
        keepalive_interval=keepalive_interval(fence_after),
        heard=lambda: holder["fence"].heard(),
    )
    holder["fence"] = Fence(clock, fence_after, connected=lambda: client.is_connected)
    holder["fence"].startService()
    connection = connect(first, NODE_A, client=client)
    for _ in range(4):  # A answers nothing any more
        clock.advance(keepalive_interval(fence_after))
    assert holder["fence"].is_up
    connection.pump.flush()  # the unanswered keep-alive dropped the connection
    assert not client.is_connected
    connect(second, NODE_A, client=client)
    assert client.is_connected
    assert not holder["fence"].is_up
