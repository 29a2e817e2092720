"""
`NodeRouter`: a node's TCP proxy from published ports to where applications run.

Each routed external port gets one listening port on the node's address.
Each accepted connection becomes a `_Connection` with two `_End` protocols,
one per socket, that forward bytes to each other:

* the connection picks the least loaded of its route's targets (the router
  counts the connections open to each), and tries the others, each once,
  if connecting fails;
* until it is forwarded, the client's socket is read into a small buffer
  (reading stops when the buffer is full), so that its leaving is noticed
  while a target is being connected to as well as while it is held;
* with no target to try, the connection is held until the route gets new
  targets, the hold timeout passes, the port is unrouted or the router
  stops; when every target failed, they are tried again every `HELD_RETRY`
  seconds, whether or not the route changes;
* a client that closes its side once its connection has been held has
  gone (also while its targets are being tried again): it is closed, and
  what it sent is never carried out later, when it can no longer hear the
  answer;
* once both are connected, what was buffered goes first, then each
  transport is registered as the other's streaming producer, so a slow
  reader on one side stops reading on the other (back-pressure in both
  directions, with Twisted's buffers bounded);
* a half-close (FIN) on one side becomes a half-close of the other side's
  writing, and a socket is closed only when both of its halves are done;
* when either socket goes away, the other is closed after what is buffered
  for it has been written.

A connection looks its port's route up whenever it needs a target, so
changing a route affects new, connecting and held connections at once and
leaves forwarded ones alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Set
from enum import Enum
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

from flocker.common import TCPTimeReactor, backoff, no_delay

from ._interface import IRouter, check_routes
from ._logging import CONNECTION, LISTEN_FAILED, SET_ROUTES
from ._model import Route, Target

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "NodeRouter"]

#: The reactor a `NodeRouter` is given: tests keep their fake's own type.
_Reactor = TypeVar("_Reactor", bound=TCPTimeReactor)

#: Seconds to wait for a target to accept a forwarded connection.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Bytes a client may send before it is forwarded (while a target is being
#: connected to, or while it is held) before it is no longer read.
HOLD_BUFFER = 64 * 1024

#: Seconds between tries of a route's targets for a connection held because
#: every one of them failed (a target reported healthy that refuses for a
#: moment): the route need not change for it to be forwarded.
HELD_RETRY = 0.5


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
    :ivar sent: bytes read from this socket and forwarded.
    :ivar fed: the peer's transport is registered as this one's producer.
    """

    #: A TCP transport (``ITCPTransport`` and ``IPushProducer``) once connected.
    transport: Any

    def __init__(self, connection: _Connection) -> None:
        """An end of ``connection``."""
        self.connection = connection
        self.peer: _End | None = None
        self.read_done = False
        self.write_done = False
        self.lost = False
        self.sent = 0
        self.fed = False

    def connectionMade(self) -> None:
        """Relay small writes at once: requests and answers are often small."""
        no_delay(self.transport)

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
        """Forward bytes to the peer."""
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
    """
    The client's socket: until it has a peer, what it reads is kept.

    Until it is forwarded (while a target is being connected to, and while
    the connection is held) it is read, so that the client leaving is
    noticed, into ``pending``, and paused once that holds `HOLD_BUFFER`
    bytes.

    :ivar pending: bytes read before there was a target to forward them to.
    """

    def __init__(self, connection: _Connection) -> None:
        """The client's end of ``connection``."""
        super().__init__(connection)
        self.pending: list[bytes] = []
        self.pending_size = 0

    def connectionMade(self) -> None:
        """Pause the client and find it a target."""
        super().connectionMade()
        self.transport.pauseProducing()
        self.connection.start(self)

    def dataReceived(self, data: bytes) -> None:
        """Forward bytes to the peer, or keep them until there is one."""
        if self.peer is not None:
            super().dataReceived(data)
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= HOLD_BUFFER:
            self.transport.pauseProducing()

    def take_pending(self) -> bytes:
        """What was kept, now forwarded (and counted as sent)."""
        data = b"".join(self.pending)
        self.sent += len(data)
        self.pending, self.pending_size = [], 0
        return data

    def readConnectionLost(self) -> None:
        """The client half-closed; before there is a peer, the connection decides."""
        if self.peer is not None:
            super().readConnectionLost()
            return
        self.read_done = True
        self.connection.client_read_done()

    def resume(self) -> None:
        """Read from the client again, unless it has sent all it will or too much."""
        if not (self.read_done or self.lost) and self.pending_size < HOLD_BUFFER:
            self.transport.resumeProducing()


class _Phase(Enum):
    """Where a `_Connection` is in its life."""

    #: A target is being connected to; the client is read into a buffer.
    CONNECTING = "connecting"
    #: Waiting for the port to get a target; the client is read into a buffer.
    HELD = "held"
    #: Joined to a target: bytes flow both ways.
    FORWARDED = "forwarded"
    #: Being closed by the router without having been forwarded.
    CLOSING = "closing"


@attrs.define(eq=False)
class _Connection:
    """
    One accepted connection, from accepting the client to logging its end.

    It looks its port's route up each time it needs a target, so a route
    changed while it is being connected or held is followed.

    :ivar router: the router that accepted it.
    :ivar external_port: the routed port it was accepted on.
    :ivar client: the client's address, ``host:port``.
    :ivar target: the target being connected to or forwarded to, counted in
        the router's open connections while set.
    :ivar tried: the targets that failed since it was accepted or last
        released from holding (each is tried at most once per round).
    :ivar unreachable: every target that failed, for the log.
    :ivar held_for: seconds held before the current hold, if any.
    :ivar held_since: when the current hold began, while held.
    :ivar deadline: the call closing it when held too long, while held.
    :ivar retrying: the call trying the route's targets again, while held
        after they all failed.
    :ivar was_held: whether it has been held at all.
    """

    router: NodeRouter[Any]
    external_port: int
    client: str
    phase: _Phase = _Phase.CONNECTING
    client_end: _ClientEnd | None = None
    target_end: _End | None = None
    target: Target | None = None
    forwarded_to: str = ""
    connecting: Deferred[Any] | None = None
    tried: set[Target] = attrs.field(factory=set)
    unreachable: list[str] = attrs.field(factory=list)
    held_for: float = 0.0
    held_since: float | None = None
    deadline: IDelayedCall | None = None
    retrying: IDelayedCall | None = None
    was_held: bool = False
    first_held: float | None = None
    outcome: str | None = None
    error: str = ""

    def start(self, client_end: _ClientEnd) -> None:
        """The client is connected (and paused): find it a target."""
        self.client_end = client_end
        self._next()

    def _next(self) -> None:
        """Connect to the least loaded untried target, or hold if there is none."""
        route = self.router.routes().get(self.external_port)
        target = None if route is None else self.router._choose(route, self.tried)
        if target is None:
            self._hold(route)
        else:
            self._connect(target)

    def _connect(self, target: Target) -> None:
        """Connect to ``target``; the client is read meanwhile."""
        assert self.client_end is not None
        self.phase = _Phase.CONNECTING
        self.client_end.resume()
        self.target = target
        self.router._count(target, 1)
        kind = TCP6ClientEndpoint if ":" in target.host else TCP4ClientEndpoint
        endpoint = kind(
            self.router.reactor,
            target.host,
            target.port,
            timeout=self.router.connect_timeout,
        )
        self.target_end = _End(self)
        self.connecting = endpoint.connect(_TargetFactory(self.target_end))
        self.connecting.addCallbacks(self._target_connected, self._target_failed)

    def _target_connected(self, target_end: _End) -> None:
        """Join the two ends, each producing for the other, and resume the client."""
        self.connecting = None
        client_end = self.client_end
        assert client_end is not None and self.target is not None
        self.phase = _Phase.FORWARDED
        self.forwarded_to = self.target.address
        if client_end.lost:
            target_end.transport.loseConnection()
            return
        client_end.peer, target_end.peer = target_end, client_end
        client_end.feed_from(target_end.transport)
        pending = client_end.take_pending()
        if pending:
            target_end.transport.write(pending)
        if client_end.read_done:
            target_end.transport.loseWriteConnection()
        else:
            target_end.feed_from(client_end.transport)
            client_end.transport.resumeProducing()

    def _target_failed(self, reason: Failure) -> None:
        """The target is unreachable (or the client left): try another, or hold."""
        self.connecting = None
        self.target_end = None
        target, self.target = self.target, None
        assert target is not None and self.client_end is not None
        self.router._count(target, -1)
        if reason.check(CancelledError, ConnectingCancelledError):
            self._close("client_gone")
            return
        self.tried.add(target)
        self.unreachable.append(target.address)
        self.error = reason.getErrorMessage() or _name(reason)
        self._next()

    def _hold(self, route: Route | None) -> None:
        """Wait for the port to get a target (or close, if it cannot wait)."""
        if route is None:
            self._close("unrouted")
            return
        if not self.router.running:
            self._close("router_stopped")
            return
        assert self.client_end is not None
        if self.client_end.read_done:
            # It closed its side while its targets were tried: held now, it
            # could never be seen leaving, and it must not be carried out
            # after it gave up.
            self._close("client_gone")
            return
        self.phase = _Phase.HELD
        self.was_held = True
        reactor = self.router.reactor
        self.held_since = reactor.seconds()
        if self.first_held is None:
            self.first_held = self.held_since
        self.deadline = reactor.callLater(
            max(route.hold_timeout - self.held_for, 0.0), self._held_too_long
        )
        if route.targets and self.router.held_retry is not None:
            # Every target failed: try them again before long, changed or not.
            self.retrying = reactor.callLater(self.router.held_retry, self._retry)
        self.router._add_held(self)
        self.client_end.resume()

    def _unhold(self) -> None:
        """Stop holding: the time held is added up, the deadline cancelled."""
        if self.phase is not _Phase.HELD:
            return
        assert self.held_since is not None and self.deadline is not None
        self.held_for += self.router.reactor.seconds() - self.held_since
        self.held_since = None
        if self.deadline.active():
            self.deadline.cancel()
        self.deadline = None
        if self.retrying is not None and self.retrying.active():
            self.retrying.cancel()
        self.retrying = None
        self.router._remove_held(self)

    def release(self) -> None:
        """The port has new targets: try them (each once), starting now."""
        self._unhold()
        self.tried.clear()
        self._next()

    def _retry(self) -> None:
        """
        Try the route's targets again, if still held and its hold timeout,
        counted from when it was first held, is not over (the tries
        themselves are not held time).
        """
        self.retrying = None
        if self.phase is not _Phase.HELD:
            return
        route = self.router.routes().get(self.external_port)
        assert self.first_held is not None
        waited = self.router.reactor.seconds() - self.first_held
        if route is not None and waited >= route.hold_timeout:
            self.drop("held_too_long")
            return
        self.release()

    def drop(self, outcome: str) -> None:
        """Close a held connection, e.g. because its port is no longer routed."""
        self._unhold()
        self._close(outcome)

    def _held_too_long(self) -> None:
        """The hold timeout passed."""
        assert self.deadline is not None
        self.drop("held_too_long")

    def client_read_done(self) -> None:
        """
        The client closed its side before it was forwarded.

        Once its connection has been held, it has gone, whatever it sent: a
        client that stops waiting (an HTTP client that timed out closes its
        socket, which looks the same as a half-close) must not have its
        request carried out later, when it can no longer hear the answer
        and may have sent it again.  Its buffered bytes are dropped with it,
        and a target being tried again meanwhile is given up.  (A client
        never held, whose targets are being tried for the first time, has
        its half-close forwarded with the rest: a request followed at once
        by a half-close is how some clients speak.)
        """
        assert self.client_end is not None
        if self.phase is _Phase.HELD:
            self._unhold()
            self._close("client_gone")
        elif self.phase is _Phase.CONNECTING and self.was_held:
            assert self.connecting is not None
            self.connecting.cancel()  # _target_failed closes it

    def _close(self, outcome: str) -> None:
        """Close the client, never forwarded; logged once its socket is closed."""
        assert self.client_end is not None
        self.phase = _Phase.CLOSING
        self.outcome = outcome
        if self.client_end.lost:
            self._log()
        else:
            self.client_end.transport.loseConnection()

    def end_lost(self, end: _End, reason: Failure) -> None:
        """One socket closed; log once both have (or the target never opened)."""
        broken = not reason.check(ConnectionDone)
        error = (reason.getErrorMessage() or _name(reason)) if broken else ""
        if self.phase is _Phase.CONNECTING:
            # The client left before the target answered: cancelling calls
            # _target_failed, which logs.
            self.error = error or self.error
            assert self.connecting is not None
            self.connecting.cancel()
        elif self.phase is _Phase.HELD:
            self._unhold()
            self.outcome = "client_gone"
            self.error = error or self.error
            self._log()
        elif self.phase is _Phase.CLOSING:
            self._log()
        else:
            if broken and self.outcome is None:
                self.outcome = "error"
                self.error = error
            ends = [e for e in (self.client_end, self.target_end) if e is not None]
            if all(e.lost for e in ends):
                self._log()

    def _log(self) -> None:
        """Write the connection's one log message, and stop counting it."""
        if self.target is not None:
            self.router._count(self.target, -1)
            self.target = None
        client_end, target_end = self.client_end, self.target_end
        CONNECTION.log(
            external_port=self.external_port,
            client=self.client,
            target=self.forwarded_to,
            unreachable=self.unreachable,
            held=self.held_for,
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
        """A client end following the port's route, or none if it is unrouted."""
        if self.external_port not in self.router.routes():
            return None
        return _ClientEnd(_Connection(self.router, self.external_port, _address(addr)))


@implementer(IRouter)
@attrs.define(eq=False)
class NodeRouter(Service, Generic[_Reactor]):
    """
    Forwards connections on this node's published ports to where they run.

    A Twisted service: it listens only while running (``startService``
    listens on the routes given so far, ``stopService`` stops every
    listener and closes the connections it holds, but keeps the routes);
    `set_routes` works in either state.  How connections are spread over
    several targets and held while there is none is `IRouter`'s contract.

    The contract with the container agent, which owns one router per node:
    it gives routes only for applications **not** running on this node.
    Where Docker publishes an application's port on this node's address,
    the router must not listen on that port too, so such ports have no
    route (`flocker.route.routes_for_node` leaves them out).

    :ivar reactor: provides ``IReactorTCP`` and ``IReactorTime``.
    :ivar listen_address: this node's address; every routed port listens
        here (e.g. ``127.0.0.12``).
    :ivar connect_timeout: seconds to wait for a target to accept (then
        the route's next target is tried).
    :ivar retry_delays: makes the delays between tries to listen on a
        port that is in use, one iterator per port and failure streak.
    """

    reactor: _Reactor
    listen_address: str
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    retry_delays: Callable[[], Iterator[float]] = _default_retry_delays
    #: Seconds between tries of a held connection's failed targets
    #: (`HELD_RETRY`), or ``None`` to wait for the route to change.
    held_retry: float | None = HELD_RETRY
    _routes: PMap[int, Route] = attrs.field(factory=pmap, init=False)
    _listeners: dict[int, IListeningPort] = attrs.field(factory=dict, init=False)
    _retries: dict[int, IDelayedCall] = attrs.field(factory=dict, init=False)
    _delays: dict[int, Iterator[float]] = attrs.field(factory=dict, init=False)
    _stopping: dict[int, Deferred[None]] = attrs.field(factory=dict, init=False)
    _open: dict[Target, int] = attrs.field(factory=dict, init=False)
    _held: dict[int, list[_Connection]] = attrs.field(factory=dict, init=False)
    _rotation: dict[int, int] = attrs.field(factory=dict, init=False)

    def routes(self) -> PMap[int, Route]:
        """The routes last given to `set_routes`."""
        return self._routes

    def listening(self) -> Set[int]:
        """The ports accepting connections now."""
        return pset(self._listeners)

    def unavailable(self) -> Set[int]:
        """The routed ports that failed to listen and are being tried again."""
        return pset(self._retries)

    def held(self) -> PMap[int, int]:
        """Port → connections held on it now."""
        return pmap({port: len(held) for port, held in self._held.items()})

    def connections(self) -> PMap[Target, int]:
        """Target → connections open (or being connected) to it now."""
        return pmap(self._open)

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
            for port in removed:
                self._rotation.pop(port, None)
                for connection in list(self._held.get(port, ())):
                    connection.drop("unrouted")
            for port in added:
                self._listen(port)
            for port in changed:
                if new[port].targets and new[port].targets != old[port].targets:
                    for connection in list(self._held.get(port, ())):
                        connection.release()
        return gatherResults(stopped).addCallback(lambda _: None)

    def startService(self) -> None:
        """Listen on every routed port."""
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's
        for port in sorted(self._routes):
            self._listen(port)

    def stopService(self) -> Deferred[None]:
        """
        Stop listening everywhere (and trying to); the routes are kept.

        Held connections are closed; connections already forwarded carry on
        until either end closes them.
        """
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's
        for held in list(self._held.values()):
            for connection in list(held):
                connection.drop("router_stopped")
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

    def _choose(self, route: Route, tried: Set[Target]) -> Target | None:
        """
        The target of ``route`` not in ``tried`` with the fewest connections.

        Ties go to the first such target after the one chosen last for the
        route's port, in the route's order, so equal targets take turns.
        ``None`` if every target was tried (or there is none).
        """
        targets = route.targets
        if not targets:
            return None
        start = self._rotation.get(route.external_port, 0) % len(targets)
        best: tuple[int, int] | None = None
        for k in range(len(targets)):
            i = (start + k) % len(targets)
            if targets[i] in tried:
                continue
            load = self._open.get(targets[i], 0)
            if best is None or load < best[0]:
                best = (load, i)
        if best is None:
            return None
        self._rotation[route.external_port] = best[1] + 1
        return targets[best[1]]

    def _count(self, target: Target, change: int) -> None:
        """One more (``1``) or one fewer (``-1``) connection to ``target``."""
        count = self._open.get(target, 0) + change
        if count > 0:
            self._open[target] = count
        else:
            self._open.pop(target, None)

    def _add_held(self, connection: _Connection) -> None:
        """``connection`` is held, after those held before on its port."""
        self._held.setdefault(connection.external_port, []).append(connection)

    def _remove_held(self, connection: _Connection) -> None:
        """``connection`` is held no more."""
        held = self._held[connection.external_port]
        held.remove(connection)
        if not held:
            del self._held[connection.external_port]
