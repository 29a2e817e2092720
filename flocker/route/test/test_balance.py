"""
Unit tests of how `NodeRouter` spreads connections over several targets and
holds those it has no target for: a fake reactor and clock, no sockets.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pyrsistent import pmap
from twisted.internet.address import IPv4Address
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    TCPTimedOutError,
)
from twisted.python.failure import Failure

from .. import NodeRouter, Target
from .._proxy import HELD_RETRY, HOLD_BUFFER
from ..testtools import fired, route_to
from .test_router import (
    HalfCloseTransport,
    PortReactor,
    connection_logs,
    started_router,
)

A = ("127.0.0.21", 9001)
B = ("127.0.0.22", 9002)
C = ("127.0.0.23", 9003)


def target(address: tuple[str, int]) -> Target:
    """The `Target` at ``address``."""
    return Target(host=address[0], port=address[1])


def router_to(
    *targets: tuple[str, int], hold_timeout: float = 30.0
) -> NodeRouter[PortReactor]:
    """A running router routing port 8080 to ``targets``."""
    router = started_router()
    fired(
        router.set_routes(
            pmap({8080: route_to(8080, *targets, hold_timeout=hold_timeout)})
        )
    )
    return router


class Attempt:
    """One connection attempt the router made to a target."""

    def __init__(self, router: NodeRouter[PortReactor], index: int) -> None:
        self.router = router
        self.index = index
        host, port, self.factory, self.timeout, _ = router.reactor.tcpClients[index]
        self.address = (host, port)

    def accept(self) -> Any:
        """The target accepts: the router's end of the connection to it."""
        wrapper: Any = self.factory.buildProtocol(IPv4Address("TCP", *self.address))
        wrapper.makeConnection(HalfCloseTransport())
        return wrapper._wrappedProtocol

    def fail(self, reason: Exception | None = None) -> None:
        """The target refuses (or times out, given ``TCPTimedOutError()``)."""
        self.factory.clientConnectionFailed(
            self.router.reactor.connectors[self.index],
            Failure(ConnectionRefusedError() if reason is None else reason),
        )


class Client:
    """A client connection accepted on a router's port, driven by hand."""

    def __init__(self, router: NodeRouter[PortReactor], port: int = 8080) -> None:
        self.router = router
        self.attempts_before = len(router.reactor.tcpClients)
        self.end: Any = router.reactor.open[port].buildProtocol(
            IPv4Address("TCP", "127.0.0.50", 40000)
        )
        self.transport = HalfCloseTransport()
        self.end.makeConnection(self.transport)
        self.target: Any = None

    def attempts(self) -> list[Attempt]:
        """The attempts made since this client connected (by anyone)."""
        count = len(self.router.reactor.tcpClients)
        return [Attempt(self.router, i) for i in range(self.attempts_before, count)]

    def last_attempt(self) -> Attempt:
        """The latest connection attempt the router made."""
        return Attempt(self.router, len(self.router.reactor.tcpClients) - 1)

    def forwarded(self) -> Any:
        """The latest attempt succeeds: the target's end."""
        self.target = self.last_attempt().accept()
        return self.target

    def close(self) -> None:
        """Both sockets close, as after a normal exchange."""
        self.end.connectionLost(Failure(ConnectionDone()))
        if self.target is not None:
            self.target.connectionLost(Failure(ConnectionDone()))


def open_client(router: NodeRouter[PortReactor]) -> tuple[Client, tuple[str, int]]:
    """A client forwarded to the target the router chose, and that target."""
    client = Client(router)
    address = client.last_attempt().address
    client.forwarded()
    return client, address


class TestLeastConnections:
    """A route with several targets sends each connection to the least loaded."""

    def test_fewest_open(self) -> None:
        """With two connections open to A and one to B, the next goes to B."""
        router = router_to(A)
        open_client(router)
        open_client(router)
        fired(router.set_routes(pmap({8080: route_to(8080, A, B)})))
        assert open_client(router)[1] == B
        assert open_client(router)[1] == B
        assert router.connections() == pmap({target(A): 2, target(B): 2})

    def test_closed_no_longer_counted(self) -> None:
        """A connection counts until both of its sockets have closed."""
        router = router_to(A, B)
        first, at = open_client(router)
        assert at == A
        second, at = open_client(router)
        assert at == B
        first.end.connectionLost(Failure(ConnectionDone()))
        assert router.connections() == pmap({target(A): 1, target(B): 1})
        first.target.connectionLost(Failure(ConnectionDone()))
        assert router.connections() == pmap({target(B): 1})
        assert open_client(router)[1] == A

    def test_connecting_counted(self) -> None:
        """A connection still being connected counts: a burst is spread at once."""
        router = router_to(A, B, C)
        addresses = [Client(router).last_attempt().address for _ in range(6)]
        assert addresses == [A, B, C, A, B, C]

    def test_ties_rotate(self) -> None:
        """Equally loaded targets take turns, even when each connection has closed."""
        router = router_to(A, B, C)
        chosen = []
        for _ in range(5):
            client, address = open_client(router)
            chosen.append(address)
            client.close()
        assert chosen == [A, B, C, A, B]
        assert router.connections() == pmap()

    def test_counts_across_ports(self) -> None:
        """A target's load counts its connections from every port routed to it."""
        router = started_router()
        fired(
            router.set_routes(
                pmap({8080: route_to(8080, A, B), 8081: route_to(8081, A)})
            )
        )
        Client(router, 8081).forwarded()
        assert Client(router).last_attempt().address == B

    def test_connect_timeout(self) -> None:
        """Each target is given the router's connect timeout."""
        router = started_router(connect_timeout=3.0)
        fired(router.set_routes(pmap({8080: route_to(8080, A, B)})))
        assert Client(router).last_attempt().timeout == 3.0


class TestFailover:
    """A target that cannot be connected to is skipped for the others."""

    def test_refused_then_next(self, eliot_logger: Any) -> None:
        """A refusing target is followed by the next; what is forwarded is logged."""
        router = router_to(A, B)
        client = Client(router)
        client.last_attempt().fail()
        assert client.last_attempt().address == B
        assert client.transport.producerState == "producing"
        target_end = client.forwarded()
        assert router.connections() == pmap({target(B): 1})
        client.end.dataReceived(b"hi")
        assert target_end.transport.value() == b"hi"
        client.close()
        [log] = connection_logs(eliot_logger)
        assert (log["target"], log["unreachable"], log["outcome"], log["held"]) == (
            "127.0.0.22:9002",
            ["127.0.0.21:9001"],
            "closed",
            0,
        )

    def test_timed_out_then_next(self) -> None:
        """A target that does not answer in time is followed by the next."""
        router = router_to(A, B)
        client = Client(router)
        client.last_attempt().fail(TCPTimedOutError())
        assert client.last_attempt().address == B

    def test_each_tried_once(self) -> None:
        """Every target is tried once, least loaded first, then the client is held."""
        router = router_to(A, B, C)
        open_client(router)  # A now has one connection.
        client = Client(router)
        tried = []
        for _ in range(3):
            attempt = client.last_attempt()
            tried.append(attempt.address)
            attempt.fail()
        assert tried == [B, C, A]
        assert len(client.attempts()) == 3
        assert router.held() == pmap({8080: 1})
        assert not client.transport.disconnecting

    def test_follows_route_change(self) -> None:
        """A failure after the route changed goes on with the new route's targets."""
        router = router_to(A, B)
        client = Client(router)
        fired(router.set_routes(pmap({8080: route_to(8080, C)})))
        client.last_attempt().fail()
        assert client.last_attempt().address == C

    def test_unrouted_while_connecting(self, eliot_logger: Any) -> None:
        """A client whose port stops being routed while it fails is closed."""
        router = router_to(A)
        client = Client(router)
        fired(router.set_routes(pmap()))
        client.last_attempt().fail()
        assert client.transport.disconnecting
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert (log["outcome"], log["unreachable"]) == ("unrouted", ["127.0.0.21:9001"])

    def test_client_leaves_while_connecting(self, eliot_logger: Any) -> None:
        """A client leaving during its second attempt cancels it; nothing is counted."""
        router = router_to(A, B)
        client = Client(router)
        client.last_attempt().fail()
        client.end.connectionLost(Failure(ConnectionDone()))
        assert router.reactor.connectors[-1].stoppedConnecting
        assert router.connections() == pmap()
        assert router.held() == pmap()
        [log] = connection_logs(eliot_logger)
        assert (log["outcome"], log["unreachable"]) == (
            "client_gone",
            ["127.0.0.21:9001"],
        )


class TestHold:
    """Connections to a port with no (reachable) target are held."""

    def test_held(self) -> None:
        """A connection to a route without targets is accepted, read, and held."""
        router = router_to()
        client = Client(router)
        assert client.attempts() == []
        assert router.held() == pmap({8080: 1})
        assert client.transport.producerState == "producing"
        assert not client.transport.disconnecting

    def test_forwarded_when_targets_come(self, eliot_logger: Any) -> None:
        """
        Held connections go to the targets given, spread over them, with
        what their clients sent meanwhile; how long they were held is logged.
        """
        router = router_to()
        first, second = Client(router), Client(router)
        first.end.dataReceived(b"early ")
        first.end.dataReceived(b"bird")
        router.reactor.advance(2.5)
        fired(router.set_routes(pmap({8080: route_to(8080, A, B)})))
        assert router.held() == pmap()
        assert [a.address for a in first.attempts()] == [A, B]
        [to_a, to_b] = first.attempts()
        first.target = to_a.accept()
        second.target = to_b.accept()
        assert first.target.transport.value() == b"early bird"
        assert first.transport.producerState == "producing"
        first.end.dataReceived(b"!")
        first.target.dataReceived(b"reply")
        assert first.target.transport.value() == b"early bird!"
        assert first.transport.value() == b"reply"
        first.close()
        [log] = connection_logs(eliot_logger)
        assert (log["held"], log["target"], log["bytes_to_target"]) == (
            2.5,
            "127.0.0.21:9001",
            11,
        )

    def test_forwarded_after_all_failed(self) -> None:
        """A client held after every target failed goes to the next targets given."""
        router = router_to(A)
        client = Client(router)
        client.last_attempt().fail()
        fired(router.set_routes(pmap({8080: route_to(8080, A, B)})))
        assert [a.address for a in client.attempts()][1:] == [B]

    def test_same_targets_keep_holding(self) -> None:
        """A route change that leaves the targets as they were does not release."""
        router = router_to(A)
        client = Client(router)
        client.last_attempt().fail()
        fired(router.set_routes(pmap({8080: route_to(8080, A, hold_timeout=60)})))
        assert len(client.attempts()) == 1
        assert router.held() == pmap({8080: 1})

    def test_only_its_port_released(self) -> None:
        """Targets for one port release only that port's held connections."""
        router = started_router()
        fired(router.set_routes(pmap({8080: route_to(8080), 8081: route_to(8081)})))
        Client(router, 8080)
        Client(router, 8081)
        fired(router.set_routes(pmap({8080: route_to(8080, A), 8081: route_to(8081)})))
        assert router.held() == pmap({8081: 1})

    def test_timeout(self, eliot_logger: Any) -> None:
        """A connection held for the route's hold timeout is closed and logged."""
        router = router_to(hold_timeout=5)
        client = Client(router)
        router.reactor.advance(4.9)
        assert not client.transport.disconnecting
        router.reactor.advance(0.1)
        assert client.transport.disconnecting
        assert router.held() == pmap()
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert (log["outcome"], log["held"], log["target"]) == (
            "held_too_long",
            5.0,
            "",
        )

    def test_zero_timeout(self) -> None:
        """A hold timeout of 0 closes a connection without a target at once."""
        router = router_to(hold_timeout=0)
        client = Client(router)
        router.reactor.advance(0)
        assert client.transport.disconnecting

    def test_timeout_counts_every_hold(self, eliot_logger: Any) -> None:
        """Time held before a failed release counts towards the hold timeout."""
        router = started_router(held_retry=None)
        fired(router.set_routes(pmap({8080: route_to(8080, hold_timeout=5)})))
        client = Client(router)
        router.reactor.advance(2)
        fired(router.set_routes(pmap({8080: route_to(8080, A, hold_timeout=5)})))
        router.reactor.advance(1)
        client.last_attempt().fail()
        router.reactor.advance(2.9)
        assert not client.transport.disconnecting
        router.reactor.advance(0.1)
        assert client.transport.disconnecting
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert (log["outcome"], log["held"]) == ("held_too_long", 5.0)

    def test_unrouted(self, eliot_logger: Any) -> None:
        """Held connections are closed when their port is no longer routed."""
        router = router_to()
        client = Client(router)
        fired(router.set_routes(pmap()))
        assert client.transport.disconnecting
        assert router.reactor.getDelayedCalls() == []
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert log["outcome"] == "unrouted"

    def test_router_stops(self, eliot_logger: Any) -> None:
        """A router that stops closes the connections it holds."""
        router = router_to()
        client = Client(router)
        fired(router.stopService())
        assert client.transport.disconnecting
        assert router.held() == pmap()
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert log["outcome"] == "router_stopped"

    def test_stopped_router_does_not_hold(self) -> None:
        """A connection whose targets fail after the router stopped is closed."""
        router = router_to(A)
        client = Client(router)
        fired(router.stopService())
        client.last_attempt().fail()
        assert client.transport.disconnecting
        assert router.held() == pmap()

    def test_client_resets(self, eliot_logger: Any) -> None:
        """A held client that goes away is forgotten, its deadline cancelled, its bytes dropped."""
        router = router_to()
        client = Client(router)
        client.end.dataReceived(b"never forwarded")
        router.reactor.advance(1.5)
        client.end.connectionLost(Failure(ConnectionLost("reset")))
        assert router.held() == pmap()
        assert router.reactor.getDelayedCalls() == []
        [log] = connection_logs(eliot_logger)
        assert (log["outcome"], log["held"]) == ("client_gone", 1.5)
        assert (log["bytes_to_target"], log["target"]) == (0, "")
        assert "reset" in log["error"]

    def test_client_closes_without_sending(self, eliot_logger: Any) -> None:
        """A held client that closes its end having sent nothing has gone."""
        router = router_to()
        client = Client(router)
        client.end.readConnectionLost()
        assert client.transport.disconnecting
        assert router.held() == pmap()
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert log["outcome"] == "client_gone"

    def test_request_then_close_while_held_is_never_forwarded(self, eliot_logger: Any) -> None:
        """
        A held client that sent a request and then closed its side (an HTTP
        client that gave up waiting) has gone: it is closed, its request is
        dropped, and a target that appears later never receives it.
        """
        router = router_to()
        client = Client(router)
        client.end.dataReceived(b"GET /?w1 HTTP/1.0\r\n\r\n")
        client.end.readConnectionLost()
        assert router.held() == pmap()
        assert client.transport.disconnecting
        fired(router.set_routes(pmap({8080: route_to(8080, A)})))
        assert router.connections() == pmap()
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert log["outcome"] == "client_gone" and log["bytes_to_target"] == 0

    def test_buffer_bounded(self) -> None:
        """A held client is no longer read once it sent `HOLD_BUFFER` bytes."""
        router = router_to()
        client = Client(router)
        client.end.dataReceived(b"x" * (HOLD_BUFFER - 1))
        assert client.transport.producerState == "producing"
        client.end.dataReceived(b"x")
        assert client.transport.producerState == "paused"
        fired(router.set_routes(pmap({8080: route_to(8080, A)})))
        target_end = client.forwarded()
        assert len(target_end.transport.value()) == HOLD_BUFFER
        assert client.transport.producerState == "producing"

    def test_read_while_connecting(self) -> None:
        """A released client is still read while its target is connected to."""
        router = router_to()
        client = Client(router)
        fired(router.set_routes(pmap({8080: route_to(8080, A)})))
        assert client.transport.producerState == "producing"

    def test_failed_targets_tried_again_while_held(self) -> None:
        """
        A client held because its only target failed has it tried again
        after `HELD_RETRY` seconds (not held meanwhile), the route unchanged,
        and again after each failure, until it is forwarded.
        """
        router = router_to(A)
        client = Client(router)
        client.last_attempt().fail()
        assert router.held() == pmap({8080: 1})
        attempts = len(router.reactor.tcpClients)
        router.reactor.advance(HELD_RETRY)
        assert len(router.reactor.tcpClients) == attempts + 1
        assert router.held() == pmap()
        client.last_attempt().fail()
        assert router.held() == pmap({8080: 1})
        router.reactor.advance(HELD_RETRY)
        client.forwarded()
        assert router.connections() == pmap({target(A): 1})

    def test_client_leaving_while_its_target_is_tried_again_is_gone(
        self, eliot_logger: Any
    ) -> None:
        """
        A held client that half-closes while its target is being tried
        again has gone: the attempt is given up, the client closed, and what
        it sent is never forwarded (it can no longer hear the answer).
        """
        router = router_to(A)
        client = Client(router)
        client.last_attempt().fail()
        client.end.dataReceived(b"POST /write")
        router.reactor.advance(HELD_RETRY)
        client.end.readConnectionLost()
        assert router.reactor.connectors[-1].stoppedConnecting
        assert client.transport.disconnecting
        assert router.connections() == pmap()
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert (log["outcome"], log["bytes_to_target"], log["target"]) == (
            "client_gone",
            0,
            "",
        )

    def test_half_closed_client_whose_targets_all_failed_is_gone(
        self, eliot_logger: Any
    ) -> None:
        """
        A client that sent a request and half-closed while its only target
        was tried, which then failed, is closed rather than held: held, it
        could never be seen leaving, and its request would be carried out
        by a later try after it gave up.
        """
        router = router_to(A)
        client = Client(router)
        client.end.dataReceived(b"POST /charge")
        client.end.readConnectionLost()
        client.last_attempt().fail()
        assert client.transport.disconnecting and router.held() == pmap()
        client.end.connectionLost(Failure(ConnectionDone()))
        [log] = connection_logs(eliot_logger)
        assert (log["outcome"], log["bytes_to_target"]) == ("client_gone", 0)

    def test_retries_stop_at_the_hold_timeout(self) -> None:
        """
        Trying a held connection's failed targets again stops once the hold
        timeout, counted from when it was first held, is over.
        """
        router = started_router()
        fired(router.set_routes(pmap({8080: route_to(8080, A, hold_timeout=3)})))
        client = Client(router)
        for _ in range(4):
            client.last_attempt().fail()
            router.reactor.advance(HELD_RETRY)
            router.reactor.advance(0.2)  # each try takes a while
        assert not client.transport.disconnecting
        client.last_attempt().fail()
        router.reactor.advance(HELD_RETRY)  # 3.3 s since first held, 2.5 s of it held
        assert client.transport.disconnecting

    def test_half_close_before_first_target_answers_is_forwarded(self) -> None:
        """
        A client never held that sends a request and half-closes while its
        target is connected to (or after a first target refused) has both
        forwarded: it is how some clients speak.
        """
        router = router_to(A, B)
        client = Client(router)
        client.end.dataReceived(b"request")
        client.end.readConnectionLost()
        client.last_attempt().fail()
        target_end = client.forwarded()
        assert target_end.transport.value() == b"request"
        assert target_end.transport.write_closed


class TestRetarget:
    """Changing a route's targets leaves forwarded connections alone."""

    def test_forwarded_carry_on(self) -> None:
        """A connection forwarded to A keeps A after the route moves to B, or to none."""
        router = router_to(A)
        client, _ = open_client(router)
        fired(router.set_routes(pmap({8080: route_to(8080, B)})))
        fired(router.set_routes(pmap({8080: route_to(8080)})))
        client.end.dataReceived(b"still A")
        assert client.target.transport.value() == b"still A"
        assert not client.transport.disconnecting
        assert router.connections() == pmap({target(A): 1})
        assert router.held() == pmap()


#: What may happen next to a router, for `test_nothing_leaks`.
_events = st.one_of(
    st.tuples(st.just("connect"), st.integers(0, 1)),
    st.tuples(st.just("accept"), st.integers(0, 20)),
    st.tuples(st.just("refuse"), st.integers(0, 20)),
    st.tuples(st.just("client_leaves"), st.integers(0, 20)),
    st.tuples(st.just("client_half_closes"), st.integers(0, 20)),
    st.tuples(st.just("client_sends"), st.integers(0, 20)),
    st.tuples(st.just("target_closes"), st.integers(0, 20)),
    st.tuples(
        st.just("route"),
        st.one_of(st.none(), st.lists(st.sampled_from([A, B, C]), unique=True)),
    ),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 3.0, 10.0])),
)


class _Simulation:
    """A router on a fake reactor, and every socket it was given, driven by events."""

    def __init__(self) -> None:
        self.router = started_router()
        self.clients: list[Client] = []
        self.targets: list[Any] = []
        self.resolved: set[int] = set()
        fired(self.router.set_routes(pmap({8080: route_to(8080, A, hold_timeout=5)})))

    def pending(self) -> list[Attempt]:
        """Attempts neither answered nor cancelled."""
        reactor = self.router.reactor
        return [
            Attempt(self.router, i)
            for i in range(len(reactor.tcpClients))
            if i not in self.resolved and not reactor.connectors[i].stoppedConnecting
        ]

    def open_clients(self) -> list[Client]:
        """Clients whose socket is open."""
        return [c for c in self.clients if not c.end.lost]

    def settle(self) -> None:
        """Sockets the router closed (or half-closed both ways) close."""
        progress = True
        while progress:
            progress = False
            for end in [c.end for c in self.clients] + self.targets:
                if end.transport.disconnecting and not end.lost:
                    end.connectionLost(Failure(ConnectionDone()))
                    progress = True

    def run(self, event: str, value: Any) -> None:
        """Make one event happen (if it can), then let closes complete."""
        router = self.router
        if event == "connect" and 8080 in router.reactor.open:
            self.clients.append(Client(router))
        elif event in ("accept", "refuse") and self.pending():
            pending = self.pending()
            attempt = pending[value % len(pending)]
            self.resolved.add(attempt.index)
            if event == "accept":
                self.targets.append(attempt.accept())
            else:
                attempt.fail()
        elif event.startswith("client_") and self.open_clients():
            clients = self.open_clients()
            client = clients[value % len(clients)]
            if event == "client_leaves":
                client.end.connectionLost(Failure(ConnectionLost("reset")))
            elif event == "client_sends" and not client.end.read_done:
                client.end.dataReceived(b"x" * 1000)
            elif not client.end.read_done:
                client.end.readConnectionLost()
        elif event == "target_closes":
            targets = [t for t in self.targets if not t.lost]
            if targets:
                targets[value % len(targets)].connectionLost(Failure(ConnectionDone()))
        elif event == "route":
            new = (
                {} if value is None else {8080: route_to(8080, *value, hold_timeout=5)}
            )
            fired(router.set_routes(pmap(new)))
        elif event == "advance":
            router.reactor.advance(value)
        self.settle()

    def check(self) -> None:
        """The router's counts match the sockets."""
        counted = sum(self.router.connections().values())
        unanswered = len(self.pending())
        forwarded = len(
            {
                id(t.connection)
                for t in self.targets
                if not (t.lost and t.connection.client_end.lost)
            }
        )
        assert counted == unanswered + forwarded
        held = sum(self.router.held().values())
        assert held <= len(self.open_clients())
        assert all(n > 0 for n in self.router.connections().values())


@settings(max_examples=200, deadline=None)
@given(st.lists(_events, max_size=40))
def test_nothing_leaks(events: list[tuple[str, Any]]) -> None:
    """
    Whatever happens, in whatever order, the router counts exactly the
    connections open or being connected; once every client has gone and the
    port is unrouted, nothing is counted, held or scheduled, and every
    connection was logged once.
    """
    from eliot import MemoryLogger
    from eliot.testing import swap_logger

    logger = MemoryLogger()
    previous = swap_logger(logger)
    try:
        sim = _Simulation()
        for event, value in events:
            sim.run(event, value)
            sim.check()
        sim.run("route", None)
        for attempt in sim.pending():
            sim.resolved.add(attempt.index)
            attempt.fail()
        for client in sim.open_clients():
            client.end.connectionLost(Failure(ConnectionDone()))
        for end in sim.targets:
            if not end.lost:
                end.connectionLost(Failure(ConnectionDone()))
        sim.settle()
    finally:
        swap_logger(previous)
    logger.validate()
    assert sim.router.connections() == pmap()
    assert sim.router.held() == pmap()
    assert sim.router.reactor.getDelayedCalls() == []
    assert len(connection_logs(logger)) == len(sim.clients)
