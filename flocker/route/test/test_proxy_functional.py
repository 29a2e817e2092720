"""
Functional tests of `NodeRouter` over real sockets on loopback addresses.

The router listens on 127.0.0.31 (this "node"); the applications it routes
to are small Twisted servers on 127.0.0.32 (another "node").  Clients are
plain blocking sockets in a thread, so what is tested is what a real client
sees.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from pyrsistent import pmap
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from flocker.common import loop_until

from .. import DEFAULT_HOLD_TIMEOUT, NodeRouter, Route
from ..testtools import route_to

pytestmark = pytest.mark.functional

NODE = "127.0.0.31"
OTHER = "127.0.0.32"
#: Big enough to fill every socket and Twisted buffer on the way many times.
LARGE = 4 * 1024 * 1024
#: A safety net against hangs; no assertion depends on it.
SOCKET_TIMEOUT = 60.0


def free_port(host: str) -> int:
    """A port nothing listens on at ``host`` now (bound to port 0 and read)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Server(Protocol):
    """A test server's protocol, on a TCP transport."""

    transport: Any


@implementer(IHalfCloseableProtocol)
class Named(Server):
    """Says its name, echoes what it reads, closes when the client has."""

    def __init__(self, name: bytes) -> None:
        self.name = name

    def connectionMade(self) -> None:
        self.transport.write(self.name + b"\n")

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Nothing to do."""


@implementer(IHalfCloseableProtocol)
class Digest(Server):
    """Reads until the client half-closes, then answers the SHA-256 of it all."""

    def connectionMade(self) -> None:
        self.hash = hashlib.sha256()

    def dataReceived(self, data: bytes) -> None:
        self.hash.update(data)

    def readConnectionLost(self) -> None:
        self.transport.write(self.hash.hexdigest().encode("ascii"))
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Nothing to do."""


@implementer(IHalfCloseableProtocol)
class Source(Server):
    """
    Sends ``data``, half-closes, then records what the client sends back
    until the client closes too (firing ``received``).
    """

    def __init__(self, data: bytes, received: Deferred[bytes]) -> None:
        self.data = data
        self.received = received
        self.got = b""

    def connectionMade(self) -> None:
        self.transport.write(self.data)
        self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.got += data

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Nothing to do."""

    def connectionLost(self, reason: Any = None) -> None:
        if not self.received.called:
            self.received.callback(self.got)


class Harness:
    """A running router on `NODE`, servers on `OTHER`, cleaned up afterwards."""

    def __init__(self) -> None:
        self.router = NodeRouter(reactor, NODE)
        self.router.startService()
        self.servers: list[Any] = []

    def serve(self, build: Callable[[], Protocol]) -> int:
        """Listen on `OTHER` with protocols from ``build``; the port."""
        factory = ServerFactory()
        factory.buildProtocol = lambda addr: build()  # type: ignore[method-assign]
        listener: Any = reactor.listenTCP(0, factory, interface=OTHER)
        self.servers.append(listener)
        return int(listener.getHost().port)

    async def route(self, port: int, target_port: int) -> None:
        """Route `NODE`:``port`` to `OTHER`:``target_port`` (only)."""
        await self.router.set_routes(
            pmap(
                {
                    port: Route(
                        external_port=port, target_host=OTHER, target_port=target_port
                    )
                }
            )
        )

    async def route_to(
        self, port: int, *target_ports: int, hold_timeout: float = DEFAULT_HOLD_TIMEOUT
    ) -> None:
        """Route `NODE`:``port`` to each `OTHER`:``target_ports`` (only)."""
        await self.router.set_routes(
            pmap(
                {
                    port: route_to(
                        port,
                        *((OTHER, p) for p in target_ports),
                        hold_timeout=hold_timeout,
                    )
                }
            )
        )

    async def close(self) -> None:
        """Stop the router and the servers."""
        await self.router.stopService()
        for listener in self.servers:
            await listener.stopListening()


@pytest_twisted.async_yield_fixture
async def harness() -> AsyncIterator[Harness]:
    """A `Harness`, closed after the test."""
    h = Harness()
    yield h
    await h.close()


def connect(port: int) -> socket.socket:
    """A blocking client socket connected to `NODE`:``port``."""
    client = socket.create_connection((NODE, port), timeout=SOCKET_TIMEOUT)
    return client


def read_all(client: socket.socket) -> bytes:
    """Read until the other side closes its writing."""
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_line(client: socket.socket) -> bytes:
    """Read one line (one byte at a time: these lines are short)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = client.recv(1)
        if not byte:
            break
        line += byte
    return line


def exchange(port: int, payload: bytes) -> bytes:
    """Send ``payload`` while reading, half-close, and read to the end."""
    with connect(port) as client:

        def send() -> None:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            return read_all(client)
        finally:
            sender.join()


@pytest_twisted.ensureDeferred
async def test_bytes_both_ways(harness: Harness) -> None:
    """A client talks to the application through the router, both ways."""
    port = free_port(NODE)
    await harness.route(port, harness.serve(lambda: Named(b"app")))
    reply = await deferToThread(exchange, port, b"hello through the router")
    assert reply == b"app\nhello through the router"
    assert harness.router.listening() == {port}


@pytest_twisted.ensureDeferred
async def test_large_upload(harness: Harness) -> None:
    """Several MiB from the client arrive intact; the reply after half-close too."""
    port = free_port(NODE)
    await harness.route(port, harness.serve(Digest))
    payload = os.urandom(LARGE)
    reply = await deferToThread(exchange, port, payload)
    assert reply == hashlib.sha256(payload).hexdigest().encode("ascii")


@pytest_twisted.ensureDeferred
async def test_large_download_and_target_half_close(harness: Harness) -> None:
    """
    Several MiB from the application arrive intact; after the application
    half-closes, what the client sends still reaches it.
    """
    port = free_port(NODE)
    payload = os.urandom(LARGE)
    received: Deferred[bytes] = Deferred()
    await harness.route(port, harness.serve(lambda: Source(payload, received)))

    def download() -> bytes:
        with connect(port) as client:
            data = read_all(client)
            client.sendall(b"thanks")
            client.shutdown(socket.SHUT_WR)
            read_all(client)
            return data

    data = await deferToThread(download)
    assert hashlib.sha256(data).digest() == hashlib.sha256(payload).digest()
    assert await received == b"thanks"


@pytest_twisted.ensureDeferred
async def test_reroute(harness: Harness) -> None:
    """
    A new target takes new connections at once; a connection made before
    keeps talking to the old target.
    """
    port = free_port(NODE)
    old_target = harness.serve(lambda: Named(b"old"))
    new_target = harness.serve(lambda: Named(b"new"))
    await harness.route(port, old_target)
    before = await deferToThread(connect, port)
    try:
        assert await deferToThread(read_line, before) == b"old\n"
        await harness.route(port, new_target)
        assert await deferToThread(exchange, port, b"x") == b"new\nx"
        await deferToThread(before.sendall, b"still old")
        await deferToThread(before.shutdown, socket.SHUT_WR)
        assert await deferToThread(read_all, before) == b"still old"
    finally:
        before.close()


@pytest_twisted.ensureDeferred
async def test_unroute_closes_listener(harness: Harness) -> None:
    """A port no longer routed refuses connections; open ones carry on."""
    port = free_port(NODE)
    await harness.route(port, harness.serve(lambda: Named(b"app")))
    before = await deferToThread(connect, port)
    try:
        assert await deferToThread(read_line, before) == b"app\n"
        await harness.router.set_routes(pmap())
        assert harness.router.listening() == set()
        with pytest.raises(ConnectionRefusedError):
            await deferToThread(connect, port)
        await deferToThread(before.sendall, b"bye")
        await deferToThread(before.shutdown, socket.SHUT_WR)
        assert await deferToThread(read_all, before) == b"bye"
    finally:
        before.close()


def connection_logs(logger: Any) -> list[dict[str, Any]]:
    """The ``flocker:route:connection`` messages logged so far."""
    return [
        m
        for m in logger.messages
        if m.get("message_type") == "flocker:route:connection"
    ]


@pytest_twisted.ensureDeferred
async def test_refused_target(harness: Harness, eliot_logger: Any) -> None:
    """
    A client of a route whose only target refuses is held, then closed when
    the hold timeout passes, and it is logged.
    """
    port = free_port(NODE)
    await harness.route_to(port, free_port(OTHER), hold_timeout=0.2)

    def attempt() -> bytes:
        with connect(port) as client:
            return read_all(client)

    assert await deferToThread(attempt) == b""
    # The router is unharmed: the route still listens.
    assert harness.router.listening() == {port}
    # The router may log just after the client has seen its end.
    [log] = await loop_until(reactor, lambda: connection_logs(eliot_logger))
    assert log["outcome"] == "held_too_long"
    assert log["unreachable"] and log["held"] >= 0.2


@pytest_twisted.ensureDeferred
async def test_port_in_use_retried(harness: Harness) -> None:
    """A routed port held by something else is listened on once it is free."""
    holder = socket.socket()
    holder.bind((NODE, 0))
    holder.listen()
    port = holder.getsockname()[1]
    harness.router.retry_delays = lambda: iter([0.05] * 1000)
    await harness.route(port, harness.serve(lambda: Named(b"app")))
    assert harness.router.listening() == set()
    holder.close()
    await loop_until(reactor, lambda: port in harness.router.listening())
    assert await deferToThread(exchange, port, b"") == b"app\n"
