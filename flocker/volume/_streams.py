"""
Stream sources and sinks shared by the backends.

* :class:`ProcessStreamSource` — the standard output of a command
  (``zfs send``, ``tar -c``) pushed into a consumer with back-pressure.
* :class:`ProcessStreamSink` — a consumer feeding a command's standard input
  (``zfs recv``, ``tar -x``) into a temporary place; ``commit`` makes the
  result visible, ``discard`` removes it.
* :class:`BytesStreamSource` — bytes already in memory (the fake backend).

Formats that have no integrity check of their own (tar) are followed by a
SHA-256 trailer of everything before it (:class:`DigestTrailer`), so a
truncated or corrupted stream is refused by ``finish``.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ..common import logged
from ..transport import PipeWriter
from ._interface import (
    BadStream,
    DependentClones,
    IStreamSink,
    IStreamSource,
    SendFailed,
    StreamStopped,
)
from ._logging import BAD_STREAM, RECEIVE_ABORT, RECEIVE_FINISH, SEND_STREAM

DIGEST_SIZE = hashlib.sha256().digest_size

#: Bytes read from a command's output at a time, and the size asked of its
#: pipe.  Twisted's process reader reads 8 KiB at a time; a stream of a GiB
#: would cost 131,072 reads, digest updates and consumer writes.
READ_SIZE = 1024 * 1024

#: ``fcntl.F_SETPIPE_SZ`` (Linux), which the fcntl module lacks before 3.10
#: on some builds.
_F_SETPIPE_SZ = 1031


def _read_big(fd: int, callback: Callable[[bytes], None]) -> object:
    """Read up to `READ_SIZE` bytes from ``fd``: Twisted's ``readFromFD``, larger."""
    from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST

    try:
        output = os.read(fd, READ_SIZE)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EINTR):
            return None
        return CONNECTION_LOST
    if not output:
        return CONNECTION_DONE
    callback(output)
    return None


def _enlarge_pipe(fd: int) -> None:
    """Ask for a pipe of `READ_SIZE` (where the platform lets us)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", _F_SETPIPE_SZ), READ_SIZE)
    except OSError:
        pass  # e.g. above /proc/sys/fs/pipe-max-size: it stays as it was


def _read_output_in_big_chunks(transport: object) -> None:
    """
    Make the process transport read the child's standard output in
    `READ_SIZE` chunks from a pipe that holds as much (where the platform
    lets us; otherwise it stays as Twisted made it).
    """
    reader = getattr(transport, "pipes", {}).get(1)
    if reader is None or not hasattr(reader, "fd"):
        return
    _enlarge_pipe(reader.fd)
    reader.doRead = lambda: _read_big(reader.fd, reader.dataReceived)


def find_executable(name: str) -> str:
    """The full path of command ``name`` (also looked for in the sbin dirs)."""
    if os.sep in name:
        return name
    search = os.environ.get("PATH", os.defpath).split(os.pathsep)
    for directory in search + ["/usr/sbin", "/sbin"]:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return name


class DigestTrailer:
    """Checks a stream that ends with the SHA-256 of everything before it."""

    def __init__(self) -> None:
        """Start with nothing seen."""
        self._hash = hashlib.sha256()
        self._tail = b""
        self.length = 0

    @staticmethod
    def digest(data: bytes) -> bytes:
        """The trailer that follows ``data``."""
        return hashlib.sha256(data).digest()

    def feed(self, data: bytes) -> bytes:
        """Take more of the stream; the part known not to be the trailer."""
        buffer = self._tail + data
        if len(buffer) <= DIGEST_SIZE:
            self._tail = buffer
            return b""
        payload, self._tail = buffer[:-DIGEST_SIZE], buffer[-DIGEST_SIZE:]
        self._hash.update(payload)
        self.length += len(payload)
        return payload

    def problem(self) -> str | None:
        """``None`` if the stream ended with the right digest, else why not."""
        if len(self._tail) < DIGEST_SIZE:
            return "stream truncated before its checksum"
        if self._hash.digest() != self._tail:
            return "checksum mismatch: the stream is corrupt or truncated"
        return None


class _Protocol(ProcessProtocol):
    """Hands a process's output and end to its owner."""

    def __init__(
        self, on_out: Callable[[bytes], None], on_end: Callable[[int | None], None]
    ) -> None:
        self._on_out = on_out
        self._on_end = on_end
        self.stderr = b""

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self._on_out(data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.stderr = (self.stderr + data)[-4000:]

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        code = (
            0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        )
        self._on_end(code)


def _spawn(
    reactor: IReactorProcess,
    protocol: ProcessProtocol,
    argv: Sequence[str],
    path: str | None,
    stdin: int | None = None,
) -> None:
    """Start ``argv`` with ``protocol`` (reading ``stdin`` if given)."""
    reactor.spawnProcess(
        protocol,
        find_executable(argv[0]),
        list(argv),
        env=dict(os.environ),
        path=path,
        childFDs=None if stdin is None else {0: stdin, 1: "r", 2: "r"},
    )


@implementer(IStreamSource, IPushProducer)
class ProcessStreamSource:
    """A stream read from a command's standard output, e.g. ``zfs send``."""

    def __init__(
        self,
        reactor: IReactorProcess,
        argv: Sequence[str],
        *,
        backend: str,
        dataset_id: str,
        snapshot: str,
        base: str | None,
        stream_format: str,
        add_digest: bool = False,
        header: bytes = b"",
        path: str | None = None,
    ) -> None:
        """
        :param argv: The command writing the stream to its standard output.
        :param add_digest: Follow the output with its SHA-256.
        :param header: Bytes written before the command's output.
        :param path: The command's working directory.
        """
        self._header = header
        self._reactor = reactor
        self._argv = tuple(argv)
        self._backend = backend
        self.dataset_id = dataset_id
        self.snapshot = snapshot
        self.base = base
        self.stream_format = stream_format
        self._digest = hashlib.sha256() if add_digest else None
        self._path = path
        self._consumer: IConsumer | None = None
        self._protocol: _Protocol | None = None
        self._done: Deferred[None] = Deferred()
        self._stopped = False
        self._ended = False
        self._paused = False
        self.bytes_written = 0

    def start(self, consumer: IConsumer) -> Deferred[None]:
        """Run the command, writing its output into ``consumer``."""
        if self._consumer is not None:
            raise RuntimeError("a stream source can be started only once")
        self._consumer = consumer

        async def run() -> None:
            assert self._consumer is not None
            if self._stopped:
                raise StreamStopped("the stream was stopped before it started")
            self._protocol = _Protocol(self._output, self._process_ended)
            self._consumer.registerProducer(self, True)
            if self._header:
                self._output(self._header)
            _spawn(self._reactor, self._protocol, self._argv, self._path)
            _read_output_in_big_chunks(self._protocol.transport)
            if self._paused:
                self.pauseProducing()
            await self._done

        return logged(
            SEND_STREAM,
            run,
            backend=self._backend,
            dataset_id=self.dataset_id,
            snapshot=self.snapshot,
            base=self.base,
        )

    def _output(self, data: bytes) -> None:
        if self._stopped or self._consumer is None:
            return
        if self._digest is not None:
            self._digest.update(data)
        self.bytes_written += len(data)
        self._consumer.write(data)

    def _process_ended(self, code: int | None) -> None:
        self._ended = True
        assert self._consumer is not None and self._protocol is not None
        error: BaseException | None = None
        try:
            if self._stopped:
                error = StreamStopped("the stream was stopped")
            elif code != 0:
                detail = self._protocol.stderr.decode("utf-8", "replace").strip()
                error = SendFailed(f"{' '.join(self._argv)} failed ({code}): {detail}")
            elif self._digest is not None:
                self._consumer.write(self._digest.digest())
            self._consumer.unregisterProducer()
        except Exception as problem:  # the consumer failed: still end
            error = error or problem
        if error is None:
            self._done.callback(None)
        else:
            self._done.errback(error)

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """Stop reading the command's output until resumed."""
        self._paused = True
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:  # noqa: N802
        """Read the command's output again."""
        self._paused = False
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:  # noqa: N802
        """The consumer wants no more: stop."""
        self.stop()

    def stop(self) -> None:
        """Kill the command; :meth:`start`'s result fails with StreamStopped."""
        if self._stopped or self._ended:
            return
        self._stopped = True
        if self._protocol is None or self._protocol.transport is None:
            return
        self.resumeProducing()  # let the pipes drain so the end is seen
        try:
            self._protocol.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass


@implementer(IStreamSink)
class ProcessStreamSink:
    """A stream written into a command's standard input, e.g. ``zfs recv``."""

    def __init__(
        self,
        reactor: IReactorProcess,
        argv: Sequence[str],
        *,
        backend: str,
        dataset_id: str,
        base: str | None,
        stream_format: str,
        commit: Callable[[bytes, bool], Awaitable[None]],
        discard: Callable[[], Awaitable[None]],
        check_digest: bool = False,
        header: bool = False,
        path: str | None = None,
    ) -> None:
        """
        Start ``argv`` at once; it receives into a temporary place.

        :param commit: Called with the stream's header line (empty without
            one) and whether the result is to be writable (``finish``'s
            ``writable``); makes a successfully received result visible.  If it
            raises, ``discard`` runs and ``finish`` fails with BadStream,
            except for :class:`DependentClones` (a replacing receive whose
            old copy cannot go), which ``finish`` passes on as it is.
        :param discard: Removes every trace of the receive.
        :param check_digest: The stream ends with a SHA-256 trailer.
        :param header: The stream starts with a line (up to 64 KiB, ending
            with a newline) that is handed to ``commit``, not the command.
        """
        self._header: bytearray | None = bytearray() if header else None
        self._header_done = not header
        self._backend = backend
        self.dataset_id = dataset_id
        self.base = base
        self.stream_format = stream_format
        self._argv = tuple(argv)
        self._commit = commit
        self._discard = discard
        self._trailer = DigestTrailer() if check_digest else None
        self._producer: object | None = None
        self._state = "open"  # open -> finishing/aborting -> done/aborted
        self._exit: Deferred[int | None] = Deferred()
        self._exited = False
        self.bytes_received = 0
        self._protocol = _Protocol(lambda data: None, self._process_ended)
        # The command's standard input is a pipe of our own, written
        # straight away while it takes the data (see PipeWriter).
        reading, writing = os.pipe2(os.O_CLOEXEC)
        _enlarge_pipe(writing)
        try:
            _spawn(reactor, self._protocol, self._argv, path, stdin=reading)
        except BaseException:
            os.close(writing)
            raise
        finally:
            os.close(reading)
        self._stdin = PipeWriter(reactor, writing, lambda: None)  # type: ignore[arg-type]

    def _process_ended(self, code: int | None) -> None:
        self._exited = True
        self._stdin.unregisterProducer()
        self._stdin.close()
        producer, self._producer = self._producer, None
        try:
            if self._state == "open" and producer is not None:
                producer.stopProducing()  # type: ignore[attr-defined]
        finally:
            self._exit.callback(code)

    def registerProducer(self, producer: object, streaming: bool) -> None:  # noqa: N802
        """Pause ``producer`` whenever the command's input pipe is full."""
        if self._exited or self._state != "open":
            producer.stopProducing()  # type: ignore[attr-defined]
            return
        self._producer = producer
        self._stdin.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:  # noqa: N802
        """Forget the producer."""
        self._stdin.unregisterProducer()
        self._producer = None

    def write(self, data: bytes) -> None:
        """Pass stream bytes to the command (dropped once it has ended)."""
        if self._state != "open" or self._exited:
            return
        self.bytes_received += len(data)
        if self._trailer is not None:
            data = self._trailer.feed(data)
        if not self._header_done and data:
            assert self._header is not None
            end = data.find(b"\n")
            if end < 0:
                self._header += data
                data = b""
            else:
                self._header += data[: end + 1]
                data = data[end + 1 :]
                self._header_done = True
            if len(self._header) > 65536:
                self._header_done = True  # not a header: finish refuses it
        if data:
            self._stdin.write(data)

    async def _end_process(self) -> int | None:
        """Close the command's input and wait for it to exit."""
        self._stdin.unregisterProducer()
        self._producer = None
        self._stdin.close()
        return await self._exit

    def finish(self, writable: bool = False) -> Deferred[None]:
        """Wait for the command; commit if it and the checksum are fine."""

        async def run() -> None:
            if self._state != "open":
                raise BadStream(f"cannot finish a receive that is {self._state}")
            self._state = "finishing"
            code = await self._end_process()
            problem = None
            if code != 0:
                detail = self._protocol.stderr.decode("utf-8", "replace").strip()
                problem = f"{self._argv[0]} failed ({code}): {detail}"
            elif self._trailer is not None:
                problem = self._trailer.problem()
            if problem is None and self._header is not None:
                if not self._header.endswith(b"\n"):
                    problem = "the stream has no header"
            if problem is None:
                try:
                    await self._commit(bytes(self._header or b""), writable)
                except DependentClones:
                    await self._discard()
                    self._state = "aborted"
                    raise
                except Exception as error:
                    problem = f"could not complete the receive: {error}"
            if problem is not None:
                BAD_STREAM.log(dataset_id=self.dataset_id, reason=problem)
                await self._discard()
                self._state = "aborted"
                raise BadStream(problem)
            self._state = "done"

        return logged(
            RECEIVE_FINISH,
            run,
            backend=self._backend,
            dataset_id=self.dataset_id,
            base=self.base,
        )

    def abort(self) -> Deferred[None]:
        """End the command without a complete stream and discard it all."""

        async def run() -> None:
            if self._state != "open":
                return
            self._state = "aborting"
            await self._end_process()
            await self._discard()
            self._state = "aborted"

        return logged(
            RECEIVE_ABORT,
            run,
            backend=self._backend,
            dataset_id=self.dataset_id,
            base=self.base,
        )


@implementer(IStreamSource, IPushProducer)
class BytesStreamSource:
    """A stream whose bytes are already in memory; written synchronously."""

    def __init__(
        self,
        data: bytes,
        *,
        dataset_id: str,
        snapshot: str,
        base: str | None,
        stream_format: str,
        chunk_size: int = 65536,
    ) -> None:
        """Hold ``data`` to write in chunks of ``chunk_size``."""
        self._data = data
        self.dataset_id = dataset_id
        self.snapshot = snapshot
        self.base = base
        self.stream_format = stream_format
        self._chunk = chunk_size
        self._offset = 0
        self._paused = False
        self._consumer: IConsumer | None = None
        self._done: Deferred[None] = Deferred()
        self._writing = False

    def start(self, consumer: IConsumer) -> Deferred[None]:
        """Write the bytes into ``consumer``, pausing when asked."""
        if self._consumer is not None:
            raise RuntimeError("a stream source can be started only once")
        self._consumer = consumer
        consumer.registerProducer(self, True)
        self._pump()
        return self._done

    def _pump(self) -> None:
        if self._writing or self._done.called or self._consumer is None:
            return
        self._writing = True
        try:
            while not self._paused and self._offset < len(self._data):
                chunk = self._data[self._offset : self._offset + self._chunk]
                self._offset += len(chunk)
                self._consumer.write(chunk)
                if self._done.called:
                    return
            if self._offset >= len(self._data) and not self._paused:
                self._consumer.unregisterProducer()
                self._done.callback(None)
        finally:
            self._writing = False

    def pauseProducing(self) -> None:  # noqa: N802
        """Write nothing until resumed."""
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        """Carry on writing."""
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:  # noqa: N802
        """The consumer wants no more: stop."""
        self.stop()

    def stop(self) -> None:
        """Write nothing more; :meth:`start`'s result fails."""
        if self._done.called:
            return
        if self._consumer is not None:
            self._consumer.unregisterProducer()
        self._done.errback(StreamStopped("the stream was stopped"))
