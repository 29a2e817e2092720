r"""
Snapshot streams between nodes, over TCP with mutual TLS.

Every node's dataset agent runs a receiver (:class:`TransferReceiver`,
served by :func:`listen_for_transfers` or :func:`transfer_service`) on its
transfer port.  Another node pushes a snapshot to it with :func:`push`.
Both ends authenticate with their node certificates from the cluster CA
(:mod:`flocker.ca`): the receiver requires a client certificate signed by
the cluster's CA *and* naming a node; the sender accepts only a peer that is
a node of the cluster (a given node, if told which).

The wire format
===============

After the TLS handshake the sender writes the preamble
``b"flocker-transfer/1\n"`` and then frames.  Each frame is one byte of
kind, a 4-byte big-endian payload length, and the payload::

    sender                                   receiver
    PREAMBLE, H {header JSON}        ---->
                                     <----   R {}                (accepted)
                                     <----   S {"ok": false,...} (refused)
    D <stream bytes> (repeated)      ---->
    T {"bytes": n, "sha256": hex}    ---->
                                     <----   S {"ok": true, "bytes": n}
                                             or S {"ok": false, "code": c,
                                                   "message": m}

* ``H`` (header): ``dataset_id``, ``snapshot``, ``base`` (``null`` for a
  full stream), ``stream_format`` (the sending backend's, e.g. ``"zfs"``),
  ``size`` (``null``: unknown), ``final`` (the last increment of a move:
  the receiver's ``on_stored`` hook runs before it confirms, so the dataset
  agent exposes the dataset) and ``task_id``, the sender's eliot task
  (``Action.serialize_task_id()``) that the receiver continues, so one push
  reads as one eliot tree across both nodes.
* The receiver checks the header before any data flows: the peer is a node,
  the format is its backend's, the dataset id and names are valid, no other
  transfer of the dataset is in progress, and ``backend.receive`` accepts
  (the base exists for an incremental stream; the dataset does not exist
  for a full one).  A refusal is an ``S`` frame with ``ok: false``, a
  ``code`` (``wrong-format``, ``unknown-snapshot``, ``unknown-dataset``,
  ``dataset-exists``, ``busy``, ``bad-header``, ``not-authorized``) and a
  readable ``message``; the sender raises :class:`TransferRefused`.
* ``D`` frames carry the backend's stream unchanged (at most 16 MiB each;
  the sender writes up to 256 KiB per frame).
* ``T`` (trailer): the stream's length and SHA-256.  Only if both match
  what arrived does the receiver call the sink's ``finish``; otherwise it
  calls ``abort`` and answers ``checksum-mismatch`` / ``length-mismatch``
  (the sender raises :class:`TransferFailed`).
* The final ``S`` frame is sent after ``finish`` succeeded: the received
  snapshot is then durable and visible on the receiver.  A sender that sees
  the connection end without it raises :class:`TransferInterrupted`; the
  receiver then aborted (or, if the connection ended during ``finish``,
  completed) the receive.

Back-pressure runs end to end: the backend's stream source (``zfs send``)
is the producer of the TLS connection on the sender; on the receiver the
TLS connection is the producer of the backend's sink (``zfs recv``'s
standard input).  Nothing buffers more than a frame or two.

Failure at any point (connection cut, sender killed, checksum mismatch,
the receiving backend failing, e.g. a full disk, a bad header) ends in
``abort`` (or a refused ``finish``), which leaves the receiver's dataset
exactly as it was; the sender only reads its snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any
from uuid import UUID

import attrs
from eliot import Action, ActionType, Field
from eliot.twisted import DeferredContext
from OpenSSL import SSL
from pyrsistent import PClass, field
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    SSL4ServerEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.interfaces import IListeningPort, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ..ca import (
    PeerIdentity,
    PeerRejected,
    TLSFiles,
    UnknownPeer,
    node_client_context_factory,
    peer_identity,
    server_context_factory,
)
from ._common import check_dataset_id, check_snapshot_name
from ._interface import (
    BadStream,
    DatasetExists,
    InvalidName,
    IStreamSink,
    IStreamSource,
    IVolumeBackend,
    UnknownDataset,
    UnknownSnapshot,
    VolumeError,
)
from ._logging import BASE, BYTES, DATASET_ID, SNAPSHOT
from ._transfer_wire import (
    BAD_HEADER,
    BAD_STREAM,
    BUSY,
    CHECKSUM_MISMATCH,
    DATA,
    DATASET_EXISTS,
    HEADER,
    INTERNAL_ERROR,
    LENGTH_MISMATCH,
    NOT_AUTHORIZED,
    PREAMBLE,
    PROTOCOL_ERROR,
    READY,
    STATUS,
    TRAILER,
    UNKNOWN_DATASET,
    UNKNOWN_SNAPSHOT,
    WRONG_FORMAT,
    FrameParser,
    ProtocolError,
    TransferError,
    TransferFailed,
    TransferHeader,
    TransferInterrupted,
    TransferRefused,
    TransferResult,
    decode_json,
    encode_data_header,
    encode_json,
)

__all__ = [
    "DestinationUnreachable",
    "ReceiveOutcome",
    "TransferError",
    "TransferFailed",
    "TransferHeader",
    "TransferInterrupted",
    "TransferProgress",
    "TransferReceiver",
    "TransferRefused",
    "TransferResult",
    "listen_for_transfers",
    "push",
    "transfer_service",
]

#: Stream bytes the sender gathers into one DATA frame.
FRAME_SIZE = 256 * 1024

# --------------------------------------------------------------------------
# Logging

PEER = Field.for_types("peer", [str, type(None)], "The other end of a transfer.")
RESULT = Field.for_types("result", [str], "How a transfer ended: ok or a code.")

TRANSFER_SEND = ActionType(
    "flocker:volume:transfer:send",
    [DATASET_ID, SNAPSHOT, BASE, PEER],
    [BYTES, RESULT],
    "A snapshot stream is pushed to another node.",
)
TRANSFER_RECEIVE = ActionType(
    "flocker:volume:transfer:receive",
    [DATASET_ID, SNAPSHOT, BASE, PEER],
    [BYTES, RESULT],
    "A snapshot stream is received from another node.",
)


class DestinationUnreachable(TransferError):
    """The receiver could not be connected to; nothing was sent."""


# --------------------------------------------------------------------------
# Progress and outcomes


@attrs.define
class TransferProgress:
    """
    A transfer in flight, as one end sees it; updated as bytes pass.

    :ivar bytes_transferred: Stream bytes sent (or received) so far.
    :ivar size: The stream's size if the sender knew it, else ``None``.
    """

    dataset_id: str
    snapshot: str
    base: str | None
    size: int | None = None
    bytes_transferred: int = 0


ProgressCallback = Callable[[TransferProgress], None]


class ReceiveOutcome(PClass):
    """
    How one incoming transfer ended, as the receiver saw it.

    :ivar ok: The snapshot was received, verified and made visible.
    :ivar code: The error code if not ``ok`` (``interrupted`` when the
        connection ended early), else ``None``.
    :ivar message: A sentence about the error, else ``None``.
    :ivar peer: The sending node's UUID, if it got that far.
    """

    dataset_id = field(type=(str, type(None)), mandatory=True, initial=None)
    snapshot = field(type=(str, type(None)), mandatory=True, initial=None)
    base = field(type=(str, type(None)), mandatory=True, initial=None)
    bytes_received = field(type=int, mandatory=True, initial=0)
    ok = field(type=bool, mandatory=True)
    code = field(type=(str, type(None)), mandatory=True, initial=None)
    message = field(type=(str, type(None)), mandatory=True, initial=None)
    peer = field(type=(str, type(None)), mandatory=True, initial=None)


INTERRUPTED = "interrupted"


class _Refusal(Exception):
    """Internal: the receiver refuses a transfer with a code and message."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


def _refusal_for(error: BaseException) -> _Refusal:
    """The wire error for an exception ``backend.receive`` raised."""
    if isinstance(error, UnknownDataset):
        return _Refusal(
            UNKNOWN_DATASET,
            f"the receiver has no dataset {error.dataset_id} to apply an "
            "incremental stream to",
        )
    if isinstance(error, UnknownSnapshot):
        return _Refusal(
            UNKNOWN_SNAPSHOT,
            f"the receiver's dataset {error.dataset_id} has no snapshot "
            f"{error.snapshot!r} to use as the base",
        )
    if isinstance(error, DatasetExists):
        return _Refusal(
            DATASET_EXISTS,
            f"the receiver already has dataset {error.dataset_id}: send an "
            "incremental stream from a snapshot both sides have",
        )
    if isinstance(error, VolumeError):
        return _Refusal(BAD_HEADER, f"the receiver cannot receive: {error}")
    return _Refusal(INTERNAL_ERROR, f"the receiver failed: {error!r}")


# --------------------------------------------------------------------------
# The receiving end


@implementer(IPushProducer)
@attrs.define
class _SinkProducer:
    """
    The connection as the sink's producer.

    Pausing pauses reading from the connection.  ``stopProducing`` (the
    sink's own process failed) does not close the connection: the receiver
    still has to tell the sender why.
    """

    _protocol: _ReceiverProtocol

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """Stop reading the connection."""
        self._protocol.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:  # noqa: N802
        """Read the connection again."""
        self._protocol.transport.resumeProducing()  # type: ignore[union-attr]

    def stopProducing(self) -> None:  # noqa: N802
        """The sink failed before the end of the stream."""
        self._protocol._sink_failed()


class _ReceiverProtocol(Protocol):
    """
    One incoming transfer.

    Its lifecycle is a single ``_state``: ``header`` (waiting for the
    header) -> ``preparing`` (``backend.receive``) -> ``streaming`` ->
    ``finishing`` (checking the trailer, ``finish`` or ``abort``) ->
    ``done``; ``closed`` once the connection is gone before the end.
    """

    def __init__(self, receiver: TransferReceiver) -> None:
        self._receiver = receiver
        self._state = "header"
        self._parser = FrameParser(
            self._control, self._data, frozenset([HEADER, DATA, TRAILER]), True
        )
        self._sink: IStreamSink | None = None
        self._hash = hashlib.sha256()
        self._header: TransferHeader | None = None
        self._peer: str | None = None
        self._progress: TransferProgress | None = None
        self._remote: Action | None = None
        self._action: Action | None = None
        self._outcome: ReceiveOutcome | None = None
        self._lost: _Refusal | None = None
        self._ended = False

    # -- bytes in ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        """Parse frames; a protocol error ends the transfer."""
        if self._state not in ("header", "preparing", "streaming"):
            return
        try:
            self._parser.feed(data)
        except ProtocolError as error:
            self._refuse(_Refusal(PROTOCOL_ERROR, str(error)))

    def _control(self, kind: bytes, payload: bytes) -> None:
        if kind == HEADER and self._state == "header":
            self._on_header(payload)
        elif kind == TRAILER and self._state == "streaming":
            self._on_trailer(decode_json(payload))
        elif self._state in ("header", "preparing", "streaming"):
            raise ProtocolError(f"unexpected {kind!r} frame while {self._state}")

    def _data(self, data: bytes) -> None:
        if self._state != "streaming":
            if self._state in ("header", "preparing"):
                raise ProtocolError("stream data before the receiver was ready")
            return
        assert self._sink is not None and self._progress is not None
        self._hash.update(data)
        self._progress.bytes_transferred += len(data)
        self._sink.write(data)
        self._receiver._report_progress(self._progress)

    # -- header --------------------------------------------------------------

    def _on_header(self, payload: bytes) -> None:
        try:
            identity = self._receiver._identify(self.transport)
        except UnknownPeer as error:
            self._refuse(_Refusal(NOT_AUTHORIZED, f"unknown peer: {error}"))
            return
        if identity.kind != "node":
            self._refuse(
                _Refusal(
                    NOT_AUTHORIZED,
                    f"only nodes of the cluster may push; the peer is a {identity.kind}",
                )
            )
            return
        self._peer = str(identity.node_uuid)
        header = TransferHeader.from_json(decode_json(payload))
        self._header = header
        self._start_logging(header)
        try:
            dataset_id = check_dataset_id(header.dataset_id)
            check_snapshot_name(header.snapshot)
            if header.base is not None:
                check_snapshot_name(header.base)
        except InvalidName as error:
            self._refuse(_Refusal(BAD_HEADER, str(error)))
            return
        expected = self._receiver.backend.capabilities.stream_format
        if header.stream_format != expected:
            self._refuse(
                _Refusal(
                    WRONG_FORMAT,
                    f"the receiver takes {expected!r} streams, not "
                    f"{header.stream_format!r}: both nodes need the same backend",
                )
            )
            return
        if dataset_id in self._receiver.in_flight:
            self._refuse(
                _Refusal(BUSY, f"dataset {dataset_id} is already being received")
            )
            return
        self._progress = TransferProgress(
            dataset_id=dataset_id,
            snapshot=header.snapshot,
            base=header.base,
            size=header.size,
        )
        self._receiver.in_flight[dataset_id] = self._progress
        self._state = "preparing"
        self.transport.pauseProducing()  # type: ignore[union-attr]
        with self._context():
            prepared = self._receiver.backend.receive(dataset_id, header.base)
        prepared.addCallbacks(self._prepared, self._not_prepared)

    def _prepared(self, sink: IStreamSink) -> None:
        self._sink = sink
        if self._state != "preparing":  # the connection went meanwhile
            self._abort_sink().addBoth(lambda _: self._end(self._lost))
            return
        self._state = "streaming"
        sink.registerProducer(_SinkProducer(self), True)
        self.transport.write(encode_json(READY, {}))  # type: ignore[union-attr]
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def _not_prepared(self, failure: Failure) -> None:
        if self._state != "preparing":  # the connection went meanwhile
            self._end(self._lost)
            return
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self._refuse(_refusal_for(failure.value))

    # -- the end -------------------------------------------------------------

    def _on_trailer(self, trailer: dict[str, Any]) -> None:
        assert self._sink is not None and self._progress is not None
        self._state = "finishing"
        self._sink.unregisterProducer()
        self.transport.resumeProducing()  # type: ignore[union-attr]
        received = self._progress.bytes_transferred
        problem: _Refusal | None = None
        if trailer.get("bytes") != received:
            problem = _Refusal(
                LENGTH_MISMATCH,
                f"the sender sent {trailer.get('bytes')!r} bytes, "
                f"the receiver got {received}",
            )
        elif trailer.get("sha256") != self._hash.hexdigest():
            problem = _Refusal(
                CHECKSUM_MISMATCH,
                "the stream's SHA-256 does not match the sender's: corrupted in transit",
            )
        Deferred.fromCoroutine(self._complete(problem))

    def _sink_failed(self) -> None:
        """The backend's receiving side gave up mid-stream (e.g. disk full)."""
        if self._state != "streaming":
            return
        self._state = "finishing"
        Deferred.fromCoroutine(self._complete(None))

    async def _complete(self, problem: _Refusal | None) -> None:
        """Finish (or abort) the sink, then report the result to the sender."""
        assert self._sink is not None and self._progress is not None
        with self._context():
            if problem is None:
                try:
                    await self._sink.finish()
                except BadStream as error:
                    problem = _Refusal(
                        BAD_STREAM, f"the receiver refused the stream: {error}"
                    )
                except Exception as error:
                    problem = _Refusal(
                        INTERNAL_ERROR, f"the receiver failed: {error!r}"
                    )
                    await self._sink.abort()
            else:
                await self._sink.abort()
        if problem is None and self._receiver.on_stored is not None:
            assert self._header is not None
            try:
                with self._context():
                    await maybeDeferred(self._receiver.on_stored, self._header)
            except Exception as error:
                problem = _Refusal(
                    INTERNAL_ERROR, f"the receiver could not record the stream: {error!r}"
                )
                self._state = "done"
                self._send_refusal(problem)
                return
        if problem is not None:
            self._refuse(problem)
            return
        self._state = "done"
        received = self._progress.bytes_transferred
        if self.transport is not None and self.connected:
            self.transport.write(encode_json(STATUS, {"ok": True, "bytes": received}))
            self.transport.loseConnection()
        self._end(None)

    def _refuse(self, refusal: _Refusal) -> None:
        """Discard what was received, tell the sender why, close, clean up."""
        previous, self._state = self._state, "done"
        if previous == "streaming":
            self._abort_sink().addBoth(lambda _: self._send_refusal(refusal))
        else:
            self._send_refusal(refusal)

    def _send_refusal(self, refusal: _Refusal) -> None:
        if self.connected:
            self.transport.write(  # type: ignore[union-attr]
                encode_json(
                    STATUS,
                    {"ok": False, "code": refusal.code, "message": refusal.message},
                )
            )
            self.transport.loseConnection()  # type: ignore[union-attr]
        self._end(refusal)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # noqa: N802, B008
        """A connection that ends before the trailer aborts the receive."""
        previous, self._state = self._state, "closed"
        self.connected = 0
        if self._outcome is not None:
            outcome, self._outcome = self._outcome, None
            self._receiver._report_outcome(outcome)
        self._lost = _Refusal(
            INTERRUPTED,
            f"the connection ended mid-transfer: {reason.getErrorMessage()}",
        )
        if previous == "streaming":
            self._abort_sink().addBoth(lambda _: self._end(self._lost))
        elif previous in ("finishing", "done"):
            self._state = previous  # _complete or _refuse ends it
        # "preparing": _prepared or _not_prepared ends it

    def _abort_sink(self) -> Deferred[None]:
        """Abort the sink; the Deferred fires (never fails) when it is done."""
        if self._sink is None:
            return succeed(None)
        with self._context():
            aborted = self._sink.abort()
        return aborted.addErrback(lambda _: None)

    # -- logging and bookkeeping --------------------------------------------

    def _start_logging(self, header: TransferHeader) -> None:
        if header.task_id is not None:
            try:
                self._remote = Action.continue_task(task_id=header.task_id)
            except Exception:
                self._remote = None
        with self._remote.context() if self._remote is not None else nullcontext():
            self._action = TRANSFER_RECEIVE(
                dataset_id=header.dataset_id,
                snapshot=header.snapshot,
                base=header.base,
                peer=self._peer,
            )

    def _context(self) -> Any:
        return self._action.context() if self._action is not None else nullcontext()

    def _end(self, refusal: _Refusal | None) -> None:
        """Log, forget the transfer, and tell the receiver's owner (once)."""
        if self._ended:
            return
        self._ended = True
        progress = self._progress
        received = progress.bytes_transferred if progress is not None else 0
        if progress is not None:
            if self._receiver.in_flight.get(progress.dataset_id) is progress:
                del self._receiver.in_flight[progress.dataset_id]
        if self._action is not None:
            if refusal is None:
                self._action.addSuccessFields(bytes=received, result="ok")
                self._action.finish()
            else:
                self._action.finish(TransferError(refusal.code, refusal.message))
            self._action = None
        if self._remote is not None:
            self._remote.finish()
            self._remote = None
        header = self._header
        outcome = ReceiveOutcome(
            dataset_id=header.dataset_id if header else None,
            snapshot=header.snapshot if header else None,
            base=header.base if header else None,
            bytes_received=received,
            ok=refusal is None,
            code=None if refusal is None else refusal.code,
            message=None if refusal is None else refusal.message,
            peer=self._peer,
        )
        if self.connected:
            self._outcome = outcome  # reported once the connection is closed
        else:
            self._receiver._report_outcome(outcome)


@attrs.define(slots=False, eq=False)
class TransferReceiver(Factory):
    """
    Receives pushed snapshots into a backend; a protocol factory.

    :ivar backend: Where received datasets go.
    :ivar on_progress: Called with a :class:`TransferProgress` as bytes arrive.
    :ivar on_outcome: Called with a :class:`ReceiveOutcome` when a transfer ends.
    :ivar on_stored: Called with the :class:`TransferHeader` once a stream
        was stored, *before* the sender is told; a Deferred it returns is
        waited for, and if it fails the sender is told the transfer failed
        (the stored snapshot stays).
    :ivar in_flight: The transfers in progress, by dataset id; read their
        ``bytes_transferred`` to watch them.
    :ivar identify: Who the peer of a connection is (after the handshake).
    """

    backend: IVolumeBackend
    on_progress: ProgressCallback | None = None
    on_outcome: Callable[[ReceiveOutcome], None] | None = None
    on_stored: Callable[[TransferHeader], Any] | None = None
    in_flight: dict[str, TransferProgress] = attrs.field(factory=dict)
    identify: Callable[[Any], PeerIdentity] = peer_identity

    def buildProtocol(self, addr: Any) -> Protocol:  # noqa: N802
        """A protocol for one incoming transfer."""
        return _ReceiverProtocol(self)

    def _identify(self, transport: Any) -> PeerIdentity:
        return self.identify(transport)

    def _report_progress(self, progress: TransferProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def _report_outcome(self, outcome: ReceiveOutcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)


def _server_endpoint(
    reactor: Any, port: int, tls: TLSFiles, interface: str
) -> SSL4ServerEndpoint:
    return SSL4ServerEndpoint(
        reactor,
        port,
        server_context_factory(tls.credential, tls.authority),  # type: ignore[arg-type]
        interface=interface,
    )


def listen_for_transfers(
    reactor: Any,
    receiver: TransferReceiver,
    port: int,
    tls: TLSFiles,
    interface: str = "",
) -> Deferred[IListeningPort]:
    """
    Listen on ``port`` (0: any free port) for pushes from the cluster's nodes.

    :param tls: This node's credential and the cluster CA
        (``load_tls_files(directory, "node")``).
    :return: The listening port (``getHost().port`` is the port number).
    """
    return _server_endpoint(reactor, port, tls, interface).listen(receiver)


def transfer_service(
    reactor: Any,
    receiver: TransferReceiver,
    port: int,
    tls: TLSFiles,
    interface: str = "",
) -> StreamServerEndpointService:
    """The receiver as a service for a node agent's ``MultiService``."""
    return StreamServerEndpointService(
        _server_endpoint(reactor, port, tls, interface), receiver
    )


# --------------------------------------------------------------------------
# The sending end


class _FramingConsumer:
    """
    Takes the stream from the source; writes DATA frames to the connection.

    Stream bytes are gathered up to :data:`FRAME_SIZE` per frame; the
    source's back-pressure goes straight to the connection.
    """

    def __init__(self, protocol: _SenderProtocol) -> None:
        self._protocol = protocol
        self._chunks: list[bytes] = []
        self._buffered = 0
        self.hash = hashlib.sha256()
        self.bytes = 0

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """Let the connection pause the source."""
        self._protocol.transport.registerProducer(producer, streaming)  # type: ignore[union-attr]

    def unregisterProducer(self) -> None:  # noqa: N802
        """The source is done: send what is gathered."""
        self.flush()
        if self._protocol.transport is not None:
            self._protocol.transport.unregisterProducer()  # type: ignore[attr-defined]

    def write(self, data: bytes) -> None:
        """Count, hash and gather stream bytes."""
        if not self._protocol.streaming:
            return
        self.hash.update(data)
        self.bytes += len(data)
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= FRAME_SIZE:
            self.flush()

    def flush(self) -> None:
        """Send the gathered bytes as one frame (if still wanted)."""
        if not self._buffered or not self._protocol.streaming:
            return
        frame = b"".join([encode_data_header(self._buffered), *self._chunks])
        self._chunks = []
        self._buffered = 0
        self._protocol._write_frame(frame)


class _SenderProtocol(Protocol):
    """
    One outgoing transfer; ``_state`` is ``waiting`` (for the receiver to
    accept the header) -> ``streaming`` -> ``confirming`` (trailer sent) ->
    ``done``.
    """

    def __init__(
        self,
        header: TransferHeader,
        source: IStreamSource,
        progress: TransferProgress,
        on_progress: ProgressCallback | None,
    ) -> None:
        self._header = header
        self._source = source
        self._progress = progress
        self._on_progress = on_progress
        self._parser = FrameParser(
            self._control, self._unexpected_data, frozenset([READY, STATUS])
        )
        self._framing = _FramingConsumer(self)
        self._state = "connecting"
        self.wire_bytes = 0
        self.done: Deferred[TransferResult] = Deferred()

    @property
    def streaming(self) -> bool:
        """Whether stream bytes are wanted now."""
        return self._state == "streaming"

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """Announce the stream (sent once the TLS handshake is done)."""
        self._state = "waiting"
        self._write_frame(PREAMBLE + encode_json(HEADER, self._header.to_json()))

    def _write_frame(self, frame: bytes) -> None:
        self.wire_bytes += len(frame)
        self.transport.write(frame)  # type: ignore[union-attr]
        if frame[:1] == DATA:
            self._progress.bytes_transferred = self._framing.bytes
            if self._on_progress is not None:
                self._on_progress(self._progress)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Parse the receiver's answers."""
        if self._state == "done":
            return
        try:
            self._parser.feed(data)
        except ProtocolError as error:
            self._fail(TransferFailed(PROTOCOL_ERROR, f"the receiver said: {error}"))

    def _unexpected_data(self, data: bytes) -> None:
        raise ProtocolError("the receiver sent stream data")

    def _control(self, kind: bytes, payload: bytes) -> None:
        document = decode_json(payload)
        if kind == READY and self._state == "waiting":
            self._state = "streaming"
            started = self._source.start(self._framing)
            started.addCallbacks(self._stream_sent, self._stream_failed)
        elif kind == STATUS:
            self._on_status(document)
        else:
            raise ProtocolError(f"unexpected {kind!r} frame while {self._state}")

    def _stream_sent(self, _: None) -> None:
        if self._state != "streaming":
            return
        self._framing.flush()
        self._state = "confirming"
        self._write_frame(
            encode_json(
                TRAILER,
                {
                    "bytes": self._framing.bytes,
                    "sha256": self._framing.hash.hexdigest(),
                },
            )
        )

    def _stream_failed(self, failure: Failure) -> None:
        if self._state != "streaming":
            return  # stopped because the transfer had already failed
        self._fail(failure.value)

    def _on_status(self, document: dict[str, Any]) -> None:
        code = str(document.get("code", INTERNAL_ERROR))
        message = str(document.get("message", "no reason given"))
        if document.get("ok") is True and self._state == "confirming":
            self._state = "done"
            self.transport.loseConnection()  # type: ignore[union-attr]
            self.done.callback(
                TransferResult(
                    dataset_id=self._header.dataset_id,
                    snapshot=self._header.snapshot,
                    base=self._header.base,
                    bytes_sent=self._framing.bytes,
                    wire_bytes=self.wire_bytes,
                    sha256=self._framing.hash.hexdigest(),
                )
            )
        elif document.get("ok") is True:
            raise ProtocolError(f"success reported while {self._state}")
        elif self._state == "waiting":
            self._fail(TransferRefused(code, message))
        else:
            self._fail(TransferFailed(code, message))

    def _fail(self, error: BaseException, connected: bool = True) -> None:
        previous, self._state = self._state, "done"
        if previous == "streaming":
            self._source.stop()
        if connected:
            self.transport.loseConnection()  # type: ignore[union-attr]
        if not self.done.called:
            self.done.errback(error)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # noqa: N802, B008
        """Without a final status the transfer failed."""
        if self._state == "done":
            return
        previous = self._state
        message = reason.getErrorMessage()
        if previous in ("connecting", "waiting") and reason.check(
            SSL.Error, PeerRejected
        ):
            error: TransferError = TransferRefused(
                "tls-failed",
                "the TLS handshake failed: the receiver refused this node's "
                f"certificate or is not a node of the cluster ({message})",
            )
        else:
            error = TransferInterrupted(
                INTERRUPTED,
                f"the connection ended before the receiver confirmed: {message}",
            )
        self._fail(error, connected=False)


def push(
    reactor: Any,
    backend: IVolumeBackend,
    dataset_id: str,
    snapshot: str,
    base: str | None,
    destination_host: str,
    port: int,
    tls: TLSFiles,
    *,
    destination_node: UUID | None = None,
    progress: ProgressCallback | None = None,
    connect_timeout: float = 30,
    final: bool = False,
) -> Deferred[TransferResult]:
    """
    Send a snapshot of a local dataset to another node's receiver.

    :param base: Send only the changes since this snapshot, which the
        receiver must have; ``None`` sends everything (the receiver must not
        have the dataset).
    :param tls: This node's credential and the cluster CA.
    :param destination_node: Accept only this node as the receiver.
    :param progress: Called with a :class:`TransferProgress` as bytes go.
    :param final: Mark the stream as the last increment of a move.
    :return: A Deferred firing with a :class:`TransferResult` once the
        receiver confirmed the snapshot is stored; failing with
        :class:`TransferRefused` (the header was refused, or TLS failed),
        :class:`TransferFailed` (the receiver refused the stream),
        :class:`TransferInterrupted`, :class:`DestinationUnreachable`, or
        the backend's own errors (``UnknownDataset``, ``SendFailed``...).
    """
    action = TRANSFER_SEND(
        dataset_id=str(dataset_id),
        snapshot=str(snapshot),
        base=base,
        peer=f"{destination_host}:{port}",
    )

    async def run() -> TransferResult:
        source = await backend.send(dataset_id, snapshot, base)
        header = TransferHeader(
            dataset_id=source.dataset_id,
            snapshot=source.snapshot,
            base=source.base,
            stream_format=source.stream_format,
            task_id=action.serialize_task_id().decode("ascii"),
            final=final,
        )
        state = TransferProgress(
            dataset_id=header.dataset_id, snapshot=header.snapshot, base=header.base
        )
        protocol = _SenderProtocol(header, source, state, progress)
        endpoint = wrapClientTLS(
            node_client_context_factory(
                tls.credential, tls.authority, destination_node
            ),
            HostnameEndpoint(reactor, destination_host, port, timeout=connect_timeout),
        )
        try:
            await connectProtocol(endpoint, protocol)
        except (ConnectError, OSError) as error:
            raise DestinationUnreachable(
                "unreachable", f"cannot connect to {destination_host}:{port}: {error}"
            ) from None
        result = await protocol.done
        action.addSuccessFields(bytes=result.bytes_sent, result="ok")
        return result

    with action.context():
        deferred: Deferred[TransferResult] = Deferred.fromCoroutine(run())
        return DeferredContext(deferred).addActionFinish()
