"""
The threaded TLS transports' and endpoints' connection lifecycle, as
Twisted's own TLS transports behave and protocols rely on: bytes read
before a clean close reach a paused protocol, ``loseConnection`` waits for
a registered producer, a reset or silent handshake fails ``connect``, a
cancelled connect builds no protocol, and a stopped port builds none —
over real loopback sockets with the cluster's real certificates.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.interfaces import IPushProducer, IReactorFromThreads
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from flocker.ca import (
    bulk_tls_context,
    check_node_certificate,
    load_tls_files,
)
from flocker.ca.testtools import make_test_cluster_credentials

from .._handshake import TLSFailed
from .._threaded_tls_endpoints import (
    ThreadedTLSClientEndpoint,
    ThreadedTLSServerEndpoint,
)
from ..testtools import PATIENCE, Collector, MiB, sleep, within


class PausingCollector(Collector):
    """
    Pauses the transport on its first ``dataReceived`` and resumes it a
    moment later from the reactor: what a protocol with a slow sink does
    (the transfer receiver pauses while ``zfs receive``'s pipe is full).
    """

    paused_once = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Keep the bytes; the first time, pause for a moment."""
        super().dataReceived(data)
        if not self.paused_once:
            self.paused_once = True
            self.transport.pauseProducing()  # type: ignore[union-attr]
            reactor.callLater(
                0.2,
                self.transport.resumeProducing,  # type: ignore[union-attr]
            )


class Nodes:
    """Two nodes' TLS files; servers and clients between them."""

    def __init__(self, tmp_path: Path) -> None:
        self.credentials = make_test_cluster_credentials(tmp_path)
        self.client_tls = load_tls_files(self.credentials.node_directories[0], "node")
        self.server_tls = load_tls_files(self.credentials.node_directories[1], "node")
        self.ports: list[Any] = []
        self.accepted: list[Collector] = []

    def server_endpoint(self, **kwargs: Any) -> ThreadedTLSServerEndpoint:
        """A server endpoint on a free loopback port."""
        return ThreadedTLSServerEndpoint(
            IReactorFromThreads(reactor),
            0,
            bulk_tls_context(self.server_tls, server_side=True),
            lambda certificate: None,
            interface="127.0.0.1",
            **kwargs,
        )

    async def listen(
        self, protocol: Callable[[], Collector] = Collector, factory: Any = None
    ) -> Any:
        """Listen with ``factory`` (or one building ``protocol``); the port."""
        if factory is None:

            def build() -> Collector:
                made = protocol()
                self.accepted.append(made)
                return made

            factory = Factory.forProtocol(build)
        port = await self.server_endpoint().listen(factory)
        self.ports.append(port)
        return port

    def client_endpoint(self, port: int, timeout: float = 10) -> Any:
        """A client endpoint for ``port`` checking the server is node 1."""
        return ThreadedTLSClientEndpoint(
            IReactorFromThreads(reactor),
            "127.0.0.1",
            port,
            bulk_tls_context(self.client_tls, server_side=False),
            check_node_certificate,
            timeout=timeout,
        )

    async def connect(self, port: Any) -> Collector:
        """A client connected to ``port``."""
        protocol = Collector()
        await connectProtocol(self.client_endpoint(port.getHost().port), protocol)
        return protocol

    async def accepted_protocol(self) -> Collector:
        """The server side of the newest connection, once it is made."""
        deadline = monotonic() + PATIENCE
        while not self.accepted:
            assert monotonic() < deadline, "the server never built a protocol"
            await sleep(0.01)
        protocol = self.accepted[-1]
        await protocol.made
        return protocol


@pytest_twisted.async_yield_fixture
async def nodes(tmp_path: Path) -> Any:
    """Two nodes; their servers stop listening afterwards."""
    made = Nodes(tmp_path)
    yield made
    for port in made.ports:
        await port.stopListening()


def worker_of(transport: Any) -> threading.Thread:
    """The worker thread of a threaded TLS transport."""
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)
        if getattr(target, "__self__", None) is transport:
            return thread
    raise AssertionError("the transport has no live worker thread")


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- 1. connectionLost while paused drops what was already read ---------------


@pytest_twisted.ensureDeferred
async def test_clean_close_while_paused_delivers_everything(nodes: Nodes) -> None:
    """
    A peer that writes, then ``loseConnection``s cleanly, while the reader
    has paused: every byte reaches the reader once it resumes, before
    ``connectionLost``; nothing is dropped.

    The worker reads ahead (up to ``MAXIMUM_UNDELIVERED``), so it can meet
    the peer's ``close_notify`` while earlier chunks still wait in the
    reactor.  Here the reactor is held until the server's worker has read
    everything and ended, which makes the interleaving certain: the first
    chunk's ``dataReceived`` pauses, the rest goes to ``_inbox``, and then
    ``_ended`` runs.
    """
    port = await nodes.listen(PausingCollector)
    client = await nodes.connect(port)
    server = await nodes.accepted_protocol()
    worker = worker_of(server.transport)
    payload = os.urandom(3 * MiB)  # three deliveries; below MAXIMUM_UNDELIVERED
    client.transport.write(payload)  # type: ignore[union-attr]
    client.transport.loseConnection()  # type: ignore[union-attr]
    # Hold the reactor (the workers need it not) until the server's worker
    # has read everything, met close_notify and handed over _ended.
    worker.join(PATIENCE)
    assert not worker.is_alive()
    assert isinstance(await within(server.lost), ConnectionDone)
    await within(client.lost)
    await sleep(0.5)  # the scheduled resumeProducing
    assert server.received_when_lost == len(payload)
    assert bytes(server.received) == payload
    assert server.after_lost == 0


# -- 2. loseConnection with a registered producer --------------------------------


@implementer(IPushProducer)
class IdleProducer:
    """A streaming producer that writes only when told."""

    stopped = False

    def pauseProducing(self) -> None:  # noqa: N802
        """Nothing to pause."""

    def resumeProducing(self) -> None:  # noqa: N802
        """Nothing to resume."""

    def stopProducing(self) -> None:  # noqa: N802
        """Note it."""
        self.stopped = True


@pytest_twisted.ensureDeferred
async def test_lose_connection_waits_for_producer(nodes: Nodes) -> None:
    """
    ``ITransport.loseConnection``: "if there is a registered producer on a
    transport it will not be closed until the producer has been
    unregistered".  Bytes the producer writes after ``loseConnection`` and
    before ``unregisterProducer`` still arrive (as with Twisted's TCP and
    TLS transports).
    """
    port = await nodes.listen()
    client = await nodes.connect(port)
    server = await nodes.accepted_protocol()
    producer = IdleProducer()
    client.transport.registerProducer(producer, True)  # type: ignore[union-attr]
    client.transport.write(b"before ")  # type: ignore[union-attr]
    client.transport.loseConnection()  # type: ignore[union-attr]
    client.transport.write(b"after")  # type: ignore[union-attr]
    client.transport.unregisterProducer()  # type: ignore[union-attr]
    assert isinstance(await within(server.lost), ConnectionDone)
    await within(client.lost)
    assert bytes(server.received) == b"before after"


# -- 3. the peer resets right after the TCP connect -------------------------------


@pytest_twisted.ensureDeferred
async def test_connect_fails_when_peer_resets_at_once(tmp_path: Path) -> None:
    """
    A server that resets the connection as soon as it is accepted fails the
    client's ``connect`` (it does not leave it waiting forever).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(PATIENCE)
    try:
        endpoint = ThreadedTLSClientEndpoint(
            IReactorFromThreads(reactor),
            "127.0.0.1",
            listener.getsockname()[1],
            bulk_tls_context(
                load_tls_files(
                    make_test_cluster_credentials(tmp_path).node_directories[0],
                    "node",
                ),
                server_side=False,
            ),
            check_node_certificate,
            timeout=10,
        )
        before = set(threading.enumerate())
        connecting = endpoint.connect(Factory.forProtocol(Collector))
        # Still in the reactor thread, so the endpoint's
        # callFromThread(connected) cannot run before the reset below: let
        # its TCP connect finish, then reset the connection.
        for thread in set(threading.enumerate()) - before:
            thread.join(PATIENCE)
            assert not thread.is_alive()
        accepted, _ = listener.accept()
        reset(accepted)
        threading.Event().wait(0.2)  # let loopback deliver the RST
        with pytest.raises((ConnectError, TLSFailed)):
            await within(connecting, 15)
    finally:
        listener.close()


# -- 4. a cancelled connect goes on and builds a protocol -----------------------


@pytest_twisted.ensureDeferred
async def test_cancelled_connect_builds_nothing_and_closes(nodes: Nodes) -> None:
    """
    Cancelling ``connect`` (as ``Deferred.addTimeout`` does) stops the
    connection attempt: no protocol is built, and neither end's connection
    (nor its worker thread) is left behind.
    """
    port = await nodes.listen()
    built: list[Protocol] = []

    def build() -> Protocol:
        protocol = Collector()
        built.append(protocol)
        return protocol

    before = set(threading.enumerate())
    connecting = nodes.client_endpoint(port.getHost().port).connect(
        Factory.forProtocol(build)
    )
    connecting.cancel()
    with pytest.raises(CancelledError):
        await connecting

    def ours() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.is_alive()]

    quiet = 0
    deadline = monotonic() + PATIENCE
    while monotonic() < deadline and not built and quiet < 2:
        quiet = quiet + 1 if not ours() else 0
        await sleep(0.25)
    try:
        assert built == []
        assert ours() == []
    finally:
        for protocol in built + nodes.accepted:  # don't leave them running
            if protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]


# -- 5. stopListening while a connection shakes hands ---------------------------


@pytest_twisted.ensureDeferred
async def test_no_protocol_built_after_stop_listening(nodes: Nodes) -> None:
    """
    After ``stopListening`` (and so ``factory.doStop``) the factory builds
    no more protocols: a connection accepted but still shaking hands is
    either dropped or finishes without a new protocol, as with Twisted's TLS
    ports, where the protocol is built when the connection is accepted.
    """
    events: list[str] = []
    built: list[Any] = []

    class Recording(Factory):
        protocol = Collector

        def doStop(self) -> None:  # noqa: N802
            events.append("stop")
            super().doStop()  # type: ignore[no-untyped-call]

        def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
            events.append("build")
            protocol = super().buildProtocol(addr)
            built.append(protocol)
            return protocol

    port = await nodes.listen(factory=Recording())
    raw = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    try:
        # Wait until the server has accepted it (its handshake is under way
        # in the port's thread).
        deadline = monotonic() + PATIENCE
        while not port._caps.held():
            assert monotonic() < deadline, "the server never accepted"
            await sleep(0.01)
        server_threads = [
            t
            for t in threading.enumerate()
            if t.name == f"accept :{port.getHost().port}"
        ]
        await within(port.stopListening())
        nodes.ports.remove(port)
        assert events == ["stop"]

        context = bulk_tls_context(nodes.client_tls, server_side=False)
        shaken = threading.Event()

        def handshake() -> None:
            try:
                wrapped = context.wrap_socket(raw)
                shaken.set()
                wrapped.recv(1)  # until the server closes (or the timeout)
            except OSError:
                pass

        threading.Thread(target=handshake, daemon=True).start()
        deadline = monotonic() + PATIENCE
        while "build" not in events and any(t.is_alive() for t in server_threads):
            if monotonic() > deadline:
                break
            await sleep(0.05)
        assert events == ["stop"]
    finally:
        raw.close()
        for protocol in built:  # don't leave them running
            protocol.transport.abortConnection()


# -- 6. a handshake that times out or is reset ------------------------------------


def silent_server(behaviour: str) -> tuple[socket.socket, threading.Thread]:
    """
    A TCP server for one connection that never answers the TLS handshake:
    it keeps the connection open (``"silent"``) or reads the ClientHello and
    resets the connection (``"reset"``).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(PATIENCE)

    def serve() -> None:
        try:
            accepted, _ = listener.accept()
        except OSError:
            return
        accepted.settimeout(PATIENCE)
        try:
            accepted.recv(65536)  # the ClientHello
            if behaviour == "reset":
                reset(accepted)
                return
            accepted.recv(65536)  # until the client gives up
        except OSError:
            pass
        accepted.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("behaviour", ["silent", "reset"])
@pytest_twisted.ensureDeferred
async def test_handshake_without_answer_fails_connect(
    nodes: Nodes, behaviour: str
) -> None:
    """
    A peer that accepts the TCP connection but never completes the TLS
    handshake (silent until the endpoint's timeout, or resetting) fails
    ``connect`` with ``TLSFailed`` or a ``ConnectError`` (a timeout is
    ``TCPTimedOutError``), the errors the endpoint's callers handle; and the
    client's threads end.
    """
    listener, server = silent_server(behaviour)
    try:
        before = set(threading.enumerate())
        endpoint = nodes.client_endpoint(listener.getsockname()[1], timeout=1)
        connecting = endpoint.connect(Factory.forProtocol(Collector))
        failure: Failure | None = None
        try:
            await within(connecting)
        except BaseException:  # noqa: BLE001 - examined below
            failure = Failure()
        assert failure is not None
        deadline = monotonic() + PATIENCE
        while [t for t in threading.enumerate() if t not in before and t.is_alive()]:
            assert monotonic() < deadline, "the client's threads went on"
            await sleep(0.05)
        assert failure.check(TLSFailed, ConnectError), failure.value
    finally:
        listener.close()
        server.join(PATIENCE)
