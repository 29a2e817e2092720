"""
`NodeRouter`: a node's TCP proxy from published ports to where applications run.

Each routed external port gets one listening port on the node's address.
Each accepted connection becomes a `_Connection` with two `_End` protocols,
one per socket, that forward bytes to each other:

* the client's socket is paused while the target is being connected, so
  nothing is read that could not be forwarded;
* once both are connected, each transport is registered as the other's
  streaming producer, so a slow reader on one side stops reading on the
  other (back-pressure in both directions, with Twisted's buffers bounded);
* a half-close (FIN) on one side becomes a half-close of the other side's
  writing, and a socket is closed only when both of its halves are done;
* when either socket goes away, the other is closed after what is buffered
  for it has been written.

The route of a port is looked up when a connection is accepted, so changing
a target affects new connections at once and leaves existing ones alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Set
from typing import Any, Generic, TypeVar

import attrs
from pyrsistent import PMap, pmap, pset
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import (
    CannotListenError,
    ConnectingCancelledError,
    ConnectionDone,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
)
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from flocker.common import TCPTimeReactor, backoff

from ._interface import IRouter, check_routes
from ._logging import CONNECTION, LISTEN_FAILED, SET_ROUTES
from ._model import Route

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "NodeRouter"]

#: The reactor a `NodeRouter` is given: tests keep their fake's own type.
_Reactor = TypeVar("_Reactor", bound=TCPTimeReactor)

#: Seconds to wait for a target to accept a forwarded connection.
DEFAULT_CONNECT_TIMEOUT = 10.0


def _default_retry_delays() -> Iterator[float]:
    """Delays between tries to listen on a port that is in use."""
    return backoff(initial=0.5, factor=2.0, maximum=30.0)


def _name(reason: Failure) -> str:
    """The name of a failure's exception type."""
    return getattr(reason.type, "__name__", "error")


def _address(address: Any) -> str:
    """An `IAddress` as ``host:port`` (or its ``repr`` for other kinds)."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return repr(address)
    return f"{host}:{port}"


@implementer(IHalfCloseableProtocol)
class _End(Protocol):
    """
    One socket of a forwarded connection: what it reads goes to its peer.

    :ivar peer: the other socket's `_End`, once both are connected.
    :ivar read_done: this socket's remote end will send nothing more.
    :ivar write_done: nothing more will be written to this socket.
    :ivar lost: this socket is closed.
    :ivar sent: bytes read from this socket (and forwarded).
    :ivar fed: the peer's transport is registered as this one's producer.
    """

    #: A TCP transport (``ITCPTransport`` and ``IPushProducer``) once connected.
    transport: Any

    def __init__(self, connection: _Connection) -> None:
        """An end of ``connection``; the client's end when first made."""
        self.connection = connection
        self.peer: _End | None = None
        self.read_done = False
        self.write_done = False
        self.lost = False
        self.sent = 0
        self.fed = False

    def feed_from(self, producer: Any) -> None:
        """Let ``producer`` (the peer's transport) pause when this socket is full."""
        self.transport.registerProducer(producer, True)
        self.fed = True

    def stop_feeding(self) -> None:
        """The peer's transport produces for this socket no more."""
        if self.fed:
            self.fed = False
            self.transport.unregisterProducer()

    def dataReceived(self, data: bytes) -> None:
        """Forward bytes to the peer (the socket is paused until there is one)."""
        self.sent += len(data)
        assert self.peer is not None
        self.peer.transport.write(data)

    def readConnectionLost(self) -> None:
        """The remote end half-closed: half-close the peer's writing."""
        self.read_done = True
        if self.peer is not None and not self.peer.lost:
            self.peer.stop_feeding()
            self.peer.transport.loseWriteConnection()
        if self.write_done:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Writing is closed; the socket closes once reading is done too."""
        self.write_done = True
        if self.read_done:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """The socket closed: close the peer, after what is buffered for it."""
        self.lost = True
        if self.peer is not None and not self.peer.lost:
            self.peer.stop_feeding()
            self.peer.transport.loseConnection()
        self.connection.end_lost(self, reason)


class _TargetFactory(Factory):
    """Hands the endpoint the target's `_End`, made beforehand."""

    def __init__(self, end: _End) -> None:
        """Build ``end`` when the target accepts."""
        self.end = end

    def buildProtocol(self, addr: Any) -> _End:
        """The target's end."""
        return self.end


class _ClientEnd(_End):
    """The client's socket: connects to the target when accepted."""

    def connectionMade(self) -> None:
        """Pause the client and connect to the target."""
        self.transport.pauseProducing()
        self.connection.connect_target(self)


@attrs.define(eq=False)
class _Connection:
    """
    One forwarded connection, from accepting the client to logging its end.

    :ivar router: the router that accepted it.
    :ivar route: the route in force when it was accepted.
    :ivar client: the client's address, ``host:port``.
    """

    router: NodeRouter[Any]
    route: Route
    client: str
    client_end: _End | None = None
    target_end: _End | None = None
    connecting: Deferred[Any] | None = None
    outcome: str | None = None
    error: str = ""

    def connect_target(self, client_end: _End) -> None:
        """Connect to the target; the client's end waits paused."""
        self.client_end = client_end
        host = self.route.target_host
        kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
        endpoint = kind(
            self.router.reactor,
            host,
            self.route.target_port,
            timeout=self.router.connect_timeout,
        )
        self.target_end = _End(self)
        self.connecting = endpoint.connect(_TargetFactory(self.target_end))
        self.connecting.addCallbacks(self._target_connected, self._target_failed)

    def _target_connected(self, target_end: _End) -> None:
        """Join the two ends, each producing for the other, and resume the client."""
        self.connecting = None
        client_end = self.client_end
        assert client_end is not None
        if client_end.lost:
            target_end.transport.loseConnection()
            return
        client_end.peer, target_end.peer = target_end, client_end
        client_end.feed_from(target_end.transport)
        target_end.feed_from(client_end.transport)
        client_end.transport.resumeProducing()

    def _target_failed(self, reason: Failure) -> None:
        """The target is unreachable (or the client left): close the client."""
        self.connecting = None
        self.target_end = None
        if reason.check(CancelledError, ConnectingCancelledError):
            self.outcome = "client_gone"
        else:
            self.outcome = "target_unreachable"
            self.error = reason.getErrorMessage() or _name(reason)
        assert self.client_end is not None
        if self.client_end.lost:
            self._log()
        else:
            self.client_end.transport.loseConnection()

    def end_lost(self, end: _End, reason: Failure) -> None:
        """One socket closed; log once both have (or the target never opened)."""
        if not reason.check(ConnectionDone) and self.outcome is None:
            self.outcome = "error"
            self.error = reason.getErrorMessage() or _name(reason)
        if self.connecting is not None:
            # The client left before the target answered: cancelling calls
            # _target_failed, which logs.
            self.connecting.cancel()
            return
        ends = [e for e in (self.client_end, self.target_end) if e is not None]
        if all(e.lost for e in ends):
            self._log()

    def _log(self) -> None:
        """Write the connection's one log message."""
        client_end, target_end = self.client_end, self.target_end
        CONNECTION.log(
            external_port=self.route.external_port,
            client=self.client,
            target=self.route.target,
            bytes_to_target=client_end.sent if client_end is not None else 0,
            bytes_to_client=target_end.sent if target_end is not None else 0,
            outcome=self.outcome or "closed",
            error=self.error,
        )


class _RouteFactory(ServerFactory):
    """Accepts connections on one routed port, for its router."""

    def __init__(self, router: NodeRouter[Any], external_port: int) -> None:
        """Accept for ``external_port`` of ``router``."""
        self.router = router
        self.external_port = external_port

    def buildProtocol(self, addr: Any) -> _End | None:
        """A client end following the port's current route, or none if unrouted."""
        route = self.router.routes().get(self.external_port)
        if route is None:
            return None
        return _ClientEnd(_Connection(self.router, route, _address(addr)))


@implementer(IRouter)
@attrs.define(eq=False)
class NodeRouter(Service, Generic[_Reactor]):
    """
    Forwards connections on this node's published ports to where they run.

    A Twisted service: it listens only while running (``startService``
    listens on the routes given so far, ``stopService`` stops every
    listener but keeps the routes); `set_routes` works in either state.

    The contract with the container agent, which owns one router per node:
    it gives routes only for applications **not** running on this node.
    Where Docker publishes an application's port on this node's address,
    the router must not listen on that port too, so such ports have no
    route (`flocker.route.routes_for_node` leaves them out).

    :ivar reactor: provides ``IReactorTCP`` and ``IReactorTime``.
    :ivar listen_address: this node's address; every routed port listens
        here (e.g. ``127.0.0.12``).
    :ivar connect_timeout: seconds to wait for a target to accept.
    :ivar retry_delays: makes the delays between tries to listen on a
        port that is in use, one iterator per port and failure streak.
    """

    reactor: _Reactor
    listen_address: str
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    retry_delays: Callable[[], Iterator[float]] = _default_retry_delays
    _routes: PMap[int, Route] = attrs.field(factory=pmap, init=False)
    _listeners: dict[int, IListeningPort] = attrs.field(factory=dict, init=False)
    _retries: dict[int, IDelayedCall] = attrs.field(factory=dict, init=False)
    _delays: dict[int, Iterator[float]] = attrs.field(factory=dict, init=False)
    _stopping: dict[int, Deferred[None]] = attrs.field(factory=dict, init=False)

    def routes(self) -> PMap[int, Route]:
        """The routes last given to `set_routes`."""
        return self._routes

    def listening(self) -> Set[int]:
        """The ports accepting connections now."""
        return pset(self._listeners)

    def set_routes(self, routes: PMap[int, Route]) -> Deferred[None]:
        """Replace the routes; see `IRouter.set_routes`."""
        try:
            new = check_routes(routes)
        except Exception as e:
            failed: Deferred[None] = Deferred()
            failed.errback(e)
            return failed
        old, self._routes = self._routes, new
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        changed = sorted(p for p in set(new) & set(old) if new[p] != old[p])
        if not (added or removed or changed):
            return succeed(None)
        with SET_ROUTES(
            listen_address=self.listen_address,
            added=added,
            removed=removed,
            changed=changed,
        ):
            stopped = [self._stop(port) for port in removed]
            for port in added:
                self._listen(port)
        return gatherResults(stopped).addCallback(lambda _: None)

    def startService(self) -> None:
        """Listen on every routed port."""
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's
        for port in sorted(self._routes):
            self._listen(port)

    def stopService(self) -> Deferred[None]:
        """
        Stop listening everywhere (and trying to); the routes are kept.

        Connections already forwarded carry on until either end closes them.
        """
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's
        ports = set(self._listeners) | set(self._retries)
        return gatherResults([self._stop(p) for p in sorted(ports)]).addCallback(
            lambda _: None
        )

    def _listen(self, port: int) -> None:
        """Listen on a routed port now, or schedule another try if it is in use."""
        if (
            not self.running
            or port not in self._routes
            or port in self._listeners
            or port in self._retries
        ):
            return
        stopping = self._stopping.get(port)
        if stopping is not None:
            # The old listener's socket is still open: listen once it is not.
            stopping.addCallback(lambda _: self._listen(port))
            return
        try:
            self._listeners[port] = self.reactor.listenTCP(
                port, _RouteFactory(self, port), interface=self.listen_address
            )
        except CannotListenError as e:
            delays = self._delays.get(port)
            if delays is None:
                delays = self._delays[port] = self.retry_delays()
            delay = next(delays)
            LISTEN_FAILED.log(
                listen_address=self.listen_address,
                external_port=port,
                error=str(e.socketError) if e.socketError else str(e),
                delay=delay,
            )
            self._retries[port] = self.reactor.callLater(delay, self._retry, port)
        else:
            self._delays.pop(port, None)

    def _retry(self, port: int) -> None:
        """A scheduled try to listen on a port."""
        del self._retries[port]
        self._listen(port)

    def _stop(self, port: int) -> Deferred[None]:
        """Stop listening (or trying to) on a port; fires once its socket is closed."""
        retry = self._retries.pop(port, None)
        if retry is not None:
            retry.cancel()
        self._delays.pop(port, None)
        listener = self._listeners.pop(port, None)
        if listener is None:
            return succeed(None)
        stopping: Deferred[Any] = maybeDeferred(listener.stopListening)
        stopping.addCallbacks(lambda _: None, lambda _: None)
        self._stopping[port] = stopping

        def forget(result: None) -> None:
            if self._stopping.get(port) is stopping:
                del self._stopping[port]

        stopping.addCallback(forget)
        done: Deferred[None] = Deferred()
        stopping.addCallback(lambda _: done.callback(None))
        return done
