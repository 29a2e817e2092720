"""
The sending end of a snapshot transfer: :func:`push`.

See :mod:`flocker.volume.transfer` for the protocol.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eliot import ActionType
from eliot.twisted import DeferredContext
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IReactorFromThreads,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ..ca import (
    PeerRejected,
    TLSFiles,
    bulk_tls_context,
    check_node_certificate,
)
from ..transport import ThreadedTLSClientEndpoint, TLSFailed, in_background
from ._interface import (
    IStreamSource,
    IVolumeBackend,
    SendFailed,
)
from ._logging import BASE, BYTES, DATASET_ID, SNAPSHOT
from ._transfer_values import (
    INTERRUPTED,
    PEER,
    RESULT,
    DestinationUnreachable,
    ProgressCallback,
    TransferProgress,
)
from ._transfer_wire import (
    CHECKSUM,
    DATA,
    HEADER,
    INTERNAL_ERROR,
    PREAMBLE,
    PROTOCOL_ERROR,
    READY,
    STATUS,
    TRAILER,
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
    new_checksum,
    version_mismatch,
)

#: Stream bytes the sender gathers into one DATA frame (sources hand over up
#: to a MiB at a time, e.g. ``flocker.volume._streams.READ_SIZE``).
FRAME_SIZE = 1024 * 1024

TRANSFER_SEND = ActionType(
    "flocker:volume:transfer:send",
    [DATASET_ID, SNAPSHOT, BASE, PEER],
    [BYTES, RESULT],
    "A snapshot stream is pushed to another node.",
)

# --------------------------------------------------------------------------
# The sending end


def _tls_refused(detail: str) -> TransferRefused:
    """The failure of a push whose TLS handshake or peer check failed."""
    return TransferRefused(
        "tls-failed",
        "the TLS handshake failed: the receiver refused this node's "
        f"certificate or is not a node of the cluster ({detail})",
    )


@implementer(IConsumer)
class _FramingConsumer:
    """
    Takes the stream from the source; writes DATA frames to the connection.

    Stream bytes are gathered up to :data:`FRAME_SIZE` per frame, and the
    frame is written as its prefix followed by the chunks themselves (no
    copy); the source's back-pressure goes straight to the connection.
    """

    def __init__(self, protocol: _SenderProtocol) -> None:
        self._protocol = protocol
        self._chunks: list[bytes] = []
        self._buffered = 0
        self.hash = new_checksum()
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
        """Count and gather stream bytes (hashed when a frame is sent)."""
        if not self._protocol.streaming:
            return
        self.bytes += len(data)
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= FRAME_SIZE:
            self.flush()

    def flush(self) -> None:
        """Send the gathered bytes as one frame (if still wanted)."""
        if not self._buffered or not self._protocol.streaming:
            return
        chunks, self._chunks = self._chunks, []
        for chunk in chunks:
            self.hash.update(chunk)
        header = encode_data_header(self._buffered)
        self._buffered = 0
        self._protocol._write_frame(header, *chunks)


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
        clock: IReactorTime | None = None,
        idle_timeout: float = 120.0,
    ) -> None:
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._timer: IDelayedCall | None = None
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

    def _arm(self) -> None:
        """(Re)start the timer that gives up on a receiver gone quiet."""
        if self._clock is None or self._state == "done":
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._idle_timeout)
        else:
            self._timer = self._clock.callLater(self._idle_timeout, self._idle)

    def _idle(self) -> None:
        self._timer = None
        self._fail(
            TransferInterrupted(
                INTERRUPTED,
                f"the receiver made no progress for {self._idle_timeout} seconds",
            ),
            abort=True,
        )

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """Announce the stream (sent once the TLS handshake is done)."""
        self._state = "waiting"
        if not self._header.final:
            in_background(self.transport)
        self._write_frame(PREAMBLE + encode_json(HEADER, self._header.to_json()))

    def _write_frame(self, frame: bytes, *more: bytes) -> None:
        """Write a frame, given whole or as its prefix and payload pieces."""
        self._arm()
        self.wire_bytes += len(frame) + sum(len(piece) for piece in more)
        self.transport.writeSequence([frame, *more])  # type: ignore[union-attr]
        if frame[:1] == DATA:
            self._progress.bytes_transferred = self._framing.bytes
            if self._on_progress is not None:
                self._on_progress(self._progress)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._arm()
        """Parse the receiver's answers."""
        if self._state == "done":
            return
        try:
            self._parser.feed(data)
        except ProtocolError as error:
            self._fail(TransferFailed(PROTOCOL_ERROR, f"the receiver said: {error}"))

    def _unexpected_data(self, data: bytes | memoryview) -> None:
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
                    CHECKSUM: self._framing.hash.hexdigest(),
                },
            )
        )

    def _stream_failed(self, failure: Failure) -> None:
        if self._state != "streaming":
            return  # stopped because the transfer had already failed
        self._fail(failure.value or SendFailed("the stream failed"))

    def _on_status(self, document: dict[str, Any]) -> None:
        code = str(document.get("code", INTERNAL_ERROR))
        message = str(document.get("message", "no reason given"))
        if document.get("ok") is True and self._state == "confirming":
            self._state = "done"
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self.transport.loseConnection()  # type: ignore[union-attr]
            self.done.callback(
                TransferResult(
                    dataset_id=self._header.dataset_id,
                    snapshot=self._header.snapshot,
                    base=self._header.base,
                    bytes_sent=self._framing.bytes,
                    wire_bytes=self.wire_bytes,
                    checksum=self._framing.hash.hexdigest(),
                )
            )
        elif document.get("ok") is True:
            raise ProtocolError(f"success reported while {self._state}")
        elif self._state == "waiting":
            self._fail(TransferRefused(code, version_mismatch(message) or message))
        else:
            self._fail(TransferFailed(code, message))

    def _fail(
        self, error: BaseException, connected: bool = True, abort: bool = False
    ) -> None:
        previous, self._state = self._state, "done"
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if previous == "streaming":
            self._source.stop()
        if connected and abort:
            self.transport.abortConnection()  # type: ignore[union-attr]
        elif connected:
            self.transport.loseConnection()  # type: ignore[union-attr]
        if not self.done.called:
            self.done.errback(error)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802, B008
        """Without a final status the transfer failed."""
        if self._state == "done":
            return
        previous = self._state
        message = reason.getErrorMessage()
        if previous in ("connecting", "waiting") and reason.check(
            TLSFailed, PeerRejected
        ):
            error: TransferError = _tls_refused(message)
        else:
            error = TransferInterrupted(
                INTERRUPTED,
                f"the connection ended before the receiver confirmed: {message}",
            )
        self._fail(error, connected=False)


def push(
    reactor: IReactorTime,
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
    epoch: int = 0,
    idle_timeout: float = 120,
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
    :param epoch: The dataset's epoch at this node (see `TransferHeader`).
    :param idle_timeout: Give up (:class:`TransferInterrupted`) when the
        receiver neither takes data nor answers for this many seconds.
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
            epoch=epoch,
        )
        state = TransferProgress(
            dataset_id=header.dataset_id, snapshot=header.snapshot, base=header.base
        )
        protocol = _SenderProtocol(
            header, source, state, progress, reactor, idle_timeout
        )
        endpoint = ThreadedTLSClientEndpoint(
            IReactorFromThreads(reactor),
            destination_host,
            port,
            bulk_tls_context(tls, server_side=False),
            lambda certificate: check_node_certificate(certificate, destination_node),
            timeout=connect_timeout,
        )
        try:
            await connectProtocol(endpoint, protocol)
        except TLSFailed as error:
            raise _tls_refused(str(error)) from None
        except (ConnectError, OSError) as error:
            raise DestinationUnreachable(
                "unreachable", f"cannot connect to {destination_host}:{port}: {error}"
            ) from None
        result = await protocol.done
        action.addSuccessFields(bytes=result.bytes_sent, result="ok")
        return result

    with action.context():
        deferred: Deferred[TransferResult] = Deferred.fromCoroutine(run())
        finished: Deferred[TransferResult] = DeferredContext(deferred).addActionFinish()
        return finished
