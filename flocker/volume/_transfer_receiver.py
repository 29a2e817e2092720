"""
The receiving end of a snapshot transfer: one protocol per connection and
the factory a node agent serves.

See :mod:`flocker.volume.transfer` for the protocol.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import attrs
from eliot import Action, ActionType
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IPushProducer,
    IReactorFromThreads,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ..ca import (
    PeerIdentity,
    TLSFiles,
    UnknownPeer,
    bulk_tls_context,
    peer_identity,
)
from ..transport import ThreadedTLSServerEndpoint, in_background
from ._common import check_dataset_id, check_snapshot_name
from ._interface import (
    BadStream,
    DatasetExists,
    InvalidName,
    IStreamSink,
    IVolumeBackend,
    UnknownDataset,
    UnknownSnapshot,
    VolumeError,
)
from ._logging import BASE, BYTES, DATASET_ID, SNAPSHOT
from ._transfer_values import (
    INTERRUPTED,
    PEER,
    RESULT,
    ProgressCallback,
    ReceiveOutcome,
    TransferProgress,
)
from ._transfer_wire import (
    BAD_HEADER,
    BAD_STREAM,
    BUSY,
    CHECKSUM,
    CHECKSUM_MISMATCH,
    DATA,
    DATASET_EXISTS,
    HEADER,
    INTERNAL_ERROR,
    LENGTH_MISMATCH,
    NOT_AUTHORIZED,
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
    TransferHeader,
    decode_json,
    encode_json,
    new_checksum,
)

#: The stream's last bytes are written to the backend only once the trailer
#: checked out.  A backend that commits as soon as its stream ends (``zfs
#: receive`` commits on the stream's END record) therefore never commits a
#: stream the receiver then refuses, or one cut just before the trailer.
HOLD_BACK = 64 * 1024

TRANSFER_RECEIVE = ActionType(
    "flocker:volume:transfer:receive",
    [DATASET_ID, SNAPSHOT, BASE, PEER],
    [BYTES, RESULT],
    "A snapshot stream is received from another node.",
)


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
        """Stop reading the connection (the peer is not idle meanwhile)."""
        self._protocol._disarm()
        self._protocol.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:  # noqa: N802
        """Read the connection again."""
        self._protocol._arm()
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
        self._timer: Any = None
        self._idled = False
        self._parser = FrameParser(
            self._control, self._data, frozenset([HEADER, DATA, TRAILER]), True
        )
        self._sink: IStreamSink | None = None
        self._hash = new_checksum()
        # The stream's latest chunks, not yet in the sink:
        self._held: deque[bytes | memoryview] = deque()
        self._held_bytes = 0
        self._header: TransferHeader | None = None
        self._peer: str | None = None
        self._progress: TransferProgress | None = None
        self._remote: Action | None = None
        self._action: Action | None = None
        self._outcome: ReceiveOutcome | None = None
        self._lost: _Refusal | None = None
        self._ended = False

    # -- bytes in ------------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """Start the idle timer."""
        self._arm()

    def _arm(self) -> None:
        """(Re)start the timer that aborts a connection whose peer went quiet."""
        clock = self._receiver.clock
        if clock is None or self._state not in ("header", "streaming"):
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._receiver.idle_timeout)
        else:
            self._timer = clock.callLater(self._receiver.idle_timeout, self._idle)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _idle(self) -> None:
        self._timer = None
        self._idled = True
        self.transport.abortConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Parse frames; a protocol error (or any failure) ends the transfer."""
        if self._state not in ("header", "preparing", "streaming"):
            return
        self._arm()
        try:
            self._parser.feed(data)
        except ProtocolError as error:
            self._refuse(_Refusal(PROTOCOL_ERROR, str(error)))
        except Exception as error:
            # Whatever the peer sent, the connection ends with an answer
            # and closes; it never hangs on an exception left unhandled.
            self._refuse(_Refusal(INTERNAL_ERROR, f"the receiver failed: {error!r}"))

    def _control(self, kind: bytes, payload: bytes) -> None:
        if kind == HEADER and self._state == "header":
            self._on_header(payload)
        elif kind == TRAILER and self._state == "streaming":
            if self.transport is None or self.transport.disconnecting:  # type: ignore[attr-defined]
                return  # this side cut the connection: the stream is interrupted
            self._on_trailer(decode_json(payload))
        elif self._state in ("header", "preparing", "streaming"):
            raise ProtocolError(f"unexpected {kind!r} frame while {self._state}")

    def _data(self, data: bytes | memoryview) -> None:
        if self._state != "streaming":
            if self._state in ("header", "preparing"):
                raise ProtocolError("stream data before the receiver was ready")
            return
        assert self._sink is not None and self._progress is not None
        self._hash.update(data)
        self._progress.bytes_transferred += len(data)
        # Hold back the newest chunks, at least HOLD_BACK bytes of them; the
        # older ones go to the sink whole (no slicing copies).
        if isinstance(data, memoryview) and len(data) < HOLD_BACK:
            data = bytes(data)  # a small piece must not keep its delivery alive
        self._held.append(data)
        self._held_bytes += len(data)
        while self._held_bytes - len(self._held[0]) >= HOLD_BACK:
            chunk = self._held.popleft()
            self._held_bytes -= len(chunk)
            self._sink.write(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
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
        peer = self._peer = str(identity.node_uuid)
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
        if self._receiver.authorize is not None:
            unauthorized = self._receiver.authorize(header, peer)
            if unauthorized is not None:
                self._refuse(_Refusal(NOT_AUTHORIZED, unauthorized))
                return
        refusal = self._receiver.refuse(header) if self._receiver.refuse else None
        if refusal is not None:
            self._refuse(_Refusal(BUSY, refusal))
            return
        self._progress = TransferProgress(
            dataset_id=dataset_id,
            snapshot=header.snapshot,
            base=header.base,
            size=header.size,
        )
        self._receiver.in_flight[dataset_id] = self._progress
        if not header.final:
            in_background(self.transport)
        self._state = "preparing"
        self._disarm()
        self.transport.pauseProducing()  # type: ignore[union-attr]
        replace = header.base is None and self._receiver._replaces(header)
        with self._context():
            prepared = self._receiver.backend.receive(
                dataset_id, header.base, replace=replace
            )
        prepared.addCallbacks(self._prepared, self._not_prepared)

    def _prepared(self, sink: IStreamSink) -> None:
        self._sink = sink
        if self._state != "preparing":  # the connection went meanwhile
            self._abort_sink().addBoth(lambda _: self._end(self._lost))
            return
        self._state = "streaming"
        self._arm()
        sink.registerProducer(_SinkProducer(self), True)
        self.transport.write(encode_json(READY, {}))  # type: ignore[union-attr]
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def _not_prepared(self, failure: Failure) -> None:
        if self._state != "preparing":  # the connection went meanwhile
            self._end(self._lost)
            return
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self._refuse(_refusal_for(failure.value or Exception("unknown")))

    # -- the end -------------------------------------------------------------

    def _on_trailer(self, trailer: dict[str, Any]) -> None:
        assert self._sink is not None and self._progress is not None
        self._state = "finishing"
        self._disarm()
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
        elif trailer.get(CHECKSUM) != self._hash.hexdigest():
            problem = _Refusal(
                CHECKSUM_MISMATCH,
                "the stream's checksum does not match the sender's: corrupted in "
                "transit",
            )
        else:
            for chunk in self._held:  # the end of the stream, now checked
                self._sink.write(bytes(chunk))
            self._held.clear()
        Deferred.fromCoroutine(self._complete(problem))

    def _sink_failed(self) -> None:
        """The backend's receiving side gave up mid-stream (e.g. disk full)."""
        if self._state != "streaming":
            return
        self._state = "finishing"
        self._disarm()
        Deferred.fromCoroutine(self._complete(None))

    async def _complete(self, problem: _Refusal | None) -> None:
        """Finish (or abort) the sink, then report the result to the sender."""
        assert self._sink is not None and self._progress is not None
        with self._context():
            if problem is None:
                try:
                    # A move's final increment is exposed once stored: it
                    # is made writable as it is committed.
                    assert self._header is not None
                    await self._sink.finish(writable=self._header.final)
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
                    INTERNAL_ERROR,
                    f"the receiver could not record the stream: {error!r}",
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
            self._close()
        self._end(None)

    def _refuse(self, refusal: _Refusal) -> None:
        """Discard what was received, tell the sender why, close, clean up."""
        previous, self._state = self._state, "done"
        self._disarm()
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
            self._close()
        self._end(refusal)

    def _close(self) -> None:
        """
        Close the connection.

        Reading resumes first: the sink may have paused it, and the TLS
        shutdown waits for the peer's close_notify.
        """
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802, B008
        """A connection that ends before the trailer aborts the receive."""
        previous, self._state = self._state, "closed"
        self.connected = 0
        self._disarm()
        if self._idled:
            reason = Failure(
                ConnectionLost(f"no data for {self._receiver.idle_timeout} seconds")
            )
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
    :ivar authorize: Called with each :class:`TransferHeader` and the
        pushing node's UUID (from its certificate) before anything is
        received; a reason (a sentence) refuses the transfer with
        ``not-authorized``, ``None`` lets it on to ``refuse``.  The dataset
        agent lets in only what its configuration sends here from that
        node.  ``None`` (the default) lets every node of the cluster push.
    :ivar refuse: Called with each :class:`TransferHeader` before anything
        is received; a reason (a sentence) refuses the transfer, ``None``
        lets it in.  The dataset agent refuses streams into a dataset it
        exposes, so a stale sender can never overwrite live data.
    :ivar replace: Called with the :class:`TransferHeader` of each full
        stream (``base`` is ``None``) that passed ``refuse``; if it returns
        true the stream is received with ``backend.receive(dataset_id,
        None, replace=True)``, so it replaces an existing copy (its data
        and snapshots) once it is stored whole, and an abort or a bad
        stream leave that copy as it was.  ``None`` (the default) never
        replaces: a full stream of a dataset the backend has is refused
        with ``dataset-exists``.  Never called for incremental streams.
    :ivar identify: Who the peer of a connection is (after the handshake).
    :ivar clock: Times idle connections (``listen_for_transfers`` and
        ``transfer_service`` use their reactor if not set).
    :ivar idle_timeout: Seconds without data from a peer (while the
        receiver waits for it) before its connection is aborted, which
        aborts its receive.
    """

    backend: IVolumeBackend
    on_progress: ProgressCallback | None = None
    on_outcome: Callable[[ReceiveOutcome], None] | None = None
    on_stored: Callable[[TransferHeader], Any] | None = None
    in_flight: dict[str, TransferProgress] = attrs.field(factory=dict)
    refuse: Callable[[TransferHeader], str | None] | None = None
    authorize: Callable[[TransferHeader, str], str | None] | None = None
    replace: Callable[[TransferHeader], bool] | None = None
    identify: Callable[[Any], PeerIdentity] = peer_identity
    clock: IReactorTime | None = None
    idle_timeout: float = 120.0

    def buildProtocol(self, addr: IAddress | None) -> _ReceiverProtocol:  # noqa: N802
        """A protocol for one incoming transfer."""
        return _ReceiverProtocol(self)

    def _identify(self, transport: Any) -> PeerIdentity:
        return self.identify(transport)

    def _replaces(self, header: TransferHeader) -> bool:
        """Whether a full stream may replace an existing copy (``replace``)."""
        return self.replace is not None and bool(self.replace(header))

    def _report_progress(self, progress: TransferProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def _report_outcome(self, outcome: ReceiveOutcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)


def _any_cluster_party(certificate: Any) -> None:
    """Accept any certificate the cluster CA signed (checked per header)."""


def _server_endpoint(
    reactor: IReactorFromThreads, port: int, tls: TLSFiles, interface: str
) -> ThreadedTLSServerEndpoint:
    return ThreadedTLSServerEndpoint(
        reactor,
        port,
        bulk_tls_context(tls, server_side=True),
        _any_cluster_party,
        interface=interface,
    )


def listen_for_transfers(
    reactor: IReactorTime,
    receiver: TransferReceiver,
    port: int,
    tls: TLSFiles,
    interface: str = "",
) -> Deferred[IListeningPort]:
    """
    Listen on ``port`` (0: any free port) for pushes from the cluster's nodes.

    ``reactor`` times idle connections, and is also what the TLS threads
    call back into (a real reactor: it provides ``IReactorFromThreads``).

    :param tls: This node's credential and the cluster CA
        (``load_tls_files(directory, "node")``).
    :return: The listening port (``getHost().port`` is the port number).
    """
    if receiver.clock is None:
        receiver.clock = reactor
    return _server_endpoint(IReactorFromThreads(reactor), port, tls, interface).listen(
        receiver
    )


def transfer_service(
    reactor: IReactorTime,
    receiver: TransferReceiver,
    port: int,
    tls: TLSFiles,
    interface: str = "",
) -> StreamServerEndpointService:
    """The receiver as a service for a node agent's ``MultiService``."""
    if receiver.clock is None:
        receiver.clock = reactor
    return StreamServerEndpointService(
        _server_endpoint(IReactorFromThreads(reactor), port, tls, interface), receiver
    )
