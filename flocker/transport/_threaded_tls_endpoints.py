"""
Endpoints for :mod:`flocker.transport._threaded_tls` connections: a client
endpoint that connects and shakes hands in a worker thread, and a server
endpoint whose listening port accepts and shakes hands in one thread of its
own for all its connections: a peer gets a worker thread and buffers only
once authenticated, must finish its handshake within
:data:`HANDSHAKE_TIMEOUT`, and may hold at most :data:`MAXIMUM_PER_PEER` of
the port's :data:`MAXIMUM_CONNECTIONS` connections.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import ssl
import threading
from collections.abc import Callable
from time import monotonic, sleep

from cryptography import x509
from eliot import write_traceback
from twisted.internet import error as twisted_error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorFromThreads,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from ._handshake import TLS_REFUSED, TLSFailed, _address, _Handshake
from ._threaded_tls import _ThreadedTLSTransport


@implementer(IStreamClientEndpoint)
class ThreadedTLSClientEndpoint:
    """
    Connects to ``host:port`` over TCP, then TLS with ``context``, in a
    worker thread; ``check`` must accept the server's certificate.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        host: str,
        port: int,
        context: ssl.SSLContext,
        check: Callable[[x509.Certificate], None],
        timeout: float = 30,
    ) -> None:
        """:param timeout: Seconds for the TCP connection and the handshake."""
        self._reactor = reactor
        self._host = host
        self._port = port
        self._context = context
        self._check = check
        self._timeout = timeout

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        The connected protocol, once the handshake and check succeeded.

        Cancelling the result closes whatever is under way; no protocol is
        built after that.
        """
        cancelled = False
        transports: list[_ThreadedTLSTransport] = []

        def cancel(_: Deferred[IProtocol]) -> None:
            nonlocal cancelled
            cancelled = True
            for transport in transports:
                transport.abortConnection()

        result: Deferred[IProtocol] = Deferred(cancel)

        def fail(failure: Failure) -> None:
            if not result.called:
                result.errback(failure)

        def connect_in_thread() -> None:
            try:
                sock = socket.create_connection(
                    (self._host, self._port), timeout=self._timeout
                )
            except TimeoutError:
                failure = Failure(twisted_error.TCPTimedOutError(string=self._host))
                self._reactor.callFromThread(fail, failure)
                return
            except OSError as error:
                if error.errno == errno.ECONNREFUSED:
                    refused = twisted_error.ConnectionRefusedError(string=str(error))
                    failure = Failure(refused)
                else:
                    failure = Failure(twisted_error.ConnectError(string=str(error)))
                self._reactor.callFromThread(fail, failure)
                return
            self._reactor.callFromThread(connected, sock)

        def connected(sock: socket.socket) -> None:
            if cancelled:
                sock.close()
                return
            try:
                transport = _ThreadedTLSTransport(
                    self._reactor,
                    sock,
                    self._context,
                    False,
                    self._check,
                    self._timeout,
                )
            except OSError as error:  # e.g. reset before we looked at it
                sock.close()
                fail(Failure(twisted_error.ConnectError(string=str(error))))
                return
            transports.append(transport)
            transport.handshaken.addCallbacks(handshaken, fail)
            transport.start()

        def handshaken(transport: _ThreadedTLSTransport) -> None:
            if cancelled:
                transport.abortConnection()
                return
            try:
                protocol = factory.buildProtocol(transport.getPeer())
                if protocol is None:
                    raise twisted_error.ConnectingCancelledError(self._host)
                transport._attach(protocol)
            except Exception:
                transport.abortConnection()
                fail(Failure())
            else:
                result.callback(protocol)

        threading.Thread(
            target=connect_in_thread, name=f"connect {self._host}", daemon=True
        ).start()
        return result


#: Seconds a client has to finish its TLS handshake on a listening port.
HANDSHAKE_TIMEOUT = 10.0
#: The most connections (shaking hands or established) a port holds at once...
MAXIMUM_CONNECTIONS = 128
#: ...and from one peer address.
MAXIMUM_PER_PEER = 32


class _Caps:
    """
    How many connections a listening port holds, in all and per peer
    address; shared by its accepting thread and the reactor thread.
    """

    def __init__(self, total: int, per_peer: int) -> None:
        self._total = total
        self._per_peer = per_peer
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def take(self, peer: str) -> str | None:
        """Count a new connection from ``peer``, or say why it is refused."""
        with self._lock:
            if sum(self._held.values()) >= self._total:
                return f"the port holds its maximum of {self._total} connections"
            if self._held.get(peer, 0) >= self._per_peer:
                return f"the peer holds its maximum of {self._per_peer} connections"
            self._held[peer] = self._held.get(peer, 0) + 1
            return None

    def give_back(self, peer: str) -> None:
        """A connection from ``peer`` ended."""
        with self._lock:
            left = self._held.get(peer, 0) - 1
            if left > 0:
                self._held[peer] = left
            else:
                self._held.pop(peer, None)

    def held(self) -> int:
        """Connections held now."""
        with self._lock:
            return sum(self._held.values())


def _reset(connection: socket.socket) -> None:
    """Close a connection with a reset: nothing of it lingers."""
    try:
        connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
        )
    except OSError:
        pass
    connection.close()


@implementer(IListeningPort)
class _ThreadedTLSPort:
    """
    A listening socket whose one thread accepts connections and shakes
    hands with all of them (non-blocking, each within its deadline); only
    a connection whose peer is authenticated gets a worker thread and its
    buffers.  Connections over the caps (in all, per peer address) are
    reset at once; every refusal is logged (``flocker:volume:tls:refused``).
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        sock: socket.socket,
        factory: IProtocolFactory,
        context: ssl.SSLContext,
        check: Callable[[x509.Certificate], None],
        handshake_timeout: float,
        caps: _Caps,
    ) -> None:
        self._reactor = reactor
        self._sock = sock
        self._factory = factory
        self._context = context
        self._check = check
        self._handshake_timeout = handshake_timeout
        self._caps = caps
        self._host = _address(sock.getsockname())
        self._stopped: Deferred[None] = Deferred()
        self._listening = False
        self._stopping = False
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def startListening(self) -> None:  # noqa: N802
        """Start accepting (in a thread)."""
        if self._listening:
            return
        if self._stopped.called or self._stopping:
            raise twisted_error.CannotListenError(
                self._host.host, self._host.port, RuntimeError("stopped for good")
            )
        self._listening = True
        self._factory.doStart()
        threading.Thread(
            target=self._accept_loop, name=f"accept :{self._host.port}", daemon=True
        ).start()

    def stopListening(self) -> Deferred[None]:  # noqa: N802
        """Stop accepting (connections already made go on; handshakes end)."""
        if not self._listening:
            return succeed(None)
        self._listening = False
        self._stopping = True
        try:
            os.write(self._wake_write, b"!")
        except OSError:
            pass
        return self._stopped

    def getHost(self) -> IPv4Address | IPv6Address:  # noqa: N802
        """The address listened on (its ``port`` is the port number)."""
        return self._host

    # -- the accepting thread ------------------------------------------------

    def _accept_loop(self) -> None:
        self._sock.setblocking(False)
        shaking: dict[int, tuple[_Handshake, str]] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ, "listen")
            selector.register(self._wake_read, selectors.EVENT_READ, "wake")
            while self._listening:
                now = monotonic()
                wait = min((h.deadline for h, _ in shaking.values()), default=now + 60)
                for key, _ in selector.select(max(0.0, wait - now)):
                    if key.data == "listen":
                        self._accept_all(selector, shaking)
                    elif key.data != "wake" and key.fd in shaking:
                        self._shake(selector, shaking, key.fd)
                now = monotonic()
                for fd, (handshake, _) in list(shaking.items()):
                    if handshake.deadline <= now:
                        self._drop(
                            selector, shaking, fd, "the TLS handshake took too long"
                        )
            for fd in list(shaking):
                self._drop(selector, shaking, fd, "the port stopped listening")
        self._sock.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self._reactor.callFromThread(self._closed)

    def _accept_all(
        self,
        selector: selectors.BaseSelector,
        shaking: dict[int, tuple[_Handshake, str]],
    ) -> None:
        """Accept every waiting connection, within the caps."""
        while True:
            try:
                connection, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                sleep(0.05)  # e.g. ECONNABORTED, EMFILE: go on listening
                return
            peer = f"{address[0]}:{address[1]}"
            refused = self._caps.take(address[0])
            if refused is not None:
                _reset(connection)
                self._reactor.callFromThread(TLS_REFUSED.log, peer=peer, reason=refused)
                continue
            try:
                handshake = _Handshake(
                    connection,
                    self._context,
                    True,
                    self._check,
                    self._handshake_timeout,
                )
            except OSError:
                self._caps.give_back(address[0])
                connection.close()  # gone before we looked at it
                continue
            shaking[connection.fileno()] = (handshake, address[0])
            selector.register(connection, selectors.EVENT_READ, peer)
            self._shake(selector, shaking, connection.fileno())

    def _shake(
        self,
        selector: selectors.BaseSelector,
        shaking: dict[int, tuple[_Handshake, str]],
        fd: int,
    ) -> None:
        """Advance one handshake; hand over or drop its connection when it ends."""
        handshake, address = shaking[fd]
        try:
            events = handshake.step()
        except (TLSFailed, OSError, ValueError) as error:
            self._drop(selector, shaking, fd, str(error))
            return
        if events:
            wanted = (
                selectors.EVENT_WRITE
                if events & select.POLLOUT
                else selectors.EVENT_READ
            )
            selector.modify(handshake.sock, wanted, selector.get_key(fd).data)
            return
        selector.unregister(handshake.sock)
        del shaking[fd]
        self._reactor.callFromThread(self._authenticated, handshake, address)

    def _drop(
        self,
        selector: selectors.BaseSelector,
        shaking: dict[int, tuple[_Handshake, str]],
        fd: int,
        reason: str,
    ) -> None:
        """End a connection whose handshake failed, timed out or was cut short."""
        handshake, address = shaking.pop(fd)
        peer = selector.get_key(fd).data
        selector.unregister(handshake.sock)
        _reset(handshake.sock)
        self._caps.give_back(address)
        self._reactor.callFromThread(TLS_REFUSED.log, peer=peer, reason=reason)

    # -- the reactor thread --------------------------------------------------

    def _closed(self) -> None:
        self._factory.doStop()
        self._stopped.callback(None)

    def _authenticated(self, handshake: _Handshake, address: str) -> None:
        """A peer passed the handshake and check: its connection starts."""
        try:
            transport = _ThreadedTLSTransport(
                self._reactor,
                handshake.sock,
                self._context,
                True,
                self._check,
                self._handshake_timeout,
                handshake=handshake,
                on_end=lambda: self._caps.give_back(address),
            )
        except OSError:
            self._caps.give_back(address)
            _reset(handshake.sock)  # gone meanwhile
            return
        transport.handshaken.addCallback(self._handshaken)
        transport.handshaken.addErrback(lambda _: None)  # logged as it ended
        transport.start()

    def _handshaken(self, transport: _ThreadedTLSTransport) -> None:
        if not self._listening:  # the factory may be stopped already
            transport.abortConnection()
            return
        try:
            protocol = self._factory.buildProtocol(transport.getPeer())
            if protocol is None:
                transport.abortConnection()
                return
            transport._attach(protocol)
        except Exception:
            write_traceback()
            transport.abortConnection()


@implementer(IStreamServerEndpoint)
class ThreadedTLSServerEndpoint:
    """
    Listens on ``port`` (0: any free one) of ``interface``; every connection
    runs TLS with ``context`` in a worker thread, and ``check`` must accept
    the client's certificate before a protocol is built.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        port: int,
        context: ssl.SSLContext,
        check: Callable[[x509.Certificate], None],
        interface: str = "",
        backlog: int = 50,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        maximum_connections: int = MAXIMUM_CONNECTIONS,
        maximum_per_peer: int = MAXIMUM_PER_PEER,
    ) -> None:
        """
        :param handshake_timeout: Seconds a client has to finish its handshake.
        :param maximum_connections: The most connections held at once.
        :param maximum_per_peer: The most connections from one address.
        """
        self._reactor = reactor
        self._port = port
        self._context = context
        self._check = check
        self._interface = interface
        self._backlog = backlog
        self._handshake_timeout = handshake_timeout
        self._maximum_connections = maximum_connections
        self._maximum_per_peer = maximum_per_peer

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Bind and listen; the port, or a ``CannotListenError`` failure."""
        family = socket.AF_INET6 if ":" in self._interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._interface, self._port))
            sock.listen(self._backlog)
        except OSError as error:
            sock.close()
            return fail(
                twisted_error.CannotListenError(self._interface, self._port, error)
            )
        port = _ThreadedTLSPort(
            self._reactor,
            sock,
            factory,
            self._context,
            self._check,
            self._handshake_timeout,
            _Caps(self._maximum_connections, self._maximum_per_peer),
        )
        port.startListening()
        return succeed(port)
