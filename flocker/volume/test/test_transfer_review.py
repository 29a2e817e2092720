"""
Tests from a review of the faster snapshot transfers, each first written
for a problem the review found (all fixed): version-mismatch messages in
both directions, small held-back pieces pinning whole deliveries, and
background priority never raising a thread's priority.

Memory backend and StringTransport only, as in ``test_transfer_protocol``:
no ZFS, no sockets.
"""

from __future__ import annotations

import os
import threading
import tracemalloc
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from .._threaded_tls import BACKGROUND_NICE, _ThreadedTLSTransport
from .._transfer_receiver import HOLD_BACK
from .._transfer_wire import (
    DATA,
    PREAMBLE,
    STATUS,
    encode_frame,
    encode_json,
)
from ..memory import MemoryVolumeBackend
from ..transfer import (
    TransferHeader,
    TransferProgress,
    TransferRefused,
    _SenderProtocol,
)
from .test_transfer_protocol import (
    DATASET,
    Receiving,
    failure_of,
    header_frame,
    source_backend,
)

V1_PREAMBLE = b"flocker-transfer/1\n"


# --------------------------------------------------------------------------
# Protocol versions: the messages either side sees


def test_v1_sender_is_told_versions_differ() -> None:
    """
    A version-1 sender (its preamble, then its header) is refused with a
    message that names both versions, so whoever reads it on either node
    knows which node to upgrade.
    """
    r = Receiving(MemoryVolumeBackend())
    v1_header = header_frame()[len(PREAMBLE) :]
    r.protocol.dataReceived(V1_PREAMBLE + v1_header)
    status = r.status()
    assert status["ok"] is False and status["code"] == "protocol-error"
    assert "flocker-transfer/1" in status["message"], status["message"]
    assert "flocker-transfer/2" in status["message"], status["message"]
    assert r.outcomes[-1].code == "protocol-error"


def test_v2_sender_says_the_receiver_is_older() -> None:
    """
    What a version-1 receiver answers a version-2 preamble with (exactly
    what 5951b20's receiver writes) fails the push with a message that
    says the versions differ.
    """
    source = source_backend().send(DATASET, "s1", None)
    stream_source: list[Any] = []
    source.addCallback(stream_source.append)
    header = TransferHeader(
        dataset_id=DATASET, snapshot="s1", stream_format="flocker-memory-v1"
    )
    client = _SenderProtocol(
        header,
        stream_source[0],
        TransferProgress(dataset_id=DATASET, snapshot="s1", base=None),
        None,
    )
    transport = StringTransport()
    client.makeConnection(transport)
    assert transport.value().startswith(b"flocker-transfer/2\n")
    client.dataReceived(
        encode_json(
            STATUS,
            {
                "ok": False,
                "code": "protocol-error",
                "message": "the peer does not speak flocker-transfer/1",
            },
        )
    )
    error = failure_of(client.done, TransferRefused)
    assert error.code == "protocol-error"
    assert "flocker-transfer/2" in error.message, error.message


# --------------------------------------------------------------------------
# Memory: the hold-back deque keeps memoryviews of whole deliveries


def test_held_back_pieces_do_not_pin_deliveries() -> None:
    """
    What the receiver keeps of 64 deliveries of 64 KiB that each carry one
    stream byte (in a 1-byte DATA frame followed by empty DATA frames) is
    about the 64 stream bytes, not the 4 MiB delivered.
    """
    r = Receiving(MemoryVolumeBackend())
    protocol: Any = r.protocol
    protocol.dataReceived(header_frame())
    assert protocol._state == "streaming"
    delivery_size = 64 * 1024
    deliveries = 64
    empty = encode_frame(DATA, b"")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(deliveries):
            one = encode_frame(DATA, bytes([index % 256]))
            padding = empty * ((delivery_size - len(one)) // len(empty))
            delivery = one + padding
            protocol.dataReceived(delivery)
            del delivery, padding
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert protocol._progress.bytes_transferred == deliveries  # all held back
    assert deliveries < HOLD_BACK
    # A few KiB of bookkeeping would be fine; 4 MiB of dead frames is not.
    assert retained < 1024 * 1024, f"{retained} bytes kept for {deliveries} bytes"


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
