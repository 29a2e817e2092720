"""
A command's standard input, written straight away while its pipe takes it.

Twisted's process transport buffers every write and writes it later from
the reactor, pausing the producer as soon as anything is buffered; it also
takes only ``bytes``.  A received stream arrives a MiB at a time and the
receiving command (``zfs recv``) usually keeps up, so :class:`PipeWriter`
first tries to write a chunk at once, and buffers (and pauses its producer
above :data:`PAUSE_ABOVE`) only what the pipe refuses.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IConsumer, IReactorFDSet, IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

#: Bytes waiting for the pipe above which the producer is paused.
PAUSE_ABOVE = 4 * 1024 * 1024


@implementer(IWriteDescriptor, IConsumer)
class PipeWriter:
    """
    The writing end of a pipe (non-blocking), as a consumer.

    :ivar lost: Whether the reading end went away (its command exited):
        later writes are dropped.
    """

    def __init__(
        self, reactor: IReactorFDSet, fd: int, on_lost: Callable[[], None]
    ) -> None:
        """
        :param fd: The pipe's writing end; this writer owns (closes) it.
        :param on_lost: Called once if the reading end goes away.
        """
        os.set_blocking(fd, False)
        self._reactor = reactor
        self._fd = fd
        self._on_lost = on_lost
        self._buffer: deque[bytes | memoryview] = deque()
        self._buffered = 0
        self._producer: Any = None
        self._streaming = True
        self._paused = False
        self._closing = False
        self.lost = False

    # -- IConsumer ---------------------------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """Pause ``producer`` while too much waits for the pipe."""
        self._producer = producer
        self._streaming = streaming
        self._paused = False
        if not streaming and not self._buffer:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:  # noqa: N802
        """Forget the producer."""
        self._producer = None

    def write(self, data: bytes | memoryview) -> None:
        """Write what the pipe takes now; keep the rest for later."""
        if self.lost or self._fd < 0 or not data:
            return
        if not self._buffer:
            written = self._write_now(data)
            if written is None or written == len(data):
                return
            data = memoryview(data)[written:]
        self._buffer.append(data)
        self._buffered += len(data)
        self._reactor.addWriter(self)
        if (
            self._producer is not None
            and self._streaming
            and not self._paused
            and self._buffered > PAUSE_ABOVE
        ):
            self._paused = True
            self._producer.pauseProducing()

    def close(self) -> None:
        """Close the pipe once everything written has gone into it."""
        self._closing = True
        if not self._buffer:
            self._close()

    # -- IWriteDescriptor ------------------------------------------------------

    def fileno(self) -> int:
        """The pipe's writing end."""
        return self._fd

    def logPrefix(self) -> str:  # noqa: N802
        """For Twisted's logs."""
        return "stdin"

    def doWrite(self) -> None:  # noqa: N802
        """The pipe has room: write what waits."""
        while self._buffer:
            data = self._buffer[0]
            written = self._write_now(data)
            if written is None:
                return  # lost, and everything dropped
            self._buffered -= written
            if written < len(data):
                self._buffer[0] = memoryview(data)[written:]
                return
            self._buffer.popleft()
        self._reactor.removeWriter(self)
        if self._closing:
            self._close()
        elif self._producer is not None:
            if not self._streaming:
                self._producer.resumeProducing()
            elif self._paused:
                self._paused = False
                self._producer.resumeProducing()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        """The reactor gave up on the descriptor."""
        self._lose()

    # -- internals -----------------------------------------------------------

    def _write_now(self, data: bytes | memoryview) -> int | None:
        """Bytes the pipe took (maybe 0), or ``None`` if its reader is gone."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError:  # EPIPE: the command exited
            self._lose()
            return None

    def _lose(self) -> None:
        if self.lost:
            return
        self.lost = True
        self._buffer.clear()
        self._buffered = 0
        self._reactor.removeWriter(self)
        self._close()
        self._on_lost()

    def _close(self) -> None:
        if self._fd >= 0:
            self._reactor.removeWriter(self)
            os.close(self._fd)
            self._fd = -1
