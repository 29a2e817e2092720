"""Unit tests for `NodeRouter` and `MemoryRouter`: no sockets, no sleeping."""

from __future__ import annotations

from typing import Any, cast

from pyrsistent import pmap
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    CannotListenError,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import IListeningPort
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from .. import DEFAULT_HOLD_TIMEOUT, MemoryRouter, NodeRouter
from ..testtools import fired, make_irouter_tests, route

ADDRESS = "127.0.0.12"


class _Port:
    """A listening port of `PortReactor`."""

    def __init__(self, reactor: PortReactor, port: int) -> None:
        self.reactor = reactor
        self.port = port

    def stopListening(self) -> Deferred[None] | None:
        """Close the port, at once or when the test fires ``reactor.stopping``."""
        if self.reactor.stopping is not None:
            d = self.reactor.stopping
            d.addCallback(lambda _: self.reactor.open.pop(self.port))
            return d.addCallback(lambda _: None)
        del self.reactor.open[self.port]
        return None


class PortReactor(MemoryReactorClock):
    """
    A memory reactor whose ports are taken while listened on.

    :ivar busy: ports something else holds: listening on them fails.
    :ivar open: port → factory, for the ports listened on now.
    :ivar stopping: if set, closing a port waits for this Deferred.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's
        self.busy: set[int] = set()
        self.open: dict[int, Any] = {}
        self.stopping: Deferred[None] | None = None

    def listenTCP(
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        """Listen, unless the port is busy or already listened on."""
        if port in self.busy or port in self.open:
            raise CannotListenError(interface, port, OSError(98, "Address in use"))
        super().listenTCP(port, factory, backlog, interface)  # type: ignore[no-untyped-call]
        self.open[port] = factory
        return cast(IListeningPort, _Port(self, port))


def started_router(
    reactor: PortReactor | None = None, **kwargs: Any
) -> NodeRouter[PortReactor]:
    """A running `NodeRouter` on a `PortReactor`."""
    router = NodeRouter(
        PortReactor() if reactor is None else reactor, ADDRESS, **kwargs
    )
    router.startService()
    return router


class TestNodeRouterContract(make_irouter_tests(started_router)):  # type: ignore[misc]
    """`NodeRouter` passes the `IRouter` contract."""


class TestMemoryRouterContract(make_irouter_tests(MemoryRouter)):  # type: ignore[misc]
    """`MemoryRouter` passes the `IRouter` contract."""


def test_memory_router_busy() -> None:
    """`MemoryRouter` reports a busy port as unavailable, not listening, and keeps a history."""
    router = MemoryRouter()
    router.busy.add(81)
    fired(router.set_routes(pmap({80: route(80), 81: route(81)})))
    fired(router.set_routes(pmap({80: route(80), 81: route(81)})))
    assert router.listening() == {80}
    assert router.unavailable() == {81}
    assert router.history == [pmap({80: route(80), 81: route(81)})]


class TestListening:
    """How `NodeRouter` manages its listening ports."""

    def test_listens_on_address(self) -> None:
        """Each routed port listens on the router's address."""
        router = started_router()
        fired(router.set_routes(pmap({8080: route(8080)})))
        [(port, _, _, interface)] = router.reactor.tcpServers
        assert (port, interface) == (8080, ADDRESS)

    def test_unchanged_untouched(self) -> None:
        """A port routed before and after keeps its listener, even if retargeted."""
        router = started_router()
        fired(router.set_routes(pmap({8080: route(8080), 8081: route(8081)})))
        factory = router.reactor.open[8080]
        fired(
            router.set_routes(
                pmap({8080: route(8080, "127.0.0.99"), 8081: route(8081)})
            )
        )
        assert router.reactor.open[8080] is factory
        assert len(router.reactor.tcpServers) == 2

    def test_not_running(self) -> None:
        """A stopped router keeps routes without listening; starting listens."""
        router = NodeRouter(PortReactor(), ADDRESS)
        fired(router.set_routes(pmap({8080: route(8080)})))
        assert router.routes() == pmap({8080: route(8080)})
        assert router.listening() == set()
        router.startService()
        assert router.listening() == {8080}

    def test_stop_service(self) -> None:
        """Stopping closes every port and cancels retries; the routes stay."""
        router = started_router()
        router.reactor.busy.add(8081)
        fired(router.set_routes(pmap({8080: route(8080), 8081: route(8081)})))
        fired(router.stopService())
        assert router.reactor.open == {}
        assert router.reactor.getDelayedCalls() == []
        assert router.routes() == pmap({8080: route(8080), 8081: route(8081)})
        router.reactor.busy.clear()
        router.startService()
        assert router.listening() == {8080, 8081}

    def test_busy_retried(self, eliot_logger: Any) -> None:
        """
        A port in use is unavailable, logged and tried again later, with
        growing delays, until it is listened on.
        """
        router = started_router(retry_delays=lambda: iter([1.0, 2.0, 4.0]))
        router.reactor.busy.add(8080)
        assert (
            fired(router.set_routes(pmap({8080: route(8080), 8081: route(8081)})))
            is None
        )
        assert router.listening() == {8081}
        assert router.unavailable() == {8080}
        router.reactor.advance(1.0)
        assert router.listening() == {8081}
        router.reactor.busy.clear()
        router.reactor.advance(1.9)
        assert router.listening() == {8081}
        router.reactor.advance(0.1)
        assert router.listening() == {8080, 8081}
        assert router.unavailable() == set()
        failures = [
            m
            for m in eliot_logger.messages
            if m.get("message_type") == "flocker:route:listen_failed"
        ]
        assert [(m["external_port"], m["delay"]) for m in failures] == [
            (8080, 1.0),
            (8080, 2.0),
        ]
        assert "Address in use" in failures[0]["error"]

    def test_backoff_restarts(self) -> None:
        """After a success, a later failure starts from the first delay again."""
        router = started_router(retry_delays=lambda: iter([1.0, 5.0]))
        router.reactor.busy.add(8080)
        fired(router.set_routes(pmap({8080: route(8080)})))
        router.reactor.busy.clear()
        router.reactor.advance(1.0)
        fired(router.set_routes(pmap()))
        router.reactor.busy.add(8080)
        fired(router.set_routes(pmap({8080: route(8080)})))
        assert [
            c.getTime() - router.reactor.seconds()
            for c in router.reactor.getDelayedCalls()
        ] == [1.0]

    def test_unrouted_retry_cancelled(self) -> None:
        """A port no longer routed is no longer tried."""
        router = started_router()
        router.reactor.busy.add(8080)
        fired(router.set_routes(pmap({8080: route(8080)})))
        fired(router.set_routes(pmap()))
        assert router.reactor.getDelayedCalls() == []

    def test_removed_stops(self) -> None:
        """A port no longer routed stops listening; set_routes waits for it."""
        reactor = PortReactor()
        router = started_router(reactor)
        fired(router.set_routes(pmap({8080: route(8080)})))
        reactor.stopping = Deferred()
        done = router.set_routes(pmap())
        assert not done.called
        assert router.listening() == set()
        reactor.stopping.callback(None)
        assert fired(done) is None
        assert reactor.open == {}

    def test_readd_while_stopping(self) -> None:
        """A port routed again while its old listener closes listens once closed."""
        reactor = PortReactor()
        router = started_router(reactor)
        fired(router.set_routes(pmap({8080: route(8080)})))
        stopping = reactor.stopping = Deferred()
        router.set_routes(pmap())
        reactor.stopping = None
        fired(router.set_routes(pmap({8080: route(8080, "127.0.0.31")})))
        assert 8080 not in router.listening()
        stopping.callback(None)
        assert router.listening() == {8080}
        assert reactor.getDelayedCalls() == []

    def test_logs_changes(self, eliot_logger: Any) -> None:
        """Each call that changes something logs which ports were added, removed, changed."""
        router = started_router()
        fired(router.set_routes(pmap({1: route(1), 2: route(2), 3: route(3)})))
        fired(
            router.set_routes(
                pmap({1: route(1), 2: route(2, "127.0.0.40"), 4: route(4)})
            )
        )
        fired(
            router.set_routes(
                pmap({1: route(1), 2: route(2, "127.0.0.40"), 4: route(4)})
            )
        )
        starts = [
            (m["added"], m["removed"], m["changed"], m["listen_address"])
            for m in eliot_logger.messages
            if m.get("action_type") == "flocker:route:set_routes"
            and m.get("action_status") == "started"
        ]
        assert starts == [([1, 2, 3], [], [], ADDRESS), ([4], [3], [2], ADDRESS)]


class HalfCloseTransport(StringTransport):
    """A `StringTransport` that can half-close (``loseWriteConnection``)."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        """Remember the half-close."""
        self.write_closed = True


class Proxied:
    """One connection accepted by a router, driven by hand."""

    def __init__(self, router: NodeRouter[PortReactor], port: int = 8080) -> None:
        self.router = router
        factory = router.reactor.open[port]
        self.client: Any = factory.buildProtocol(
            IPv4Address("TCP", "127.0.0.50", 40000)
        )
        self.client_transport = HalfCloseTransport()
        self.client.makeConnection(self.client_transport)
        self.host, self.port, self.target_factory, self.timeout, _ = (
            router.reactor.tcpClients[-1]
        )

    def connect(self) -> None:
        """The target accepts."""
        self.target: Any = self.target_factory.buildProtocol(
            IPv4Address("TCP", self.host, self.port)
        )
        assert self.target is not None
        self.target_transport = HalfCloseTransport()
        self.target.makeConnection(self.target_transport)

    def refuse(self) -> None:
        """The target refuses."""
        connector = self.router.reactor.connectors[-1]
        self.target_factory.clientConnectionFailed(
            connector, Failure(ConnectionRefusedError())
        )


def proxied(
    port: int = 8080,
    host: str = "127.0.0.21",
    connected: bool = True,
    held_retry: float | None = None,
) -> Proxied:
    """
    A connection through a router routing ``port`` to ``host`` (whose held
    connections wait for their route to change, unless ``held_retry``).
    """
    router = started_router(connect_timeout=7.0, held_retry=held_retry)
    fired(router.set_routes(pmap({port: route(port, host, 9000)})))
    connection = Proxied(router, port)
    if connected:
        connection.connect()
    return connection


def connection_logs(logger: Any) -> list[dict[str, Any]]:
    """The ``flocker:route:connection`` messages logged."""
    return [
        m
        for m in logger.messages
        if m.get("message_type") == "flocker:route:connection"
    ]


class TestConnection:
    """How `NodeRouter` forwards one connection."""

    def test_connects_to_target(self) -> None:
        """
        The client is read, not forwarded, while the route's target is
        connected to (so that its leaving is noticed).
        """
        c = proxied(connected=False)
        assert (c.host, c.port, c.timeout) == ("127.0.0.21", 9000, 7.0)
        assert c.client_transport.producerState == "producing"
        c.client.dataReceived(b"early")
        c.connect()
        assert c.target_transport.value() == b"early"

    def test_ipv6_target(self) -> None:
        """An IPv6 target is connected to over IPv6."""
        c = proxied(host="::1", connected=False)
        assert c.host == "::1"

    def test_joined(self) -> None:
        """Once connected, the client resumes and each side produces for the other."""
        c = proxied()
        assert c.client_transport.producerState == "producing"
        assert c.client_transport.producer is c.target_transport
        assert c.target_transport.producer is c.client_transport
        assert c.client_transport.streaming and c.target_transport.streaming

    def test_bytes_both_ways(self) -> None:
        """Bytes from either side reach the other unchanged."""
        c = proxied()
        c.client.dataReceived(b"hello ")
        c.client.dataReceived(b"target")
        c.target.dataReceived(b"hi client")
        assert c.target_transport.value() == b"hello target"
        assert c.client_transport.value() == b"hi client"

    def test_back_pressure(self) -> None:
        """A full buffer on one side pauses reading on the other, both ways."""
        c = proxied()
        client_producer: Any = c.client_transport.producer
        target_producer: Any = c.target_transport.producer
        client_producer.pauseProducing()
        assert c.target_transport.producerState == "paused"
        client_producer.resumeProducing()
        assert c.target_transport.producerState == "producing"
        target_producer.pauseProducing()
        assert c.client_transport.producerState == "paused"

    def test_half_close(self, eliot_logger: Any) -> None:
        """A client's half-close half-closes the target; replies still flow."""
        c = proxied()
        c.client.dataReceived(b"request")
        c.client.readConnectionLost()
        assert c.target_transport.write_closed
        assert c.target_transport.producer is None
        assert not c.client_transport.disconnecting
        c.target.dataReceived(b"reply")
        assert c.client_transport.value() == b"reply"
        c.target.readConnectionLost()
        assert c.client_transport.write_closed
        c.client.writeConnectionLost()
        assert c.client_transport.disconnecting
        c.target.writeConnectionLost()
        assert c.target_transport.disconnecting
        c.client.connectionLost(Failure(ConnectionDone()))
        assert connection_logs(eliot_logger) == []
        c.target.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert (log["bytes_to_target"], log["bytes_to_client"], log["outcome"]) == (
            7,
            5,
            "closed",
        )
        assert (log["client"], log["target"], log["external_port"]) == (
            "127.0.0.50:40000",
            "127.0.0.21:9000",
            8080,
        )
        assert (log["held"], log["unreachable"]) == (0, [])

    def test_target_closes(self, eliot_logger: Any) -> None:
        """The target closing closes the client after its buffer."""
        c = proxied()
        c.target.dataReceived(b"bye")
        c.target.connectionLost(Failure(ConnectionDone()))
        assert c.client_transport.disconnecting
        assert c.client_transport.producer is None
        assert c.client_transport.value() == b"bye"
        c.client.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert log["outcome"] == "closed"

    def test_client_breaks(self, eliot_logger: Any) -> None:
        """A client connection that breaks closes the target, and is logged as an error."""
        c = proxied()
        c.client.connectionLost(Failure(ConnectionLost("reset")))
        assert c.target_transport.disconnecting
        c.target.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert log["outcome"] == "error"
        assert "reset" in log["error"]

    def test_refused(self, eliot_logger: Any) -> None:
        """
        A client whose only target refuses is held, not closed, until the
        route's hold timeout closes it; it is logged with the target that
        failed and how long it was held.
        """
        c = proxied(connected=False)
        c.refuse()
        assert not c.client_transport.disconnecting
        assert c.router.held() == pmap({8080: 1})
        assert c.router.connections() == pmap()
        c.router.reactor.advance(DEFAULT_HOLD_TIMEOUT)
        assert c.client_transport.disconnecting
        assert c.router.held() == pmap()
        c.client.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert log["outcome"] == "held_too_long"
        assert (log["target"], log["unreachable"]) == ("", ["127.0.0.21:9000"])
        assert log["held"] == DEFAULT_HOLD_TIMEOUT
        assert (log["bytes_to_target"], log["bytes_to_client"]) == (0, 0)
        assert log["error"]

    def test_client_leaves_early(self, eliot_logger: Any) -> None:
        """A client leaving before the target answers cancels the connection attempt."""
        c = proxied(connected=False)
        c.client.connectionLost(Failure(ConnectionDone()))
        assert c.router.reactor.connectors[-1].stoppedConnecting
        [log] = connection_logs(eliot_logger)
        assert log["outcome"] == "client_gone"

    def test_retarget_new_connections(self) -> None:
        """A changed target is used by new connections; the old one keeps its own."""
        c = proxied()
        fired(c.router.set_routes(pmap({8080: route(8080, "127.0.0.22", 9001)})))
        c2 = Proxied(c.router)
        assert (c2.host, c2.port) == ("127.0.0.22", 9001)
        c.client.dataReceived(b"old")
        assert c.target_transport.value() == b"old"

    def test_removed_route_keeps_connections(self) -> None:
        """Removing a route leaves its open connections working."""
        c = proxied()
        factory = c.router.reactor.open[8080]
        fired(c.router.set_routes(pmap()))
        c.client.dataReceived(b"still")
        assert c.target_transport.value() == b"still"
        assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.50", 1)) is None
