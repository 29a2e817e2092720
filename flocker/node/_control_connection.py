"""Where an agent's connection to the control service goes: one of several instances.

``agent.yml`` may list several control service instances (``control-service:
hosts: [...]``); every one serves the agent protocol, so any will do.  An
agent keeps one connection, to one instance.  `RoundRobinEndpoint` is the
endpoint its reconnecting client (``ClientService`` inside
`flocker.control.AgentAMPClient`) connects through: each connection
attempt goes to the instance after the one tried last, round-robin.  So
when the connection is lost, or an attempt fails (refused, or no answer
within the 2 s connect timeout), the next attempt — after the client's
back-off, at most 2 s, a fraction of a second after a connection that had
succeeded — goes to the next instance; a single remaining live instance is
reached again within one round.

The first attempt goes to the instance `first_instance` picks from the
node's address, so that the nodes of a cluster spread over the instances
(both agents of a node starting with the same one) instead of all crowding
the first instance listed, and all moving to the second when it dies.

An instance that accepts the connection but says nothing (a stopped or
wedged process: the kernel still completes TCP handshakes for it) is given
up too: a connection on which nothing arrives within `ANSWER_TIMEOUT`
seconds of its start (the TLS and version handshakes) is aborted, and the
next attempt goes to the next instance.  Once anything arrived, the agent
protocol's keep-alives watch the connection.

Every connection leaves from the node's own address (``bind_address``), to
whichever instance, so a node cut off from the network is cut off from all
of them.  The agents' fence (`flocker.node._fence`) does not care which
instance speaks: silence is measured across instance changes, and only a
configuration pushed on a new connection brings a fence that went up down.

Each attempt is an eliot action ``flocker:node:control:connect`` naming the
instance, so the log says which instance an agent is connected to; a
connection given up for silence is ``flocker:node:control:no_answer``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any, cast

import attrs
from eliot.twisted import DeferredContext
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from flocker.ca import TLSFiles, client_context_factory
from flocker.common import check_port, format_address
from flocker.control._protocol_agent import CONNECT_TIMEOUT

from ._logging import CONTROL_CONNECT, CONTROL_NO_ANSWER

__all__ = [
    "ANSWER_TIMEOUT",
    "ControlAddress",
    "RoundRobinEndpoint",
    "control_addresses_tuple",
    "control_endpoint",
    "first_instance",
]

#: Seconds a new connection may go without a word from the instance (its
#: TLS and version handshakes) before it is given up for the next one.
#: Longer than a connection attempt: an instance that many agents reach at
#: once (they all left a dead one) needs a moment for their handshakes.
ANSWER_TIMEOUT = 5.0


def first_instance(address: str, count: int) -> int:
    """
    The index of the instance, of ``count``, that a node at ``address``
    connects to first: spread over the instances by a hash of the address,
    the same for both agents of a node and across restarts.
    """
    return zlib.crc32(address.encode("utf-8")) % count


def _port_invariant(port: int) -> tuple[bool, str]:
    try:
        check_port(port)
    except ValueError as error:
        return False, str(error)
    return True, ""


class ControlAddress(PClass):
    """
    One control service instance's agent (AMP) address.

    :ivar host: its host name or IP address, as its certificate names it.
    :ivar port: its agent port.
    """

    host = field(type=str, mandatory=True, invariant=lambda h: (bool(h), "no host"))
    port = field(type=int, mandatory=True, invariant=_port_invariant)

    def __str__(self) -> str:
        """``HOST:PORT`` (an IPv6 address in brackets)."""
        return format_address(self.host, self.port)


def control_addresses_tuple(addresses: Iterable[ControlAddress]) -> tuple[ControlAddress, ...]:
    """The instances' addresses as a tuple (an agent's ``control``)."""
    return tuple(addresses)


def _endpoints(
    endpoints: Sequence[tuple[ControlAddress, IStreamClientEndpoint]],
) -> tuple[tuple[ControlAddress, IStreamClientEndpoint], ...]:
    """The instances as a tuple."""
    return tuple(endpoints)


class _AnswerDeadline(ProtocolWrapper):
    """
    Passes a connection through to the agent protocol, aborting it if nothing
    arrives within the deadline of its start.
    """

    def __init__(self, factory: Any, wrapped: Any) -> None:
        """Wrap ``wrapped``, a protocol of ``factory``'s wrapped factory."""
        super().__init__(factory, wrapped)
        self._clock: IReactorTime = factory.clock
        self._timeout: float = factory.timeout
        self._address: ControlAddress = factory.address
        self._deadline: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:  # noqa: N802 (Twisted's name)
        """Start the deadline, then connect the agent protocol."""
        self._deadline = self._clock.callLater(self._timeout, self._expired)
        super().makeConnection(transport)  # type: ignore[no-untyped-call]  # Twisted's

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """The instance answered: no more deadline."""
        self._cancel()
        super().dataReceived(data)  # type: ignore[no-untyped-call]  # Twisted's

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """No more deadline."""
        self._cancel()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # Twisted's

    def _cancel(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        CONTROL_NO_ANSWER.log(
            control_host=self._address.host,
            control_port=self._address.port,
            timeout=self._timeout,
        )
        cast(ITCPTransport, self.transport).abortConnection()


class _AnswerDeadlineFactory(WrappingFactory):
    """Makes `_AnswerDeadline` protocols for one connection attempt."""

    protocol = _AnswerDeadline

    def __init__(
        self,
        wrapped: IProtocolFactory,
        clock: IReactorTime,
        timeout: float,
        address: ControlAddress,
    ) -> None:
        """Wrap ``wrapped``'s protocols with a deadline of ``timeout`` on ``clock``."""
        super().__init__(wrapped)  # type: ignore[no-untyped-call]  # Twisted's
        self.clock = clock
        self.timeout = timeout
        self.address = address


@implementer(IStreamClientEndpoint)
@attrs.define(eq=False)
class RoundRobinEndpoint:
    """
    Connects to one of several instances: at each attempt, the one after the
    instance tried last.

    :ivar endpoints: each instance's address and the endpoint reaching it.
    :ivar clock: times `answer_timeout`.
    :ivar agent: ``"dataset"`` or ``"container"`` (for the log).
    :ivar answer_timeout: seconds a new connection may go without a word
        from the instance before it is aborted.
    :ivar first: the index of the instance the first attempt goes to.
    """

    endpoints: tuple[tuple[ControlAddress, IStreamClientEndpoint], ...] = attrs.field(
        converter=_endpoints
    )
    clock: IReactorTime
    agent: str = "dataset"
    answer_timeout: float = ANSWER_TIMEOUT
    first: int = 0
    _next: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        """There is at least one instance to connect to; start at ``first``."""
        if not self.endpoints:
            raise ValueError("no control service instance to connect to")
        self._next = self.first % len(self.endpoints)

    @property
    def next_address(self) -> ControlAddress:
        """The instance the next attempt goes to."""
        return self.endpoints[self._next][0]

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:  # noqa: N803
        """Connect to the next instance in turn (see the class docstring)."""
        address, endpoint = self.endpoints[self._next]
        self._next = (self._next + 1) % len(self.endpoints)
        action = CONTROL_CONNECT(
            agent=self.agent,
            control_host=address.host,
            control_port=address.port,
            instances=len(self.endpoints),
        )
        deadline = _AnswerDeadlineFactory(
            protocolFactory, self.clock, self.answer_timeout, address
        )
        with action.context():
            connecting = DeferredContext(endpoint.connect(deadline))
            connecting.addActionFinish()
        # The caller gets the protocol its own factory built.
        connected: Deferred[Any] = connecting.result
        return connected.addCallback(lambda wrapper: wrapper.wrappedProtocol)


def control_endpoint(
    reactor: IReactorTime,
    addresses: Sequence[ControlAddress],
    tls_files: TLSFiles,
    agent: str,
    bind_address: str | None = None,
) -> RoundRobinEndpoint:
    """
    The endpoint an agent reaches the control service through: TLS with the
    node's certificate, checking each instance's certificate against its own
    host name, a 2 s connect timeout, leaving from ``bind_address`` (the
    node's address) when given, and `ANSWER_TIMEOUT` for the first word;
    the first attempt goes to the instance `first_instance` picks for
    ``bind_address``.
    """
    bind = None if bind_address is None else (bind_address, 0)
    return RoundRobinEndpoint(
        [
            (
                address,
                wrapClientTLS(
                    client_context_factory(
                        tls_files.credential, tls_files.authority, address.host
                    ),
                    HostnameEndpoint(
                        reactor,
                        address.host.encode("ascii"),
                        address.port,
                        timeout=CONNECT_TIMEOUT,
                        bindAddress=bind,
                    ),
                ),
            )
            for address in addresses
        ],
        reactor,
        agent,
        first=0 if bind_address is None else first_instance(bind_address, len(addresses)),
    )
