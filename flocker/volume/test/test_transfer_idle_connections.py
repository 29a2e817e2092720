"""
Functional: the transfer port spends nothing on a peer before it is
authenticated.  Idle TCP connections (no TLS handshake) cost no thread and
no buffer, are held at most for the handshake deadline, and are capped in
all and per peer address; memory is back to where it was once they close,
and a real push still works.  Real sockets on 127.0.0.0/8.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.protocol import Factory, Protocol

from flocker.ca import bulk_tls_context, load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials

from ...transport import ThreadedTLSServerEndpoint
from ..memory import MemoryVolumeBackend
from ..transfer import TransferReceiver, listen_for_transfers, push

pytestmark = pytest.mark.functional

DATASET = "5a1d3f0e-2b9c-4c55-9a63-0e0f7b1b2c3d"
MiB = 1024 * 1024


def threads_now() -> int:
    """This process's threads, as the kernel counts them."""
    return len(os.listdir("/proc/self/task"))


def rss_mib() -> float:
    """This process's resident memory, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


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


@pytest.fixture
def tls(tmp_path: Path) -> Any:
    """Two nodes' credentials: the receiver's and a sender's."""
    credentials = make_test_cluster_credentials(tmp_path)
    return [load_tls_files(d, "node") for d in credentials.node_directories[:2]]


async def settle() -> None:
    """Give the port's thread and the reactor a moment."""
    await threads.deferToThread(time.sleep, 0.5)


@pytest_twisted.ensureDeferred
async def test_idle_connections_cost_no_thread_and_little_memory(tls: Any) -> None:
    """
    Three rounds of 300 idle connections to a transfer receiver add no
    thread and a few MiB at most (each cost a thread and 2 MiB before), and
    after they close the receiver still takes a real push.
    """
    receiver = TransferReceiver(MemoryVolumeBackend())
    port = await listen_for_transfers(reactor, receiver, 0, tls[0], "127.0.0.1")
    try:
        await settle()
        threads_before, rss_before = threads_now(), rss_mib()
        peak_threads, peak_rss = threads_before, rss_before
        for _ in range(3):
            # A thread of ours makes them, so the reactor keeps accepting.
            made = await threads.deferToThread(idle, port.getHost().port, 300)
            await settle()
            peak_threads = max(peak_threads, threads_now())
            peak_rss = max(peak_rss, rss_mib())
            for connection in made:
                connection.close()
            await settle()
        assert peak_threads <= threads_before + 1  # at most a thread of the test's pool
        assert peak_rss - rss_before < 32, (rss_before, peak_rss)
        assert rss_mib() - rss_before < 8
        source = MemoryVolumeBackend()
        await source.create(DATASET)
        await source.snapshot(DATASET, "s1")
        sent = await push(
            reactor,
            source,
            DATASET,
            "s1",
            None,
            "127.0.0.1",
            port.getHost().port,
            tls[1],
        )
        assert sent.bytes_sent > 0
    finally:
        await port.stopListening()


class _Quiet(Protocol):
    """Holds a connection open and does nothing."""


async def listening(tls: Any, **options: Any) -> Any:
    """A threaded TLS port on 127.0.0.1 with the given limits."""
    endpoint = ThreadedTLSServerEndpoint(
        reactor,
        0,
        bulk_tls_context(tls[0], server_side=True),
        lambda certificate: None,
        interface="127.0.0.1",
        **options,
    )
    return await endpoint.listen(Factory.forProtocol(_Quiet))


@pytest_twisted.ensureDeferred
async def test_a_handshake_has_a_deadline(tls: Any) -> None:
    """A peer that never starts TLS is cut off once the handshake deadline passed."""
    port = await listening(tls, handshake_timeout=0.3)
    try:
        [connection] = await threads.deferToThread(idle, port.getHost().port, 1)
        assert await threads.deferToThread(closed_by_server, connection, 5)
        connection.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_connections_are_capped_per_peer_and_in_all(tls: Any) -> None:
    """
    A peer address holds at most ``maximum_per_peer`` connections and the
    port at most ``maximum_connections``: one more is reset at once, while
    the ones held stay open; a slot freed is taken again.
    """
    port = await listening(tls, maximum_connections=3, maximum_per_peer=2)
    number = port.getHost().port
    made: list[socket.socket] = []
    try:
        first = await threads.deferToThread(idle, number, 3, "127.0.0.1")
        made += first
        assert await threads.deferToThread(closed_by_server, first[2], 2)
        assert not await threads.deferToThread(closed_by_server, first[0], 0.3)
        [other] = await threads.deferToThread(idle, number, 1, "127.0.0.2")
        made.append(other)
        assert not await threads.deferToThread(closed_by_server, other, 0.3)
        [third] = await threads.deferToThread(idle, number, 1, "127.0.0.3")
        made.append(third)
        assert await threads.deferToThread(closed_by_server, third, 2)
        first[0].close()
        await settle()
        [again] = await threads.deferToThread(idle, number, 1, "127.0.0.3")
        made.append(again)
        assert not await threads.deferToThread(closed_by_server, again, 0.3)
    finally:
        for connection in made:
            connection.close()
        await port.stopListening()
