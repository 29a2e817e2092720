"""
Test helpers for transports and their users, and the contract every TLS
stream transport here passes.

:func:`make_tls_transport_tests` builds a pytest test class from a
:class:`TLSLoopback` factory: a way to listen and connect over real TLS on
loopback with a test cluster's node certificates.  It runs against the
threaded TLS transport (:func:`threaded_tls_loopback`) and against Twisted's
own TLS, ``TLSMemoryBIOFactory`` over TCP (:func:`twisted_tls_loopback`), so
the threaded one is held to what Twisted's does: bytes both ways, back
pressure on a producer, ``loseConnection`` after everything written (and
after a registered producer), ``abortConnection`` at once, the reasons
``connectionLost`` gives, addresses and the peer's certificate.

What one transport does and the other does not is a capability of its
:class:`TLSLoopback`, tested where it is claimed.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar, Protocol

import attrs
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IConsumer,
    IListeningPort,
    IProtocolFactory,
    IPushProducer,
    IReactorFromThreads,
    ITransport,
)
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.task import deferLater
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ..ca import (
    TLSFiles,
    bulk_tls_context,
    check_node_certificate,
    load_tls_files,
    node_client_context_factory,
    peer_identity,
    server_context_factory,
)
from ..ca.testtools import make_test_cluster_credentials
from ._threaded_tls_endpoints import (
    ThreadedTLSClientEndpoint,
    ThreadedTLSServerEndpoint,
)

MiB = 1024 * 1024

#: Generous bound for anything that should happen "at once" on loopback.
PATIENCE = 30.0


@implementer(IPushProducer)
class RecordingProducer:
    """A push producer that records what its consumer asked of it."""

    def __init__(self) -> None:
        """Nothing asked yet."""
        self.calls: list[str] = []

    def pauseProducing(self) -> None:  # noqa: N802
        """Note a pause."""
        self.calls.append("pause")

    def resumeProducing(self) -> None:  # noqa: N802
        """Note a resume."""
        self.calls.append("resume")

    def stopProducing(self) -> None:  # noqa: N802
        """Note a stop."""
        self.calls.append("stop")


class Collector(TwistedProtocol):
    """
    Keeps what arrives; ``made`` fires once connected and ``lost`` with why
    the connection ended.

    :ivar received_when_lost: How many bytes had arrived at
        ``connectionLost`` (``None`` before it).
    :ivar after_lost: ``dataReceived`` calls after ``connectionLost``.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: Deferred[BaseException] = Deferred()
        self.made: Deferred[None] = Deferred()
        self.arrived: list[Deferred[None]] = []
        self.received_when_lost: int | None = None
        self.after_lost = 0

    def connectionMade(self) -> None:  # noqa: N802
        """Note the connection."""
        self.made.callback(None)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Keep the bytes."""
        if self.received_when_lost is not None:
            self.after_lost += 1
        self.received += data
        waiting, self.arrived = self.arrived, []
        for deferred in waiting:
            deferred.callback(None)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]  # noqa: N802
        """Report the end."""
        self.received_when_lost = len(self.received)
        assert reason.value is not None
        self.lost.callback(reason.value)

    async def at_least(self, count: int) -> None:
        """Wait until ``count`` bytes have arrived."""
        while len(self.received) < count:
            waiting: Deferred[None] = Deferred()
            self.arrived.append(waiting)
            await waiting


async def sleep(seconds: float) -> None:
    """Let the reactor run for ``seconds``."""
    await deferLater(reactor, seconds, lambda: None)


async def within(
    waited: Deferred[Any] | Coroutine[Any, Any, Any], seconds: float = PATIENCE
) -> Any:
    """What ``waited`` gives, or ``defer.TimeoutError`` after ``seconds``."""
    if not isinstance(waited, Deferred):
        waited = Deferred.fromCoroutine(waited)
    return await waited.addTimeout(seconds, reactor)


@implementer(IPushProducer)
class CountingProducer:
    """A streaming producer that writes 1 MiB chunks while not paused."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.written = 0
        self.stopped = False

    def pump(self, limit: int) -> None:
        """Write until paused or ``limit`` bytes are written."""
        while not self.paused and self.written < limit:
            self.written += MiB
            self.transport.write(b"x" * MiB)

    def pauseProducing(self) -> None:  # noqa: N802
        """Stop writing."""
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:  # noqa: N802
        """Go on."""
        self.paused = False
        self.resumes += 1

    def stopProducing(self) -> None:  # noqa: N802
        """The connection is gone."""
        self.stopped = True


def two_nodes_tls(tmp_path: Path) -> list[TLSFiles]:
    """Two nodes' TLS files, of a test cluster made in ``tmp_path``."""
    credentials = make_test_cluster_credentials(tmp_path)
    return [load_tls_files(d, "node") for d in credentials.node_directories[:2]]


async def settle() -> None:
    """Give a port's thread and the reactor a moment (half a second)."""
    await threads.deferToThread(time.sleep, 0.5)


def idle(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` TCP connections from ``source`` that never start TLS."""
    made = []
    for _ in range(count):
        connection = socket.socket()
        connection.bind((source, 0))
        try:
            connection.connect(("127.0.0.1", port))
        except ConnectionError:  # refused over the caps before connect returned
            connection.close()
            continue
        made.append(connection)
    return made


def closed_by_server(connection: socket.socket, wait: float) -> bool:
    """Whether the server ends (or resets) the connection within ``wait`` seconds."""
    connection.settimeout(wait)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class TLSLoopback(Protocol):
    """
    Listens and connects over TLS on 127.0.0.1 with two nodes' credentials,
    each side requiring the other's certificate.

    :ivar abort_reason: What ``connectionLost`` gives the end that called
        ``abortConnection``: ``ConnectionAborted`` as with Twisted's TCP,
        or its base ``ConnectionLost`` (what Twisted's TLS gives).
    """

    abort_reason: ClassVar[type[ConnectionLost]]

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen on a free port of 127.0.0.1 as the server node."""

    def connect(self, port: int, protocol: TwistedProtocol) -> Deferred[Any]:
        """Connect ``protocol`` to ``port`` as the client node."""


#: Makes a :class:`TLSLoopback` from the client's and the server's TLS files.
LoopbackFactory = Callable[[TLSFiles, TLSFiles], TLSLoopback]


@attrs.define
class _ThreadedLoopback:
    """The threaded TLS endpoints."""

    client: TLSFiles
    server: TLSFiles
    abort_reason: ClassVar[type[ConnectionLost]] = ConnectionAborted

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen with a :class:`ThreadedTLSServerEndpoint`."""
        return ThreadedTLSServerEndpoint(
            IReactorFromThreads(reactor),
            0,
            bulk_tls_context(self.server, server_side=True),
            lambda certificate: None,
            interface="127.0.0.1",
        ).listen(factory)

    def connect(self, port: int, protocol: TwistedProtocol) -> Deferred[Any]:
        """Connect with a :class:`ThreadedTLSClientEndpoint`."""
        endpoint = ThreadedTLSClientEndpoint(
            IReactorFromThreads(reactor),
            "127.0.0.1",
            port,
            bulk_tls_context(self.client, server_side=False),
            check_node_certificate,
            timeout=10,
        )
        connected: Deferred[Any] = connectProtocol(endpoint, protocol)
        return connected


@attrs.define
class _TwistedLoopback:
    """Twisted's TLS: ``TLSMemoryBIOFactory`` over TCP."""

    client: TLSFiles
    server: TLSFiles
    abort_reason: ClassVar[type[ConnectionLost]] = ConnectionLost

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen on TCP with a TLS-wrapping factory."""
        options = server_context_factory(self.server.credential, self.server.authority)
        wrapping = TLSMemoryBIOFactory(options, False, factory)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listening: Deferred[IListeningPort] = endpoint.listen(wrapping)
        return listening

    def connect(self, port: int, protocol: TwistedProtocol) -> Deferred[Any]:
        """Connect over TCP with a TLS-wrapping factory."""
        options = node_client_context_factory(
            self.client.credential, self.client.authority
        )
        wrapping = TLSMemoryBIOFactory(
            options,
            True,
            Factory.forProtocol(lambda: protocol),
        )
        return TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(wrapping)


def threaded_tls_loopback(client: TLSFiles, server: TLSFiles) -> TLSLoopback:
    """The threaded TLS transport's :class:`TLSLoopback`."""
    return _ThreadedLoopback(client, server)


def twisted_tls_loopback(client: TLSFiles, server: TLSFiles) -> TLSLoopback:
    """Twisted's own TLS (``TLSMemoryBIOFactory`` over TCP) as a :class:`TLSLoopback`."""
    return _TwistedLoopback(client, server)


@attrs.define
class Pair:
    """A connection on loopback: both ends' protocols and who they are."""

    client: Collector
    server: Collector
    client_node: Any
    server_node: Any
    port: Any


class _Connector:
    """Listens once; connects clients; finds the server side of each."""

    def __init__(self, tmp_path: Path, make: LoopbackFactory) -> None:
        credentials = make_test_cluster_credentials(tmp_path)
        self.nodes = credentials.node_uuids[:2]
        self.loopback = make(
            load_tls_files(credentials.node_directories[0], "node"),
            load_tls_files(credentials.node_directories[1], "node"),
        )
        self.accepted: list[Collector] = []
        self.port: Any = None

    async def start(self) -> None:
        """Listen."""

        def build() -> Collector:
            protocol = Collector()
            self.accepted.append(protocol)
            return protocol

        self.port = await self.loopback.listen(Factory.forProtocol(build))

    async def pair(self) -> Pair:
        """A new connection, once both ends are made."""
        client = Collector()
        count = len(self.accepted)
        await within(self.loopback.connect(self.port.getHost().port, client))
        await within(client.made)
        while len(self.accepted) <= count:
            await sleep(0.01)
        server = self.accepted[count]
        await within(server.made)
        return Pair(client, server, self.nodes[0], self.nodes[1], self.port)

    async def stop(self) -> None:
        """Stop listening; abort what is still connected."""
        await self.port.stopListening()


def make_tls_transport_tests(make: LoopbackFactory) -> type:
    """
    The transport contract, as a test class for the transport ``make``'s
    :class:`TLSLoopback` connects (subclass it in one line).
    """

    class TLSTransportTests:
        """What a TLS stream transport does, over real sockets."""

        @pytest_twisted.async_yield_fixture
        async def connector(self, tmp_path: Path) -> Any:
            """A listening server; it stops listening afterwards."""
            made = _Connector(tmp_path, make)
            await made.start()
            yield made
            await made.stop()

        @pytest_twisted.async_fixture
        async def pair(self, connector: _Connector) -> Pair:
            """A connected client and server."""
            return await connector.pair()

        def test_interfaces(self, pair: Pair) -> None:
            """Both ends provide ITransport, IConsumer and IPushProducer."""
            for end in (pair.client, pair.server):
                assert verifyObject(ITransport, end.transport)
                assert verifyObject(IConsumer, end.transport)
                assert verifyObject(IPushProducer, end.transport)

        @pytest_twisted.ensureDeferred
        async def test_both_ways_and_identities(self, pair: Pair) -> None:
            """
            Bytes flow both ways, and each side sees the other's certificate
            (the server identifies the client as its node).
            """
            client, server = pair.client, pair.server
            client.transport.write(b"hello")  # type: ignore[union-attr]
            await within(server.at_least(5))
            server.transport.write(b"welcome")  # type: ignore[union-attr]
            await within(client.at_least(7))
            assert (bytes(server.received), bytes(client.received)) == (
                b"hello",
                b"welcome",
            )
            identity = peer_identity(server.transport)  # type: ignore[arg-type]
            assert identity.node_uuid == pair.client_node
            peer = peer_identity(client.transport)  # type: ignore[arg-type]
            assert peer.node_uuid == pair.server_node
            client.transport.loseConnection()  # type: ignore[union-attr]
            assert isinstance(await within(client.lost), ConnectionDone)
            assert isinstance(await within(server.lost), ConnectionDone)

        @pytest_twisted.ensureDeferred
        async def test_write_sequence(self, pair: Pair) -> None:
            """``writeSequence`` sends its pieces in order."""
            pair.client.transport.writeSequence([b"one ", b"two ", b"three"])  # type: ignore[union-attr]
            await within(pair.server.at_least(13))
            assert bytes(pair.server.received) == b"one two three"

        def test_addresses(self, pair: Pair) -> None:
            """
            ``getPeer`` and ``getHost`` are TCP addresses on 127.0.0.1; the
            client's peer is the listening port, and each end's host is the
            other's peer.
            """
            client, server = pair.client.transport, pair.server.transport
            for address in (
                client.getPeer(),  # type: ignore[union-attr]
                client.getHost(),  # type: ignore[union-attr]
                server.getPeer(),  # type: ignore[union-attr]
                server.getHost(),  # type: ignore[union-attr]
            ):
                assert isinstance(address, IPv4Address)
                assert (address.type, address.host) == ("TCP", "127.0.0.1")
            assert client.getPeer().port == pair.port.getHost().port  # type: ignore[union-attr]
            assert client.getPeer() == server.getHost()  # type: ignore[union-attr]
            assert client.getHost() == server.getPeer()  # type: ignore[union-attr]

        @pytest_twisted.ensureDeferred
        async def test_lose_connection_sends_everything(self, pair: Pair) -> None:
            """``loseConnection`` right after large writes still delivers all of them."""
            client, server = pair.client, pair.server
            payload = os.urandom(8 * MiB + 17)
            for start in range(0, len(payload), MiB):
                client.transport.write(payload[start : start + MiB])  # type: ignore[union-attr]
            client.transport.loseConnection()  # type: ignore[union-attr]
            assert isinstance(await within(server.lost), ConnectionDone)
            assert bytes(server.received) == payload
            assert isinstance(await within(client.lost), ConnectionDone)

        @pytest_twisted.ensureDeferred
        async def test_lose_connection_waits_for_producer(self, pair: Pair) -> None:
            """
            ``ITransport.loseConnection``: "if there is a registered producer
            on a transport it will not be closed until the producer has been
            unregistered"; the producer is not stopped meanwhile.
            """
            client, server = pair.client, pair.server
            producer = RecordingProducer()
            client.transport.registerProducer(producer, True)  # type: ignore[union-attr]
            client.transport.write(b"before")  # type: ignore[union-attr]
            client.transport.loseConnection()  # type: ignore[union-attr]
            await sleep(0.2)
            assert not client.lost.called and "stop" not in producer.calls
            client.transport.unregisterProducer()  # type: ignore[union-attr]
            assert isinstance(await within(server.lost), ConnectionDone)
            await within(client.lost)
            assert bytes(server.received) == b"before"

        @pytest_twisted.ensureDeferred
        async def test_back_pressure(self, pair: Pair) -> None:
            """
            A peer that stops reading pauses the writer's producer long
            before the whole stream is written; reading again resumes it,
            and every byte arrives in order.  While paused, the reader gets
            no data at all.
            """
            client, server = pair.client, pair.server
            server.transport.pauseProducing()  # type: ignore[union-attr]
            producer = CountingProducer(client.transport)
            client.transport.registerProducer(producer, True)  # type: ignore[union-attr]
            limit = 64 * MiB
            for _ in range(50):
                producer.pump(limit)
                await sleep(0.02)
            assert producer.paused and producer.written < limit / 2
            assert server.received == b""
            server.transport.resumeProducing()  # type: ignore[union-attr]
            while producer.written < limit:
                while producer.paused:
                    await sleep(0.01)
                producer.pump(limit)
            await within(server.at_least(limit))
            assert producer.resumes >= 1
            assert bytes(server.received) == b"x" * limit
            client.transport.unregisterProducer()  # type: ignore[union-attr]
            client.transport.loseConnection()  # type: ignore[union-attr]
            await within(server.lost)

        @pytest_twisted.ensureDeferred
        async def test_clean_close_while_paused_delivers_everything(
            self, pair: Pair
        ) -> None:
            """
            A peer that writes, then closes cleanly, while the reader is
            paused: every byte reaches the reader once it resumes, before
            ``connectionLost``, and nothing after it.
            """
            client, server = pair.client, pair.server
            server.transport.pauseProducing()  # type: ignore[union-attr]
            payload = os.urandom(3 * MiB)
            client.transport.write(payload)  # type: ignore[union-attr]
            client.transport.loseConnection()  # type: ignore[union-attr]
            await sleep(0.5)
            assert not server.lost.called
            server.transport.resumeProducing()  # type: ignore[union-attr]
            assert isinstance(await within(server.lost), ConnectionDone)
            assert server.received_when_lost == len(payload)
            assert bytes(server.received) == payload
            assert server.after_lost == 0
            await within(client.lost)

        @pytest_twisted.ensureDeferred
        async def test_abort(self, connector: _Connector, pair: Pair) -> None:
            """``abortConnection`` ends both sides at once, dropping what is queued."""
            client, server = pair.client, pair.server
            server.transport.pauseProducing()  # type: ignore[union-attr]
            for _ in range(16):
                client.transport.write(b"y" * MiB)  # type: ignore[union-attr]
            client.transport.abortConnection()  # type: ignore[union-attr]
            why = await within(client.lost)
            assert isinstance(why, connector.loopback.abort_reason)
            server.transport.resumeProducing()  # type: ignore[union-attr]
            assert not isinstance(await within(server.lost), ConnectionDone)
            assert len(server.received) < 16 * MiB

        @pytest_twisted.ensureDeferred
        async def test_writes_after_the_end_are_dropped(self, pair: Pair) -> None:
            """
            Writing to a closed connection, or closing it again, neither
            raises nor sends.
            """
            pair.client.transport.loseConnection()  # type: ignore[union-attr]
            await within(pair.server.lost)
            await within(pair.client.lost)
            pair.client.transport.write(b"late")  # type: ignore[union-attr]
            pair.client.transport.loseConnection()  # type: ignore[union-attr]
            assert pair.server.received == b""

        @pytest_twisted.ensureDeferred
        async def test_producer_stopped_when_the_peer_ends(self, pair: Pair) -> None:
            """
            A producer registered on a connection the peer ends is stopped
            (it has no consumer any longer).
            """
            producer = RecordingProducer()
            pair.client.transport.registerProducer(producer, True)  # type: ignore[union-attr]
            pair.server.transport.loseConnection()  # type: ignore[union-attr]
            await within(pair.client.lost)
            assert producer.calls[-1:] == ["stop"]

    return TLSTransportTests


__all__ = [
    "Collector",
    "CountingProducer",
    "LoopbackFactory",
    "Pair",
    "RecordingProducer",
    "TLSLoopback",
    "make_tls_transport_tests",
    "threaded_tls_loopback",
    "twisted_tls_loopback",
]
