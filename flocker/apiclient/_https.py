"""
HTTPS connections to control service instances: made only once TLS is up.

Twisted's web client counts a connection as made when TCP connects; the TLS
handshake follows unbounded, the request waiting in TLS's buffer.  An
instance whose process is stopped or wedged still gets its TCP connections
accepted by the kernel, so a request to it would wait for the request
timeout (or for ever) and, since it may look sent, could not go to another
instance.  `HandshakenEndpoints` (an agent's endpoint factory) makes a
connection count as made only once its TLS handshake is done: a handshake
not done within the timeout fails the connection with a
``twisted.internet.error.TimeoutError``, and one that fails fails it with
`TLSHandshakeFailed` — both connection errors (``ConnectError``), raised
before a byte of the request left, so the client may send the request to
the next instance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from flocker.common import TCPTimeReactor

__all__ = ["HandshakenEndpoints", "TLSHandshakeFailed", "https_agent"]


class _Clock(Protocol):
    """What times a handshake: ``IReactorTime.callLater`` (a reactor, a ``Clock``)."""

    def callLater(  # noqa: N802 - Twisted's name
        self,
        delay: float,
        callable: Callable[..., Any],
        *args: object,
        **kwargs: object,
    ) -> IDelayedCall:
        """Call ``callable`` in ``delay`` seconds."""


class TLSHandshakeFailed(ConnectError):
    """
    The TLS handshake with an instance failed (no request was sent).

    :ivar reason: why, as the TLS layer said (e.g. an ``OpenSSL.SSL.Error``).
    """

    def __init__(self, reason: BaseException) -> None:
        """Record why the handshake failed."""
        super().__init__(string=str(reason))  # type: ignore[no-untyped-call]  # Twisted's
        self.reason = reason

    def __str__(self) -> str:
        """``TLS handshake failed: <reason>``."""
        return f"TLS handshake failed: {self.reason}"


@implementer(IHandshakeListener)
class _HandshakeWatch(ProtocolWrapper):
    """
    Sits between TLS and the HTTP protocol: fires ``done`` when the TLS
    handshake is done, fails it if the connection ends first or the
    handshake takes longer than the timeout.
    """

    def __init__(self, factory: _HandshakeWatchFactory, wrapped: IProtocol) -> None:
        """Wrap ``wrapped`` for ``factory`` (a `_HandshakeWatchFactory`)."""
        super().__init__(factory, wrapped)
        self.done: Deferred[IProtocol] = factory.done
        self._clock: _Clock = factory.clock
        self._timeout: float = factory.timeout
        self._timer: IDelayedCall | None = None

    def makeConnection(self, transport: ITransport) -> None:  # noqa: N802 (Twisted's name)
        """TCP is connected: the handshake has ``timeout`` seconds."""
        self._timer = self._clock.callLater(self._timeout, self._too_slow)
        super().makeConnection(transport)  # type: ignore[no-untyped-call]  # Twisted's

    def handshakeCompleted(self) -> None:  # noqa: N802 (Twisted's name)
        """TLS is up: the connection is made."""
        self.stop_timer()
        if not self.done.called:
            self.done.callback(self.wrappedProtocol)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """A connection lost before the handshake was done was never made."""
        self.stop_timer()
        if not self.done.called:
            self.done.errback(TLSHandshakeFailed(reason.value or Exception("lost")))
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # Twisted's

    def _too_slow(self) -> None:
        self._timer = None
        if not self.done.called:
            self.done.errback(
                TimeoutError(
                    string=f"TLS handshake not done within {self._timeout:g} s"
                )
            )
        cast(ITCPTransport, self.transport).abortConnection()

    def stop_timer(self) -> None:
        """Stop waiting for the handshake."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _HandshakeWatchFactory(WrappingFactory[_HandshakeWatch]):
    """Makes the `_HandshakeWatch` of one connection attempt."""

    protocol = _HandshakeWatch

    def __init__(
        self, wrapped: IProtocolFactory, clock: _Clock, timeout: float
    ) -> None:
        """Watch ``wrapped``'s protocol's handshake, for ``timeout`` seconds."""
        super().__init__(wrapped)  # type: ignore[no-untyped-call]  # Twisted's
        self.clock = clock
        self.timeout = timeout
        self.done: Deferred[IProtocol] = Deferred(self._cancel)

    def _cancel(self, done: Deferred[IProtocol]) -> None:
        """Cancelled while waiting for the handshake: drop the connection."""
        for protocol in list(self.protocols):
            protocol.stop_timer()
            cast(ITCPTransport, protocol.transport).abortConnection()


@implementer(IStreamClientEndpoint)
@attrs.frozen
class _HandshakenEndpoint:
    """TCP to one instance, then TLS; connected once the handshake is done."""

    clock: _Clock
    tcp: IStreamClientEndpoint
    creator: IOpenSSLClientConnectionCreator
    timeout: float

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        """Connect; fire with ``protocolFactory``'s protocol once TLS is up."""
        watching = _HandshakeWatchFactory(protocolFactory, self.clock, self.timeout)
        connecting = wrapClientTLS(self.creator, self.tcp).connect(watching)

        def connected(watch: IProtocol) -> Deferred[IProtocol]:
            return watching.done

        return connecting.addCallback(connected)


@implementer(IAgentEndpointFactory)
@attrs.frozen
class HandshakenEndpoints:
    """
    An agent's endpoints to control service instances over HTTPS: TCP within
    ``timeout`` seconds, then the TLS handshake within ``timeout`` more.
    """

    reactor: TCPTimeReactor
    policy: IPolicyForHTTPS
    timeout: float

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:  # noqa: N802
        """The endpoint of the instance ``uri`` names (an ``https`` URI)."""
        host = uri.host.decode("ascii") if isinstance(uri.host, bytes) else uri.host
        tcp = HostnameEndpoint(self.reactor, host, uri.port, timeout=self.timeout)
        creator = self.policy.creatorForNetloc(uri.host, uri.port)
        return _HandshakenEndpoint(self.reactor, tcp, creator, self.timeout)


def https_agent(
    reactor: TCPTimeReactor, policy: IPolicyForHTTPS, timeout: float
) -> Agent:
    """A web client agent whose connections are made once TLS is up (see the module)."""
    agent: Agent = Agent.usingEndpointFactory(  # an untyped classmethod
        reactor, HandshakenEndpoints(reactor, policy, timeout)
    )
    return agent
