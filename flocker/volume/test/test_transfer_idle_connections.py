"""
Functional: the transfer port spends nothing on a peer before it is
authenticated.  Idle TCP connections (no TLS handshake) cost no thread and
no buffer; memory is back to where it was once they close, and a real push
still works.  Real sockets on 127.0.0.0/8.  (The port's handshake deadline
and connection caps are tested with the transport, in
``flocker/transport/test/test_threaded_tls_port_limits.py``.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from ...transport.testtools import idle, settle, two_nodes_tls
from ..memory import MemoryVolumeBackend
from ..testtools import port_number, stop_listening
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


@pytest.fixture
def tls(tmp_path: Path) -> Any:
    """Two nodes' credentials: the receiver's and a sender's."""
    return two_nodes_tls(tmp_path)


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
            made = await threads.deferToThread(idle, port_number(port), 300)
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
            port_number(port),
            tls[1],
        )
        assert sent.bytes_sent > 0
    finally:
        await stop_listening(port)
