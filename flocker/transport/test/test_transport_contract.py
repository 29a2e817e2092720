"""
The TLS transport contract (:func:`flocker.transport.testtools.make_tls_transport_tests`)
run against the threaded TLS transport and, as the reference it is held to,
Twisted's own TLS (``TLSMemoryBIOFactory`` over TCP) -- real sockets on
loopback, real TLS with a test cluster's node certificates.
"""

from __future__ import annotations

from ..testtools import (
    make_tls_transport_tests,
    threaded_tls_loopback,
    twisted_tls_loopback,
)


class TestThreadedTLSTransport(make_tls_transport_tests(threaded_tls_loopback)):  # type: ignore[misc]
    """The threaded TLS transport passes the contract."""


class TestTwistedTLSTransport(make_tls_transport_tests(twisted_tls_loopback)):  # type: ignore[misc]
    """Twisted's own TLS transport passes the contract."""
