"""
TLS connections for bulk data, with the encryption and socket I/O in a
thread of their own.

Twisted's TLS runs pyOpenSSL over memory buffers in the reactor thread:
every 16 KiB record costs several Python calls and copies.  Pushing a GiB
between two agents cost them more CPU in that layer than ZFS spent sending
and receiving it (``benchmark/run transfer``).  Here each connection has a
worker thread running the standard library's :mod:`ssl` on a non-blocking
socket.  OpenSSL encrypts, decrypts and copies with the GIL released, and
the reactor thread sees plaintext in chunks of up to :data:`DELIVERY_SIZE`.

The endpoints (:class:`ThreadedTLSClientEndpoint`,
:class:`ThreadedTLSServerEndpoint`, in
:mod:`flocker.transport._threaded_tls_endpoints`) are ordinary Twisted
endpoints.  The
protocols they connect are unchanged Twisted protocols, called in the
reactor thread once the handshake is done and the peer's certificate
accepted.  Their transport offers what a TLS TCP transport does:

* ``write``/``writeSequence``, with back-pressure on a registered producer
  (paused above :data:`HIGH_WATER` queued bytes);
* ``pauseProducing``/``resumeProducing`` to stop and restart reading;
* ``loseConnection`` (after the queued bytes, with a TLS ``close_notify``)
  and ``abortConnection``;
* ``getPeer``, ``getHost`` and ``getPeerCertificate``.

A handshake that fails, or a peer certificate the endpoint's check
rejects, fails the client's ``connect`` with :class:`TLSFailed`.  The
server logs it (``flocker:volume:tls:refused``) and builds no protocol.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any

from cryptography import x509
from OpenSSL.crypto import X509
from twisted.internet import error as twisted_error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IProtocol,
    IPushProducer,
    IReactorFromThreads,
    ITCPTransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from ._handshake import (
    TLSFailed,
    _address,
    _Handshake,
    _send,
)
from ._lifecycle import (
    DISCONNECTING,
    WRITABLE,
    Event,
    Phase,
    Request,
    WorkerStage,
    next_phase,
)

#: Plaintext handed to the protocol at most at once.
DELIVERY_SIZE = 1024 * 1024
#: Plaintext handed over but not yet taken by the protocol before the worker
#: stops reading: a protocol slower than the network bounds the memory used.
MAXIMUM_UNDELIVERED = 4 * DELIVERY_SIZE
#: Queued outgoing bytes above which a registered producer is paused...
HIGH_WATER = 4 * 1024 * 1024
#: ...and below which it is resumed.
LOW_WATER = 1024 * 1024
#: Seconds a closing connection waits for the peer's end before closing.
CLOSE_GRACE = 10.0
#: How much nicer than the agent a background connection's worker thread
#: runs (see ``_ThreadedTLSTransport.run_in_background``).
BACKGROUND_NICE = 10


class _Aborted(Exception):
    """Internal: the connection was aborted from the reactor thread."""


def in_background(transport: Any) -> None:
    """
    Run a connection at background CPU priority where its transport can (a
    threaded TLS transport, not e.g. a test's): for bulk streams, i.e. every
    one but a move's final increment, which a stopped application waits for.
    """
    background = getattr(transport, "run_in_background", None)
    if background is not None:
        background()


@implementer(ITCPTransport, IPushProducer, IConsumer)
class _ThreadedTLSTransport:
    """
    One TLS connection; its worker thread owns the socket and TLS object.

    Methods without a leading ``_thread`` run in the reactor thread.  The two
    threads share only what ``_lock`` guards, plus a wake-up pipe.

    The reactor thread follows the connection's life in ``_phase`` (see
    :mod:`flocker.transport._lifecycle`), and asks the worker to close or
    abort through ``_request``; the worker's own progress in closing is its
    ``_stage``.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_side: bool,
        check: Callable[[x509.Certificate], None],
        handshake_timeout: float,
        handshake: _Handshake | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        """
        :param handshake: A handshake already done (a listening port's),
            or ``None`` to shake hands in the worker thread.
        :param on_end: Called (in the reactor thread) once the worker
            thread is done.
        """
        self._reactor = reactor
        self._sock = sock
        self._on_end = on_end
        if handshake is None:
            handshake = _Handshake(sock, context, server_side, check, handshake_timeout)
        self._handshake: _Handshake | None = handshake
        self._tls: ssl.SSLObject = handshake.tls
        # Owned by the worker thread:
        self._in_bio = handshake.in_bio
        self._out_bio = handshake.out_bio
        self._cipher = handshake.cipher
        # The worker allocates these once the peer is authenticated:
        self._raw = bytearray()  # received, still encrypted
        self._plain = bytearray()  # decrypted
        self._stage = WorkerStage.PUMPING
        self.protocol: IProtocol | None = None
        self._certificate: x509.Certificate | None = None
        self._peer = _address(sock.getpeername())
        self._host = _address(sock.getsockname())
        self._producer: Any = None
        self._producer_streaming = True
        self._producer_paused = False
        self._phase = Phase.HANDSHAKING
        self._end: Failure | None = None  # why, once the worker is done
        self._inbox: deque[bytes] = deque()  # received while paused
        self._draining = False
        # Guarded by _lock:
        self._lock = threading.Lock()
        self._outgoing: deque[bytes | memoryview] = deque()
        self._queued = 0
        self._reading_paused = False
        self._undelivered = 0
        self._request = Request.NOTHING
        self._background = False
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.handshaken: Deferred[_ThreadedTLSTransport] = Deferred()

    def start(self) -> None:
        """Run the handshake (then the connection) in a worker thread."""
        threading.Thread(
            target=self._thread_main, name=f"tls {self._peer.host}", daemon=True
        ).start()

    # -- reactor thread: ITransport -----------------------------------------

    def write(self, data: bytes) -> None:
        """
        Queue ``data`` for the worker to encrypt and send (also after
        ``loseConnection``, until the connection is closed, as with Twisted's
        own transports).
        """
        if not isinstance(data, bytes):
            raise TypeError("Data must be bytes")
        if not data or self._phase not in WRITABLE:
            return
        with self._lock:
            self._outgoing.append(data)
            self._queued += len(data)
            full = self._queued > HIGH_WATER
        self._wake()
        if full and self._producer is not None and self._producer_streaming:
            if not self._producer_paused:
                self._producer_paused = True
                self._producer.pauseProducing()

    def writeSequence(self, data: Iterable[bytes]) -> None:  # noqa: N802
        """Queue several strings."""
        for piece in data:
            self.write(piece)

    @property
    def disconnecting(self) -> bool:
        """Whether the connection is closing or closed."""
        return self._phase in DISCONNECTING

    def loseConnection(self) -> None:  # noqa: N802
        """
        Close once everything queued is sent (TLS ``close_notify``), and,
        if a producer is registered, once it is unregistered.
        """
        self._fire(Event.LOSE)
        if self._producer is None:
            self._fire(Event.PRODUCER_GONE)

    def abortConnection(self) -> None:  # noqa: N802
        """Close at once, dropping what is queued."""
        self._fire(Event.ABORT)

    def run_in_background(self) -> None:
        """
        Let the worker thread encrypt and copy at a lower CPU priority
        (:data:`BACKGROUND_NICE` nicer), for bulk data nobody waits for: the node's
        applications and the agents' reactors then come first, and the
        transfer takes the CPU they leave.  (On a busy 2-core node this
        also made a bulk transfer faster: ZFS's own threads, which the
        stream waits for, were no longer crowded out.)
        """
        with self._lock:
            self._background = True
        self._wake()

    def getPeer(self) -> IPv4Address | IPv6Address:  # noqa: N802
        """The remote address."""
        return self._peer

    def getHost(self) -> IPv4Address | IPv6Address:  # noqa: N802
        """The local address."""
        return self._host

    def getPeerCertificate(self) -> X509 | None:  # noqa: N802
        """The peer's certificate (pyOpenSSL's type, as Twisted's TLS gives)."""
        if self._certificate is None:
            return None
        return X509.from_cryptography(self._certificate)

    def getHandle(self) -> socket.socket:  # noqa: N802
        """The socket (owned by the worker thread: do not use it)."""
        return self._sock

    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802
        """Set TCP_NODELAY."""
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, enabled)

    def getTcpNoDelay(self) -> bool:  # noqa: N802
        """Whether TCP_NODELAY is set."""
        return bool(self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def setTcpKeepAlive(self, enabled: bool) -> None:  # noqa: N802
        """Set SO_KEEPALIVE."""
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, enabled)

    def getTcpKeepAlive(self) -> bool:  # noqa: N802
        """Whether SO_KEEPALIVE is set."""
        return bool(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    def loseWriteConnection(self) -> None:  # noqa: N802
        """Not supported: TLS has no half-close here; closes the connection."""
        self.loseConnection()

    # -- reactor thread: producer and consumer ------------------------------

    def pauseProducing(self) -> None:  # noqa: N802
        """
        Stop reading: no ``dataReceived`` until resumed, and the worker
        stops taking data from the socket.
        """
        with self._lock:
            self._reading_paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        """Read again (first what arrived while paused)."""
        with self._lock:
            self._reading_paused = False
        self._wake()
        self._drain_inbox()

    def stopProducing(self) -> None:  # noqa: N802
        """Close the connection."""
        self.loseConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """Let ``producer`` fill the connection, paused while it is full."""
        if self._producer is not None:
            raise RuntimeError("a producer is already registered")
        self._producer = producer
        self._producer_streaming = streaming
        self._producer_paused = False
        if self._phase is Phase.LOST:
            producer.stopProducing()
        elif not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:  # noqa: N802
        """Forget the producer (and close, if that was asked meanwhile)."""
        if self._producer is None:
            return
        self._producer = None
        self._fire(Event.PRODUCER_GONE)

    # -- reactor thread: the lifecycle -----------------------------------------

    def _fire(self, event: Event) -> None:
        """Move to the phase ``event`` leads to, doing what entering it takes."""
        phase = next_phase(self._phase, event)
        if phase is None:
            return
        self._phase = phase
        if phase is Phase.CLOSING:
            self._ask_worker(Request.CLOSE)
        elif phase is Phase.ABORTING:
            self._ask_worker(Request.ABORT)
        elif phase is Phase.LOST:
            self._lose()

    def _ask_worker(self, request: Request) -> None:
        with self._lock:
            self._request = max(self._request, request)
        self._wake()

    def _lose(self) -> None:
        """
        Tell the protocol the connection is gone (or the endpoint that the
        handshake failed), once.
        """
        reason, self._end = self._end, None
        assert reason is not None
        self._inbox.clear()
        self._close_wake_pipe()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        if not self.handshaken.called:
            self.handshaken.errback(reason)
        elif self.protocol is not None:
            self.protocol.connectionLost(reason)

    # -- reactor thread: called by the worker --------------------------------

    def _wake(self) -> None:
        if self._wake_write < 0:
            return  # the worker is gone
        try:
            os.write(self._wake_write, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the worker will look anyway

    def _connected(self, certificate: x509.Certificate) -> None:
        self._certificate = certificate
        self._fire(Event.HANDSHAKE_DONE)
        self.handshaken.callback(self)

    def _attach(self, protocol: IProtocol) -> None:
        """Hand the connection to ``protocol`` (after the handshake)."""
        self.protocol = protocol
        protocol.makeConnection(self)

    def _deliver(self, data: bytes) -> None:
        self._inbox.append(data)
        self._drain_inbox()

    def _drain_inbox(self) -> None:
        """Hand received bytes to the protocol, unless it paused reading."""
        if self._draining:
            return  # dataReceived resumed reading: the loop below goes on
        self._draining = True
        try:
            # Only this (the reactor) thread changes _reading_paused.
            while self._inbox and not self._reading_paused:
                data = self._inbox.popleft()
                with self._lock:
                    self._undelivered -= len(data)
                    resumed = self._undelivered + len(data) >= MAXIMUM_UNDELIVERED
                if resumed:
                    self._wake()
                # As with Twisted's own transports, nothing more arrives once
                # the protocol asked to close (bytes the worker had already
                # read are dropped).
                if self.protocol is not None and not self.disconnecting:
                    self.protocol.dataReceived(data)
        finally:
            self._draining = False
        self._fire(Event.INBOX_HELD if self._inbox else Event.INBOX_EMPTY)

    def _drained(self) -> None:
        """The queue fell below :data:`LOW_WATER`: let the producer go on."""
        if self._producer is None or self._phase is Phase.LOST:
            return
        if not self._producer_streaming:
            self._producer.resumeProducing()
        elif self._producer_paused:
            self._producer_paused = False
            self._producer.resumeProducing()

    def _ended(self, reason: Failure, connected: bool) -> None:
        """The worker is done; the protocol hears of it after what it read."""
        if self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end()
        self._end = reason
        if not connected:
            self._fire(Event.HANDSHAKE_FAILED)
        elif self._inbox:
            self._fire(Event.WORKER_ENDED_HOLDING)
        else:
            self._fire(Event.WORKER_ENDED)

    def _close_wake_pipe(self) -> None:
        os.close(self._wake_read)
        os.close(self._wake_write)
        self._wake_read = self._wake_write = -1

    # -- worker thread -------------------------------------------------------

    def _thread_main(self) -> None:
        connected = False
        try:
            self._thread_handshake()
            connected = True
            reason = self._thread_pump()
        except _Aborted:
            reason = Failure(twisted_error.ConnectionAborted())
        except TLSFailed as problem:
            reason = Failure(problem)
        except OSError as problem:  # TimeoutError too
            if connected:
                reason = Failure(twisted_error.ConnectionLost(str(problem)))
            else:  # the peer reset, or never answered, the handshake
                reason = Failure(
                    twisted_error.ConnectError(
                        string=f"the TLS handshake did not complete: {problem}"
                    )
                )
        except Exception as problem:  # noqa: BLE001 - reported to the reactor
            reason = Failure(problem)
        self._thread_close(reason)
        self._reactor.callFromThread(self._ended, reason, connected)

    def _thread_wait(self, events: int, timeout: float | None) -> None:
        """Wait for the socket (``events``) or a wake-up; raise if aborted."""
        poller = select.poll()
        if events:
            poller.register(self._sock, events)
        poller.register(self._wake_read, select.POLLIN)
        ready = poller.poll(None if timeout is None else max(0, timeout) * 1000)
        if any(fd == self._wake_read for fd, _ in ready):
            try:
                while os.read(self._wake_read, 4096):
                    pass
            except BlockingIOError:
                pass
        with self._lock:
            if self._request is Request.ABORT:
                raise _Aborted()
        if timeout is not None and not ready:
            raise TimeoutError("the peer did not answer in time")

    def _thread_flush(self) -> bool:
        """Send the encrypted bytes; whether some wait for the socket."""
        self._cipher, blocked = _send(self._sock, self._cipher, self._out_bio)
        return blocked

    def _thread_fill(self) -> bool | None:
        """
        Read what the socket has into the TLS object: ``True`` if bytes
        came, ``False`` if none are there now, ``None`` at the connection's
        end.
        """
        try:
            count = self._sock.recv_into(self._raw)
        except (BlockingIOError, InterruptedError):
            return False
        if count == 0:
            self._in_bio.write_eof()
            return None
        self._in_bio.write(memoryview(self._raw)[:count])
        return True

    def _thread_handshake(self) -> None:
        """
        Finish the handshake (unless the listening port did), then allocate
        the connection's buffers and tell the reactor thread who the peer is.
        """
        handshake = self._handshake
        assert handshake is not None
        while events := handshake.step():
            self._thread_wait(events, handshake.deadline - monotonic())
        self._cipher = handshake.cipher
        self._handshake = None
        self._raw = bytearray(DELIVERY_SIZE)
        self._plain = bytearray(DELIVERY_SIZE)
        assert handshake.certificate is not None
        self._reactor.callFromThread(self._connected, handshake.certificate)

    def _thread_pump(self) -> Failure:
        """Move bytes until the connection ends; why it ended."""
        closing_since = 0.0  # once the stage is no longer PUMPING
        in_background = False
        while True:
            with self._lock:
                request = self._request
                lower = self._background and not in_background
                read = not self._reading_paused and (
                    self._undelivered < MAXIMUM_UNDELIVERED
                )
            if request is Request.ABORT:
                raise _Aborted()
            if lower:
                in_background = True
                self._thread_lower_priority()
            queued = self._thread_encrypt()
            blocked = self._thread_flush()
            if (
                self._stage is WorkerStage.PUMPING
                and request is Request.CLOSE
                and not queued
                and not blocked
            ):
                self._stage = WorkerStage.CLOSE_NOTIFY
                closing_since = monotonic()
                self._thread_close_notify()
                continue
            if self._stage is not WorkerStage.PUMPING:
                # Discard what the peer still sends, until its end.
                if self._thread_discard():
                    return Failure(twisted_error.ConnectionDone())
                timeout = closing_since + CLOSE_GRACE - monotonic()
                events = select.POLLIN | (select.POLLOUT if blocked else 0)
                try:
                    self._thread_wait(events, timeout)
                except TimeoutError:
                    return Failure(twisted_error.ConnectionDone())
                continue
            more = False
            if read:
                ended, more = self._thread_receive()
                if ended is not None:
                    return ended
            if more or (queued and not blocked):
                continue
            events = (select.POLLOUT if blocked else 0) | (select.POLLIN if read else 0)
            self._thread_wait(events, None)

    def _thread_lower_priority(self) -> None:
        """
        Make this (worker) thread :data:`BACKGROUND_NICE` nicer than it was
        (Linux nices threads): relative, so never a higher priority than
        the agent's own, whatever niceness it runs at.
        """
        try:
            thread = threading.get_native_id()
            now = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, now + BACKGROUND_NICE))
        except (AttributeError, OSError):
            pass  # not Linux, or not allowed: the transfer still works

    def _thread_encrypt(self) -> bool:
        """
        Turn queued bytes into TLS records, up to :data:`DELIVERY_SIZE` of
        them waiting to be sent; whether some are still queued.
        """
        tls = self._tls
        assert tls is not None
        while len(self._cipher) + self._out_bio.pending < DELIVERY_SIZE:
            with self._lock:
                if not self._outgoing:
                    return False
                data = self._outgoing[0]
            written = tls.write(data)
            with self._lock:
                if written >= len(data):
                    self._outgoing.popleft()
                else:
                    self._outgoing[0] = memoryview(data)[written:]
                before = self._queued
                self._queued -= written
                drained = self._queued <= LOW_WATER < before or not self._outgoing
            if drained:
                self._reactor.callFromThread(self._drained)
        with self._lock:
            return bool(self._outgoing)

    def _thread_receive(self) -> tuple[Failure | None, bool]:
        """
        Decrypt what has arrived and hand it to the reactor thread: why the
        connection ended (or ``None``), and whether more may be there now.
        """
        tls = self._tls
        assert tls is not None
        view = memoryview(self._plain)
        filled = 0
        ended: Failure | None = None
        while filled < len(view):
            try:
                # With a buffer, read() answers a count (typeshed says bytes).
                count: int = tls.read(len(view) - filled, view[filled:])  # type: ignore[assignment]
            except ssl.SSLWantReadError:
                got = self._thread_fill()
                if got is False:
                    break
                continue  # decrypt what came, or meet the end
            except ssl.SSLZeroReturnError:
                ended = Failure(twisted_error.ConnectionDone())
                break
            except ssl.SSLEOFError:
                lost = twisted_error.ConnectionLost("the peer left without ending TLS")
                ended = Failure(lost)
                break
            except ssl.SSLError as error:
                ended = Failure(TLSFailed(f"TLS failed: {error}"))
                break
            if count == 0:
                ended = Failure(twisted_error.ConnectionDone())
                break
            filled += count
        if filled:
            data = bytes(view[:filled])
            with self._lock:
                self._undelivered += filled
            self._reactor.callFromThread(self._deliver, data)
        return ended, filled == len(view)

    def _thread_close_notify(self) -> None:
        """Queue TLS ``close_notify``; :meth:`_thread_pump` sends it."""
        try:
            assert self._tls is not None
            self._tls.unwrap()
        except ssl.SSLError:
            pass  # queued, and the peer's answer is not waited for

    def _thread_discard(self) -> bool:
        """Read and drop what the closing connection gets; whether it ended."""
        if (
            self._stage is WorkerStage.CLOSE_NOTIFY
            and not self._cipher
            and not self._out_bio.pending
        ):
            self._stage = WorkerStage.SHUT
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                return True
        while True:
            try:
                if not self._sock.recv_into(self._raw):
                    return True
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True

    def _thread_close(self, reason: Failure) -> None:
        if reason.check(twisted_error.ConnectionAborted):
            try:  # reset the connection rather than end it
                self._sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                )
            except OSError:
                pass
        try:
            self._sock.close()
        except OSError:
            pass
