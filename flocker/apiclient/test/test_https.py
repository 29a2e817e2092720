"""
Unit tests of `flocker.apiclient._https`: a connection waiting for its TLS
handshake is given up after the timeout, or when cancelled, and dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import TimeoutError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from flocker.apiclient._https import _HandshakenEndpoint
from flocker.ca import ClusterPolicyForHTTPS, load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials


@implementer(IStreamClientEndpoint)
class SilentTCP:
    """A TCP endpoint that connects at once to a peer that never answers."""

    def __init__(self) -> None:
        """No connection yet."""
        self.transports: list[StringTransport] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect ``factory``'s protocol to a `StringTransport`."""
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4523))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return succeed(protocol)


def waiting_endpoint(tmp_path: Path) -> tuple[Clock, SilentTCP, _HandshakenEndpoint]:
    """An endpoint whose TLS handshake will never be answered, on a Clock."""
    credentials = make_test_cluster_credentials(tmp_path, nodes=0)
    files = load_tls_files(credentials.user_directories["alice"], "alice")
    policy = ClusterPolicyForHTTPS(files.credential, files.authority)
    clock, tcp = Clock(), SilentTCP()
    creator = policy.creatorForNetloc(b"127.0.0.1", 4523)
    return clock, tcp, _HandshakenEndpoint(clock, tcp, creator, 2.0)


def outcome(d: Any) -> list[Any]:
    """A list that receives ``d``'s result."""
    results: list[Any] = []
    d.addBoth(results.append)
    return results


def test_slow_handshake_is_a_connect_timeout(tmp_path: Path) -> None:
    """
    A handshake not done within the timeout fails the connection with a
    connect timeout, and the connection is dropped.
    """
    clock, tcp, endpoint = waiting_endpoint(tmp_path)
    results = outcome(endpoint.connect(Factory.forProtocol(Protocol)))
    [transport] = tcp.transports
    assert transport.value()  # the client's hello went out
    clock.advance(1.9)
    assert results == []
    clock.advance(0.1)
    [failure] = results
    assert isinstance(failure, Failure) and failure.check(TimeoutError)
    assert transport.disconnecting


def test_cancelled_handshake_drops_the_connection(tmp_path: Path) -> None:
    """Cancelling a connection waiting for its handshake drops it."""
    clock, tcp, endpoint = waiting_endpoint(tmp_path)
    connecting = endpoint.connect(Factory.forProtocol(Protocol))
    results = outcome(connecting)
    connecting.cancel()
    [failure] = results
    assert isinstance(failure, Failure) and failure.check(CancelledError)
    assert tcp.transports[0].disconnecting
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize("reason", [ValueError("bad"), None])
def test_handshake_failure_names_its_reason(reason: Any) -> None:
    """`TLSHandshakeFailed` reads ``TLS handshake failed: <reason>``."""
    from flocker.apiclient import TLSHandshakeFailed

    error = TLSHandshakeFailed(reason or Exception("lost"))
    assert str(error) == f"TLS handshake failed: {reason or 'lost'}"
