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

Every connection leaves from the node's own address (``bind_address``), to
whichever instance, so a node cut off from the network is cut off from all
of them.  The agents' fence (`flocker.node._fence`) does not care which
instance speaks: silence is measured across instance changes, and only a
configuration pushed on a new connection brings a fence that went up down.

Each attempt is an eliot action ``flocker:node:control:connect`` naming the
instance, so the log says which instance an agent is connected to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from eliot.twisted import DeferredContext
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from zope.interface import implementer

from flocker.ca import TLSFiles, client_context_factory
from flocker.common import check_port, format_address
from flocker.control._protocol_agent import CONNECT_TIMEOUT

from ._logging import CONTROL_CONNECT

__all__ = ["ControlAddress", "RoundRobinEndpoint", "control_endpoint"]


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


def _endpoints(
    endpoints: Sequence[tuple[ControlAddress, IStreamClientEndpoint]],
) -> tuple[tuple[ControlAddress, IStreamClientEndpoint], ...]:
    """The instances as a tuple."""
    return tuple(endpoints)


@implementer(IStreamClientEndpoint)
@attrs.define(eq=False)
class RoundRobinEndpoint:
    """
    Connects to one of several instances: at each attempt, the one after the
    instance tried last.

    :ivar endpoints: each instance's address and the endpoint reaching it.
    :ivar agent: ``"dataset"`` or ``"container"`` (for the log).
    """

    endpoints: tuple[tuple[ControlAddress, IStreamClientEndpoint], ...] = attrs.field(
        converter=_endpoints
    )
    agent: str = "dataset"
    _next: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        """There is at least one instance to connect to."""
        if not self.endpoints:
            raise ValueError("no control service instance to connect to")

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
        with action.context():
            connecting = DeferredContext(endpoint.connect(protocolFactory))
            connecting.addActionFinish()
            return connecting.result


def control_endpoint(
    reactor: Any,
    addresses: Sequence[ControlAddress],
    tls_files: TLSFiles,
    agent: str,
    bind_address: str | None = None,
) -> RoundRobinEndpoint:
    """
    The endpoint an agent reaches the control service through: TLS with the
    node's certificate, checking each instance's certificate against its own
    host name, a 2 s connect timeout, leaving from ``bind_address`` (the
    node's address) when given.
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
        agent,
    )
