"""
Tests for :mod:`flocker.transport._threaded_tls`: TLS connections whose
encryption runs in a worker thread, over real loopback sockets with the
cluster's real certificates.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from eliot import MemoryLogger
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from flocker.ca import (
    TLSFiles,
    bulk_tls_context,
    check_node_certificate,
    load_tls_files,
    peer_identity,
)
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials

from .._threaded_tls import (
    BACKGROUND_NICE,
    HIGH_WATER,
    TLSFailed,
    _ThreadedTLSTransport,
)
from .._threaded_tls_endpoints import (
    ThreadedTLSClientEndpoint,
    ThreadedTLSServerEndpoint,
)

MiB = 1024 * 1024


class Collector(Protocol):
    """Keeps what arrives; ``lost`` fires with why the connection ended."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: Deferred[BaseException] = Deferred()
        self.made: Deferred[None] = Deferred()
        self.arrived: list[Deferred[None]] = []

    def connectionMade(self) -> None:  # noqa: N802
        """Note the connection."""
        self.made.callback(None)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Keep the bytes."""
        self.received += data
        waiting, self.arrived = self.arrived, []
        for deferred in waiting:
            deferred.callback(None)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]  # noqa: N802
        """Report the end."""
        self.lost.callback(reason.value)

    async def at_least(self, count: int) -> None:
        """Wait until ``count`` bytes have arrived."""
        while len(self.received) < count:
            waiting: Deferred[None] = Deferred()
            self.arrived.append(waiting)
            await waiting


class Cluster:
    """Two nodes' TLS files, a listening server and what it accepted."""

    def __init__(self, credentials: TestClusterCredentials) -> None:
        self.credentials = credentials
        self.client_tls = load_tls_files(credentials.node_directories[0], "node")
        self.server_tls = load_tls_files(credentials.node_directories[1], "node")
        self.accepted: list[Collector] = []
        self.port: Any = None

    async def listen(self) -> int:
        """Start the server; its port."""

        def build() -> Collector:
            protocol = Collector()
            self.accepted.append(protocol)
            return protocol

        endpoint = ThreadedTLSServerEndpoint(
            reactor,
            0,
            bulk_tls_context(self.server_tls, server_side=True),
            lambda certificate: None,
            interface="127.0.0.1",
        )
        self.port = await endpoint.listen(Factory.forProtocol(build))
        return int(self.port.getHost().port)

    async def connect(
        self, tls: TLSFiles | None = None, check: Any = None, port: int | None = None
    ) -> Collector:
        """A client connected to the server."""
        endpoint = ThreadedTLSClientEndpoint(
            reactor,
            "127.0.0.1",
            port if port is not None else self.port.getHost().port,
            bulk_tls_context(tls or self.client_tls, server_side=False),
            check or check_node_certificate,
            timeout=10,
        )
        protocol = Collector()
        await connectProtocol(endpoint, protocol)
        return protocol


@pytest_twisted.async_yield_fixture
async def cluster(tmp_path: Path) -> Any:
    """Two nodes of a test cluster; the server stops listening afterwards."""
    made = Cluster(make_test_cluster_credentials(tmp_path))
    yield made
    if made.port is not None:
        await made.port.stopListening()


async def accepted(cluster: Cluster) -> Collector:
    """The server side of the newest connection, once it is made."""
    while not cluster.accepted:
        await deferLater(reactor, 0.01, lambda: None)
    protocol = cluster.accepted[-1]
    await protocol.made
    return protocol


@pytest_twisted.ensureDeferred
async def test_both_ways_and_identities(cluster: Cluster) -> None:
    """
    Bytes flow both ways, and each side sees the other's certificate (the
    server identifies the client as its node).
    """
    await cluster.listen()
    client = await cluster.connect()
    server = await accepted(cluster)
    client.transport.write(b"hello")  # type: ignore[union-attr]
    await server.at_least(5)
    server.transport.write(b"welcome")  # type: ignore[union-attr]
    await client.at_least(7)
    assert (bytes(server.received), bytes(client.received)) == (b"hello", b"welcome")
    identity = peer_identity(server.transport)  # type: ignore[arg-type]
    assert identity.node_uuid == cluster.credentials.node_uuids[0]
    assert (
        peer_identity(client.transport).node_uuid
        == (  # type: ignore[arg-type]
            cluster.credentials.node_uuids[1]
        )
    )
    client.transport.loseConnection()  # type: ignore[union-attr]
    assert isinstance(await client.lost, ConnectionDone)
    assert isinstance(await server.lost, ConnectionDone)


@pytest_twisted.ensureDeferred
async def test_lose_connection_sends_everything(cluster: Cluster) -> None:
    """``loseConnection`` right after large writes still delivers all of them."""
    await cluster.listen()
    client = await cluster.connect()
    server = await accepted(cluster)
    payload = os.urandom(8 * MiB + 17)
    for start in range(0, len(payload), MiB):
        client.transport.write(payload[start : start + MiB])  # type: ignore[union-attr]
    client.transport.loseConnection()  # type: ignore[union-attr]
    assert isinstance(await server.lost, ConnectionDone)
    assert bytes(server.received) == payload
    await client.lost


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
        #: Bytes the transport held queued when it first paused this producer.
        self.queued_at_pause: int | None = None

    def pump(self, limit: int) -> None:
        """Write until paused or ``limit`` bytes are written."""
        while not self.paused and self.written < limit:
            self.written += MiB
            self.transport.write(b"x" * MiB)

    def pauseProducing(self) -> None:  # noqa: N802
        """Stop writing."""
        self.paused = True
        self.pauses += 1
        if self.queued_at_pause is None:
            self.queued_at_pause = self.transport._queued

    def resumeProducing(self) -> None:  # noqa: N802
        """Go on."""
        self.paused = False
        self.resumes += 1

    def stopProducing(self) -> None:  # noqa: N802
        """The connection is gone."""
        self.stopped = True


@pytest_twisted.ensureDeferred
async def test_back_pressure(cluster: Cluster) -> None:
    """
    A peer that stops reading pauses the writer's producer (after a few MiB
    queued, not the whole stream); reading again resumes it, and every byte
    arrives in order.  While paused, the reader gets no data at all.

    The writer's worker thread takes queued bytes while the producer writes
    (how many depends on the scheduler), so the first pause is measured by
    what the queue held then: no more than ``HIGH_WATER`` and a chunk.
    """
    await cluster.listen()
    client = await cluster.connect()
    server = await accepted(cluster)
    server.transport.pauseProducing()  # type: ignore[union-attr]
    producer = CountingProducer(client.transport)
    client.transport.registerProducer(producer, True)  # type: ignore[union-attr]
    limit = 64 * MiB
    producer.pump(limit)
    assert producer.paused and producer.queued_at_pause is not None
    assert producer.queued_at_pause <= HIGH_WATER + MiB
    # The sockets' buffers and the reader's worker take some more; then
    # the writer stays paused.
    for _ in range(50):
        producer.pump(limit)
        await deferLater(reactor, 0.02, lambda: None)
    assert producer.paused and producer.written < limit / 2
    assert server.received == b""
    server.transport.resumeProducing()  # type: ignore[union-attr]
    while producer.written < limit:
        while producer.paused:
            await deferLater(reactor, 0.01, lambda: None)
        producer.pump(limit)
    await server.at_least(limit)
    assert producer.resumes >= 1
    assert bytes(server.received) == b"x" * limit
    client.transport.unregisterProducer()  # type: ignore[union-attr]
    client.transport.loseConnection()  # type: ignore[union-attr]
    await server.lost


@pytest_twisted.ensureDeferred
async def test_abort(cluster: Cluster) -> None:
    """``abortConnection`` ends both sides at once, dropping what is queued."""
    await cluster.listen()
    client = await cluster.connect()
    server = await accepted(cluster)
    server.transport.pauseProducing()  # type: ignore[union-attr]
    for _ in range(16):
        client.transport.write(b"y" * MiB)  # type: ignore[union-attr]
    client.transport.abortConnection()  # type: ignore[union-attr]
    assert isinstance(await client.lost, ConnectionAborted)
    server.transport.resumeProducing()  # type: ignore[union-attr]
    assert not isinstance(await server.lost, ConnectionDone)
    assert len(server.received) < 16 * MiB


@pytest_twisted.ensureDeferred
async def test_strangers_refused(
    cluster: Cluster, tmp_path: Path, eliot_logger: MemoryLogger
) -> None:
    """
    A client from another cluster fails its handshake (the server logs why
    and builds no protocol); a client refuses a server its check rejects.
    """
    port = await cluster.listen()
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = make_test_cluster_credentials(other_dir, cluster_name="other")
    stranger = load_tls_files(other.node_directories[0], "node")
    with pytest.raises(TLSFailed):
        await cluster.connect(tls=stranger)

    def refusals() -> list[dict[str, Any]]:
        return [
            m
            for m in eliot_logger.messages
            if m.get("message_type") == "flocker:volume:tls:refused"
        ]

    for _ in range(500):
        if refusals():
            break
        await deferLater(reactor, 0.01, lambda: None)
    assert refusals()[0]["peer"].startswith("127.0.0.1:")
    assert cluster.accepted == []
    wrong_node = cluster.credentials.node_uuids[0]
    with pytest.raises(TLSFailed, match=str(wrong_node)):
        await cluster.connect(
            check=lambda certificate: check_node_certificate(certificate, wrong_node),
            port=port,
        )


@pytest_twisted.ensureDeferred
async def test_nobody_listening(cluster: Cluster) -> None:
    """Connecting to a closed port fails with ConnectionRefusedError."""
    port = await cluster.listen()
    await cluster.port.stopListening()
    cluster.port = None
    with pytest.raises(ConnectionRefusedError):
        await cluster.connect(port=port)


def tls_workers() -> set[int]:
    """The native ids of the live TLS worker threads."""
    return {
        t.native_id
        for t in threading.enumerate()
        if t.name.startswith("tls ") and t.native_id is not None
    }


@pytest_twisted.ensureDeferred
async def test_background_priority(cluster: Cluster) -> None:
    """
    ``run_in_background`` makes that connection's worker thread
    ``BACKGROUND_NICE`` nicer than the process (Linux nices threads); its
    peer keeps the process's priority.
    """
    await cluster.listen()
    before = tls_workers()
    client = await cluster.connect()
    server = await accepted(cluster)
    ours = tls_workers() - before
    assert len(ours) == 2
    client.transport.run_in_background()  # type: ignore[union-attr]
    client.transport.write(b"x")  # type: ignore[union-attr]
    await server.at_least(1)
    nice = [os.getpriority(os.PRIO_PROCESS, tid) for tid in ours]
    process = os.getpriority(os.PRIO_PROCESS, 0)
    assert sorted(nice) == [process, min(19, process + BACKGROUND_NICE)]
    client.transport.loseConnection()  # type: ignore[union-attr]
    await server.lost


# --------------------------------------------------------------------------
# Background priority


def test_background_never_raises_priority() -> None:
    """
    Lowering a worker thread to the background never raises its priority:
    from niceness 15 it stays at (at least) 15.
    """
    if os.geteuid() != 0:
        pytest.skip("only root can raise a priority: the bug needs privilege")
    seen: dict[str, int] = {}

    def worker() -> None:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE + 5)
        # What a connection's worker does once run_in_background was asked.
        _ThreadedTLSTransport._thread_lower_priority(None)  # type: ignore[arg-type]
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, tid)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["nice"] >= BACKGROUND_NICE + 5, seen
