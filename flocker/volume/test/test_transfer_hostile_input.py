"""
A hostile transfer header (nested deeply, oversized, not an object) ends
in a clean protocol error: the receiver answers ``protocol-error``, closes
the connection and reports the outcome; nothing hangs.  In memory, and once
over real TLS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.task import deferLater

from flocker.ca import load_tls_files, node_client_context_factory
from flocker.ca.testtools import make_test_cluster_credentials

from .._transfer_wire import (
    HEADER,
    MAXIMUM_CONTROL_FRAME,
    MAXIMUM_JSON_DEPTH,
    PREAMBLE,
    STATUS,
    ProtocolError,
    decode_json,
    encode_frame,
)
from ..memory import MemoryVolumeBackend
from ..testtools import port_number, stop_listening
from ..transfer import TransferReceiver, listen_for_transfers
from .test_transfer_functional import RawSender
from .test_transfer_protocol import Receiving


def nested(depth: int) -> bytes:
    """A header-like object whose ``dataset_id`` nests ``depth`` arrays."""
    return b'{"dataset_id": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [MAXIMUM_JSON_DEPTH, 1000, 30000])
def test_deep_nesting_is_a_protocol_error(depth: int) -> None:
    """JSON nested past the limit is a `ProtocolError`, never a RecursionError."""
    with pytest.raises(ProtocolError, match="deeper than"):
        decode_json(nested(depth))


def test_brackets_in_strings_do_not_count() -> None:
    """Only structure counts: brackets inside strings (escaped quotes too) do not."""
    document = {"message": '[[[[[[[[[[[[ "{{{{{{{{{{{{', "nested": [[{"a": [1]}]]}
    assert decode_json(json.dumps(document).encode()) == document


@pytest.mark.parametrize(
    "payload",
    [
        nested(1000),
        nested(30000),
        b"[" * MAXIMUM_CONTROL_FRAME,
        b"[1, 2]",
        b'"a string"',
    ],
    ids=["1000-deep", "30000-deep", "64KiB-of-brackets", "an-array", "a-string"],
)
def test_a_hostile_header_is_refused_and_the_connection_closed(payload: bytes) -> None:
    """
    The receiver answers a hostile header with ``protocol-error``, closes
    the connection and reports the refusal; its backend is untouched.
    """
    backend = MemoryVolumeBackend()
    receiving = Receiving(backend)
    receiving.protocol.dataReceived(PREAMBLE + encode_frame(HEADER, payload))
    assert receiving.status()["code"] == "protocol-error"
    assert receiving.transport.disconnecting
    assert [o.code for o in receiving.outcomes] == ["protocol-error"]
    assert receiving.receiver.in_flight == {}


def test_an_oversized_header_frame_is_refused() -> None:
    """A control frame longer than 64 KiB is refused before it is buffered."""
    receiving = Receiving(MemoryVolumeBackend())
    prefix = HEADER + (MAXIMUM_CONTROL_FRAME + 1).to_bytes(4, "big")
    receiving.protocol.dataReceived(PREAMBLE + prefix + b"{")
    assert receiving.status()["code"] == "protocol-error"
    assert receiving.transport.disconnecting


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_a_deeply_nested_header_over_tls_ends_cleanly(tmp_path: Path) -> None:
    """
    Over real TLS, a node that sends a 30,000-deep header gets a
    ``protocol-error`` status and the receiver closes the connection at
    once; the receiver then takes a well-formed connection as usual.
    """
    credentials = make_test_cluster_credentials(tmp_path)
    outcomes: list[Any] = []
    receiver = TransferReceiver(MemoryVolumeBackend(), on_outcome=outcomes.append)
    port = await listen_for_transfers(
        reactor,
        receiver,
        0,
        load_tls_files(credentials.node_directories[1], "node"),
        "127.0.0.1",
    )
    try:
        sender_tls = load_tls_files(credentials.node_directories[0], "node")
        client = RawSender(PREAMBLE + encode_frame(HEADER, nested(30000)), [])
        endpoint = wrapClientTLS(
            node_client_context_factory(sender_tls.credential, sender_tls.authority),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port_number(port)),
        )
        await connectProtocol(endpoint, client)
        closed = client.closed
        closed.addTimeout(10, reactor)
        answers = await closed
        assert answers[-1][0] == STATUS
        assert json.loads(answers[-1][1])["code"] == "protocol-error"
        for _ in range(100):  # the receiver's side of the close follows
            if outcomes:
                break
            await deferLater(reactor, 0.05, lambda: None)
        assert [o.code for o in outcomes] == ["protocol-error"]
    finally:
        await stop_listening(port)
