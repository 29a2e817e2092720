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
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import (
    ConnectionRefusedError,
)
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater

from flocker.ca import (
    TLSFiles,
    bulk_tls_context,
    check_node_certificate,
    load_tls_files,
)
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials

from .._handshake import TLSFailed
from .._threaded_tls import (
    BACKGROUND_NICE,
    HIGH_WATER,
    _ThreadedTLSTransport,
)
from .._threaded_tls_endpoints import (
    ThreadedTLSClientEndpoint,
    ThreadedTLSServerEndpoint,
)
from ..testtools import Collector, CountingProducer, MiB


class QueueWatchingProducer(CountingProducer):
    """A :class:`CountingProducer` that notes what the transport held queued."""

    #: Bytes the transport held queued when it first paused this producer.
    queued_at_pause: int | None = None

    def pauseProducing(self) -> None:  # noqa: N802
        """Stop writing; the first time, note the queue."""
        super().pauseProducing()
        if self.queued_at_pause is None:
            self.queued_at_pause = self.transport._queued


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
            IReactorFromThreads(reactor),
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
            IReactorFromThreads(reactor),
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
    producer = QueueWatchingProducer(client.transport)
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
