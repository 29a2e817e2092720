"""Tests for `flocker.common.no_delay`."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import WrappingFactory

from flocker.common import no_delay


class _Report(Protocol):
    """Sets no-delay on its transport once connected and says what it found."""

    transport: Any

    def __init__(self, found: Deferred[tuple[bool, bool, bool]]) -> None:
        self.found = found

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        before = bool(self.transport.getTcpNoDelay())
        done = no_delay(self.transport)
        self.found.callback((before, done, bool(self.transport.getTcpNoDelay())))
        self.transport.loseConnection()


async def _connect(wrap: bool) -> tuple[bool, bool, bool]:
    """Connect to a loopback listener; the client's end reports no-delay."""
    found: Deferred[tuple[bool, bool, bool]] = Deferred()
    server: Any = ServerFactory.forProtocol(Protocol)
    port: Any = reactor.listenTCP(0, server, interface="127.0.0.1")
    try:
        client = ClientFactory()
        client.buildProtocol = lambda addr: _Report(found)  # type: ignore[method-assign]
        factory: Any = WrappingFactory(client) if wrap else client
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        return await found
    finally:
        await port.stopListening()


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_no_delay_sets_tcp_nodelay_on_a_tcp_transport() -> None:
    """A TCP connection sends small writes at once after `no_delay`."""
    before, done, after = await _connect(wrap=False)
    assert (before, done, after) == (False, True, True)


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_no_delay_reaches_the_tcp_transport_under_a_wrapper() -> None:
    """
    Through a protocol wrapper (as TLS wraps the control connections), the
    option is set on the TCP connection underneath.
    """
    before, done, after = await _connect(wrap=True)
    assert (before, done, after) == (False, True, True)


def test_no_delay_leaves_a_transport_that_is_not_tcp_alone() -> None:
    """An in-memory transport has no such option: nothing is set, no error."""
    assert no_delay(StringTransport()) is False
