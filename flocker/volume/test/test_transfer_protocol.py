"""
Unit tests of both ends of the transfer protocol, without sockets or TLS.

The receiver is driven byte by byte over a ``StringTransport``; sender and
receiver talk to each other over ``twisted.test.iosim``.  Both use the
in-memory backend, whose Deferreds have fired by the time they return.
"""

from __future__ import annotations

import os
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from eliot import MemoryLogger
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect

from flocker.ca import PeerIdentity, UnknownPeer

from .._transfer_receiver import HOLD_BACK
from .._transfer_sender import _SenderProtocol
from .._transfer_wire import (
    CHECKSUM,
    DATA,
    HEADER,
    PREAMBLE,
    READY,
    STATUS,
    TRAILER,
    FrameParser,
    checksum_of,
    encode_frame,
    encode_json,
)
from ..memory import MemoryVolumeBackend
from ..testtools import stream_bytes
from ..transfer import (
    ReceiveOutcome,
    TransferFailed,
    TransferHeader,
    TransferInterrupted,
    TransferProgress,
    TransferReceiver,
    TransferRefused,
    TransferResult,
)

DATASET = "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"
CLUSTER = uuid.uuid4()
NODE = PeerIdentity(kind="node", node_uuid=uuid.uuid4(), cluster_uuid=CLUSTER)
USER = PeerIdentity(kind="user", username="alice", cluster_uuid=CLUSTER)

T = TypeVar("T")


def result_of(deferred: Deferred[T]) -> T:
    """The result of a Deferred that has already fired (raising a failure)."""
    results: list[T | Failure] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def failure_of(deferred: Deferred[Any], error: type[BaseException]) -> Any:
    """The exception a fired Deferred failed with, which must be ``error``."""
    with pytest.raises(error) as caught:
        result_of(deferred)
    return caught.value


def source_backend(files: dict[str, bytes] | None = None) -> MemoryVolumeBackend:
    """A backend with DATASET holding ``files`` in snapshot s1, and more in s2."""
    backend = MemoryVolumeBackend()
    result_of(backend.create(DATASET))
    for path, data in (files or {"a": b"alpha" * 1000}).items():
        backend.write_file(DATASET, path, data)
    result_of(backend.snapshot(DATASET, "s1"))
    backend.write_file(DATASET, "b", b"beta" * 1000)
    result_of(backend.snapshot(DATASET, "s2"))
    return backend


def stream_of(backend: MemoryVolumeBackend, snapshot: str, base: str | None) -> bytes:
    """The backend's stream of a snapshot."""
    source = result_of(backend.send(DATASET, snapshot, base))
    return result_of(Deferred.fromCoroutine(stream_bytes(source)))


def header_frame(
    snapshot: str = "s1", base: str | None = None, stream_format: str | None = None
) -> bytes:
    """The preamble and header a sender of the memory backend writes."""
    header = TransferHeader(
        dataset_id=DATASET,
        snapshot=snapshot,
        base=base,
        stream_format=stream_format or "flocker-memory-v1",
    )
    return PREAMBLE + encode_json(HEADER, header.to_json())


def trailer_frame(data: bytes, checksum: str | None = None) -> bytes:
    """The trailer for ``data`` (with a chosen checksum if given)."""
    return encode_json(
        TRAILER, {"bytes": len(data), CHECKSUM: checksum or checksum_of(data)}
    )


class Receiving:
    """A receiver protocol on a StringTransport, and what it reported."""

    def __init__(
        self, backend: MemoryVolumeBackend, identity: PeerIdentity | Exception = NODE
    ) -> None:
        self.outcomes: list[ReceiveOutcome] = []
        self.progress: list[int] = []

        def identify(transport: Any) -> PeerIdentity:
            if isinstance(identity, Exception):
                raise identity
            return identity

        self.receiver = TransferReceiver(
            backend,
            on_progress=lambda p: self.progress.append(p.bytes_transferred),
            on_outcome=self.outcomes.append,
            identify=identify,
        )
        self.protocol = self.receiver.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.lost = False

    def answers(self) -> list[tuple[bytes, bytes]]:
        """The frames the receiver wrote (closing the connection if it asked)."""
        if self.transport.disconnecting and not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))
        seen: list[tuple[bytes, bytes]] = []
        parser = FrameParser(
            lambda kind, payload: seen.append((kind, payload)),
            lambda data: None,
            frozenset([READY, STATUS]),
        )
        parser.feed(self.transport.value())
        return seen

    def status(self) -> dict[str, Any]:
        """The final status frame, decoded."""
        import json

        kinds = self.answers()
        assert kinds and kinds[-1][0] == STATUS, kinds
        status: dict[str, Any] = json.loads(kinds[-1][1])
        return status


def test_receives_full_stream() -> None:
    """A complete, correct stream becomes the dataset; the status is ok."""
    sender = source_backend()
    receiver = MemoryVolumeBackend()
    data = stream_of(sender, "s1", None)
    r = Receiving(receiver)
    r.protocol.dataReceived(header_frame())
    assert r.answers() == [(READY, b"{}")]
    assert r.receiver.in_flight[DATASET].snapshot == "s1"
    r.protocol.dataReceived(encode_frame(DATA, data) + trailer_frame(data))
    assert r.status() == {"ok": True, "bytes": len(data)}
    assert r.transport.disconnecting
    assert receiver.read_files(DATASET) == {"a": b"alpha" * 1000}
    assert [s.name for s in result_of(receiver.list_snapshots(DATASET))] == ["s1"]
    assert r.outcomes == [
        ReceiveOutcome(
            dataset_id=DATASET,
            snapshot="s1",
            bytes_received=len(data),
            ok=True,
            peer=str(NODE.node_uuid),
        )
    ]
    assert r.progress[-1] == len(data)
    assert r.receiver.in_flight == {}


def test_receives_incremental_stream() -> None:
    """An incremental stream on a base the receiver has is applied."""
    sender = source_backend()
    receiver = MemoryVolumeBackend()
    full = stream_of(sender, "s1", None)
    r = Receiving(receiver)
    r.protocol.dataReceived(header_frame() + encode_frame(DATA, full))
    r.protocol.dataReceived(trailer_frame(full))
    delta = stream_of(sender, "s2", "s1")
    r2 = Receiving(receiver)
    r2.protocol.dataReceived(header_frame("s2", "s1") + encode_frame(DATA, delta))
    r2.protocol.dataReceived(trailer_frame(delta))
    assert r2.status()["ok"] is True
    assert receiver.read_files(DATASET) == sender.read_files(DATASET)


@pytest.mark.parametrize(
    "header, code",
    [
        (header_frame(stream_format="zfs"), "wrong-format"),
        (header_frame("s2", "s1"), "unknown-dataset"),
        (
            PREAMBLE
            + encode_json(
                HEADER,
                {"dataset_id": "nope", "snapshot": "s1", "stream_format": "x"},
            ),
            "bad-header",
        ),
        (
            PREAMBLE
            + encode_json(
                HEADER,
                {"dataset_id": DATASET, "snapshot": "-bad", "stream_format": "x"},
            ),
            "bad-header",
        ),
        (PREAMBLE + encode_json(HEADER, {"dataset_id": 1}), "protocol-error"),
        (PREAMBLE + encode_frame(DATA, b"x"), "protocol-error"),
        (b"SSH-2.0-OpenSSH\r\n", "protocol-error"),
    ],
)
def test_refuses_bad_headers(header: bytes, code: str) -> None:
    """A bad header is answered with a status naming the problem; nothing changes."""
    receiver = MemoryVolumeBackend()
    r = Receiving(receiver)
    r.protocol.dataReceived(header)
    status = r.status()
    assert (status["ok"], status["code"]) == (False, code)
    assert status["message"]
    assert r.transport.disconnecting
    assert result_of(receiver.list_datasets()) == []
    assert r.receiver.in_flight == {}


def test_refuses_unknown_base() -> None:
    """An incremental stream on a base the receiver lacks is refused clearly."""
    receiver = source_backend()
    r = Receiving(receiver)
    r.protocol.dataReceived(header_frame("s3", "nope"))
    status = r.status()
    assert status["code"] == "unknown-snapshot"
    assert "'nope'" in status["message"]


def test_refuses_full_stream_of_existing_dataset() -> None:
    """A full stream of a dataset the receiver has is refused."""
    receiver = source_backend()
    before = receiver.read_files(DATASET)
    r = Receiving(receiver)
    r.protocol.dataReceived(header_frame())
    assert r.status()["code"] == "dataset-exists"
    assert receiver.read_files(DATASET) == before


@pytest.mark.parametrize("identity", [USER, UnknownPeer("no certificate")])
def test_refuses_non_nodes(identity: Any) -> None:
    """Only nodes may push: a user's certificate (or none) is refused."""
    r = Receiving(MemoryVolumeBackend(), identity)
    r.protocol.dataReceived(header_frame())
    assert r.status()["code"] == "not-authorized"


def test_refuses_concurrent_transfer() -> None:
    """A second transfer of a dataset already being received is refused."""
    receiver = MemoryVolumeBackend()
    first = Receiving(receiver)
    first.protocol.dataReceived(header_frame())
    second = TransferReceiver(receiver, identify=lambda t: NODE)
    second.in_flight = first.receiver.in_flight
    protocol = second.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(header_frame())
    assert b'"code": "busy"' in transport.value()


def test_refusal_hook() -> None:
    """
    A stream the receiver's ``refuse`` hook turns down (the dataset agent:
    a dataset it exposes) is refused with the hook's reason, before any
    byte reaches the backend.
    """
    receiver = source_backend()
    before = receiver.read_files(DATASET)
    refusing = TransferReceiver(
        receiver,
        identify=lambda t: NODE,
        refuse=lambda header: f"dataset {header.dataset_id} is exposed here",
    )
    protocol = refusing.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(header_frame("s3", "s1"))
    assert b'"code": "busy"' in transport.value()
    assert b"is exposed here" in transport.value()
    assert receiver.read_files(DATASET) == before
    assert refusing.in_flight == {}


@pytest.mark.parametrize(
    "damage, code",
    [
        (lambda d: d[:10] + bytes([d[10] ^ 1]) + d[11:], "checksum-mismatch"),
        (lambda d: d[:-1], "length-mismatch"),
    ],
)
def test_refuses_corrupt_stream(damage: Any, code: str) -> None:
    """A stream not matching its trailer is aborted; the dataset never appears."""
    sender = source_backend()
    receiver = MemoryVolumeBackend()
    data = stream_of(sender, "s1", None)
    r = Receiving(receiver)
    r.protocol.dataReceived(header_frame())
    r.protocol.dataReceived(encode_frame(DATA, damage(data)) + trailer_frame(data))
    assert r.status()["code"] == code
    assert result_of(receiver.list_datasets()) == []
    assert r.outcomes[-1].ok is False and r.outcomes[-1].code == code


def test_connection_lost_mid_stream() -> None:
    """A connection ending before the trailer aborts the receive."""
    sender = source_backend()
    receiver = source_backend()
    before = receiver.read_files(DATASET)
    receiver.write_file(DATASET, "c", b"local change")
    before = receiver.read_files(DATASET)
    delta = stream_of(sender, "s2", "s1")
    result_of(receiver.destroy_snapshot(DATASET, "s2"))
    r = Receiving(receiver)
    r.protocol.dataReceived(header_frame("s2", "s1"))
    r.protocol.dataReceived(encode_frame(DATA, delta)[: len(delta) // 2])
    r.protocol.connectionLost(Failure(ConnectionLost("cut")))
    assert receiver.read_files(DATASET) == before
    assert [s.name for s in result_of(receiver.list_snapshots(DATASET))] == ["s1"]
    assert r.outcomes[-1].code == "interrupted"
    assert r.receiver.in_flight == {}


def test_connection_lost_before_header() -> None:
    """A connection that ends before a header reports nothing."""
    r = Receiving(MemoryVolumeBackend())
    r.protocol.dataReceived(PREAMBLE[:5])
    r.protocol.connectionLost(Failure(ConnectionLost("cut")))
    assert r.outcomes == []


def test_extra_frames_after_trailer_ignored() -> None:
    """Once the trailer is in, later bytes change nothing."""
    sender = source_backend()
    receiver = MemoryVolumeBackend()
    data = stream_of(sender, "s1", None)
    r = Receiving(receiver)
    r.protocol.dataReceived(
        header_frame() + encode_frame(DATA, data) + trailer_frame(data) + b"junk"
    )
    assert r.status()["ok"] is True


# --------------------------------------------------------------------------
# Sender and receiver together


def pump_transfer(
    sender: MemoryVolumeBackend,
    receiver: MemoryVolumeBackend,
    snapshot: str,
    base: str | None,
    cut_after: int | None = None,
    replace: Callable[[TransferHeader], bool] | None = None,
) -> tuple[Deferred[TransferResult], list[ReceiveOutcome], list[int]]:
    """
    Run a transfer between the two protocols over an in-memory pump.

    :param replace: The receiver's ``replace`` hook.
    """
    source = result_of(sender.send(DATASET, snapshot, base))
    header = TransferHeader(
        dataset_id=DATASET,
        snapshot=snapshot,
        base=base,
        stream_format=source.stream_format,
    )
    sent: list[int] = []
    progress = TransferProgress(dataset_id=DATASET, snapshot=snapshot, base=base)
    client = _SenderProtocol(
        header, source, progress, lambda p: sent.append(p.bytes_transferred)
    )
    outcomes: list[ReceiveOutcome] = []
    server = TransferReceiver(
        receiver, on_outcome=outcomes.append, identify=lambda t: NODE, replace=replace
    ).buildProtocol(None)
    server_transport = FakeTransport(server, isServer=True)
    client_transport = FakeTransport(client, isServer=False)
    pump = connect(server, server_transport, client, client_transport, greet=False)
    if cut_after is None:
        pump.flush()
    else:
        pump.pump()  # header
        pump.pump()  # ready
        server.connectionLost(Failure(ConnectionLost("cut")))
        client.connectionLost(Failure(ConnectionLost("cut")))
    return client.done, outcomes, sent


def test_pushes_full_then_incremental() -> None:
    """The sender's stream arrives whole; then an incremental applies on top."""
    sender = source_backend()
    receiver = MemoryVolumeBackend()
    done, outcomes, sent = pump_transfer(sender, receiver, "s1", None)
    result = result_of(done)
    assert result.bytes_sent == len(stream_of(sender, "s1", None))
    assert result.wire_bytes > result.bytes_sent
    assert sent and sent[-1] == result.bytes_sent
    assert outcomes[-1].ok
    done, outcomes, _ = pump_transfer(sender, receiver, "s2", "s1")
    assert result_of(done).base == "s1"
    assert receiver.read_files(DATASET) == sender.read_files(DATASET)


def _diverged_copy() -> tuple[MemoryVolumeBackend, MemoryVolumeBackend]:
    """
    A primary and a replica that share no snapshot any more: the replica
    got s1, then the primary destroyed s1 and has only s2 (and s3, more).
    """
    sender = source_backend()
    receiver = MemoryVolumeBackend()
    result_of(pump_transfer(sender, receiver, "s1", None)[0])
    result_of(sender.destroy_snapshot(DATASET, "s1"))
    sender.write_file(DATASET, "c", b"gamma")
    result_of(sender.snapshot(DATASET, "s3"))
    return sender, receiver


def test_full_push_into_existing_copy_refused_by_default() -> None:
    """
    Without a ``replace`` hook (or when it says no), a full push of a
    dataset the receiver has is refused with ``dataset-exists`` and the
    receiver's copy stays as it was.
    """
    sender, receiver = _diverged_copy()
    before = receiver.read_files(DATASET)
    for hook in [None, lambda header: False]:
        done, outcomes, _ = pump_transfer(sender, receiver, "s3", None, replace=hook)
        assert failure_of(done, TransferRefused).code == "dataset-exists"
        assert not outcomes[-1].ok
        assert receiver.read_files(DATASET) == before
        assert [s.name for s in result_of(receiver.list_snapshots(DATASET))] == ["s1"]


def test_replace_hook_replaces_copy_with_full_push() -> None:
    """
    When the receiver's ``replace`` hook says so, a full push replaces the
    receiver's copy: the pushed snapshot's data and only that snapshot,
    read-only; the hook sees the header of the full stream, and is not
    asked about incremental streams, which keep working on top.
    """
    sender, receiver = _diverged_copy()
    asked: list[TransferHeader] = []

    def replace(header: TransferHeader) -> bool:
        asked.append(header)
        return True

    done, outcomes, _ = pump_transfer(sender, receiver, "s3", None, replace=replace)
    assert result_of(done).snapshot == "s3"
    assert outcomes[-1].ok
    assert [(h.dataset_id, h.snapshot, h.base) for h in asked] == [
        (DATASET, "s3", None)
    ]
    assert receiver.read_files(DATASET) == sender.read_files(DATASET)
    assert [s.name for s in result_of(receiver.list_snapshots(DATASET))] == ["s3"]
    assert result_of(receiver.get(DATASET)).read_only is True
    sender.write_file(DATASET, "d", b"delta")
    result_of(sender.snapshot(DATASET, "s4"))
    done, _, _ = pump_transfer(sender, receiver, "s4", "s3", replace=replace)
    result_of(done)
    assert len(asked) == 1
    assert receiver.read_files(DATASET) == sender.read_files(DATASET)


def test_replacing_push_cut_keeps_copy() -> None:
    """A replacing full push cut mid stream leaves the receiver's copy as it was."""
    sender, receiver = _diverged_copy()
    before = receiver.read_files(DATASET)
    done, _, _ = pump_transfer(
        sender, receiver, "s3", None, cut_after=1, replace=lambda header: True
    )
    failure_of(done, TransferInterrupted)
    assert receiver.read_files(DATASET) == before
    assert [s.name for s in result_of(receiver.list_snapshots(DATASET))] == ["s1"]


def test_sender_raises_refusal() -> None:
    """A refused header fails the push with TransferRefused and its code."""
    sender = source_backend()
    receiver = MemoryVolumeBackend()
    done, _, _ = pump_transfer(sender, receiver, "s2", "s1")
    error = failure_of(done, TransferRefused)
    assert error.code == "unknown-dataset"
    assert DATASET in error.message


def test_sender_sees_interruption() -> None:
    """A connection lost before the final status fails the push."""
    sender = source_backend()
    receiver = MemoryVolumeBackend()
    done, outcomes, _ = pump_transfer(sender, receiver, "s1", None, cut_after=1)
    failure_of(done, TransferInterrupted)
    assert result_of(receiver.list_datasets()) == []


def test_sender_raises_failure_status() -> None:
    """A failure status after the stream fails the push with TransferFailed."""
    source = result_of(source_backend().send(DATASET, "s1", None))
    header = TransferHeader(
        dataset_id=DATASET, snapshot="s1", stream_format=source.stream_format
    )
    client = _SenderProtocol(
        header,
        source,
        TransferProgress(dataset_id=DATASET, snapshot="s1", base=None),
        None,
    )
    transport = StringTransport()
    client.makeConnection(transport)
    assert transport.value().startswith(PREAMBLE)
    client.dataReceived(encode_json(READY, {}))
    client.dataReceived(
        encode_json(STATUS, {"ok": False, "code": "checksum-mismatch", "message": "m"})
    )
    error = failure_of(client.done, TransferFailed)
    assert error.code == "checksum-mismatch"
    assert transport.disconnecting


def test_eliot_actions_join_one_task(eliot_logger: MemoryLogger) -> None:
    """The receive action continues the sender's eliot task."""
    from eliot import start_action

    sender = source_backend()
    receiver = MemoryVolumeBackend()
    with start_action(action_type="test:push") as action:
        source = result_of(sender.send(DATASET, "s1", None))
        header = TransferHeader(
            dataset_id=DATASET,
            snapshot="s1",
            stream_format=source.stream_format,
            task_id=action.serialize_task_id().decode("ascii"),
        )
    r = Receiving(receiver)
    data = stream_of(sender, "s1", None)
    r.protocol.dataReceived(PREAMBLE + encode_json(HEADER, header.to_json()))
    r.protocol.dataReceived(encode_frame(DATA, data) + trailer_frame(data))
    receives = [
        m
        for m in eliot_logger.messages
        if m.get("action_type") == "flocker:volume:transfer:receive"
    ]
    assert [m["action_status"] for m in receives] == ["started", "succeeded"]
    assert receives[0]["task_uuid"] == action.task_uuid
    assert receives[1]["bytes"] == len(data) and receives[1]["result"] == "ok"


# --------------------------------------------------------------------------
# Idle peers


def idle_receiving(clock: Any) -> Receiving:
    """A Receiving whose receiver times idle peers with ``clock`` (10 s)."""
    r = Receiving.__new__(Receiving)
    r.outcomes, r.progress, r.lost = [], [], False
    r.receiver = TransferReceiver(
        MemoryVolumeBackend(),
        on_outcome=r.outcomes.append,
        identify=lambda t: NODE,
        clock=clock,
        idle_timeout=10,
    )
    r.protocol = r.receiver.buildProtocol(None)
    r.transport = StringTransport()
    r.protocol.makeConnection(r.transport)
    return r


def test_idle_peer_is_cut_off() -> None:
    """A peer that sends nothing for the idle timeout loses its connection."""
    from twisted.internet.task import Clock

    clock = Clock()
    r = idle_receiving(clock)
    r.protocol.dataReceived(header_frame())
    clock.advance(9)
    r.protocol.dataReceived(encode_frame(DATA, b"x"))  # activity: timer restarts
    clock.advance(9)
    assert not r.transport.disconnecting
    clock.advance(2)
    assert r.transport.disconnecting
    r.protocol.connectionLost(Failure(ConnectionLost("aborted")))
    assert r.outcomes[-1].code == "interrupted"
    assert "no data for 10" in r.outcomes[-1].message
    assert r.receiver.in_flight == {}


def test_no_timeout_while_sink_pauses() -> None:
    """While the sink holds the connection paused, the peer is not idle."""
    from twisted.internet.task import Clock

    clock = Clock()
    r = idle_receiving(clock)
    r.protocol.dataReceived(header_frame())
    from .._transfer_receiver import _SinkProducer

    producer = _SinkProducer(r.protocol)
    producer.pauseProducing()
    clock.advance(100)
    assert not r.transport.disconnecting
    producer.resumeProducing()
    clock.advance(11)
    assert r.transport.disconnecting


def test_no_timer_after_the_end() -> None:
    """A finished transfer leaves no timer behind."""
    from twisted.internet.task import Clock

    clock = Clock()
    r = idle_receiving(clock)
    sender = source_backend()
    data = stream_of(sender, "s1", None)
    r.protocol.dataReceived(
        header_frame() + encode_frame(DATA, data) + trailer_frame(data)
    )
    assert r.status()["ok"] is True
    assert clock.getDelayedCalls() == []


def test_sender_gives_up_on_quiet_receiver() -> None:
    """A receiver that never answers the header fails the push after the timeout."""
    from twisted.internet.task import Clock

    clock = Clock()
    source = result_of(source_backend().send(DATASET, "s1", None))
    header = TransferHeader(
        dataset_id=DATASET, snapshot="s1", stream_format=source.stream_format
    )
    progress = TransferProgress(dataset_id=DATASET, snapshot="s1", base=None)
    client = _SenderProtocol(header, source, progress, None, clock, 10)
    transport = StringTransport()
    client.makeConnection(transport)
    clock.advance(9)
    assert not client.done.called
    clock.advance(2)
    error = failure_of(client.done, TransferInterrupted)
    assert "no progress for 10" in error.message
    assert transport.disconnected
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("intact", [True, False])
def test_stream_end_held_until_trailer(intact: bool) -> None:
    """
    The sink gets (at least) a stream's last ``HOLD_BACK`` bytes only once the trailer
    checked out, so a backend that commits as its stream ends (``zfs
    receive``) never commits a stream the receiver then refuses.
    """
    sender = source_backend({"big": os.urandom(4 * HOLD_BACK)})
    data = stream_of(sender, "s1", None)
    r = Receiving(MemoryVolumeBackend())
    r.protocol.dataReceived(header_frame())
    sink: Any = r.protocol._sink
    written: list[bytes] = []
    write = sink.write

    def recording_write(chunk: bytes) -> None:
        written.append(bytes(chunk))
        write(chunk)

    sink.write = recording_write
    for start in range(0, len(data), 10_000):
        r.protocol.dataReceived(encode_frame(DATA, data[start : start + 10_000]))
    before = b"".join(written)
    assert len(data) - 2 * HOLD_BACK < len(before) <= len(data) - HOLD_BACK
    assert data.startswith(before)
    r.protocol.dataReceived(trailer_frame(data, None if intact else "0" * 32))
    if intact:
        assert b"".join(written) == data
        assert r.status()["ok"] is True
    else:
        assert b"".join(written) == before
        assert r.status()["code"] == "checksum-mismatch"


# --------------------------------------------------------------------------
# Protocol versions and memory

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
